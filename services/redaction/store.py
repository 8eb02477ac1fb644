"""The label boxes of review photos in the database (``label_boxes``, ``label_redactions``; migration m019) and the
inspectors' edits of them (``label_box_edits``; migration m020): a box found automatically can be removed, a box
the search missed can be added, each change recorded with who and when (and in the audit log). What is hidden
when the photo is published is what is left (``boxes_to_hide``, ``redact_photo``)."""

from __future__ import annotations

import math
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.errors import InvalidInput, NotFound
from services.redaction.boxes import iou
from services.redaction.labels import KIND_NAMES, KINDS, LabelBox, rounded_corners

SAME_BOX = 0.8  # a box found again overlapping a removed one of its kind by this IoU stays removed
SAME_CORNERS = 0.05  # pixels: two boxes whose corners all differ by less are one box (to a tenth of a pixel)


def save_found(db: sqlite_utils.Database, *, image_id: int, boxes: list[LabelBox], error: str | None = None,
               now: str | None = None) -> None:
    """Replace a photo's automatically found boxes with ``boxes`` and record that it was looked at (with the
    detector's error, if it failed), all in one transaction (the caller's, when one is open). Boxes an inspector
    added are kept; a found box that an inspector removed before (``SAME_BOX``) stays removed. Raises nothing of
    its own (sqlite3 errors pass through)."""
    now = now or now_iso()
    with immediate(db):
        removed = [(str(k), (x1, y1, x2, y2)) for k, x1, y1, x2, y2 in db.execute(
            "SELECT kind, x1, y1, x2, y2 FROM label_boxes WHERE image_id = ? AND removed_at IS NOT NULL", [image_id])]
        boxes = [b for b in boxes if not any(k == b.kind and iou((b.x1, b.y1, b.x2, b.y2), r) >= SAME_BOX
                                             for k, r in removed)]
        db.execute("DELETE FROM label_boxes WHERE image_id = ? AND source = 'auto' AND removed_at IS NULL", [image_id])
        db.conn.executemany(
            "INSERT INTO label_boxes (image_id, kind, x1, y1, x2, y2, score, source, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'auto', ?)",
            [(image_id, b.kind, b.x1, b.y1, b.x2, b.y2, b.score, now) for b in boxes])
        db.execute("INSERT INTO label_redactions (image_id, boxes, error, created_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT(image_id) DO UPDATE SET boxes = excluded.boxes, error = excluded.error, "
                   "created_at = excluded.created_at", [image_id, len(boxes), error, now])


def label_boxes(db: sqlite_utils.Database, *, image_id: int, actor: str) -> dict[str, Any]:
    """A photo's label boxes to hide (removed ones left out): ``{"looked": bool, "error": str | None, "boxes":
    [LabelBox.as_dict() with "id" and "source" ('auto' or 'inspector'), ...], "removed": [the same with
    "removed_by" and "removed_at", latest first], "width": int | None, "height": int | None}`` (the photo's size,
    the boxes' pixels). Raises PermissionDenied when ``actor`` may not see reviews."""
    require(db, actor=actor, action="reviews.read")
    looked = db.execute("SELECT error FROM label_redactions WHERE image_id = ?", [image_id]).fetchone()
    rows = db.execute("SELECT id, kind, x1, y1, x2, y2, score, source FROM label_boxes WHERE image_id = ? "
                      "AND removed_at IS NULL ORDER BY id", [image_id]).fetchall()
    gone = db.execute("SELECT id, kind, x1, y1, x2, y2, score, source, removed_by, removed_at FROM label_boxes "
                      "WHERE image_id = ? AND removed_at IS NOT NULL ORDER BY removed_at DESC, id DESC",
                      [image_id]).fetchall()
    size = db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone() or (None, None)
    return {"looked": looked is not None, "error": looked[0] if looked else None, "width": size[0], "height": size[1],
            "boxes": [{**LabelBox(str(k), x1, y1, x2, y2, s if s is not None else 1.0).as_dict(), "id": box_id,
                       "source": source or "auto"} for box_id, k, x1, y1, x2, y2, s, source in rows],
            "removed": [{**LabelBox(str(k), x1, y1, x2, y2, s if s is not None else 1.0).as_dict(), "id": box_id,
                         "source": source or "auto", "removed_by": by, "removed_at": at}
                        for box_id, k, x1, y1, x2, y2, s, source, by, at in gone]}


