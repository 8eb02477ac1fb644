"""Customer reviews and their photos: ingest, the classify job, routing rules, decisions, credit and its
holds, re-scoring when the model changes, and review outcomes.

May import: ``reuse``, ``models``, ``datasets``, ``core``.
"""
