"""Face anonymisation of one video: look for faces every k-th frame, link the looks into tracks, fill the frames
between and around them, mask, and write H.264 MP4 with the input's timestamps, rotation and audio.

Two passes over the decoded frames, running at once: the looks (a thread of their own) search every
``detect_every``-th frame, upright so a rotated phone video is seen the right way up, with the image detector's
search in a form that keeps real time (``CenterFaceDetector.detect_turn``: the whole frame at 640 pixels and the
native-resolution tiles covering it take turns, so small faces are searched at full size every round); the
writer follows a little behind (``services.faces.tracking``) and writes each frame with the faces of the tracks
alive at it: interpolated between looks and held past a track's ends, so masks neither flicker nor miss frames,
and a weak face is masked only when two views of it (whole or tile, upright or mirrored) saw it. The first look of each shot (the video's start, and after
each cut) searches the whole frame at 640 and at its own size and, at once, the tiles holding a small candidate
at twice that size, as for a photo (``detect_complete``), so a short shot is not over before its tiles come round
and its 10-20 px faces are found from its first frame; a weak face the passes voted for is masked from that look. The
camera's motion between looks is measured (``services.faces.motion``), so tracks are joined and masks placed
where the face is while the camera pans. Every output frame keeps its input timestamp (variable frame rates stay
as they were), the display rotation is copied, and the audio stream is copied unchanged (or
re-encoded to AAC when MP4 cannot hold it). The output is written to a temporary file and moved into place only
when complete.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from services.core.errors import ImageError, InvalidInput
from services.faces.masks import anonymize
from services.faces.motion import CameraPath, CutDetector
from services.faces.search import SURE
from services.faces.tracking import Feed, Follower

SMALL_COPY = 4  # the grey copy of every frame that cuts are told and the camera followed on is this many times smaller
# x264 at its fastest preset: half superfast's CPU time a 720p frame (4 against 8 ms here). Quality 16: re-encoding
# alone then changes 1.0% of a clip's pixels by more than 8 levels (crf 20: 3.4%; 12: 0.2%), files a third larger
X264 = {"preset": "ultrafast", "crf": "16"}
PROGRESS_EVERY = 25  # frames written between two calls of anonymize_video's on_frame
MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as displayed: ``rotation`` is the display matrix angle (degrees counter-clockwise)."""
    turns = (int(round(rotation / 90)) % 4)
    return np.rot90(frame, k=turns) if turns else frame


def _unrotate_boxes(boxes: np.ndarray, rotation: int, width: int, height: int) -> np.ndarray:
    """Boxes found on the displayed frame (``np.rot90(stored, rotation / 90)``) in the stored frame's pixels
    (``width`` x ``height``)."""
    turns = int(round(rotation / 90)) % 4
    out = boxes.copy()
    for step in range(turns, 0, -1):  # undo one counter-clockwise quarter turn at a time
        prev_width = width if (step - 1) % 2 == 0 else height  # the picture's width before this turn
        x1, y1, x2, y2 = out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy(), out[:, 3].copy()
        out[:, 0], out[:, 2] = prev_width - y2, prev_width - y1
        out[:, 1], out[:, 3] = x1, x2
    return out


@dataclass
class VideoReport:
    frames: int
    fps: float
    duration: float
    width: int
    height: int
    rotation: int
    audio: str | None
    detect_every: int
    detections: dict[int, list[list[float]]]  # detection frame -> boxes found there
    masked: dict[int, list[list[float]]]  # every frame with a mask -> the boxes masked (tracks filled in)
    tracks: int
    weak_tracks: int = 0  # tracks never scored SURE (kept because two views agreed)
    most_at_once: int = 0  # the most faces (tracks) masked in one frame


def _open(path: str) -> Any:
    import av

    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:  # InvalidDataError, EOFError, DecoderNotFoundError, ...
        raise ImageError(f"the video cannot be read ({exc.strerror or exc}): it may be corrupt, truncated, not a "
                         "video, or in a codec this server cannot decode") from exc
    if not container.streams.video:
        container.close()
        raise ImageError("the file holds no video stream")
    return container


