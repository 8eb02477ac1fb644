"""The ``faces`` job: anonymised copies of the images under a folder or S3 prefix.

Each image is read, turned upright, its faces found (``services.faces.detection``) and anonymised
(``services.faces.masks``), and written under the destination with the same relative key, size and format
(JPEG, PNG with its alpha, WebP), EXIF metadata (GPS included) dropped unless ``keep_metadata``. Beside it
goes ``<key>.faces.json``: the faces found, for audit. A bad image fails alone with its reason; a crashed
job resumes with the images not yet done (each output is written whole, never left half-written).
Videos (MP4, MOV, AVI) are written as H.264 MP4 with their timestamps, rotation and audio
(``services.faces.video``), faces detected every ``detect_every``-th frame and tracked in between.

With Rekognition, images are done up to ``rekognition_in_flight`` at once within the account's rate
(``services.core.ratelimit``: a look-ahead in listing order across batches, outcomes taken in order), and up to
``rekognition_video_jobs`` Rekognition Video jobs run at once, each video rendered in turn once its faces are
known. A started Rekognition Video job's id is written with each batch beside its video's pending job item
(``job_items.error`` holds ``{"rekognition_job_id": ...}`` until the item is done), so a resumed job, after a
crash, a failure or a cancel, reads that job's faces instead of paying for it again.

``redact`` chooses what is hidden in images: ``faces`` (the default), ``labels`` (shipping labels: barcodes, QR
codes, text blocks, found by ``services.redaction`` and masked as faces are, in boxes) or ``both``. Videos get
faces only: a ``labels`` job lists images alone.
"""

from __future__ import annotations

import io
import itertools
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from PIL import Image, ImageOps, UnidentifiedImageError

from services.core import jobs, ratelimit
from services.core.authz import require
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError, ImageError, InvalidInput, JobCancelled, NotFound
from services.core.images import WRITABLE_IMAGE_SUFFIXES as IMAGE_SUFFIXES
from services.core.locations import overlaps
from services.core.storage import is_s3, join, split_s3
from services.faces import rekognition_video
from services.faces.detection import DEFAULT_THRESHOLD, make_detector
from services.faces.masks import DEFAULT_MASK_SCALE, anonymize, validate
from services.faces.quality import detail_ratios
from services.faces.rekognition_video import faces_by_frame, run_face_detection
from services.faces.report import image_report, video_report
from services.faces.video import anonymize_video, frame_times, frames_as_jpeg
from services.redaction.labels import MASK_SCALE as LABEL_MASK_SCALE
from services.redaction.labels import MASK_SHAPE as LABEL_MASK_SHAPE
from services.redaction.labels import as_array, find_labels

KIND = "faces"
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi")
SIDECAR = ".faces.json"
VIDEO_JOB_NOTE = "rekognition_job_id"  # in a pending video's job_items.error: its started Rekognition Video job
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
DEFAULTS = {"detector": "local", "mode": "blur", "shape": "ellipse", "mask_scale": DEFAULT_MASK_SCALE,
            "threshold": DEFAULT_THRESHOLD, "keep_metadata": False, "detect_every": 3, "redact": "faces"}
REDACT = ("faces", "labels", "both")


def validate_params(params: dict[str, Any]) -> dict[str, Any]:
    """Clean job parameters. Raises InvalidInput for a missing, malformed or nested source and destination
    (however spelled), or a bad detector, mode, shape, scale, threshold or ``redact`` choice."""
    clean = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    for key in ("source", "destination"):
        clean[key] = str(clean.get(key) or "").strip().rstrip("/")
        if not clean[key]:
            raise InvalidInput(f"give a {key}: a folder or s3://bucket/prefix")
    if overlaps(clean["source"], clean["destination"]):  # compared resolved: ./, //, file://, links, ..
        raise InvalidInput("the destination must not be inside the source, nor the source inside the destination")
    if clean["detector"] not in ("local", "rekognition"):
        raise InvalidInput(f"unknown face detector '{clean['detector']}': choose local or rekognition")
    validate(mode=clean["mode"], shape=clean["shape"], mask_scale=float(clean["mask_scale"]))
    clean["mask_scale"] = float(clean["mask_scale"])
    if not 0.05 <= float(clean["threshold"]) <= 0.99:
        raise InvalidInput(f"the detection threshold must be between 0.05 and 0.99, got {clean['threshold']}")
    clean["threshold"] = float(clean["threshold"])
    clean["keep_metadata"] = bool(clean["keep_metadata"])
    if not isinstance(clean["detect_every"], int) or not 1 <= clean["detect_every"] <= 30:
        raise InvalidInput(f"detect faces every k-th video frame, k from 1 to 30; got {clean['detect_every']!r}")
    if clean["redact"] not in REDACT:
        raise InvalidInput(f"redact must be one of {', '.join(REDACT)}, got {clean['redact']!r}")
    return clean


