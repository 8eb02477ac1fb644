"""Face-blurring speed on video: this console's job code (its defaults) and the deface CLI (its defaults), same clips, one run.

Clips: ../shared/samples/video/opencv_vtest.avi (768x576, 795 frames of pedestrians) and a 1280x720 clip made
from the sample clips (scaled up with FFmpeg: 150 frames; --quick: 60). deface runs on the 720p clip only
(a few frames a second here); fps are frames over wall-clock seconds, start-up included for both.

    python benchmarks/blur_speed.py [--quick]

The last line is JSON: fps_vtest, fps_720p, deface_fps_720p, ratio_vs_deface and the details.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, cpu_ticks, others_share

VIDEOS = ROOT.parent / "shared" / "samples" / "video"


def frames(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().rstrip(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 frames of 720p instead of 150")
    parser.add_argument("--detect-every", type=int, default=3)
    args = parser.parse_args()
    if not VIDEOS.is_dir() or shutil.which("ffmpeg") is None:
        print(json.dumps({"fps_vtest": None, "fps_720p": None, "deface_fps_720p": None, "ratio_vs_deface": None,
                          "note": "needs ../shared/samples/video and Debian's ffmpeg"}))
        return
    sys.path.insert(0, str(ROOT))
    from services.faces.detection import CenterFaceDetector
    from services.faces.job import DEFAULTS
    from services.faces.video import anonymize_video

    n720 = 60 if args.quick else 150
    before = cpu_ticks()
    detector = CenterFaceDetector.shared()
    out: dict = {"detect_every": args.detect_every}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        hd = t / "720p.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", "-1", "-i", str(VIDEOS / "fr_short_hamilton_clip.mp4"),
                        "-frames:v", str(n720), "-vf", "scale=1280:720", "-c:v", "libx264", "-preset", "veryfast",
                        "-c:a", "aac", str(hd)], check=True)
        for name, src in (("vtest", VIDEOS / "opencv_vtest.avi"), ("720p", hd)):
            n = frames(src)
            t0 = time.perf_counter()
            anonymize_video(str(src), str(t / f"ours_{name}.mp4"), detector=detector, threshold=DEFAULTS["threshold"],
                            mode=DEFAULTS["mode"], shape=DEFAULTS["shape"], mask_scale=DEFAULTS["mask_scale"],
                            detect_every=args.detect_every)
            out[f"fps_{name}"] = round(n / (time.perf_counter() - t0), 1)
            out[f"frames_{name}"] = n
            print(json.dumps({name: out[f"fps_{name}"]}), flush=True)
        deface = shutil.which("deface") or str(Path(sys.executable).parent / "deface")
        n = frames(hd)  # the same clip: start-up costs both tools alike, and weighs little over 150 frames
        t0 = time.perf_counter()
        subprocess.run([deface, str(hd), "-o", str(t / "deface_720p.mp4")], check=True, capture_output=True)
        out["deface_fps_720p"] = round(n / (time.perf_counter() - t0), 2)
        out["deface_frames"] = n
    out["ratio_vs_deface"] = round(out["fps_720p"] / out["deface_fps_720p"], 1)
    out["others_cpu_share"] = others_share(before)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
