"""Faces whose detail is removed in videos, this console's video path against the deface CLI, same clip, one run.

No public face-annotated video is reachable here, so the clip reuses annotated frames: every photo of the
evaluation part of benchmarks/faces_eval (never used to choose a setting) is placed on a 1280x720 canvas
(scaled down to fit, never up) and held for ``--frames`` frames while the camera pans slowly (2 px a frame) so
faces move as they do in footage. The clip is H.264 at 25 fps; both tools read it, and each output is scored
against the decoded input frame by frame, with the photo benchmarks' rule (``blur_eval``: a face is removed when
the Laplacian variance inside its box falls below half). Faces under 10 px after scaling are not counted.

Reported: recall over face-frames, by width (10-20, 20-40, 40+ px), and per face (removed in *every* frame it
is in: the figure that matters for a published video), each with Wilson 95% bounds; the share changed outside
faces, overall and by source (the WIDER FACE crowds, ``wider_val``, apart from the face-mask photos), and beside
it the share that re-encoding alone changes (the clip decoded and written again with the video path's x264
settings, no mask: every tool that writes H.264 pays it); the frames per second of each tool on this clip
(start-up included) and their ratio.

    python benchmarks/blur_video_recall.py [--quick] [--frames 6] [--split tuning] [--canvas 1920x1080] [--fps 50]
                                           [--pan 8] [--shake 6]

--split tuning: every third photo of the TUNING part instead (where the video path's settings are chosen).
--canvas, --fps, --pan and --shake vary what a deployment varies: the frame size (1280x720 by default), the frame
rate (25), how fast the camera moves (2 px a frame; a hand-held camera or a lower frame rate moves faces further
between frames) and how much it shakes (each frame moved at random up to that many pixels each way; none by default).

--quick: the crowd photos (WIDER FACE) only, 3 frames each. The last line is JSON: faces, face_frames, recall,
recall_small, recall_per_face, changed_outside, changed_outside_encoding, deface_recall, fps, deface_fps,
ratio_vs_deface.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from blur_eval import BUCKETS, CHANGED_LEVELS, EVAL_DIR, OUTSIDE_GROW, load, rgb, wilson, xyxy

W, H, FPS, PAN, SHAKE = 1280, 720, 25, 2.0, 0


def layout(photos: dict[str, dict[str, Any]], *, frames: int) -> list[dict[str, Any]]:
    """One entry per photo: its scaled image and, per frame, the pan offset and the faces' boxes on the canvas."""
    from PIL import Image

    out = []
    for name, rec in photos.items():
        img = rgb(EVAL_DIR / rec["file"])
        h, w = img.shape[:2]
        scale = min(1.0, (W - PAN * frames - 2 * SHAKE) / w, (H - 2 * SHAKE) / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS)) if scale < 1 else img
        x0, y0 = (W - PAN * frames - size[0]) / 2, (H - size[1]) / 2
        rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
        shake = rng.integers(-SHAKE, SHAKE + 1, size=(frames, 2))  # per frame (dx, dy); zeros without --shake
        faces = [{"box": [v * scale for v in f["box"]], "id": f"{name}#{i}"} for i, f in enumerate(rec["faces"])]
        ignore = [[v * scale for v in b] for b in rec["ignore"]] + [f["box"] for f in faces if f["box"][2] < 10]
        faces = [f for f in faces if f["box"][2] >= 10]
        out.append({"name": name, "image": small, "x0": x0, "y0": y0, "faces": faces, "ignore": ignore,
                    "source": rec["source"], "shake": shake})
    return out


def canvas(entry: dict[str, Any], k: int) -> tuple[np.ndarray, float, float]:
    """Frame ``k`` of a photo's shot: (the frame, its x and y offset)."""
    frame = np.zeros((H, W, 3), np.uint8)
    dx, dy = entry["shake"][k]
    x, y = int(round(entry["x0"] + PAN * k + dx)), int(round(entry["y0"] + dy))
    img = entry["image"]
    frame[y : y + img.shape[0], x : x + img.shape[1]] = img
    return frame, float(x), float(y)


def write_clip(path: Path, shots: list[dict[str, Any]], *, frames: int) -> list[tuple[int, float, float]]:
    """Encode the clip; returns (shot index, x, y) per frame."""
    import av

    index = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "16", "preset": "fast"}
        for s, entry in enumerate(shots):
            for k in range(frames):
                frame, x, y = canvas(entry, k)
                index.append((s, x, y))
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return index


