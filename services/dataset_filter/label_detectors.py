"""Label detectors for the dataset filter: does an image show a "person", a "shoe", a "bird", "clothing"?

Two detectors behind one interface (``LabelDetector``):

- ``LocalImageNetDetector`` (``services.dataset_filter.local_detector``): offline and free. "person" and its
  synonyms come from the console's body-pose and face detectors, with boxes; "bag" from the COCO object
  detector's handbag, backpack and suitcase boxes (YOLOX-Nano), also small handbags and backpacks on tiles of the
  photo; "shoe", "box" and "clothing" from chosen ImageNet classes (shoes also on the feet of the people found);
  every other label sums the ImageNet classes WordNet puts under it. The everyday labels' confidences are calibrated
  (``services.dataset_filter.calibration``); the others are ImageNet probability sums.
- ``RekognitionDetector``: Amazon Rekognition DetectLabels (about $0.001 an image). A wanted label matches a
  returned label's Name, one of its Aliases or one of its Parents (case-insensitive); its Instances' boxes
  are kept (ratios clamped to [0, 1]). The image goes as an S3 object when it is on AWS S3, else as bytes
  (JPEGs over 5 MB are resized first). Requests go through a ``services.core.ratelimit.RateLimiter`` (the
  account's requests a second, a bound on requests in flight; from the settings): a throttle halves the rate
  and the request is retried with exponential backoff, failing only once every attempt was throttled.

Errors (botocore's translated by ``services.core.aws``): a bad image raises ImageError (an InvalidInput: that
image fails, the scan goes on); a source object that cannot be read raises StorageError/NotFound (same); the
service refusing the caller raises ExternalServiceError (stop the scan): CloudAccessError for access denied or
bad or missing credentials, ExternalServiceError for no region, unreachable, throttled past every retry.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from PIL import Image

from services.core import aws, ratelimit
from services.core import images as imgs
from services.core.errors import ConsoleError, ExternalServiceError, ImageError, InvalidInput, NotFound, StorageError
from services.core.storage import ObjectStore, is_s3, split_s3
from services.dataset_filter import everyday
from services.dataset_filter.evidence import Detection
from services.dataset_filter.imagenet_hierarchy import load, norm_name, singular_forms, unknown_labels_message
from services.dataset_filter.local_detector import EMBED_SIDE, LocalImageNetDetector, Prepared

DETECTORS = ("local", "rekognition")
REKOGNITION_COST_PER_IMAGE = 0.001  # USD, DetectLabels, first million images a month
REKOGNITION_MAX_BYTES = 5 * 1024 * 1024  # Image.Bytes limit
REKOGNITION_MAX_S3_BYTES = 15 * 1024 * 1024  # Image.S3Object limit
_RETRYABLE = aws.THROTTLED | aws.SERVER  # retried here with backoff; past the last attempt, aws.translate says so


class LabelDetector(Protocol):
    name: str
    cost_per_image: float  # USD

    def detect(self, *, data: bytes | None, uri: str, wanted: list[str]) -> dict[str, Detection]:
        """Best evidence per wanted label (every wanted label is a key, confidence 0 when absent)."""
        ...


def resolve_labels(names: Sequence[str], *, detector: str) -> dict[str, list[str]]:
    """What each wanted label matches, checked before a scan is launched.

    ``local``: label -> what it matches (the ImageNet class names under it; for person and its synonyms, the
    person detectors; for bag, the COCO detector's bag classes on the photo and on its tiles; for shoe, box,
    clothing, their chosen classes). ``rekognition``: label -> [label] (Rekognition
    knows more labels than ImageNet, so a name unknown here is accepted unless it looks like a typo of a
    known name and is no English noun, e.g. "birb" for "bird"; "Face" and "Text" pass). Raises InvalidInput for no label, an empty label, an unknown
    detector, or a label matching nothing, with close names to pick from.
    """
    names = [str(n) for n in names]
    if not names:
        raise InvalidInput("give at least one label to keep (for example bird, dog or clothing)")
    if detector not in DETECTORS:
        raise InvalidInput(f"unknown detector {detector!r}: use one of {', '.join(DETECTORS)}")
    hierarchy = load()
    if detector == "local":
        for name in names:
            if not norm_name(name):
                raise InvalidInput("a label is empty: give names such as person, shoe or clothing")
        families = {name: everyday.family_of(name) for name in names}
        others = hierarchy.resolve([n for n, f in families.items() if f is None]) if None in families.values() else {}
        return {name: everyday.describe(f, hierarchy=hierarchy) if f else others[name] for name, f in families.items()}
    out: dict[str, list[str]] = {}
    typos = []
    for name in names:
        if not norm_name(name):
            raise InvalidInput("a label is empty: give names such as bird, dog or clothing")
        if hierarchy.typo_of(name):
            typos.append(name)
        out[name] = [name.strip()]
    if typos:
        raise InvalidInput(unknown_labels_message(typos, hierarchy.typo_of))
    return out


def _clamp_box(box: dict[str, Any], confidence: float) -> dict[str, float] | None:
    """Rekognition BoundingBox ratios (may be negative or run past the edge) clamped into the image."""
    try:
        left, top = float(box.get("Left", 0.0)), float(box.get("Top", 0.0))
        width, height = float(box.get("Width", 0.0)), float(box.get("Height", 0.0))
    except (TypeError, ValueError):
        return None
    x0, y0 = min(max(left, 0.0), 1.0), min(max(top, 0.0), 1.0)
    x1, y1 = min(max(left + width, 0.0), 1.0), min(max(top + height, 0.0), 1.0)
    if x1 <= x0 or y1 <= y0:
        return None
    return {"left": x0, "top": y0, "width": x1 - x0, "height": y1 - y0, "confidence": confidence}


# ---------------------------------------------------------------- cloud: Amazon Rekognition DetectLabels


def _fit_for_rekognition(data: bytes, *, max_bytes: int = REKOGNITION_MAX_BYTES,
                         max_pixels: int = imgs.DEFAULT_MAX_PIXELS) -> bytes:
    """``data`` itself when it is a JPEG or PNG of at most ``max_bytes``; otherwise a JPEG re-encoded
    (smaller sides as needed) that fits. Raises ImageError when it cannot be decoded or made to fit."""
    _, _, fmt = imgs.probe(data, max_pixels=max_pixels)
    if fmt in ("JPEG", "PNG") and len(data) <= max_bytes:
        return data
    picture = imgs.decode(data, max_pixels=max_pixels)
    side = max(picture.size)
    while side >= 80:
        img = picture if side >= max(picture.size) else _shrunk(picture, side)
        for quality in (90, 80):
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=quality)
            if out.tell() <= max_bytes:
                return out.getvalue()
        side = int(side * 0.75)
    raise ImageError(f"cannot make this image fit Rekognition's {max_bytes:,}-byte limit")


def _shrunk(picture: Image.Image, side: int) -> Image.Image:
    img = picture.copy()
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


class RekognitionDetector:
    """Amazon Rekognition DetectLabels behind the LabelDetector interface."""

    name = "rekognition"
    cost_per_image = REKOGNITION_COST_PER_IMAGE

    def __init__(self, client: Any = None, *, region: str | None = None, endpoint_url: str | None = None,
                 s3_endpoint_url: str | None = None, store: ObjectStore | None = None,
                 min_confidence: float = 50.0, max_labels: int = 100, max_attempts: int = 6,
                 backoff: float = 0.5, max_backoff: float = 20.0, sleep: Callable[[float], None] = time.sleep,
                 max_pixels: int = imgs.DEFAULT_MAX_PIXELS, limiter: ratelimit.RateLimiter | None = None) -> None:
        """``client``: a boto3 Rekognition client (made on first use from ``region``/``endpoint_url`` when None).
        ``s3_endpoint_url``: the S3 endpoint override the sources use (then Rekognition cannot read them
        itself, so images go as bytes). ``min_confidence`` in percent (keep it below the band's low end).
        ``sleep`` is called with each backoff delay (tests pass a recorder). ``limiter``: the rate and the
        requests in flight (None: one request at a time, no rate limit). Raises InvalidInput on bad values."""
        if not 0 <= min_confidence <= 100 or max_labels < 1 or max_attempts < 1 or backoff < 0:
            raise InvalidInput("Rekognition: min_confidence must be 0..100, max_labels and max_attempts at least 1")
        self._client = client
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.s3_endpoint_url = s3_endpoint_url or None
        self.store = store or ObjectStore(endpoint_url=self.s3_endpoint_url)
        self.min_confidence = float(min_confidence)
        self.max_labels = int(max_labels)
        self.max_attempts = int(max_attempts)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.sleep = sleep
        self.max_pixels = max_pixels
        self.calls = 0  # DetectLabels requests sent (retries included), for cost accounting
        self.throttles = 0  # throttled answers (each retried)
        self.limiter = limiter
        self.in_flight = limiter.in_flight if limiter is not None else 1  # requests this detector keeps going
        # set by a job that stopped early: a request not yet sent is not sent (NotSent); on_send(uri) is called
        # before each request goes out (the job counts the requests sent past its stop)
        self.stop_sending: threading.Event | None = None
        self.on_send: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: dict[str, Any], **kwargs: Any) -> RekognitionDetector:
        """Region and endpoint from the console settings (``rekognition_region`` or ``aws_region``,
        ``rekognition_endpoint_url``, ``s3_endpoint_url``); empty means the AWS defaults. The rate limit
        (``rekognition_requests_per_second``, ``rekognition_in_flight``) is this process's shared one for
        Rekognition in that region. Raises InvalidInput for bad values."""
        region = settings.get("rekognition_region") or settings.get("aws_region") or None
        if "limiter" not in kwargs:
            kwargs["limiter"] = rekognition_limiter(settings)
        return cls(region=region, endpoint_url=settings.get("rekognition_endpoint_url") or None,
                   s3_endpoint_url=settings.get("s3_endpoint_url") or None, **kwargs)

    @property
    def client(self) -> Any:
        """The boto3 client; its own retries are off (this class retries throttling with backoff).
        Raises ExternalServiceError when no region is configured or the endpoint is malformed."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    config = Config(connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 1},
                                    max_pool_connections=max(10, self.in_flight))
                    try:
                        with aws.errors(service="Rekognition", action="detect labels",
                                        endpoint=self.endpoint_url):
                            self._client = boto3.session.Session(region_name=self.region).client(
                                "rekognition", endpoint_url=self.endpoint_url, config=config)
                    except ValueError as exc:
                        raise ExternalServiceError(f"invalid Rekognition endpoint {self.endpoint_url!r}: {exc}") from None
        return self._client

    def _uses_s3_object(self, uri: str, data: bytes | None) -> bool:
        if not is_s3(uri) or self.s3_endpoint_url:  # Rekognition reads AWS S3 only, never an override endpoint
            return False
        return data is None or len(data) <= REKOGNITION_MAX_S3_BYTES

    def detect(self, *, data: bytes | None, uri: str, wanted: list[str]) -> dict[str, Detection]:
        """Best evidence per wanted label (confidence 0 when no returned label matches).

        Raises ImageError (not an image, or Rekognition rejects it), NotFound/StorageError (the bytes cannot
        be read), ExternalServiceError (CloudAccessError for access denied or credentials; no region,
        unreachable, throttled past every retry: the scan should stop), InvalidInput (bad request).
        """
        size = None
        if data is not None:
            width, height, _ = imgs.probe(data, max_pixels=self.max_pixels)
            size = (width, height)
        response = None
        if self._uses_s3_object(uri, data):
            bucket, key = split_s3(uri)
            try:
                response = self._call({"S3Object": {"Bucket": bucket, "Name": key}}, uri)
            except _S3ObjectRefused:
                response = None  # Rekognition cannot read it (other region, its own access): send the bytes
        if response is None:
            if data is None:
                data = self.store.read(uri)
                width, height, _ = imgs.probe(data, max_pixels=self.max_pixels)
                size = (width, height)
            response = self._call({"Bytes": _fit_for_rekognition(data, max_pixels=self.max_pixels)}, uri)
        return self.parse(response, wanted=wanted, image_size=size)

    def detect_many(self, images: Sequence[bytes], *, wanted: list[str],
                    uris: Sequence[str] | None = None) -> list[dict[str, Detection] | ConsoleError]:
        """One request an image, up to ``in_flight`` at once within the rate limit, results in the images'
        order; an image that fails alone gets its ImageError/StorageError in its place. Raises
        ExternalServiceError (stop the scan) and InvalidInput like ``detect``."""
        def one(i: int) -> dict[str, Detection] | ConsoleError:
            try:
                return self.detect(data=images[i], uri=uris[i] if uris else f"image #{i + 1}", wanted=wanted)
            except (ImageError, StorageError, NotFound) as exc:
                return exc

        if self.in_flight <= 1 or len(images) <= 1:
            return [one(i) for i in range(len(images))]
        with ThreadPoolExecutor(min(self.in_flight, len(images)), thread_name_prefix="detect-labels") as pool:
            return list(pool.map(one, range(len(images))))

    def _call(self, image: dict[str, Any], uri: str) -> dict[str, Any]:
        from botocore import exceptions as bx

        request = {"Image": image, "MaxLabels": self.max_labels, "MinConfidence": self.min_confidence}
        for attempt in range(self.max_attempts):
            try:
                with self._slot():
                    if self.stop_sending is not None and self.stop_sending.is_set():
                        raise NotSent(f"{uri}: not sent, the scan stopped")
                    if self.on_send is not None:
                        self.on_send(uri)
                    with self._lock:
                        self.calls += 1
                    return self.client.detect_labels(**request)
            except bx.ClientError as exc:
                code = aws.code_of(exc)
                if ratelimit.is_throttle(code) or code in aws.THROTTLED:
                    with self._lock:
                        self.throttles += 1
                    if self.limiter is not None:
                        self.limiter.throttled()  # slow down for everyone sharing the quota
                if code in _RETRYABLE and attempt + 1 < self.max_attempts:
                    self.sleep(self._delay(attempt))
                    continue
                if "S3Object" in image and code in ("InvalidS3ObjectException", "ImageTooLargeException"):
                    raise _S3ObjectRefused(f"{uri}: {exc}") from None  # not an error: the bytes go instead
                raise self._error(exc, image, uri, attempts=attempt + 1) from None
            except bx.BotoCoreError as exc:
                raise self._error(exc, image, uri, attempts=attempt + 1) from None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _slot(self) -> Any:
        return self.limiter.slot() if self.limiter is not None else contextlib.nullcontext()

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: about backoff * 2**attempt seconds, capped."""
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + random.random() / 2)

    def _error(self, exc: Exception, image: dict[str, Any], uri: str, *, attempts: int) -> ConsoleError:
        need = "the rekognition:DetectLabels permission"
        if "S3Object" in image:
            need += f", and Rekognition needs s3:GetObject on bucket {image['S3Object']['Bucket']}"
        return aws.translate(exc, service="Rekognition", action="detect labels in", resource=uri, permission=need,
                             endpoint=self.endpoint_url, attempts=attempts, image=True)

    @staticmethod
    def parse(response: dict[str, Any], *, wanted: list[str],
              image_size: tuple[int, int] | None = None) -> dict[str, Detection]:
        """Best evidence per wanted label from a DetectLabels response: a label matches through its Name,
        Aliases or Parents (case-insensitive, plural or singular); confidence is the best matching label's;
        boxes are the matching labels' Instances, clamped to the image."""
        keys = {label: {norm_name(label), *singular_forms(norm_name(label))} for label in wanted}
        found = {label: Detection(label, 0.0, [], [], image_size) for label in wanted}
        labels = sorted(response.get("Labels", []), key=lambda lb: -float(lb.get("Confidence", 0.0)))
        for lb in labels:
            name = str(lb.get("Name", ""))
            confidence = max(0.0, min(1.0, float(lb.get("Confidence", 0.0)) / 100))
            names = {norm_name(name)}
            names |= {norm_name(a.get("Name", "")) for a in lb.get("Aliases", []) or []}
            names |= {norm_name(p.get("Name", "")) for p in lb.get("Parents", []) or []}
            for label, key in keys.items():
                if not key & names:
                    continue
                det = found[label]
                det.confidence = max(det.confidence, confidence)
                if name not in det.matched:
                    det.matched.append(name)
                for inst in lb.get("Instances", []) or []:
                    inst_conf = inst.get("Confidence")
                    box = _clamp_box(inst.get("BoundingBox") or {},
                                     confidence if inst_conf is None else max(0.0, min(1.0, float(inst_conf) / 100)))
                    if box is not None and box not in det.boxes:
                        det.boxes.append(box)
        return found