def boxes_to_hide(db: sqlite_utils.Database, *, image_id: int, actor: str) -> list[LabelBox]:
    """The boxes hidden when the photo is published: those found and not removed, and those inspectors added.
    Raises PermissionDenied when ``actor`` may not see reviews."""
    return [LabelBox(b["kind"], b["x1"], b["y1"], b["x2"], b["y2"], b["score"])
            for b in label_boxes(db, image_id=image_id, actor=actor)["boxes"]]


def add_label_box(db: sqlite_utils.Database, *, image_id: int, kind: str, x1: float, y1: float, x2: float,
                  y2: float, actor: str) -> dict[str, Any]:
    """Add a box the search missed (in pixels of the full upright photo), recorded in ``label_box_edits`` and the
    audit log; returns the box as ``label_boxes`` gives it. Raises PermissionDenied unless ``actor`` may label
    photos, NotFound for an unknown photo, InvalidInput for an unknown kind or a box that is empty, not finite or
    outside the photo (or the photo's size is not known yet), and for an exact copy of a box already hidden."""
    require(db, actor=actor, action="reviews.label")
    if kind not in KINDS:
        raise InvalidInput(f"a label box is one of {', '.join(KINDS)}, got {kind!r}")
    empty = [name for name, v in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2)) if v is None or v == ""]
    if empty:
        raise InvalidInput(f"a label box needs all four corners (x1, y1, x2, y2): {', '.join(empty)} not given")
    try:
        coords = [float(v) for v in (x1, y1, x2, y2)]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"a label box needs four numbers (x1, y1, x2, y2): {exc}") from exc
    if not all(math.isfinite(v) for v in coords):
        raise InvalidInput("a label box's corners must be finite numbers")
    x1, y1, x2, y2 = coords
    if x2 <= x1 or y2 <= y1:
        raise InvalidInput(f"a label box needs x1 < x2 and y1 < y2, got ({x1:g}, {y1:g}, {x2:g}, {y2:g})")
    now = now_iso()
    with immediate(db):
        size = db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone()
        if size is None:
            raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
        width, height = size
        if not width or not height:
            raise InvalidInput(f"the size of image {image_id} is not known yet (it has not been read): boxes can be "
                               "added once it is classified")
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise InvalidInput(f"the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside the photo: corners go from "
                               f"(0, 0) to ({width}, {height})")
        _refuse_copy(db, image_id=image_id, box=(x1, y1, x2, y2), what="nothing added")
        box_id = db.execute(
            "INSERT INTO label_boxes (image_id, kind, x1, y1, x2, y2, score, source, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 1.0, 'inspector', ?)", [image_id, kind, x1, y1, x2, y2, now]).lastrowid
        _edit(db, image_id=image_id, box_id=box_id, action="added", kind=kind, box=(x1, y1, x2, y2), actor=actor,
              now=now)
    return {**LabelBox(kind, x1, y1, x2, y2, 1.0).as_dict(), "id": box_id, "source": "inspector"}


def remove_label_box(db: sqlite_utils.Database, *, box_id: int, actor: str) -> dict[str, Any]:
    """Remove a box (found or added) so it is not hidden, recorded in ``label_box_edits`` and the audit log; the
    row stays, marked removed. Returns the removed box. Raises PermissionDenied unless ``actor`` may label photos,
    NotFound for an unknown box, InvalidInput for a box already removed."""
    require(db, actor=actor, action="reviews.label")
    now = now_iso()
    with immediate(db):
        image_id, kind, x1, y1, x2, y2, score, source, removed_by = _box_row(db, box_id)
        if removed_by is not None:
            raise InvalidInput(f"this label box was already removed by {removed_by}")
        db.execute("UPDATE label_boxes SET removed_at = ?, removed_by = ? WHERE id = ?", [now, actor, box_id])
        _edit(db, image_id=image_id, box_id=box_id, action="removed", kind=kind, box=(x1, y1, x2, y2), actor=actor,
              now=now)
    return _box_dict(box_id, kind, x1, y1, x2, y2, score, source)