def decode(path: Path) -> Iterator[np.ndarray]:
    """The frames of a clip, one at a time (a clip's frames together would not fit in memory)."""
    import av

    with av.open(str(path)) as src:
        for f in src.decode(video=0):
            yield f.to_ndarray(format="rgb24")


class VideoTally:
    """Face-frames and faces removed, and pixels changed outside faces."""

    def __init__(self) -> None:
        self.frames: Counter = Counter()
        self.removed: Counter = Counter()
        self.per_face: dict[str, bool] = {}
        self.outside = self.changed = 0
        self.by_source: dict[str, list[int]] = {}  # source -> [pixels outside faces, changed]

    def add(self, before: np.ndarray, after: np.ndarray, entry: dict[str, Any], x: float, y: float) -> None:
        from services.faces.quality import REMOVED_BELOW, detail_ratios

        shift = lambda b: [b[0] + x, b[1] + y, b[2], b[3]]  # noqa: E731
        boxes = np.array([xyxy(shift(f["box"])) for f in entry["faces"]], np.float32).reshape(-1, 4)
        for face, ratio in zip(entry["faces"], detail_ratios(before, after, boxes)):
            ok = bool(ratio < REMOVED_BELOW)
            for key in ("all", next(b for b, lo, hi in BUCKETS if lo <= face["box"][2] < hi)):
                self.frames[key] += 1
                self.removed[key] += ok
            self.per_face[face["id"]] = self.per_face.get(face["id"], True) and ok
        img = entry["image"]
        allowed = np.ones((H, W), bool)  # the black margins around the photo are not image: not counted
        allowed[int(y) : int(y) + img.shape[0], int(x) : int(x) + img.shape[1]] = False
        for b in [f["box"] for f in entry["faces"]] + entry["ignore"]:
            x1, y1, x2, y2 = (int(round(v)) for v in xyxy(shift(b), OUTSIDE_GROW))
            allowed[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)] = True
        diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2) > CHANGED_LEVELS
        outside, changed = int((~allowed).sum()), int((diff & ~allowed).sum())
        self.outside += outside
        self.changed += changed
        part = self.by_source.setdefault(entry["source"], [0, 0])
        part[0] += outside
        part[1] += changed

    def summary(self) -> dict[str, Any]:
        def part(key: str) -> dict[str, Any]:
            n, k = self.frames[key], self.removed[key]
            return {"face_frames": n, "removed": k, "recall": round(k / n, 4) if n else None, "ci95": wilson(k, n)}

        faces, kept = len(self.per_face), sum(self.per_face.values())
        return {"overall": part("all"), "by_width": {b: part(b) for b, _, _ in BUCKETS},
                "per_face": {"faces": faces, "removed_in_every_frame": kept,
                             "recall": round(kept / faces, 4) if faces else None, "ci95": wilson(kept, faces)},
                "changed_outside": round(self.changed / max(1, self.outside), 5),
                "changed_outside_by_source": {k: round(c / max(1, o), 5) for k, (o, c) in sorted(self.by_source.items())}}


def reencode(src: Path, dst: Path) -> None:
    """The clip decoded and written again with the video path's x264 settings, nothing masked."""
    import av

    from services.faces.video import X264

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = dict(X264)
        for frame in inp.decode(video=0):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def score(before: Path, after: Path, shots: list[dict[str, Any]], index: list[tuple[int, float, float]]) -> dict[str, Any]:
    """Score the clip ``after`` against ``before``, frame by frame."""
    tally, n = VideoTally(), 0
    for (s, x, y), b, a in zip(index, decode(before), decode(after)):
        tally.add(b, a, shots[s], x, y)
        n += 1
    out = tally.summary()
    out["frames_scored"] = n
    return out


