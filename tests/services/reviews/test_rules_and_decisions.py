import pytest

from services.core.config import DEFAULTS, get_settings, set_setting
from services.core.errors import InvalidInput, NotFound
from services.reviews.decisions import decide, review_outcomes, route
from services.reviews.rules import photo_qualifies, review_credit

RULES = DEFAULTS["credit_rules"]


def test_default_rules_product_needs_product_style_needs_full_length():
    assert photo_qualifies(review_type="product", label="product", rules=RULES)[0]
    assert not photo_qualifies(review_type="product", label="package", rules=RULES)[0]
    ok, why = photo_qualifies(review_type="style", label="half_length", rules=RULES)
    assert not ok and "half-length" in why and "full-length" in why
    assert photo_qualifies(review_type="style", label="full_length", rules=RULES)[0]
    assert "no credit rule" in photo_qualifies(review_type="other", label="product", rules=RULES)[1]


def test_review_credit_any_versus_all():
    any_rule = {"product": {"classes": ["product"], "mode": "any"}}
    all_rule = {"product": {"classes": ["product"], "mode": "all"}}
    assert review_credit(review_type="product", photo_results=[False, True], rules=any_rule)[0] is True
    assert review_credit(review_type="product", photo_results=[False, None], rules=any_rule)[0] is None
    assert review_credit(review_type="product", photo_results=[False, False], rules=any_rule)[0] is False
    assert review_credit(review_type="product", photo_results=[True, False], rules=all_rule)[0] is False
    assert review_credit(review_type="product", photo_results=[True, None], rules=all_rule)[0] is None
    credit, reason = review_credit(review_type="product", photo_results=[True, True], rules=all_rule)
    assert credit is True and "all 2" in reason


def test_route_uses_per_class_thresholds_and_deterministic_audit():
    thresholds = {"product": 0.8, "package": 0.95}
    assert route(label="product", confidence=0.8, thresholds=thresholds, audit_rate=0, sha256="f" * 64).automatic
    r = route(label="package", confidence=0.9, thresholds=thresholds, audit_rate=0, sha256="f" * 64)
    assert not r.automatic and r.queue_reason == "low_confidence" and "below" in r.reason
    shas = [f"{i:08x}" + "0" * 56 for i in range(0, 2**32, 2**32 // 2000)]
    audited = [route(label="product", confidence=0.99, thresholds=thresholds, audit_rate=0.02, sha256=s).audit for s in shas]
    assert 0.01 < sum(audited) / len(audited) < 0.03
    again = [route(label="product", confidence=0.99, thresholds=thresholds, audit_rate=0.02, sha256=s).audit for s in shas]
    assert audited == again


def _seed(db, review_type="style", n=2):
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES ('r1', ?, '2026-11-01T00:00:00Z')", [review_type])
    for i in range(1, n + 1):
        db.execute("INSERT INTO images (id, review_id, uri, sha256, status) VALUES (?, 'r1', ?, ?, 'queued')",
                   [i, f"p{i}.jpg", f"{i:064x}"])


def test_decide_appends_history_latest_wins_and_review_credit_follows(db):
    _seed(db)
    d1 = decide(db, image_id=1, label="half_length", actor="ann")
    assert d1["credit"] is False and "does not meet" in d1["reason"]
    assert review_outcomes(db)["r1"]["credit"] is None  # photo 2 still undecided
    decide(db, image_id=2, label="full_length", actor="ann")
    assert review_outcomes(db)["r1"]["credit"] is True
    decide(db, image_id=2, label="product", actor="bob")  # an override later wins
    outcome = review_outcomes(db)["r1"]
    assert outcome["credit"] is False and "none of 2" in outcome["reason"]
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'decision'").fetchone()[0] == 3


def test_decide_rejects_unknown_label_and_image(db):
    _seed(db)
    with pytest.raises(InvalidInput, match="unknown label"):
        decide(db, image_id=1, label="shoe", actor="ann")
    with pytest.raises(NotFound):
        decide(db, image_id=99, label="product", actor="ann")


def test_failed_photo_never_blocks_the_review(db):
    _seed(db, review_type="product")
    db.execute("UPDATE images SET status = 'failed', error = 'corrupt' WHERE id = 2")
    decide(db, image_id=1, label="product", actor="ann")
    assert review_outcomes(db)["r1"]["credit"] is True


def test_settings_are_validated_stored_and_audited(db):
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        set_setting(db, key="thresholds", value={"product": 1.5}, actor="admin")
    with pytest.raises(InvalidInput, match="mode"):
        set_setting(db, key="credit_rules", value={"product": {"classes": ["product"], "mode": "most"}}, actor="admin")
    with pytest.raises(InvalidInput, match="unknown setting"):
        set_setting(db, key="nope", value=1, actor="admin")
    set_setting(db, key="thresholds", value={"product": 0.7}, actor="admin")
    got = get_settings(db)["thresholds"]
    assert got["product"] == 0.7 and got["package"] == DEFAULTS["thresholds"]["package"]
    set_setting(db, key="credit_rules", value={"style": {"classes": ["full_length", "half_length"], "mode": "all"}}, actor="admin")
    assert get_settings(db)["credit_rules"] == {"style": {"classes": ["full_length", "half_length"], "mode": "all"}}
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'setting.change'").fetchone()[0] == 2
