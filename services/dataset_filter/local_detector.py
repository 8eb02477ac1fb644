"""The local label detector: offline and free, from the models the console already runs.

- Any label: the backbone's 1,000 ImageNet logits (``services.models.embedder``, the ONNX session the classify
  job uses) through a softmax; the label's confidence is the sum of the probabilities of the classes WordNet puts
  under it (``imagenet_hierarchy``), so "bird" sums the 59 bird classes. Not calibrated; no boxes.
- The everyday labels (``everyday``): "person" and its synonyms from the body-pose and face detectors, with
  boxes (``people``); "bag" from the COCO object detector (``services.models.coco_objects``, YOLOX-Nano): its
  handbag, backpack and suitcase boxes on the whole photo, and its handbag and backpack boxes on 3 x 3 tiles of
  the photo (``CocoDetector.detect_tiles``) at TILE_WEIGHT of their score (the tiles are only searched while
  nothing on the whole photo scores TILE_WEIGHT, since a tile could not score higher then); "shoe", "box",
  "clothing" from chosen ImageNet classes, shoes also on the crops around the feet of the people found. Their
  confidences are calibrated (``calibration``), so one threshold means about the same for each.

``prepare`` (decode, on I/O threads) and ``detect_prepared`` (inference per batch) let a job pipeline the work;
``detect_many`` does both for a list of images.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from services.core import images as imgs
from services.core.errors import ConsoleError, InvalidInput
from services.core.storage import ObjectStore
from services.dataset_filter import calibration, everyday
from services.dataset_filter.everyday import Family
from services.dataset_filter.evidence import Detection
from services.dataset_filter.imagenet_hierarchy import Hierarchy, load, unknown_labels_message
from services.dataset_filter.people import People, find_people
from services.models.coco_objects import CocoDetector, ObjectBox
from services.models.embedder import preprocess
from services.models.features import FeatureExtractor

EMBED_SIDE = 224  # the backbone's letterbox: JPEGs decode straight to about this size (DCT scaling)
PEOPLE_SIDE = 640  # decode size when people, feet or COCO objects are looked for (small ones need the pixels)
COCO_BOXES = 5  # at most this many object boxes per label and image, each scoring at least half the best
TILE_WEIGHT = 0.5  # a COCO object found only on a tile counts for this share of its score there (tuning photos)


@dataclass
class Prepared:
    """An image decoded for the models: the backbone's input array, its original upright size, the picture."""

    array: np.ndarray  # (3, 224, 224) float32
    image_size: tuple[int, int]
    picture: Image.Image  # as decoded (224 px, or PEOPLE_SIDE when people are looked for)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class LocalImageNetDetector:
    """ImageNet classes under each wanted label, and people for the person labels; one ONNX session per model
    per process (shared with classify)."""

    name = "local"
    cost_per_image = 0.0
    batch_size = 32
    top_matches = 3  # class names reported in Detection.matched

    def __init__(self, ws: Any = None, *, models_dir: Any = None, store: ObjectStore | None = None,
                 max_pixels: int = imgs.DEFAULT_MAX_PIXELS, hierarchy: Hierarchy | None = None,
                 decode_threads: int = 2) -> None:
        """``ws`` (a Workspace) or ``models_dir`` locate the backbone; ``store`` reads ``uri`` when no data is given.

        Raises InvalidInput when neither is given; the models load on first use (ModelError then).
        """
        if ws is None and models_dir is None:
            raise InvalidInput("LocalImageNetDetector needs the workspace (or its models folder)")
        self.models_dir = models_dir if models_dir is not None else ws.models_dir
        self.store = store or ObjectStore()
        self.max_pixels = max_pixels
        self.hierarchy = hierarchy or load()
        self.decode_threads = decode_threads
        self._ids: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._embedder: Any = None

    @property
    def embedder(self) -> Any:
        """The process-wide backbone (services.models.features.FeatureExtractor.shared), loaded on first use."""
        if self._embedder is None:
            self._embedder = FeatureExtractor.shared(self.models_dir).embedder
        return self._embedder

    def class_ids(self, label: str) -> np.ndarray:
        """Indices of the ImageNet classes ``label`` sums (none for the person labels).
        Raises InvalidInput (with suggestions) for a label that matches nothing."""
        with self._lock:
            if label not in self._ids:
                family = everyday.family_of(label)
                ids = everyday.class_ids(family, hierarchy=self.hierarchy) if family else self.hierarchy.class_ids(label)
                if not ids and not (family and (family.people or family.coco)):
                    raise InvalidInput(unknown_labels_message([label], self.hierarchy.suggestions))
                self._ids[label] = np.asarray(ids, dtype=np.int64)
            return self._ids[label]

    @staticmethod
    def needs_people(wanted: Sequence[str]) -> bool:
        """Whether any wanted label needs the larger picture: it looks at people (person and its synonyms, shoes
        on feet) or at COCO objects (bags)."""
        return any((f := everyday.family_of(label)) is not None and (f.people or f.feet or bool(f.coco))
                   for label in wanted)

    def prepare(self, data: bytes, *, people: bool = False) -> Prepared:
        """Decode at reduced size and letterbox for the backbone (thread-safe); ``people`` keeps a larger picture
        for the person detectors. Raises ImageError."""
        width, height, _ = imgs.probe(data, max_pixels=self.max_pixels)
        picture = imgs.decode(data, max_side=PEOPLE_SIDE if people else EMBED_SIDE, max_pixels=self.max_pixels)
        return Prepared(preprocess(picture), (width, height), picture)

    def probabilities(self, prepared: Sequence[Prepared]) -> np.ndarray:
        """(N, 1000) softmax probabilities over the ImageNet classes of the whole images."""
        return self._probabilities([p.array for p in prepared])

    def _probabilities(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        if not arrays:
            return np.zeros((0, 1000), dtype=np.float64)
        out = []
        for start in range(0, len(arrays), self.batch_size):
            _, logits = self.embedder.run(np.stack(list(arrays[start : start + self.batch_size])))
            out.append(_softmax(logits.astype(np.float64)))
        return np.concatenate(out)

    def _matched(self, ids: np.ndarray, p: np.ndarray) -> list[str]:
        top = np.argsort(-p)[: self.top_matches]
        return [self.hierarchy.names[int(ids[k])] for k in top if p[k] >= 0.005]

    def _everyday(self, label: str, family: Family, views: list[tuple[np.ndarray, dict[str, float] | None]],
                  people: People | None, size: tuple[int, int], objects: list[dict[str, Any]]) -> Detection:
        """One everyday label's detection from the image's views (whole image first, then feet crops)
        and the COCO objects found in it (boxes as ratios, with ``score`` and ``part``: the class)."""
        if family.people:
            found = people or People()
            parts = sorted({str(b["part"]) for b in found.boxes})
            det = Detection(label, found.score, [f"person ({', '.join(parts)})"] if parts else [],
                            [dict(b) for b in found.boxes], size)  # type: ignore[misc]
        else:
            ids = self.class_ids(label)
            sums = [float(probs[ids].sum()) for probs, _ in views]
            best = int(np.argmax(sums))
            probs, box = views[best]
            boxes = [{**box, "confidence": round(sums[best], 4)}] if box else []
            det = Detection(label, min(1.0, sums[best]), self._matched(ids, probs[ids]), boxes, size)
            shown = people.feet_shown if family.feet and people is not None else 0.0
            if shown > det.confidence:  # feet in view: shoes, most likely, whatever ImageNet makes of them
                feet_box = next((b for _, b in views[1:] if b), None)
                det = Detection(label, shown, ["feet in view (body pose)", *det.matched],
                                [{**feet_box, "confidence": round(shown, 4)}] if feet_box else [], size)
            mine = [o for o in objects if o["part"] in family.coco]
            if mine and float(mine[0]["score"]) > det.confidence:  # the object detector sees it best
                best = float(mine[0]["score"])
                kept = [o for o in mine if float(o["score"]) >= best / 2][:COCO_BOXES]
                named = list(dict.fromkeys(f"{o['part']} (COCO detector{', on a tile' if o.get('tile') else ''})"
                                           for o in kept))
                det = Detection(label, best, [*named, *det.matched][: self.top_matches],
                                [{k: v for k, v in o.items() if k not in ("score", "tile")}
                                 | {"confidence": round(float(o["score"]), 4)} for o in kept], size)
        cal = calibration.for_label(label)
        det.raw = det.confidence
        if cal is not None:
            det.confidence, det.calibrated = cal.apply(det.raw), True
            for b in det.boxes:
                b["confidence"] = round(cal.apply(float(b["confidence"])), 4)
        return det

    def detect_prepared(self, prepared: Sequence[Prepared], *, wanted: list[str]) -> list[dict[str, Detection]]:
        """Detections for prepared images, in order. Raises InvalidInput for an unknown label, ModelError."""
        families = {label: everyday.family_of(label) for label in wanted}
        for label in wanted:
            self.class_ids(label)
        feet = any(f is not None and f.feet for f in families.values())
        people: list[People | None] = [None] * len(prepared)
        if any(f is not None and (f.people or f.feet) for f in families.values()):
            people = [find_people(p.picture, feet=feet) for p in prepared]
        coco = tuple(dict.fromkeys(c for f in families.values() if f is not None for c in f.coco))
        tiled = tuple(dict.fromkeys(c for f in families.values() if f is not None for c in f.coco_tiles))
        objects = [self._objects(p.picture, coco, tiled) if coco or tiled else [] for p in prepared]
        arrays: list[np.ndarray] = [p.array for p in prepared]
        feet_crops: list[list[tuple[int, dict[str, float]]]] = []  # per image: (row in arrays, the crop as ratios)
        for p, found in zip(prepared, people, strict=True):
            mine = []
            for left, top, right, bottom in (found.feet if found else []):
                w, h = p.picture.size
                mine.append((len(arrays), {"left": round(left / w, 4), "top": round(top / h, 4),
                                           "width": round((right - left) / w, 4), "height": round((bottom - top) / h, 4)}))
                arrays.append(preprocess(p.picture.crop((left, top, right, bottom))))
            feet_crops.append(mine)
        probs = self._probabilities(arrays)
        out = []
        for i, p in enumerate(prepared):
            found: dict[str, Detection] = {}
            whole: list[tuple[np.ndarray, dict[str, float] | None]] = [(probs[i], None)]
            for label, family in families.items():
                if family is None:
                    ids = self.class_ids(label)
                    found[label] = Detection(label, float(min(1.0, probs[i][ids].sum())),
                                             self._matched(ids, probs[i][ids]), [], p.image_size)
                    continue
                views = whole + ([(probs[k], box) for k, box in feet_crops[i]] if family.feet else [])
                found[label] = self._everyday(label, family, views, people[i], p.image_size, objects[i])
            out.append(found)
        return out

    @staticmethod
    def _objects(picture: Image.Image, classes: tuple[str, ...], tiled: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The COCO objects of ``classes`` in a picture and, while none scores TILE_WEIGHT, those of ``tiled`` on
        its tiles at TILE_WEIGHT of their score (``tile``: True), best first: boxes as ratios with ``score`` and
        ``part`` (the class). Raises ModelError when the detector cannot load."""
        w, h = picture.size
        detector = CocoDetector.shared()
        found: list[dict[str, Any]] = [{**o.ratios(width=w, height=h), "score": o.score, "part": o.name}
                                       for o in (detector.detect(picture, classes=classes) if classes else [])]
        if tiled and max((float(o["score"]) for o in found), default=0.0) < TILE_WEIGHT:
            small: list[ObjectBox] = detector.detect_tiles(picture, classes=tiled)
            found += [{**o.ratios(width=w, height=h), "score": o.score * TILE_WEIGHT, "part": o.name, "tile": True}
                      for o in small]
        return sorted(found, key=lambda o: -float(o["score"]))

    def detect(self, *, data: bytes | None, uri: str, wanted: list[str]) -> dict[str, Detection]:
        """Best evidence per wanted label for one image (``data``, or read from ``uri``).

        Raises ImageError (bad image), NotFound/StorageError (unreadable uri), InvalidInput (unknown label),
        ModelError (a model cannot load).
        """
        if data is None:
            data = self.store.read(uri)
        return self.detect_prepared([self.prepare(data, people=self.needs_people(wanted))], wanted=wanted)[0]

    def detect_many(self, images: Sequence[bytes], *, wanted: list[str]) -> list[dict[str, Detection] | ConsoleError]:
        """Detections for many images, in order; an image that cannot be decoded gets its ImageError
        (a ConsoleError) in its place instead of a dict. Decoding runs on ``decode_threads`` threads while
        the previous batch is inferred. Raises InvalidInput for an unknown label, ModelError."""
        for label in wanted:
            self.class_ids(label)
        people = self.needs_people(wanted)
        results: list[dict[str, Detection] | ConsoleError] = []

        def one(data: bytes) -> Prepared | ConsoleError:
            try:
                return self.prepare(data, people=people)
            except ConsoleError as exc:
                return exc

        with ThreadPoolExecutor(max(1, self.decode_threads), thread_name_prefix="detect-decode") as pool:
            futures = [pool.submit(one, data) for data in images]  # decoding runs ahead of inference
            for start in range(0, len(futures), self.batch_size):
                chunk = [f.result() for f in futures[start : start + self.batch_size]]
                ok = [p for p in chunk if isinstance(p, Prepared)]
                found = iter(self.detect_prepared(ok, wanted=wanted))
                results.extend(next(found) if isinstance(p, Prepared) else p for p in chunk)
        return results


__all__ = ["COCO_BOXES", "EMBED_SIDE", "LocalImageNetDetector", "PEOPLE_SIDE", "Prepared", "TILE_WEIGHT"]
