"""Similar decided photos: searched once per photo, not on every run of the queue page."""

from __future__ import annotations

from services.hitl import similar_cases
from services.hitl.answers import submit
from services.hitl.queue import claim_next
from tests.pages.helpers import check_reuse_now, classify_now, seed_reviews


def test_similar_cases_are_searched_once_per_photo(ws, db, tmp_path, monkeypatch):
    from services.reuse.detection import index_for

    seed_reviews(db, tmp_path / "photos", [{"review_id": f"r{i}", "review_type": "product"} for i in range(4)])
    classify_now(ws, db)
    for _ in range(2):
        item = claim_next(db, inspector="ines")
        submit(db, image_id=item["id"], label="product", actor="ines")
    check_reuse_now(ws, db)
    shown = claim_next(db, inspector="ines")["id"]
    index = index_for(ws)
    searches: list[int] = []
    search = index.search

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        searches.append(1)
        return search(*args, **kwargs)

    monkeypatch.setattr(index, "search", counted)
    first = similar_cases.similar_decided(db, image_id=shown, actor="ines", index=index)
    assert first and all(case["label"] == "product" for case in first)
    again = similar_cases.similar_decided(ws.db(), image_id=shown, actor="ines", index=index)  # another run
    assert again == first and len(searches) == 1
    again[0]["label"] = "changed"  # a caller's copy: the cache keeps its own
    assert similar_cases.similar_decided(db, image_id=shown, actor="ines", index=index) == first
    monkeypatch.setattr(similar_cases, "CACHE_SECONDS", 0.0)  # once it is old, searched again
    assert similar_cases.similar_decided(db, image_id=shown, actor="ines", index=index) == first
    assert len(searches) == 2