class NotSent(ConsoleError):
    """The request was not sent: the job that wanted it stopped (an early stop, a cancel)."""


class _S3ObjectRefused(ExternalServiceError):
    """Rekognition could not take the image as an S3 object; it is sent as bytes instead."""


def rekognition_limiter(settings: dict[str, Any]) -> ratelimit.RateLimiter:
    """This process's limiter for Rekognition image requests in the settings' region (requests a second and in
    flight from ``rekognition_requests_per_second`` and ``rekognition_in_flight``). Raises InvalidInput."""
    region = settings.get("rekognition_region") or settings.get("aws_region") or "default"
    return ratelimit.shared(f"rekognition:{region}", rate=float(settings.get("rekognition_requests_per_second") or 50.0),
                            in_flight=int(settings.get("rekognition_in_flight") or 16))


def make_detector(kind: str, *, ws: Any = None, settings: dict[str, Any] | None = None,
                  store: ObjectStore | None = None, **kwargs: Any) -> LabelDetector:
    """``local`` or ``rekognition``, configured from the settings. Raises InvalidInput for another kind."""
    if kind == "local":
        return LocalImageNetDetector(ws, store=store, **kwargs)
    if kind == "rekognition":
        return RekognitionDetector.from_settings(settings or {}, store=store, **kwargs)
    raise InvalidInput(f"unknown detector {kind!r}: use one of {', '.join(DETECTORS)}")


__all__ = ["DETECTORS", "EMBED_SIDE", "Detection", "LabelDetector", "LocalImageNetDetector", "Prepared",
           "RekognitionDetector", "make_detector", "rekognition_limiter", "resolve_labels"]
