"""Look-alike product photos for ``near_duplicates.py``: real CC0 garment photos, read from fetched snapshots.

Source: github:alexeygrigorev/clothing-dataset @ 7ed86a9cc56763b6acb35e41cb35184e43a5d218 (``images/<id>.jpg``,
labels in ``images.csv``; LICENSE: CC0 1.0 Universal, "can be freely used for any purpose, including
commercial"), 400x534 photos of garments sent by people, many flat on a floor, a bed or a white sheet: different
garments of one kind look alike by nature. Its subset github:alexeygrigorev/clothing-dataset-small @
11961516512414bf9f6c150a832cfd21b54a6b54 (same licence) sorts 3,781 of them into train/, validation/ and test/.

Splits (thresholds are chosen on tune only): **tune** = the photos in the subset's train/ folder (3,068);
**report** = every other photo of the full dataset with a garment label (the subset's validation/ and test/
folders and the photos the subset left out: 2,028). Labels "Not sure", "Other" and "Skip" are left out. Every
pair of photos with the same label is a look-alike pair.

The photos are extracted once into ``benchmarks/out/clothing_lookalikes/`` (gitignored). Both snapshots must be
fetched under the mirror folder (``--mirror-dir``, default /work/.mirror, as ``owner+name/repo``); without them
the benchmark stops and says so.
"""

from __future__ import annotations

import csv
import io
import subprocess
from collections import Counter
from pathlib import Path

from common import OUT, git_dir
from PIL import Image, ImageDraw

FULL = ("alexeygrigorev/clothing-dataset", "7ed86a9cc56763b6acb35e41cb35184e43a5d218")
SMALL = ("alexeygrigorev/clothing-dataset-small", "11961516512414bf9f6c150a832cfd21b54a6b54")
CACHE = OUT / "clothing_lookalikes"
NO_KIND = {"Not sure", "Other", "Skip"}

# Pairs of dataset photos that are one photo (or one garment shot twice in the same place), found by looking at
# every flag side by side (benchmarks/out/near_duplicates_flags/): flags between them are right, not false.
REAL_COPIES: set[frozenset[str]] = {
    frozenset({"637a56e4-7fa6-4f75-8859-0f8902461554", "6075b4a5-5b1a-4ce0-aea0-9dbfbca7c35c"}),  # tune: one photo
    # report: one garment shot twice where it lay (a child's body suit on a dark sheet, a black longsleeve on a
    # quilt, a printed top on a carpet, labelled "Top" once and "Undershirt" once)
    frozenset({"195de33e-ed94-4729-b254-b351aafbfca8", "09b36693-00d5-403b-b706-c18d9d10cb52"}),
    frozenset({"6f204610-7dce-4323-b1a2-f289a961f1de", "28fc3fad-5363-4c70-9c5d-ee739d2e21a8"}),
    frozenset({"5fddd548-d41a-4ab1-9605-a9ca20f60992", "4ad2fa6e-131e-4cc1-b632-b87fb912dca8"}),
    # report: one garment shot twice on the same hanger or sofa (a navy padded jacket, a green rain jacket twice,
    # a body suit with a cat print)
    frozenset({"74f16421-14fd-43de-9883-cbc02819336e", "2edb1db6-cd17-41d2-88e0-ba34801b656d"}),
    frozenset({"7eeb4c2f-b0b6-4208-a5ee-aed11bce6214", "26d61cdc-a947-45f1-a16c-bf3eb23a67ed"}),
    frozenset({"d5f4fb0d-b9c3-4358-8e33-fc0ac615c9d7", "31bfad90-ce1e-4185-b92b-c527804af85f"}),
    frozenset({"b0d71fba-23a7-4912-b6c6-16b7d8a5bd43", "9fba5065-dc5e-40b8-9548-40d2d498d7a2"}),
    frozenset({"f86d0bfd-6a44-4dce-a1ee-235a5d0a49a8", "31bfad90-ce1e-4185-b92b-c527804af85f"}),  # that jacket again
    frozenset({"fc68930e-47fe-4972-894a-c52eac23d77d", "f6f0b6a5-5053-44d2-8fa4-241719f97237"}),  # a white body suit
}


class MirrorMissing(SystemExit):
    """A snapshot the look-alike set is read from has not been fetched."""


def _git(mirror_dir: Path, repo: str) -> Path:
    gd = git_dir(mirror_dir, repo)
    if gd is None:
        raise MirrorMissing(
            f"near_duplicates: the look-alike photos come from github:{repo} (CC0), which is not fetched under "
            f"{mirror_dir} (expected {mirror_dir / repo.replace('/', '+', 1) / 'repo'}); fetch it (its snapshot, "
            "e.g. the `fetch` tool or `git clone --mirror`), or pass --mirror-dir")
    return gd


def _read(gd: Path, rev: str, path: str) -> bytes:
    res = subprocess.run(["git", "--git-dir", str(gd), "show", f"{rev}:{path}"], capture_output=True)
    if res.returncode != 0:
        res = subprocess.run(["git", "--git-dir", str(gd), "show", f"HEAD:{path}"], capture_output=True, check=True)
    return res.stdout