def main() -> None:
    global W, H, FPS, PAN, SHAKE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="crowd photos only, 3 frames each")
    parser.add_argument("--frames", type=int, default=6, help="frames per photo")
    parser.add_argument("--no-deface", action="store_true")
    parser.add_argument("--split", choices=("evaluation", "tuning"), default="evaluation",
                        help="tuning: every third tuning photo, to choose settings on")
    parser.add_argument("--canvas", default="1280x720",
                        help="frame size WxH, e.g. 1920x1080 or 854x480 (photos never scaled up; smaller ones are "
                             "scaled down to fit, and faces left under 10 px are not counted)")
    parser.add_argument("--fps", type=int, default=FPS, help="frame rate of the clip (the pan stays as --pan says)")
    parser.add_argument("--pan", type=float, default=PAN, help="pixels the view moves a frame (2)")
    parser.add_argument("--shake", type=int, default=SHAKE,
                        help="a hand-held camera's shake: each frame moved up to this many pixels each way, at random "
                             "(seeded by the photo's name), on top of the pan (0)")
    args = parser.parse_args()
    W, H = (int(v) for v in args.canvas.lower().split("x"))
    FPS, PAN, SHAKE = args.fps, args.pan, args.shake
    if W % 2 or H % 2:
        parser.error("--canvas needs even sides (H.264)")
    if SHAKE < 0:
        parser.error("--shake is a distance in pixels: 0 or more")
    photos = load(args.split, quick=args.quick)
    if args.split == "tuning":
        photos = dict(list(photos.items())[::3])
    if not photos:
        print(json.dumps({"faces": 0, "recall": None, "note": f"{EVAL_DIR} not found: run benchmarks/faces_eval_data.py"}))
        return
    frames = 3 if args.quick else args.frames
    from services.faces.detection import CenterFaceDetector
    from services.faces.job import DEFAULTS
    from services.faces.video import anonymize_video

    shots = layout(photos, frames=frames)
    tmp = Path(tempfile.mkdtemp(prefix="blur-video-"))
    try:
        clip = tmp / "clip.mp4"
        index = write_clip(clip, shots, frames=frames)
        print(f"clip ({args.split}): {len(shots)} photos x {frames} frames = {len(index)} frames at {W}x{H}", flush=True)
        t0 = time.perf_counter()
        anonymize_video(str(clip), str(tmp / "ours.mp4"), detector=CenterFaceDetector.shared(),
                        threshold=DEFAULTS["threshold"], mode=DEFAULTS["mode"], shape=DEFAULTS["shape"],
                        mask_scale=DEFAULTS["mask_scale"], detect_every=DEFAULTS["detect_every"])
        ours_s = time.perf_counter() - t0
        ours = score(clip, tmp / "ours.mp4", shots, index)
        ours["fps"] = round(len(index) / ours_s, 2)
        print("ours:", json.dumps(ours), flush=True)
        reencode(clip, tmp / "plain.mp4")
        encoding = score(clip, tmp / "plain.mp4", shots, index)["changed_outside"]
        print("re-encoding alone changes outside faces:", encoding, flush=True)
        theirs: dict[str, Any] = {}
        if not args.no_deface:
            deface = shutil.which("deface") or str(Path(sys.executable).parent / "deface")
            t0 = time.perf_counter()
            config = ["--ffmpeg-config", json.dumps({"codec": "libx264", "macro_block_size": 1})]  # its default
            # codec, and no resize to a multiple of 16 (1080 and 480 lines are not): frames compared as they are
            subprocess.run([deface, str(clip), "-o", str(tmp / "deface.mp4"), *config], check=True, capture_output=True)
            deface_s = time.perf_counter() - t0
            theirs = score(clip, tmp / "deface.mp4", shots, index)
            theirs["fps"] = round(len(index) / deface_s, 2)
            print("deface:", json.dumps(theirs), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({
        "split": args.split, "canvas": f"{W}x{H}", "fps_of_clip": FPS, "pan": PAN, "shake": SHAKE, "photos": len(shots), "frames": len(index),
        "faces": ours["per_face"]["faces"],
        "face_frames": ours["overall"]["face_frames"], "recall": ours["overall"]["recall"],
        "recall_small": ours["by_width"]["10-20"]["recall"], "recall_per_face": ours["per_face"]["recall"],
        "changed_outside": ours["changed_outside"], "changed_outside_encoding": encoding,
        "changed_outside_by_source": ours["changed_outside_by_source"], "fps": ours["fps"],
        "deface_recall": theirs.get("overall", {}).get("recall"), "deface_fps": theirs.get("fps"),
        "ratio_vs_deface": round(ours["fps"] / theirs["fps"], 2) if theirs else None,
        "ours": ours, "deface": theirs}))


if __name__ == "__main__":
    main()
