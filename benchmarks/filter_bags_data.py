"""Materialise the extra bag tuning photos (benchmarks/filter_bags/labels.csv) into benchmarks/out/filter_bags/
from local mirrors of their public repositories, at the pinned commits (nothing is downloaded here; the photos are
not committed).

``labels.csv`` holds 189 real photos of COCO (2017 val, and train for the three from COCO128 subsets), each with
its repository, commit, path, sha256, its Flickr licence as the COCO annotations give it (only CC-BY-2.0, "no
known copyright restrictions" (Flickr Commons) and US Government Work were taken) and its Flickr URL for the
attribution; ``bag`` is 1 when a bag can be made out (handbag, shoulder bag, backpack, suitcase, a bicycle's or
a motorbike's bag, a carrier bag), labelled here by looking at every photo, not from COCO's boxes. Photos where
one could not tell were left out (4). Sources:

- minto5z/coco_yolo: the 186 photos of its COCO val2017 person subset with one of those licences (182 kept);
- zzowenzz/COCO_Tiny, Obmutescence/COCO-MINI, developer0hye/COCO128: their photos with those licences that COCO
  annotates with a handbag, backpack or suitcase (10, of which 7 kept: the others' bag could not be made out).

None is a shared sample photo (the COCO ids of ../shared/samples are left out). The set is **tuning only**:
``benchmarks/filter_labels.py --extra-bags`` adds it to the tuning part for the bag family's calibration and the
choice of its evidence; it never enters the report part.

    python benchmarks/filter_bags_data.py [--mirrors /work/.mirror]

A mirror is a bare clone at ``<mirrors>/<owner>+<name>/repo`` (``git clone --mirror https://github.com/<owner>/<name>``
gives the same). Photos already present are kept. The last line printed is JSON: photos, bags, missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

from common import OUT, ROOT, from_mirror

LABELS = ROOT / "benchmarks" / "filter_bags" / "labels.csv"
PHOTOS = OUT / "filter_bags"


def read_rows() -> list[dict]:
    """The labelled rows of labels.csv, ``bag`` as a bool."""
    with open(LABELS, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["bag"] = row["bag"] == "1"
    return rows


def photo_path(row: dict) -> Path:
    """Where a row's photo is materialised."""
    return PHOTOS / f"{row['id']}{Path(row['path']).suffix.lower()}"


def materialise(mirrors: Path) -> tuple[list[dict], list[str]]:
    """Every photo of labels.csv present under benchmarks/out/filter_bags/ (checked against its sha256); returns
    the rows and the ids that could not be read (mirror missing or a different file)."""
    rows = read_rows()
    PHOTOS.mkdir(parents=True, exist_ok=True)
    missing = []
    for row in rows:
        target = photo_path(row)
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == row["sha256"]:
            continue
        data = from_mirror(mirrors, row["repo"], row["commit"], row["path"])
        if data is None or hashlib.sha256(data).hexdigest() != row["sha256"]:
            missing.append(row["id"])
            continue
        target.write_bytes(data)
    return rows, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    args = ap.parse_args(argv)
    rows, missing = materialise(args.mirrors)
    print(json.dumps({"photos": len(rows) - len(missing), "bags": sum(r["bag"] for r in rows if r["id"] not in missing),
                      "missing": missing}))
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
