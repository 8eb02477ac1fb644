"""Which photos a review photo is compared with in full (``services.reuse.near_copies.compare``): the limits the
check between reviews (``services.reuse.detection``) and the check against the catalog
(``services.reuse.catalog_checks``) share, chosen on the tune splits of ``benchmarks/near_duplicates.py`` and
``benchmarks/catalog_checks.py``.

A candidate is a photo whose whole or region hash is near one of the photo's probes, or one of its nearest
embeddings: any of the NEIGHBOURS nearest at CANDIDATE_SIMILARITY or more, and the WEAK_NEIGHBOURS nearest down to
WEAK_SIMILARITY. Candidates are compared strongest evidence first (``tier``), at most MAX_VERIFY of them.
"""

from __future__ import annotations

CANDIDATE_SIMILARITY = 0.6  # edited copies measured at 0.65 and above (crops); distinct photos mostly below
NEIGHBOURS = 20  # many copies of one photo must not crowd its first appearance out
# Stickers over a face or a product move the embedding most: tune split copies with three stickers sat at cosine
# 0.44-0.56 from their original (below CANDIDATE_SIMILARITY, no hash within reach), yet their original was the
# nearest or fifth nearest photo. The nearest few are candidates down to WEAK_SIMILARITY.
WEAK_NEIGHBOURS = 5
WEAK_SIMILARITY = 0.4
HASH_BITS_STRONG = 6
STRONG_SIMILARITY = 0.75
MAX_VERIFY = 8  # candidates confirmed per photo at most, strongest evidence first (each decodes the other photo)


def tier(*, bits: int | None, similarity: float | None) -> int:
    """How strong a candidate's evidence is, strongest 0: a hash within HASH_BITS_STRONG bits (0), else an
    embedding at STRONG_SIMILARITY or more (1), else anything that made it a candidate (2). Raises nothing."""
    if bits is not None and bits <= HASH_BITS_STRONG:
        return 0
    return 1 if similarity is not None and similarity >= STRONG_SIMILARITY else 2
