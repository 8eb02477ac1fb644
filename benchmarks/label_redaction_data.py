"""Materialise the label-redaction photos (benchmarks/label_redaction/annotations.json) into benchmarks/out/labels/
from local mirrors of their public repositories, at the pinned commits (nothing is downloaded here; the photos are
not committed: three of them are 4 MB each). The sources are the annotations' ``sources`` (Dynamsoft's UPS labels,
Roboflow's packages, jo-jstrm/Damaged-Package-Detection's parcel, ZXing's test images); a ZXing photo's path is
under that source's folder, the others' are paths in their repositories.

    python benchmarks/label_redaction_data.py [--mirrors /work/.mirror]

A mirror is a bare clone at ``<mirrors>/<owner>+<name>/repo`` (``git clone --mirror https://github.com/<owner>/<name>``
gives the same). Photos already present are kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from common import OUT, ROOT, git_dir

ANNOTATIONS = ROOT / "benchmarks" / "label_redaction" / "annotations.json"
PHOTOS = OUT / "labels"


def photo_path(photo: dict) -> Path:
    return PHOTOS / f"{photo['id']}{Path(photo['path']).suffix.lower()}"


def from_mirror(mirrors: Path, source: dict, inside: str) -> bytes:
    """A file of ``source`` (an annotations' source: repo, commit) at its pinned commit, from the local mirror (found
    by ``common.git_dir``; never another commit: the annotations carry no checksum). Raises SystemExit naming the
    mirror when it cannot be read."""
    where = git_dir(mirrors, source["repo"])
    if where is None:
        raise SystemExit(f"no mirror of {source['repo']} under {mirrors}")
    run = subprocess.run(["git", "--git-dir", str(where), "show", f"{source['commit']}:{inside}"],
                         capture_output=True, check=False)
    if run.returncode or not run.stdout:
        raise SystemExit(f"cannot read {inside} at {source['commit'][:10]} from {where}: "
                         f"{run.stderr.decode(errors='replace').strip()}")
    return run.stdout


def materialise(mirrors: Path) -> list[dict]:
    """Every annotated photo present under benchmarks/out/labels/; returns the annotations' photos. Raises
    SystemExit naming the mirror when a photo cannot be read."""
    spec = json.loads(ANNOTATIONS.read_text())
    PHOTOS.mkdir(parents=True, exist_ok=True)
    for photo in spec["photos"]:
        target = photo_path(photo)
        if target.exists():
            continue
        source = spec["sources"][photo["source"]]
        inside = photo["path"] if photo["source"] != "zxing" else f"{source['folder']}/{photo['path']}"
        target.write_bytes(from_mirror(mirrors, source, inside))
    return spec["photos"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    photos = materialise(parser.parse_args().mirrors)
    print(f"{len(photos)} photos in {PHOTOS}")
