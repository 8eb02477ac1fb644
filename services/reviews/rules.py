"""Credit rules: which photo classes earn a review credit, per review type (pure functions)."""

from __future__ import annotations

from typing import Any

LABEL_NAMES = {
    "package": "a package shot",
    "product": "a product shot",
    "full_length": "a full-length shot",
    "half_length": "a half-length shot",
}


def _needs(rule: dict[str, Any]) -> str:
    return " or ".join(LABEL_NAMES.get(c, c) for c in rule["classes"])


def photo_qualifies(*, review_type: str, label: str, rules: dict[str, Any]) -> tuple[bool, str]:
    """Whether one photo with ``label`` meets the rule of ``review_type``, with a readable reason."""
    rule = rules.get(review_type)
    if rule is None:
        return False, f"no credit rule is set for review type '{review_type}'"
    ok = label in rule["classes"]
    verdict = "meets" if ok else "does not meet"
    return ok, f"photo is {LABEL_NAMES.get(label, label)}; {verdict} the {review_type} rule (needs {_needs(rule)})"


def review_credit(
    *, review_type: str, photo_results: list[bool | None], rules: dict[str, Any]
) -> tuple[bool | None, str]:
    """Credit for a whole review from its photos' results (None = not decided yet).

    Returns (True/False, reason), or (None, reason) while the outcome still depends on undecided photos.
    """
    rule = rules.get(review_type)
    if rule is None:
        return False, f"no credit rule is set for review type '{review_type}'"
    decided = [r for r in photo_results if r is not None]
    pending = len(photo_results) - len(decided)
    qualifying = sum(1 for r in decided if r)
    n = len(photo_results)
    if rule["mode"] == "any":
        if qualifying:
            return True, f"{qualifying} of {n} photos meet the rule (one is enough)"
        if pending:
            return None, f"no photo meets the rule yet; {pending} still undecided"
        return False, f"none of {n} photos is {_needs(rule)}"
    if decided and not all(decided):
        return False, f"{n - qualifying - pending} of {n} photos do not meet the rule (all must)"
    if pending:
        return None, f"{pending} of {n} photos still undecided (all must meet the rule)"
    return True, f"all {n} photos meet the rule"
