"""Face blurring: detectors (CenterFace searched in passes, Rekognition), masks and their detail check, video
tracking, the report for admins, images and videos, and the blurring job.

May import: ``hitl`` and everything below it; not its siblings (sagemaker, dataset_filter, lines).
"""
