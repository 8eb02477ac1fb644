"""Amazon SageMaker: settings as a typed config, training, grid tuning and batch transform of the
built-in image-classification algorithm, with dry runs.

May import: ``hitl`` and everything below it; not its siblings (dataset_filter, faces, lines).
"""
