"""Reused-photo detection: perceptual hashes and keypoint checks (near_copies), the embedding index
(similarity) and the reuse job that flags copies across reviews.

May import: ``models``, ``datasets``, ``core``.
"""
