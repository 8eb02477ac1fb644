"""The candidate limits both reuse checks share: evidence tiers, strongest first."""

from __future__ import annotations

from services.reuse import catalog_checks, detection
from services.reuse.candidates import HASH_BITS_STRONG, STRONG_SIMILARITY, tier


def test_a_near_hash_beats_a_near_embedding_which_beats_anything_else():
    assert tier(bits=HASH_BITS_STRONG, similarity=None) == 0
    assert tier(bits=HASH_BITS_STRONG + 1, similarity=STRONG_SIMILARITY) == 1
    assert tier(bits=HASH_BITS_STRONG, similarity=0.5) == 0  # the hash decides first
    assert tier(bits=HASH_BITS_STRONG + 1, similarity=STRONG_SIMILARITY - 0.01) == 2
    assert tier(bits=None, similarity=None) == 2


def test_both_checks_use_the_same_limits():
    for name in ("CANDIDATE_SIMILARITY", "NEIGHBOURS", "WEAK_NEIGHBOURS", "WEAK_SIMILARITY", "MAX_VERIFY"):
        assert getattr(detection, name) is getattr(catalog_checks, name), name
