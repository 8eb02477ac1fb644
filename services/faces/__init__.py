"""Face blurring: detectors (CenterFace, Rekognition), masks, images and videos, and the blurring job.

May import: ``hitl`` and everything below it; not its siblings (sagemaker, dataset_filter, lines).
"""
