"""Credit rules as pure functions: every verdict and every reason, hand-written (no database)."""

from __future__ import annotations

import pytest

from services.reviews.rules import photo_qualifies, review_credit

RULES = {
    "product": {"classes": ["product", "package"], "mode": "any"},
    "style": {"classes": ["full_length"], "mode": "all"},
    "odd": {"classes": ["mystery_class"], "mode": "any"},  # a class the console has no name for
}


@pytest.mark.parametrize(("review_type", "label", "ok", "reason"), [
    ("product", "package", True, "photo is a package shot; meets the product rule (needs a product shot or a package shot)"),
    ("product", "half_length", False,
     "photo is a half-length shot; does not meet the product rule (needs a product shot or a package shot)"),
    ("style", "full_length", True, "photo is a full-length shot; meets the style rule (needs a full-length shot)"),
    ("odd", "mystery_class", True, "photo is mystery_class; meets the odd rule (needs mystery_class)"),
    ("odd", "other", False, "photo is other; does not meet the odd rule (needs mystery_class)"),
])
def test_one_photo_against_its_rule(review_type, label, ok, reason):
    assert photo_qualifies(review_type=review_type, label=label, rules=RULES) == (ok, reason)


def test_a_review_type_without_a_rule_earns_nothing():
    want = (False, "no credit rule is set for review type 'video'")
    assert photo_qualifies(review_type="video", label="product", rules=RULES) == want
    assert review_credit(review_type="video", photo_results=[True, True], rules=RULES) == want


@pytest.mark.parametrize(("results", "want"), [
    ([True, False, None], (True, "1 of 3 photos meet the rule (one is enough)")),
    ([True, True, False], (True, "2 of 3 photos meet the rule (one is enough)")),
    ([False, None, None], (None, "no photo meets the rule yet; 2 still undecided")),
    ([False, False], (False, "none of 2 photos is a product shot or a package shot")),
    ([], (False, "none of 0 photos is a product shot or a package shot")),
])
def test_any_mode_one_qualifying_photo_is_enough(results, want):
    assert review_credit(review_type="product", photo_results=results, rules=RULES) == want


@pytest.mark.parametrize(("results", "want"), [
    ([True, True, True], (True, "all 3 photos meet the rule")),
    ([True, False, False, None], (False, "2 of 4 photos do not meet the rule (all must)")),
    ([False, None, None], (False, "1 of 3 photos do not meet the rule (all must)")),  # decided already: no wait
    ([True, None, None], (None, "2 of 3 photos still undecided (all must meet the rule)")),
    ([None], (None, "1 of 1 photos still undecided (all must meet the rule)")),
    ([], (True, "all 0 photos meet the rule")),
])
def test_all_mode_every_photo_must_qualify(results, want):
    assert review_credit(review_type="style", photo_results=results, rules=RULES) == want
