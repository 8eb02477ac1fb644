"""The dataset filter: keep the images of a folder or S3 prefix that show a label (local ImageNet
classifier or Rekognition), with yes/no checks for uncertain images.

May import: ``hitl`` and everything below it; not its siblings (sagemaker, faces, lines).
"""
