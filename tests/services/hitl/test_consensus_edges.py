"""Consensus edges, each on a fresh database: what an admin sees and records when adjudicating, the thresholds
that pick an inspector's reliability basis, staleness at its boundary, and the confidence boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.config import CLASSES
from services.core.errors import InvalidInput, NotFound
from services.hitl.consensus import (
    MIN_GOLD,
    MIN_OVERLAP_ITEMS,
    STALE_ANSWERS,
    adjudicate,
    adjudication_items,
    consolidate,
    estimate_reliability,
    reliabilities,
    reliability_is_stale,
)
from services.hitl.dawid_skene import gold_confusion
from tests.services.hitl.test_consensus import _answer, _decided_history, _photo

K = len(CLASSES)


def _queued_for_adjudication(db, image_id: int) -> None:
    _photo(db, image_id, reason="adjudication")


def test_the_adjudication_list_shows_missing_consensus_and_prediction_as_none(db):
    with db.atomic():
        _queued_for_adjudication(db, 1)
        _answer(db, 1, "ann", "package")
    [item] = adjudication_items(db)
    assert item["consensus"] is None and item["prediction"] is None
    assert [(a["inspector"], a["accuracy"], a["method"]) for a in item["answers"]] == [("ann", 0.8, "prior")]


def test_the_adjudication_list_reads_empty_probabilities_as_none_given(db):
    with db.atomic():
        _queued_for_adjudication(db, 1)
        _answer(db, 1, "ann", "package")
        db.execute("INSERT INTO consensus (image_id, label, confidence, probabilities, outcome) "
                   "VALUES (1, 'package', 0.5, '', 'adjudication')")
    [item] = adjudication_items(db)
    assert item["consensus"]["probabilities"] == {} and item["consensus"]["label"] == "package"


def test_the_adjudication_list_shows_each_inspectors_stored_reliability(db):
    with db.atomic():
        for i in range(MIN_GOLD):  # 'gus' answered three gold photos, two right: the gold basis, (2 + 1) / (3 + 2)
            _photo(db, 100 + i, status="decided", reason=None)
            db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, 'package', 'a', 'x')",
                       [100 + i])
            _answer(db, 100 + i, "gus", "package" if i else "product", kind="gold")
        _queued_for_adjudication(db, 1)
        _answer(db, 1, "gus", "package")
        _answer(db, 1, "newbie", "product")
    estimate_reliability(db)
    db.execute("DELETE FROM inspector_reliability WHERE inspector = 'newbie'")  # never estimated: the defaults
    [item] = adjudication_items(db)
    got = {a["inspector"]: (a["accuracy"], a["method"]) for a in item["answers"]}
    assert got == {"gus": (pytest.approx(3 / 5), "gold"), "newbie": (0.8, "prior")}


def test_the_adjudication_list_is_fifty_long_by_default(db):
    with db.atomic():
        for i in range(1, 53):
            _queued_for_adjudication(db, i)
    assert len(adjudication_items(db)) == 50
    assert len(adjudication_items(db, limit=51)) == 51
    assert [i["id"] for i in adjudication_items(db, limit=3)] == [1, 2, 3]  # oldest first


def test_an_adjudication_records_the_prediction_the_consensus_and_one_time(db):
    with db.atomic():
        _queued_for_adjudication(db, 1)
        db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1)")
        pred = db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                          "VALUES (1, 1, 'package', 0.5, '{}')").lastrowid
        db.execute("INSERT INTO consensus (image_id, label, confidence, probabilities, outcome) "
                   "VALUES (1, 'package', 0.4, '{}', 'adjudication')")
    decision = adjudicate(db, image_id=1, label="product", actor="boss")
    assert decision["reason"].split(";")[0] == "adjudicated by boss (consensus was package at 40%)"
    assert decision["source"] == "human"
    answered_at, = db.execute("SELECT answered_at FROM answers WHERE id = ?", [decision["answer_id"]]).fetchone()
    at, detail = db.execute("SELECT at, detail FROM queue_events WHERE answer_id = ?", [decision["answer_id"]]).fetchone()
    updated_at, outcome = db.execute("SELECT updated_at, outcome FROM consensus WHERE image_id = 1").fetchone()
    assert answered_at and answered_at == at == updated_at and outcome == "adjudicated"
    assert json.loads(detail) == {"decision_id": decision["id"]}
    assert db.execute("SELECT prediction_id FROM decisions WHERE id = ?", [decision["id"]]).fetchone()[0] == pred


def test_an_adjudication_without_consensus_says_only_who_made_it(db):
    with db.atomic():
        _queued_for_adjudication(db, 1)
    assert adjudicate(db, image_id=1, label="package", actor="boss")["reason"].split(";")[0] == "adjudicated by boss"


def test_adjudication_refusals_say_why(db):
    with db.atomic():
        _queued_for_adjudication(db, 1)
        _photo(db, 2, status="decided", reason=None)  # decided with no decision row: not "already decided by"
        _photo(db, 3, status="queued", reason=None)
    with pytest.raises(InvalidInput) as caught:
        adjudicate(db, image_id=1, label="nope", actor="boss")
    assert str(caught.value) == "unknown label 'nope'; expected one of package, product, full_length, half_length"
    for blank in ("", "   "):
        with pytest.raises(InvalidInput) as caught:
            adjudicate(db, image_id=1, label="package", actor=blank)
        assert str(caught.value) == "an adjudication needs the name of the admin making it"
    with pytest.raises(NotFound) as caught:
        consolidate(db, image_id=42, settings={})
    assert str(caught.value) == "image 42 does not exist"
    with pytest.raises(NotFound) as caught:
        adjudicate(db, image_id=99, label="package", actor="boss")
    assert str(caught.value) == "image 99 does not exist (it may have been deleted)"
    with pytest.raises(InvalidInput) as caught:
        adjudicate(db, image_id=2, label="package", actor="boss")
    assert str(caught.value) == "image 2 is not waiting for adjudication (status decided, reason none)"
    with pytest.raises(InvalidInput) as caught:
        adjudicate(db, image_id=3, label="package", actor="boss")
    assert str(caught.value) == "image 3 is not waiting for adjudication (status queued, reason none)"
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0


def test_a_queued_photo_with_an_earlier_decision_is_not_called_decided(db):
    with db.atomic():
        _photo(db, 1, status="decided", reason=None)
    first = adjudicate_via_decide(db, 1)
    db.execute("UPDATE images SET status = 'queued', queue_reason = 'low_confidence' WHERE id = 1")  # reopened
    with pytest.raises(InvalidInput) as caught:
        adjudicate(db, image_id=1, label="package", actor="boss")
    assert str(caught.value) == "image 1 is not waiting for adjudication (status queued, reason low_confidence)"
    assert db.execute("SELECT decision_id FROM images WHERE id = 1").fetchone()[0] == first


def adjudicate_via_decide(db, image_id: int) -> int:
    from services.reviews.decisions import decide

    with db.atomic():
        return decide(db, image_id=image_id, label="package", actor="ann")["id"]


# ---- the reliability basis: Dawid-Skene from MIN_OVERLAP_ITEMS shared photos, gold from MIN_GOLD answers


def _overlap(db, n: int, *, start: int = 1000, workers=("ann", "bob")) -> None:
    for i in range(n):
        _photo(db, start + i, status="decided", reason=None)
        for w in workers:
            _answer(db, start + i, w, CLASSES[i % K])


def test_dawid_skene_is_used_from_exactly_ten_shared_photos(db):
    assert MIN_OVERLAP_ITEMS == 10
    with db.atomic():
        _overlap(db, MIN_OVERLAP_ITEMS, workers=("ann", "bob"))
        _overlap(db, MIN_OVERLAP_ITEMS - 1, start=2000, workers=("cat", "dan"))
    rows = estimate_reliability(db)
    assert (rows["ann"]["method"], rows["ann"]["n_overlap_items"]) == ("dawid-skene", 10)
    assert (rows["cat"]["method"], rows["cat"]["n_overlap_items"]) == ("prior", 9)
    assert rows["cat"]["accuracy"] == 0.8 and rows["cat"]["confusion"][0] == pytest.approx([0.8] + [0.2 / 3] * 3, abs=1e-6)
    # the Dawid-Skene accuracy is the prior-weighted diagonal of the learnt matrix (not one cell of it)
    m = np.asarray(rows["ann"]["confusion"])
    assert 0.5 < rows["ann"]["accuracy"] < 1.0 and np.allclose(m.sum(axis=1), 1.0, atol=1e-5)
    assert rows["ann"]["accuracy"] == pytest.approx(float(np.diag(m).mean()), abs=0.02)  # priors near even here
    assert [k for k in rows] == sorted(rows) and rows["ann"]["n_answers"] == 10
    assert (rows["ann"]["gold_answers"], rows["ann"]["gold_correct"]) == (0, 0)


def test_gold_is_used_from_exactly_three_gold_answers(db):
    assert MIN_GOLD == 3
    with db.atomic():
        for j, (w, n, right) in enumerate((("gus", MIN_GOLD, 2), ("hal", MIN_GOLD - 1, 1), ("ivy", MIN_GOLD, 0))):
            for i in range(n):
                img = 100 + 10 * j + i
                _photo(db, img, status="decided", reason=None)
                db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) "
                           "VALUES (?, 'product', 'a', 'x')", [img])
                _answer(db, img, w, "product" if i >= n - right else "package", kind="gold")
    rows = estimate_reliability(db)
    assert (rows["gus"]["method"], rows["gus"]["gold_answers"], rows["gus"]["gold_correct"]) == ("gold", 3, 2)
    assert rows["gus"]["accuracy"] == pytest.approx(3 / 5)
    assert np.allclose(rows["gus"]["confusion"], gold_confusion(correct=2, total=3, n_classes=K), atol=1e-6)
    assert (rows["hal"]["method"], rows["hal"]["gold_answers"], rows["hal"]["gold_correct"]) == ("prior", 2, 1)
    assert rows["hal"]["accuracy"] == 0.8
    assert (rows["ivy"]["method"], rows["ivy"]["gold_answers"], rows["ivy"]["gold_correct"]) == ("gold", 3, 0)
    assert rows["ivy"]["accuracy"] == pytest.approx(1 / 5)


def test_two_lone_single_answers_are_not_overlap(db):
    with db.atomic():
        for i in range(12):  # a re-review: two inspectors each answered 'single' on the same photos
            _photo(db, 100 + i, status="decided", reason=None)
            _answer(db, 100 + i, "ann", "package", kind="single")
            _answer(db, 100 + i, "bob", "package", kind="single")
    rows = estimate_reliability(db)
    assert rows["ann"]["n_overlap_items"] == 0 and rows["ann"]["method"] == "prior" and rows["ann"]["n_answers"] == 12


def test_answers_on_a_photo_only_one_inspector_answered_are_not_overlap(db):
    with db.atomic():
        for i in range(12):  # 'overlap' answers, but only ann ever answered these photos
            _photo(db, 100 + i, status="decided", reason=None)
            _answer(db, 100 + i, "ann", "package")
            _answer(db, 100 + i, "ann", "package")
    rows = estimate_reliability(db)
    assert rows["ann"]["n_overlap_items"] == 0 and rows["ann"]["method"] == "prior" and rows["ann"]["n_answers"] == 24


def test_the_stored_rows_round_trip(db):
    with db.atomic():
        _overlap(db, 12)
    rows = estimate_reliability(db)
    stored = reliabilities(db)
    assert set(stored) == {"ann", "bob"}
    for name, row in rows.items():
        for key in ("method", "n_answers", "n_overlap_items", "gold_answers", "gold_correct", "updated_at"):
            assert stored[name][key] == row[key], key
        assert stored[name]["accuracy"] == pytest.approx(row["accuracy"])
        assert stored[name]["confusion"] == row["confusion"]
    # estimating again replaces the rows (one per inspector)
    estimate_reliability(db)
    assert db.execute("SELECT COUNT(*) FROM inspector_reliability").fetchone()[0] == 2


def test_staleness_counts_answers_after_the_newest_estimate(db):
    with db.atomic():
        _photo(db, 1)
        _answer(db, 1, "ann", "package", at="2026-01-01T00:00:00Z")
    estimate_reliability(db)
    db.execute("UPDATE inspector_reliability SET updated_at = '2026-06-01T00:00:00Z'")
    with db.atomic():
        for _ in range(STALE_ANSWERS):
            _answer(db, 1, "ann", "package", at="2026-06-01T00:00:00Z")  # at the estimate's time: not after it
        _answer(db, 1, "ann", "package", at="2026-06-02T00:00:00Z")
    assert not reliability_is_stale(db)  # one answer after it
    with db.atomic():
        for _ in range(STALE_ANSWERS - 1):
            _answer(db, 1, "ann", "package", at="2026-06-02T00:00:00Z")
    assert not reliability_is_stale(db)  # exactly 50 after it
    _answer(db, 1, "ann", "package", at="2026-06-02T00:00:00Z")
    assert reliability_is_stale(db)  # 51


# ---- consolidation: the confidence boundary, the default threshold, the method named


def test_a_confidence_exactly_at_the_threshold_decides(db):
    with db.atomic():
        _photo(db, 1)
        _answer(db, 1, "ann", "package")  # one unknown inspector at the prior's 0.8: confidence 0.8
        _photo(db, 2)
        _answer(db, 2, "ann", "package")
    got = consolidate(db, image_id=1, settings={"consensus_min_confidence": 0.8}, reestimate=False)
    assert got["confidence"] == pytest.approx(0.8) and got["outcome"] == "decided" and got["method"] == "prior"
    # the same vote with the threshold set to exactly its confidence: at the threshold is enough
    same = consolidate(db, image_id=2, settings={"consensus_min_confidence": got["confidence"]}, reestimate=False)
    assert same["confidence"] == got["confidence"] and same["outcome"] == "decided"
    # and a threshold over it, under the setting's own name, sends the same vote to an admin
    with db.atomic():
        _photo(db, 3)
        _answer(db, 3, "ann", "package")
    above = consolidate(db, image_id=3, settings={"consensus_min_confidence": 0.81}, reestimate=False)
    assert above["outcome"] == "adjudication" and above["decision_id"] is None
    stored = db.execute("SELECT updated_at FROM consensus WHERE image_id = 1").fetchone()[0]
    assert got["image_id"] == 1 and got["updated_at"] and got["updated_at"] == stored
    assert got["probabilities"] == {"package": 0.8, "product": round(0.2 / 3, 6), "full_length": round(0.2 / 3, 6),
                                    "half_length": round(0.2 / 3, 6)}
    assert reliabilities(db) == {}  # reestimate=False: nothing estimated


def test_the_default_threshold_is_0_8(db):
    with db.atomic():
        _photo(db, 1)
        _photo(db, 2)
        _answer(db, 1, "ann", "package")  # 0.8: decided at the default
        _answer(db, 2, "ann", "package")
        _answer(db, 2, "bob", "product")  # a tie: 0.8 x 0.2/3 each for the two, (0.2/3)^2 for the others
    assert consolidate(db, image_id=1, settings={}, reestimate=False)["outcome"] == "decided"
    got = consolidate(db, image_id=2, settings={}, reestimate=False)
    assert got["outcome"] == "adjudication" and got["confidence"] == pytest.approx(0.8 / (1.6 + 0.4 / 3))
    assert db.execute("SELECT queue_reason FROM images WHERE id = 2").fetchone()[0] == "adjudication"
    assert db.execute("SELECT queue_reason FROM images WHERE id = 1").fetchone()[0] != "adjudication"


def test_the_weakest_basis_names_the_method_and_the_note_counts_inspectors(db):
    with db.atomic():
        for i in range(MIN_GOLD):
            _photo(db, 100 + i, status="decided", reason=None)
            db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, 'package', 'a', 'x')",
                       [100 + i])
            _answer(db, 100 + i, "gus", "package", kind="gold")
        _photo(db, 1)
        _answer(db, 1, "gus", "product")
        _answer(db, 1, "gus", "product")  # the same inspector twice: two answers, one inspector
    got = consolidate(db, image_id=1, settings={"consensus_min_confidence": 0.5})
    assert got["method"] == "gold" and got["n_answers"] == 2 and got["outcome"] == "decided"
    reason = db.execute("SELECT d.reason FROM decisions d JOIN images i ON i.decision_id = d.id WHERE i.id = 1").fetchone()
    assert reason[0].split(";")[0] == f"consensus of 1 inspectors, agreement 100%, confidence {got['confidence']:.0%}"
    with db.atomic():
        _answer(db, 1, "newbie", "product")
    assert consolidate(db, image_id=1, settings={"consensus_min_confidence": 0.5}, reestimate=False)["method"] == "prior"


def test_gold_photos_in_the_fit_tell_who_is_right_when_two_always_disagree(db):
    # ann and bob answer the same 12 gold photos (all 'package'): ann always right, bob always 'product'. Without
    # the gold labels fixed in the fit, two inspectors who always disagree look alike; with them, bob is wrong
    with db.atomic():
        for i in range(12):
            _photo(db, 100 + i, status="decided", reason=None)
            db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, 'package', 'a', 'x')",
                       [100 + i])
            _answer(db, 100 + i, "ann", "package", kind="gold")
            _answer(db, 100 + i, "bob", "product", kind="gold")
        _photo(db, 999, status="decided", reason=None)  # gold nobody answered: left out of the fit
        db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (999, 'half_length', 'a', 'x')")
    rows = estimate_reliability(db)
    assert rows["ann"]["method"] == rows["bob"]["method"] == "dawid-skene"
    assert rows["ann"]["accuracy"] > 0.6 > 0.3 > rows["bob"]["accuracy"]
    bob = np.asarray(rows["bob"]["confusion"])
    assert bob[CLASSES.index("package"), CLASSES.index("product")] > 0.2
    # the stored matrices are the documented fit (50 rounds at most, tolerance 1e-4), rounded to 6 places
    from services.hitl.dawid_skene import dawid_skene

    triples = [(100 + i, w, CLASSES.index(lbl)) for i in range(12) for w, lbl in (("ann", "package"), ("bob", "product"))]
    ds = dawid_skene(triples, n_classes=K, gold={100 + i: 0 for i in range(12)}, max_iter=50, tol=1e-4)
    for w in ("ann", "bob"):
        assert rows[w]["confusion"] == np.round(ds.confusions[w], 6).tolist()
        assert rows[w]["accuracy"] == pytest.approx(float(np.dot(ds.priors, np.diag(ds.confusions[w]))), abs=1e-12)


def test_the_fit_runs_fifty_rounds_at_most_to_a_tolerance_of_1e_4(db):
    # the synthetic team of the Dawid-Skene tests, on 40 photos a fit slow to settle (still moving by more than 1e-4
    # after 50 rounds): stored matrices equal that fit exactly, not a longer or tighter one
    from services.hitl.dawid_skene import dawid_skene
    from tests.services.hitl.test_dawid_skene import _synthetic

    _truth, said, answers = _synthetic(seed=3, n=40)
    with db.atomic():
        _decided_history(db, said, 40)
    rows = estimate_reliability(db)
    triples = [(1000 + i, w, c) for i, w, c in answers]
    ds = dawid_skene(triples, n_classes=K, max_iter=50, tol=1e-4)
    assert ds.iterations == 50 and dawid_skene(triples, n_classes=K, max_iter=200, tol=1e-4).iterations > 51
    assert all(rows[w]["confusion"] == np.round(ds.confusions[w], 6).tolist() for w in said)
    longer = dawid_skene(triples, n_classes=K, max_iter=51, tol=1e-6)
    assert any(rows[w]["confusion"] != np.round(longer.confusions[w], 6).tolist() for w in said)


def test_consensus_decides_under_its_system_principal_and_the_callers_credit_rules(db):
    with db.atomic():
        db.execute("INSERT INTO users (username, roles, disabled) VALUES ('admin', '[\"admin\"]', 0)")  # set-up over
        _photo(db, 1)
        db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1)")
        db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                   "VALUES (1, 1, 'package', 0.5, '{}')")
        pred = db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                          "VALUES (1, 1, 'package', 0.6, '{}')").lastrowid
        for w in ("ann", "bob", "cat"):
            _answer(db, 1, w, "package")
    # the photo's review is a 'product' review: by default a package shot earns no credit; these rules say it does
    rules = {"product": {"classes": ["package"], "mode": "any"}}
    got = consolidate(db, image_id=1, settings={"consensus_min_confidence": 0.5, "credit_rules": rules},
                      reestimate=False)
    row = db.execute("SELECT decided_by, credit, prediction_id, source FROM decisions WHERE id = ?",
                     [got["decision_id"]]).fetchone()
    assert row == ("consensus", 1, pred, "human")


def test_undone_answers_are_not_counted_in_an_inspectors_answers(db):
    with db.atomic():
        _photo(db, 1)
        _answer(db, 1, "ann", "package")
        undone = _answer(db, 1, "ann", "product")
        db.execute("INSERT INTO queue_events (at, ts, image_id, inspector, action, answer_id) "
                   "VALUES ('x', 0, 1, 'ann', 'undo', ?)", [undone])
        gone = _answer(db, 1, "dan", "product")
        db.execute("INSERT INTO queue_events (at, ts, image_id, inspector, action, answer_id) "
                   "VALUES ('x', 0, 1, 'dan', 'undo', ?)", [gone])
    rows = estimate_reliability(db)
    assert rows["ann"]["n_answers"] == 1 and "dan" not in rows