def video_output_key(key: str) -> str:
    """Where a video's anonymised copy goes: the same relative path as H.264 MP4."""
    return key.rsplit(".", 1)[0] + ".mp4"


def launch(db: sqlite_utils.Database, params: dict[str, Any], *, actor: str) -> int:
    """Queue a face-blurring job; returns its id. Raises PermissionDenied (the role, or a source or destination
    outside the storage roots), InvalidInput (also a local source that is a file), NotFound (a local source folder
    that does not exist: refused now, not as a job that fails; an S3 prefix is listed by the job)."""
    require(db, actor=actor, action="jobs.manage")
    clean = validate_params(params)
    store = object_store(db)
    for key in ("source", "destination"):
        store.check_allowed(clean[key])
    if not is_s3(clean["source"]):
        store.list(clean["source"])  # stats the folder at once (the listing itself is the job's)
    return jobs.create_job(db, kind=KIND, params=clean, actor=actor)


def files_in_destination(db: sqlite_utils.Database, *, destination: str, actor: str, cap: int = 1000) -> int:
    """How many files the destination holds already, up to ``cap`` (0 when it does not exist yet): a job writes
    over files of the same names, so the page asks first. Raises PermissionDenied (the role, or a destination
    outside the storage roots), InvalidInput (a bad URI), StorageError (the store cannot be read)."""
    require(db, actor=actor, action="jobs.manage")
    try:
        return sum(1 for _ in itertools.islice(object_store(db).list(destination), cap))
    except NotFound:
        return 0


def _upright(data: bytes, max_pixels: int) -> tuple[Image.Image, str, bytes | None]:
    """(upright picture in RGB or RGBA, output format, EXIF bytes or None). Raises ImageError."""
    if not data:
        raise ImageError("the file is empty")
    try:
        img = Image.open(io.BytesIO(data))
        fmt = FORMATS.get(img.format or "")
        if fmt is None:
            raise ImageError(f"{img.format or 'this'} images are not supported here: give JPEG, PNG or WebP")
        if img.width * img.height > max_pixels:
            raise ImageError(f"the image has {img.width * img.height:,} pixels, over the limit of {max_pixels:,} (Settings)")
        exif = img.getexif()
        img = ImageOps.exif_transpose(img)
        img.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:  # its message names an in-memory buffer, which tells a person nothing
        raise ImageError("the file is not an image this server can read: it may be corrupt, empty of pixels, or "
                         "another kind of file; give JPEG, PNG or WebP") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"the image cannot be decoded ({exc}): it may be corrupt or truncated") from exc
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    picture = img.convert("RGBA" if has_alpha else "RGB")  # CMYK, 16-bit, palette and grey become RGB(A)
    if exif:
        exif[0x0112] = 1  # the pixels are upright now
    return picture, fmt, exif.tobytes() if exif else None