def _extract(gd: Path, rev: str, paths: list[str], dst: Path) -> None:
    """Write each ``rev:path`` to ``dst/<file name>`` that is not there yet (one ``git cat-file --batch``)."""
    todo = [p for p in paths if not (dst / Path(p).name).is_file()]
    if not todo:
        return
    dst.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["git", "--git-dir", str(gd), "cat-file", "--batch"],
                          input="".join(f"{rev}:{p}\n" for p in todo).encode(), capture_output=True, check=True)
    out, pos = proc.stdout, 0
    for p in todo:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if header[-1] == b"missing":
            raise MirrorMissing(f"near_duplicates: {p} is missing from the snapshot in {gd}")
        size = int(header[2])
        (dst / Path(p).name).write_bytes(out[end + 1:end + 1 + size])
        pos = end + 1 + size + 1


def photos(split: str, *, mirror_dir: Path) -> list[tuple[Path, str]]:
    """(photo, garment label) of the split ('tune', 'report' or 'all'), sorted by name, extracted on first use.
    Raises MirrorMissing (a SystemExit with the reason) when a snapshot is not fetched."""
    full, small = _git(mirror_dir, FULL[0]), _git(mirror_dir, SMALL[0])
    labels = {r["image"]: r["label"] for r in csv.DictReader(io.StringIO(_read(full, FULL[1], "images.csv").decode()))}
    listing = subprocess.run(["git", "--git-dir", str(small), "ls-tree", "-r", "--name-only", SMALL[1]],
                             capture_output=True, text=True, check=True).stdout.split()
    tune = {Path(p).stem for p in listing if p.startswith("train/") and p.endswith(".jpg")}
    chosen = sorted(k for k, label in labels.items() if label not in NO_KIND
                    and (split == "all" or (k in tune) == (split == "tune")))
    _extract(full, FULL[1], [f"images/{k}.jpg" for k in chosen], CACHE)
    return [(CACHE / f"{k}.jpg", labels[k]) for k in chosen]


def same_kind_pairs(labels: list[str]) -> int:
    """Pairs of photos with the same label."""
    return sum(n * (n - 1) // 2 for n in Counter(labels).values())


def upper_95(events: int, trials: int) -> float:
    """One-sided 95% Clopper-Pearson upper bound on a rate seen ``events`` times in ``trials`` (about 3/n at 0)."""
    from scipy.stats import beta

    return float(beta.ppf(0.95, events + 1, trials - events)) if trials else 1.0


def side_by_side(a: Path, b: Path, dst: Path, *, title: str) -> None:
    """Both photos at 400 pixels high next to each other, with a title bar, saved as a PNG (what image viewers show)."""
    ims = []
    for p in (a, b):
        im = Image.open(p).convert("RGB")
        im.thumbnail((600, 400))
        ims.append(im)
    out = Image.new("RGB", (ims[0].width + ims[1].width + 10, 430), "white")
    out.paste(ims[0], (0, 30))
    out.paste(ims[1], (ims[0].width + 10, 30))
    ImageDraw.Draw(out).text((5, 8), title, fill="black")
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(dst, "PNG")


def false_flag_figures(flags: list, photos: list[Path], group: list[str], split: str) -> dict:
    """Flags between two originals: among the sample photos, and among the look-alike garment photos (a pair of
    the same label is a look-alike pair; a pair listed in ``REAL_COPIES`` is a copy in the data, not a
    false flag). Every such flag is saved side by side under benchmarks/out/near_duplicates_flags/<split>/."""
    between = [(int(a[1:]), int(b[1:])) for a, b, _ in flags if a.startswith("o") and b.startswith("o")]
    shown = OUT / "near_duplicates_flags" / split
    sample_false, look_false, cross_false, real = [], [], [], []
    for i, j in between:
        names = (photos[i].name, photos[j].name)
        side_by_side(photos[i], photos[j], shown / f"{Path(names[0]).stem}__{Path(names[1]).stem}.png",
                                title=f"{group[i]} {names[0]}  |  {group[j]} {names[1]}")
        if group[i] == group[j] == "sample":
            sample_false.append(names)
        elif frozenset(Path(x).stem for x in names) in REAL_COPIES:
            real.append(names)
        elif group[i] == group[j]:
            look_false.append(names)
        else:
            cross_false.append(names)
    n_samples = sum(1 for g in group if g == "sample")
    garments = [g for g in group if g != "sample"]
    sample_pairs = n_samples * (n_samples - 1) // 2
    look_pairs = same_kind_pairs(garments)
    return {"false_flags": sample_false, "original_pairs": sample_pairs,
            "false_flag_rate": round(len(sample_false) / max(1, sample_pairs), 5),
            "lookalike_photos": len(garments), "lookalike_labels": dict(Counter(garments).most_common()),
            "lookalike_pairs": look_pairs, "false_flags_lookalike": len(look_false),
            "false_flags_lookalike_upper95": round(upper_95(len(look_false), look_pairs), 7),
            "false_flags_lookalike_list": look_false, "real_copies_in_data": real,
            "false_flags_across_kinds": cross_false,
            "pairs_across_kinds": len(photos) * (len(photos) - 1) // 2 - sample_pairs - look_pairs,
            "flag_pictures": str(shown)}