def frame_times(src: str) -> tuple[list[float], int, int, int]:
    """(presentation time in seconds of every frame from the first, width, height, rotation), read from the
    packets without decoding pictures. Raises ImageError for a video that cannot be read."""
    import av

    container = _open(src)
    try:
        stream = container.streams.video[0]
        times = sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None and p.size)
        ctx = stream.codec_context
    except av.error.FFmpegError as exc:
        raise ImageError(f"the video cannot be read to the end ({exc.strerror or exc}): it may be truncated") from exc
    finally:
        container.close()
    if not times:
        raise ImageError("the video has no frames")
    with av.open(src) as again:  # the rotation is a property of decoded frames
        first = next(again.decode(video=0), None)
        rotation = int(getattr(first, "rotation", 0) or 0) if first is not None else 0
    return [t - times[0] for t in times], ctx.width, ctx.height, rotation


def _look(src: str, feed: Feed, *, detector: Any, threshold: float, detect_every: int) -> None:
    """Pass one, on a thread of its own: a look at every ``detect_every``-th frame (``detect_turn`` of the local
    detector: whole frame and tiles taking turns; ``detect`` for another), handed to ``feed`` as it is made (boxes
    in stored pixels). Errors go to the feed: ImageError for a video that cannot be read to the end."""
    import av

    try:
        container = _open(src)
    except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it
        feed.close(exc)
        return
    n, turns, camera = 0, hasattr(detector, "detect_turn"), CameraPath()
    cuts, fresh = CutDetector(), True
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if feed.stop.is_set():
                break
            rotation = int(getattr(frame, "rotation", 0) or 0)
            if n == 0 and turns:
                shown = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
                feed.round = detect_every * detector.round_length(*shown)
            # every frame, on one grey copy a quarter of the size the decoder makes (a full RGB frame only for
            # looks): cuts are told, and the camera's motion followed, as a hand-held camera shakes between looks
            # and masks between them follow it (on a 128-px square copy the motion's error was twice as large:
            # 0.74 px on average, at most 2.3, against 0.36 and 0.84 on the tuning clip)
            small = frame.reformat(width=max(1, frame.width // SMALL_COPY), height=max(1, frame.height // SMALL_COPY),
                                   format="gray", interpolation="AREA").to_ndarray()
            if cuts.update(small):
                feed.cut(n)  # a new shot: no face is followed or held across it
                camera.cut()
                fresh = True
            offset = camera.update_grey(small, scale=(frame.width / small.shape[1], frame.height / small.shape[0]))
            feed.moved(n, offset)  # in stored pixels, as the boxes handed on
            if n % detect_every:
                continue
            stored = frame.to_ndarray(format="rgb24")
            upright = np.ascontiguousarray(_rotate(stored, rotation))
            turn = n // detect_every
            voted, view, region = None, "", None
            if turns and fresh:  # a new shot is searched whole at once: it may be over before a round of tiles is
                found, voted = detector.detect_complete(upright, threshold=threshold)
                view = "complete"
            elif turns:
                found = detector.detect_turn(upright, threshold=threshold, turn=turn)
                view = detector.turn_view(turn, upright.shape[1], upright.shape[0])
                region = detector.turn_region(turn, upright.shape[1], upright.shape[0])
            else:
                found = detector.detect(upright, threshold=threshold)
                voted = np.ones(len(found), dtype=bool)
            fresh = False
            boxes = _unrotate_boxes(found, rotation, frame.width, frame.height) if rotation else found
            if region is not None and rotation:
                region = tuple(_unrotate_boxes(np.array([[*region, 0.0]], np.float32), rotation, frame.width,
                                               frame.height)[0, :4].tolist())
            feed.put(n, boxes, whole=voted is not None or turn % 2 == 0, offset=offset, voted=voted, view=view,
                     region=region)
        feed.close()
    except av.error.FFmpegError as exc:
        feed.close(ImageError(f"the video stops being readable at frame {n} ({exc.strerror or exc}): it may be "
                              "truncated"))
    except BaseException as exc:  # noqa: BLE001 - handed to the writer, which raises it
        feed.close(exc)
    finally:
        container.close()


def anonymize_video(src: str, dst: str, *, detector: Any = None, threshold: float, mode: str, shape: str,
                    mask_scale: float, detect_every: int = 3,
                    detections: dict[int, np.ndarray] | None = None,
                    on_frame: Callable[[int, int], None] | None = None) -> VideoReport:
    """Write the anonymised copy of the video at ``src`` to ``dst`` (local paths). Faces come from
    ``detector`` on every ``detect_every``-th frame, or ready-made as ``detections`` (frame index -> boxes in
    stored pixels, e.g. from Rekognition, sampled about every ``detect_every`` frames). ``on_frame(written,
    expected)`` is called every ``PROGRESS_EVERY`` frames written (``expected``: the container's frame count, or
    its duration times its rate; 0 when it says neither); what it raises stops the video and is raised here (a
    cancel). Raises ImageError for a corrupt or empty video or an unsupported codec; nothing is left at ``dst``
    then, nor after a stop."""
    import av

    if detect_every < 1:
        raise InvalidInput("detect every k-th frame needs k of at least 1")
    feed = Feed(step=detect_every)
    looker = None
    if detections is not None:
        feed.fill(detections)
    else:  # looks run ahead on their own thread; the writer follows them (both decode, both overlap)
        if hasattr(detector, "for_video"):
            detector = detector.for_video()  # CenterFace: the 8-bit network, under half the time a look
        looker = threading.Thread(target=_look, args=(src, feed), name="faces-looks", daemon=True,
                                  kwargs={"detector": detector, "threshold": threshold, "detect_every": detect_every})
        looker.start()
    follower = Follower(feed)
    tmp = str(Path(dst).parent / f".{Path(dst).name}.part-{os.getpid()}")  # hidden, and never named like a video
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            report = _write(src, tmp, follower=follower, mode=mode, shape=shape, mask_scale=mask_scale,
                            on_frame=on_frame)
        except av.error.FFmpegError as exc:
            feed.stop.set()
            feed.wait(10**12)  # a source the looks could not read says more than a failed write
            raise ImageError(f"the anonymised video could not be written ({exc.strerror or exc})") from exc
        feed.wait(10**12)  # the looks' own error, if they failed after the last frame was written
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        feed.stop.set()
        if looker is not None:
            looker.join()
    detections, tracks = feed.detections, follower.tracks()
    return VideoReport(frames=report["frames"], fps=report["fps"], duration=report["duration"], width=report["width"],
                       height=report["height"], rotation=report["rotation"], audio=report["audio"], detect_every=detect_every,
                       detections={k: v.round(1).tolist() for k, v in detections.items() if len(v)},
                       masked=report["masked"], tracks=len(tracks),
                       weak_tracks=sum(max(float(b[4]) for b in t.boxes) < SURE for t in tracks),
                       most_at_once=follower.most_at_once)


def _anonymize_yuv(planes: np.ndarray, boxes: np.ndarray, *, mode: str, shape: str, mask_scale: float) -> np.ndarray:
    """Anonymise a yuv420p frame as FFmpeg lays it out ((H * 3/2, W): Y, then U and V at half size) plane by
    plane, which spares two colour conversions of the whole frame."""
    if not len(boxes):
        return planes
    h, w = planes.shape[0] * 2 // 3, planes.shape[1]
    out = planes.copy()
    out[:h] = anonymize(planes[:h], boxes, mode=mode, shape=shape, mask_scale=mask_scale, fill=16)
    half = boxes.copy()
    half[:, :4] /= 2
    u, v = planes[h:h + h // 4].reshape(h // 2, w // 2), planes[h + h // 4:].reshape(h // 2, w // 2)
    uv = anonymize(np.dstack([u, v]), half, mode=mode, shape=shape, mask_scale=mask_scale, fill=128)  # both at once
    out[h:h + h // 4] = uv[..., 0].reshape(h // 4, w)
    out[h + h // 4:] = uv[..., 1].reshape(h // 4, w)
    return out


def _expected_frames(stream: Any, rate: Fraction) -> int:
    """The frames a video stream says it holds: its count, else its duration times its rate; 0 if neither."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base * rate)))
    return 0


def _write(src: str, dst: str, *, follower: Follower, mode: str, shape: str, mask_scale: float,
           on_frame: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    import av

    inp = _open(src)
    out = av.open(dst, "w", format="mp4")
    try:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        expected = _expected_frames(vin, rate)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
        if vout.width % 2 or vout.height % 2:
            raise ImageError(f"the video is {vout.width}x{vout.height}: H.264 for browsers needs even sides")
        vout.pix_fmt = "yuv420p"
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        vout.options = dict(X264)
        ain = inp.streams.audio[0] if inp.streams.audio else None
        aout = None
        audio = ain.codec_context.name if ain is not None else None
        copy_audio = audio in MP4_AUDIO  # MP4 holds it as it is; anything else is re-encoded to AAC
        if ain is not None:
            aout = (out.add_stream_from_template(ain) if copy_audio
                    else out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000))
        frames = 0
        masked: dict[int, list[list[float]]] = {}
        first_pts = last_pts = None
        demux = inp.demux(*[s for s in (vin, ain) if s is not None])
        rotation = None
        for packet in demux:
            if packet.stream.type == "audio":
                if aout is None or packet.dts is None:
                    continue
                if copy_audio:
                    packet.stream = aout
                    out.mux(packet)
                else:
                    for af in packet.decode():
                        for p in aout.encode(af):
                            out.mux(p)
                continue
            for frame in packet.decode():
                if rotation is None:
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                    if rotation:
                        vout.set_display_rotation(rotation)
                boxes = follower.boxes(frames)
                if len(boxes):
                    masked[frames] = boxes.round(1).tolist()
                new = av.VideoFrame.from_ndarray(_anonymize_yuv(frame.to_ndarray(format="yuv420p"), boxes, mode=mode,
                                                                shape=shape, mask_scale=mask_scale), format="yuv420p")
                new.pts, new.time_base = frame.pts, frame.time_base
                first_pts = frame.pts if first_pts is None else first_pts
                last_pts = frame.pts
                for p in vout.encode(new):
                    out.mux(p)
                frames += 1
                if on_frame is not None and frames % PROGRESS_EVERY == 0:
                    on_frame(frames, expected)
        for p in vout.encode():
            out.mux(p)
        if aout is not None and not copy_audio:
            for p in aout.encode():
                out.mux(p)
        if first_pts is None:
            raise ImageError("the video has no frames")
        duration = float((last_pts - first_pts) * vin.time_base + 1 / rate)
        return {"frames": frames, "fps": float(rate), "duration": round(duration, 3), "audio": audio, "masked": masked,
                "width": vout.width, "height": vout.height, "rotation": rotation or 0}
    finally:
        out.close()
        inp.close()


def frames_as_jpeg(path: str, numbers: list[int], *, side: int = 480) -> dict[int, bytes]:
    """The frames numbered ``numbers`` (decode order) as JPEG thumbnails shown upright. Raises ImageError."""
    import io

    import av
    from PIL import Image

    wanted, out = set(numbers), {}
    container = _open(path)
    try:
        for n, frame in enumerate(container.decode(video=0)):
            if n in wanted:
                pic = Image.fromarray(_rotate(frame.to_ndarray(format="rgb24"), int(getattr(frame, "rotation", 0) or 0)))
                pic.thumbnail((side, side))
                buf = io.BytesIO()
                pic.save(buf, "JPEG", quality=85)
                out[n] = buf.getvalue()
                if len(out) == len(wanted):
                    break
    except av.error.FFmpegError as exc:
        raise ImageError(f"frames of the video cannot be read ({exc.strerror or exc})") from exc
    finally:
        container.close()
    return out