def anonymize_image(data: bytes, *, detector: Any, params: dict[str, Any], max_pixels: int) -> tuple[bytes, dict[str, Any]]:
    """(anonymised image bytes, detections) for one encoded image: faces, shipping labels or both
    (``params["redact"]``). Raises ImageError, ConsoleError."""
    picture, fmt, exif = _upright(data, max_pixels)
    rgb = np.asarray(picture.convert("RGB"))
    redact = params.get("redact", "faces")
    boxes = detector.detect(rgb, threshold=params["threshold"]) if redact != "labels" else np.zeros((0, 5), np.float32)
    out_rgb = anonymize(rgb, boxes, mode=params["mode"], shape=params["shape"], mask_scale=params["mask_scale"])
    review = image_report(boxes, detail_ratios(rgb, out_rgb, boxes))  # counts, and why a human should look
    if redact != "faces":  # the same masks, as boxes around each label
        labels = find_labels(rgb)
        out_rgb = anonymize(out_rgb, as_array(labels), mode=params["mode"], shape=LABEL_MASK_SHAPE,
                            mask_scale=LABEL_MASK_SCALE)
        review |= {"labels": [b.as_dict() for b in labels], "labels_found": len(labels)}
    result = Image.fromarray(out_rgb)
    if picture.mode == "RGBA":
        result.putalpha(picture.getchannel("A"))
    save: dict[str, Any] = {}
    if fmt == "JPEG":
        save = {"quality": 95, "subsampling": 0}  # full-resolution colour: the untouched parts stay as they were
        result = result.convert("RGB")
    elif fmt == "WEBP":
        save = {"quality": 95}
    if params["keep_metadata"] and exif:
        save["exif"] = exif
    if picture.info.get("icc_profile"):
        save["icc_profile"] = picture.info["icc_profile"]  # colour, not personal data
    buf = io.BytesIO()
    result.save(buf, fmt, **save)
    faces = [{"x1": round(float(b[0]), 1), "y1": round(float(b[1]), 1), "x2": round(float(b[2]), 1),
              "y2": round(float(b[3]), 1), "score": round(float(b[4]), 3)} for b in boxes]
    return buf.getvalue(), {"width": result.width, "height": result.height, "format": fmt, "faces": faces, **review}


def _say_frames(ctx: jobs.JobContext, key: str, *, every: float = 2.0) -> Callable[[int, int], None]:
    """An ``on_frame`` for ``anonymize_video`` that tells the job's row how far the video is, at most every
    ``every`` seconds (the page shows it under the progress bar: a video may take minutes), and stops the video
    when the job is being cancelled (raises JobCancelled, which the video's ``_video`` passes on to the job
    runner: the partial output is removed and the video stays pending, done again on resume)."""
    last = [0.0]

    def say(written: int, expected: int) -> None:
        if time.monotonic() - last[0] < every:
            return
        last[0] = time.monotonic()
        if jobs.cancel_requested(ctx.db, job_id=ctx.job_id):
            raise JobCancelled(f"{key}: cancelled at frame {written:,}")
        known = expected >= written and expected > 0
        jobs.set_current(ctx.db, job_id=ctx.job_id, text=f"{key}: frame {written:,}"
                         + (f" of about {expected:,}" if known else ""), share=written / expected if known else None)

    return say


