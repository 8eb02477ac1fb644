"""The dataset filter: keep the images of a folder or S3 prefix that show a label (locally: the person models
for person and its synonyms, ImageNet classes for the rest, calibrated for the everyday labels; or Rekognition),
with yes/no checks for uncertain images.

May import: ``hitl`` and everything below it; not its siblings (sagemaker, faces, lines).
"""
