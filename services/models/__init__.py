"""The review-photo classifier's lifecycle: backbone embeddings and person cues, the head and fine-tuned
networks, evaluation and thresholds, training, grid searches, versions (registry), gated retraining and label export.

May import: ``datasets``, ``core``.
"""