class FacesKind(jobs.BaseKind):
    name = KIND
    # one file a batch: progress and Cancel move file by file (a video can take minutes; with 4 a batch a cancel
    # waited for all four and progress stood at 0 until they were done); the loader still reads the next ahead
    batch_size = 1

    def start(self, ctx: jobs.JobContext) -> None:
        settings = get_settings(ctx.db)
        params = validate_params(ctx.params)
        cloud: dict[str, Any] = {}
        if params["detector"] == "rekognition":
            region = settings["rekognition_region"] or None
            cloud = {"region": region, "endpoint_url": settings["rekognition_endpoint_url"] or None,
                     "limiter": ratelimit.shared(f"rekognition-faces:{region or 'default'}",
                                                 rate=float(settings["rekognition_requests_per_second"]),
                                                 in_flight=int(settings["rekognition_in_flight"]))}
            started = {}
            for item, note in ctx.db.execute("SELECT item, error FROM job_items WHERE job_id = ? AND state = 'pending' "
                                             "AND error LIKE ?", [ctx.job_id, '{"' + VIDEO_JOB_NOTE + '"%']):
                started[item] = json.loads(note)[VIDEO_JOB_NOTE]
            ctx.state.update(video_jobs=started, video_jobs_lock=threading.Lock(),
                             video_window=int(settings["rekognition_video_jobs"]), queue=[r[0] for r in ctx.db.execute(
                                 "SELECT item FROM job_items WHERE job_id = ? AND state = 'pending' ORDER BY rowid",
                                 [ctx.job_id])])
        detector = make_detector(params["detector"], **cloud) if params["redact"] != "labels" else None
        ctx.state.update(params=params, store=object_store(ctx.db), detector=detector,
                         max_pixels=int(settings["max_pixels"]))

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        store, source = ctx.state["store"], ctx.state["params"]["source"]
        videos = VIDEO_SUFFIXES if ctx.state["params"]["redact"] != "labels" else ()
        items = [o.key for o in store.list(source, suffixes=IMAGE_SUFFIXES + videos)]
        ctx.state["queue"] = items
        return items

    def _start_lookaheads(self, ctx: jobs.JobContext) -> None:
        """Rekognition: images (read, detect, mask, write) up to the detector's requests in flight, and
        Rekognition Video jobs up to ``rekognition_video_jobs``, started in listing order (loader thread). Nothing
        for the local detector: it works file by file in ``compute``, so a Cancel leaves no file written ahead of
        what the job has recorded (one image ahead was written, then written again on resume)."""
        state = ctx.state
        if "queue" not in state or "images_ahead" in state or getattr(state["detector"], "in_flight", None) is None:
            return
        queue: list[str] = state.pop("queue")
        videos = [k for k in queue if k.lower().endswith(VIDEO_SUFFIXES)]
        images = [k for k in queue if not k.lower().endswith(VIDEO_SUFFIXES)]
        window = max(1, int(getattr(state["detector"], "in_flight", 1) or 1))
        state["images_ahead"] = ratelimit.Lookahead(lambda key: self._image_file(ctx, key), window=window,
                                                    name=f"job{ctx.job_id}-faces")
        state["images_ahead"].submit(images)
        if is_s3(state["params"]["source"]):
            state["videos_ahead"] = ratelimit.Lookahead(lambda key: self._video_faces(ctx, key),
                                                        window=state["video_window"], name=f"job{ctx.job_id}-videos")
            state["videos_ahead"].submit(videos)

    def load(self, ctx: jobs.JobContext, items: list[str]) -> dict[str, bytes | str]:
        self._start_lookaheads(ctx)
        out: dict[str, bytes | str] = {}
        for key in items:
            if key.lower().endswith(VIDEO_SUFFIXES) or "images_ahead" in ctx.state:
                out[key] = b""  # videos are streamed from a local file in compute; images ahead are read there
                continue
            try:
                out[key] = ctx.state["store"].read(join(ctx.state["params"]["source"], key))
            except ConsoleError as exc:
                out[key] = str(exc)
        return out

    def compute(self, ctx: jobs.JobContext, loaded: dict[str, bytes | str]) -> dict[str, str | None]:
        outcome: dict[str, str | None] = {}
        ahead = ctx.state.get("images_ahead")
        for key, data in loaded.items():
            if isinstance(data, str):
                outcome[key] = data
                continue
            if key.lower().endswith(VIDEO_SUFFIXES):
                outcome[key] = self._video(ctx, key)
                continue
            if ahead is not None:
                try:
                    outcome[key] = ahead.take(key)
                finally:
                    ahead.release()
                continue
            outcome[key] = self._image(ctx, key, data)
        return outcome

    def _image_file(self, ctx: jobs.JobContext, key: str) -> str | None:
        """Read one image and anonymise it (a look-ahead thread); its error or None."""
        try:
            data = ctx.state["store"].read(join(ctx.state["params"]["source"], key))
        except ConsoleError as exc:
            return str(exc)
        return self._image(ctx, key, data)

    @staticmethod
    def _image(ctx: jobs.JobContext, key: str, data: bytes) -> str | None:
        """Anonymise one image to the destination with its sidecar; its error or None."""
        params, store = ctx.state["params"], ctx.state["store"]
        try:
            image, report = anonymize_image(data, detector=ctx.state["detector"], params=params,
                                            max_pixels=ctx.state["max_pixels"])
            target = join(params["destination"], key)
            store.write(target, image)  # whole or not at all (atomic locally, one PUT on S3)
            sidecar = {"source": join(params["source"], key), "output": target, "detector": params["detector"],
                       "threshold": params["threshold"], "mode": params["mode"], "shape": params["shape"],
                       "mask_scale": params["mask_scale"], "metadata_kept": params["keep_metadata"],
                       "redact": params["redact"], **report}
            store.write(target + SIDECAR, json.dumps(sidecar, indent=1).encode())
            return None
        except ConsoleError as exc:
            return str(exc)

    def _video_faces(self, ctx: jobs.JobContext, key: str) -> list[dict[str, Any]]:
        """One Rekognition Video job's faces (a look-ahead thread; resumes a job started by an earlier run).
        Raises ConsoleError (JobCancelled when the faces job stops while it waits)."""
        state = ctx.state
        bucket, name = split_s3(join(state["params"]["source"], key))
        stopped = state["videos_ahead"].stopped

        def wait(seconds: float) -> None:
            if stopped.wait(seconds):
                raise JobCancelled("the faces job stopped while Rekognition Video was working")

        def started(job_id: str) -> None:
            with state["video_jobs_lock"]:
                state["video_jobs"][key] = job_id

        with state["video_jobs_lock"]:
            earlier = state["video_jobs"].get(key)
        return run_face_detection(state["detector"].client, bucket=bucket, key=name, job_id=earlier,
                                  on_start=started, sleep=wait, poll_seconds=rekognition_video.POLL_SECONDS)

    def _video(self, ctx: jobs.JobContext, key: str) -> str | None:
        """Anonymise one video to ``<key without its suffix>.mp4`` (H.264) under the destination; its error or None."""
        params, store = ctx.state["params"], ctx.state["store"]
        src_uri, target = join(params["source"], key), join(params["destination"], video_output_key(key))
        if params["detector"] == "rekognition" and not is_s3(src_uri):
            return "Rekognition Video reads videos from S3: put the source in a bucket, or use the local detector"
        try:
            with tempfile.TemporaryDirectory(prefix="faces-") as tmp:
                if is_s3(src_uri):
                    local_src = str(Path(tmp) / Path(key).name)
                    Path(local_src).write_bytes(store.read(src_uri))
                else:  # inside the roots, and a regular file (a named pipe would block the decoder)
                    local_src = store.local_file(src_uri)
                local_dst = target if not is_s3(target) else str(Path(tmp) / "out.mp4")
                if not is_s3(target):
                    store.check_allowed(target)
                found, every = None, params["detect_every"]
                if params["detector"] == "rekognition":
                    found, every = self._rekognition_faces(ctx, src_uri, local_src)
                report = anonymize_video(local_src, local_dst, detector=ctx.state["detector"], detections=found,
                                         threshold=params["threshold"], mode=params["mode"], shape=params["shape"],
                                         mask_scale=params["mask_scale"], detect_every=every,
                                         on_frame=_say_frames(ctx, key))
                if is_s3(target):
                    store.write(target, Path(local_dst).read_bytes())
            sidecar = {"source": src_uri, "output": target, "detector": params["detector"], "threshold": params["threshold"],
                       "mode": params["mode"], "shape": params["shape"], "mask_scale": params["mask_scale"],
                       "format": "MP4 (H.264)", **asdict(report),
                       **video_report(tracks=report.tracks, weak_tracks=report.weak_tracks,
                                    most_at_once=report.most_at_once)}
            store.write(target + SIDECAR, json.dumps(sidecar).encode())
            return None
        except JobCancelled:
            raise  # a cancel inside the video: not this file's failure (the job runner ends the job cancelled)
        except ConsoleError as exc:
            return str(exc)

    @staticmethod
    def _rekognition_faces(ctx: jobs.JobContext, src_uri: str, local: str) -> tuple[dict, int]:
        """(boxes per frame, sampling interval) from the video's Rekognition Video job (started ahead, up to
        ``rekognition_video_jobs`` at once). Raises ConsoleError."""
        times, width, height, _ = frame_times(local)
        ahead = ctx.state.get("videos_ahead")
        key = src_uri[len(ctx.state["params"]["source"]):].lstrip("/")
        if ahead is not None:
            try:
                faces = ahead.take(key)
            finally:
                ahead.release()
        else:
            bucket, name = split_s3(src_uri)
            faces = run_face_detection(ctx.state["detector"].client, bucket=bucket, key=name)
        return faces_by_frame(faces, times=times, width=width, height=height,
                              min_confidence=ctx.state["params"]["threshold"])

    def write(self, ctx: jobs.JobContext, computed: dict[str, str | None]) -> dict[str, str | None]:
        lock = ctx.state.get("video_jobs_lock")
        if lock is not None:
            with lock:
                started = dict(ctx.state["video_jobs"])
            # a resumed run reads these jobs' faces instead of starting them again (a finished item's row is
            # overwritten by the runner with its outcome)
            ctx.db.conn.executemany(
                "UPDATE job_items SET error = ? WHERE job_id = ? AND item = ? AND state = 'pending'",
                [(json.dumps({VIDEO_JOB_NOTE: job_id}), ctx.job_id, key) for key, job_id in started.items()])
        return computed

    def close(self, ctx: jobs.JobContext) -> None:
        for name in ("images_ahead", "videos_ahead"):
            ahead = ctx.state.pop(name, None)
            if ahead is not None:
                ahead.close()

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        counts = dict(ctx.db.execute(
            "SELECT (lower(item) LIKE '%.mp4' OR lower(item) LIKE '%.mov' OR lower(item) LIKE '%.avi') || state, COUNT(*) "
            "FROM job_items WHERE job_id = ? GROUP BY 1", [ctx.job_id]).fetchall())
        found, labels, flagged = 0, 0, []
        for row in _read_sidecars(ctx.state["store"], ctx.state["params"], _done_keys(ctx.db, ctx.job_id)):
            found += int(row.get("faces_found", len(row.get("faces", []))))
            labels += int(row.get("labels_found", 0))
            if row.get("review"):
                flagged.append({"key": row["key"], "faces": row.get("faces_found"), "reasons": row["review"]})
        return {"images_done": counts.get("0done", 0), "images_failed": counts.get("0failed", 0),
                "videos_done": counts.get("1done", 0), "videos_failed": counts.get("1failed", 0),
                "destination": ctx.state["params"]["destination"], "faces_found": found, "labels_found": labels,
                "files_flagged": len(flagged), "flagged": flagged[:FLAGGED_KEPT]}

    def so_far(self, ctx: jobs.JobContext) -> dict[str, Any]:
        """A cancelled job's report on the files it finished, as ``finish`` gives it. Raises StorageError."""
        return self.finish(ctx)


