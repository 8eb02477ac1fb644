"""What a label detector says about one image (``Detection``), shared by the local and cloud detectors."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Detection:
    """The best evidence for one wanted label in one image.

    ``confidence`` is what the job compares with its threshold. For a calibrated label (``calibrated``
    True: person and its synonyms, shoe, bag, box, clothing with the local detector) it estimates the
    probability that the image shows the label; ``raw`` keeps the detector's own score it was mapped from.
    """

    name: str  # the wanted label
    confidence: float  # 0..1
    matched: list[str] = field(default_factory=list)  # ImageNet class names or Rekognition label names, best first
    boxes: list[dict[str, float]] = field(default_factory=list)  # left, top, width, height (ratios), confidence
    image_size: tuple[int, int] | None = None  # (width, height) of the upright original, when known
    raw: float | None = None  # the detector's score before calibration (None: confidence is the raw score)
    calibrated: bool = False


__all__ = ["Detection"]
