"""Dataset formats: Ground Truth manifests, COCO, folder layouts, DeepFashion2, Custom Labels checks and
conversion between them.

May import: ``core``.
"""