FLAGGED_KEPT = 1000  # flagged files listed in the job's result (all are counted)


def _done_keys(db: sqlite_utils.Database, job_id: int, *, offset: int = 0, limit: int = -1) -> list[str]:
    return [r[0] for r in db.execute("SELECT item FROM job_items WHERE job_id = ? AND state = 'done' ORDER BY rowid "
                                     "LIMIT ? OFFSET ?", [job_id, limit, offset])]


def _read_sidecars(store: Any, params: dict[str, Any], keys: list[str]) -> list[dict[str, Any]]:
    """The sidecars of finished files, in the order of ``keys`` (a missing or unreadable one is skipped)."""
    out = []
    for key in keys:
        video = key.lower().endswith(VIDEO_SUFFIXES)
        output = video_output_key(key) if video else key
        try:
            out.append({"key": key, "video": video, **json.loads(store.read(join(params["destination"], output) + SIDECAR))})
        except (ConsoleError, json.JSONDecodeError):
            continue
    return out


def results(db: sqlite_utils.Database, *, job_id: int, actor: str, offset: int = 0, limit: int = 12,
            flagged_only: bool = False) -> dict[str, Any]:
    """One page of a job's finished files, in the order they were listed, with what was found in each (their
    sidecars): ``{"total": files on all pages, "items": [...]}``. ``flagged_only``: the files flagged for a human
    look, from the job's summary (so once it has finished). Raises PermissionDenied, NotFound."""
    require(db, actor=actor, action="jobs.manage")
    job = jobs.get_job(db, job_id)
    params = validate_params(job["params"])
    if flagged_only:
        keys = [f["key"] for f in (job["result"] or {}).get("flagged", [])]
        total, page = len(keys), keys[offset:offset + limit]
    else:
        total = db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state = 'done'", [job_id]).fetchone()[0]
        page = _done_keys(db, job_id, offset=offset, limit=limit)
    return {"total": total, "items": _read_sidecars(object_store(db), params, page)}


def video_samples(db: sqlite_utils.Database, *, job_id: int, key: str, actor: str, n: int = 2) -> list[tuple[int, bytes, bytes]]:
    """(frame number, before JPEG, after JPEG) for ``n`` masked frames of a finished video, spread over it, to
    review the masks. Raises PermissionDenied, ConsoleError when a file cannot be read."""

    require(db, actor=actor, action="jobs.manage")
    params = validate_params(jobs.get_job(db, job_id)["params"])
    store = object_store(db)
    target = join(params["destination"], video_output_key(key))
    masked = sorted(int(k) for k in json.loads(store.read(target + SIDECAR)).get("masked", {}))
    if not masked:
        return []
    picks = sorted({masked[int(i * (len(masked) - 1) / max(1, n - 1))] for i in range(n)})
    with tempfile.TemporaryDirectory(prefix="faces-") as tmp:
        paths = []
        for name, uri in (("in", join(params["source"], key)), ("out.mp4", target)):
            path = Path(tmp) / name
            path.write_bytes(store.read(uri))
            paths.append(str(path))
        before, after = frames_as_jpeg(paths[0], picks), frames_as_jpeg(paths[1], picks)
    return [(f, before[f], after[f]) for f in picks if f in before and f in after]