def restore_label_box(db: sqlite_utils.Database, *, box_id: int, actor: str) -> dict[str, Any]:
    """Undo a removal: the box is hidden again, recorded in ``label_box_edits`` (action 'restored') and the audit
    log. Returns the box. Raises PermissionDenied unless ``actor`` may label photos, NotFound for an unknown box,
    InvalidInput for a box that is not removed."""
    require(db, actor=actor, action="reviews.label")
    now = now_iso()
    with immediate(db):
        image_id, kind, x1, y1, x2, y2, score, source, removed_by = _box_row(db, box_id)
        if removed_by is None:
            raise InvalidInput("this label box is not removed: it is hidden already")
        _refuse_copy(db, image_id=image_id, box=(x1, y1, x2, y2), what="nothing restored")
        db.execute("UPDATE label_boxes SET removed_at = NULL, removed_by = NULL WHERE id = ?", [box_id])
        _edit(db, image_id=image_id, box_id=box_id, action="restored", kind=kind, box=(x1, y1, x2, y2), actor=actor,
              now=now)
    return _box_dict(box_id, kind, x1, y1, x2, y2, score, source)


def _box_row(db: sqlite_utils.Database, box_id: int) -> tuple[Any, ...]:
    """(image_id, kind, x1, y1, x2, y2, score, source, removed_by) of a box. Raises NotFound for an unknown box."""
    row = db.execute("SELECT image_id, kind, x1, y1, x2, y2, score, source, removed_by FROM label_boxes WHERE id = ?",
                     [box_id]).fetchone()
    if row is None:
        raise NotFound(f"label box {box_id} does not exist")
    return tuple(row)


def _box_dict(box_id: int, kind: str, x1: float, y1: float, x2: float, y2: float, score: float | None,
              source: str | None) -> dict[str, Any]:
    return {**LabelBox(str(kind), x1, y1, x2, y2, score if score is not None else 1.0).as_dict(), "id": box_id,
            "source": source or "auto"}


def _refuse_copy(db: sqlite_utils.Database, *, image_id: int, box: tuple[float, float, float, float],
                 what: str) -> None:
    """Raises InvalidInput when a box still hidden on the photo has these corners (within SAME_CORNERS)."""
    same = db.execute("SELECT id, kind FROM label_boxes WHERE image_id = ? AND removed_at IS NULL AND abs(x1 - ?) "
                      "< ? AND abs(y1 - ?) < ? AND abs(x2 - ?) < ? AND abs(y2 - ?) < ?",
                      [image_id, *(v for corner in box for v in (corner, SAME_CORNERS))]).fetchone()
    if same is not None:
        x1, y1, x2, y2 = box
        # named by kind and corners: the queue numbers a photo's boxes 1, 2, ... (the row id means nothing there)
        raise InvalidInput(f"a {KIND_NAMES.get(same[1], same[1])} box with these corners already hides the photo "
                           f"at ({x1:g}, {y1:g}, {x2:g}, {y2:g}): {what}")


def _edit(db: sqlite_utils.Database, *, image_id: int, box_id: int, action: str, kind: str,
          box: tuple[float, float, float, float], actor: str, now: str) -> None:
    db.execute("INSERT INTO label_box_edits (image_id, box_id, action, kind, x1, y1, x2, y2, actor, at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [image_id, box_id, action, kind, *box, actor, now])
    record(db, actor=actor, action=f"labels.box_{action}", target=f"image:{image_id}",
           detail={"box": box_id, "kind": kind, "x1": round(box[0], 1), "y1": round(box[1], 1),
                   "x2": round(box[2], 1), "y2": round(box[3], 1)})


def label_box_edits(db: sqlite_utils.Database, *, image_id: int, actor: str) -> list[dict[str, Any]]:
    """A photo's box edits, oldest first: ``{"at", "actor", "action" ('added', 'removed' or 'restored'), "box_id", "kind",
    "x1", "y1", "x2", "y2"}``, corners rounded as ``label_boxes`` rounds them (a box reads the same in both). Raises
    PermissionDenied when ``actor`` may not see reviews."""
    require(db, actor=actor, action="reviews.read")
    return [{**r, **rounded_corners(x1=r["x1"], y1=r["y1"], x2=r["x2"], y2=r["y2"])} for r in db.query(
        "SELECT at, actor, action, box_id, kind, x1, y1, x2, y2 FROM label_box_edits WHERE image_id = ? ORDER BY id",
        [image_id])]
