"""Ingest review batches: a CSV or JSON Lines manifest, a folder, or an S3 prefix.

Every row is validated on its own: a bad row is reported with its line number and reason and the
other rows still load. Re-importing the same batch adds nothing twice (review id + URI, and sha256
within a review). A photo that cannot be read is kept as a failed image with its reason, and is
retried when the batch is imported again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

import sqlite_utils

from services.core import images as imgs
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso, parse_time
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError, InvalidInput
from services.core.images import IMAGE_SUFFIXES
from services.core.jobs import SingleTaskKind
from services.core.storage import ObjectStore
from services.reviews.identifiers import listing_review_id

REQUIRED = ("review_id", "review_type", "image_uris")
OPTIONAL = ("product", "user_id", "submitted_at", "text")
ALIASES = {"images": "image_uris", "image_uri": "image_uris", "uris": "image_uris", "user": "user_id", "type": "review_type"}
READ_THREADS = 8


@dataclass
class Row:
    line: int
    review_id: str
    review_type: str
    image_uris: list[str]
    product: str = ""
    user_id: str = ""
    submitted_at: str = ""
    text: str = ""


@dataclass
class IngestReport:
    rows: int = 0
    reviews_added: int = 0
    images_added: int = 0
    images_failed: int = 0
    images_retried: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"line", "reason"} or {"uri", "reason"}

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "errors": self.errors[:1000], "error_count": len(self.errors)}


# ---------------------------------------------------------------------------------------------------
# parsing


def _decode_text(data: bytes) -> tuple[str, set[int]]:
    """UTF-8 text and the 1-based line numbers that were not valid UTF-8 (decoded with U+FFFD)."""
    try:
        return data.decode("utf-8-sig"), set()
    except UnicodeDecodeError:
        pass
    bad, lines = set(), []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if n == 1 else "utf-8"))
        except UnicodeDecodeError:
            bad.add(n)
            lines.append(raw.decode("utf-8", errors="replace"))
    return "\n".join(lines), bad


def _split_uris(value: Any) -> list[str]:
    """A JSON list, or text with URIs separated by '|' (commas and semicolons may be part of a key)."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [p.strip() for p in str(value or "").split("|") if p.strip()]


def _validate(line: int, raw: dict[str, Any], review_types: Iterable[str]) -> Row:
    """One manifest record -> Row. Raises InvalidInput naming the problem."""
    rec = {ALIASES.get(str(k).strip(), str(k).strip()): v for k, v in raw.items() if k is not None}
    if None in raw:
        raise InvalidInput("more values than columns")
    review_id = str(rec.get("review_id") or "").strip()
    if not review_id:
        raise InvalidInput("review_id is empty")
    review_type = str(rec.get("review_type") or "").strip()
    if review_type not in review_types:
        raise InvalidInput(f"review_type '{review_type}' is not one of {', '.join(sorted(review_types))}")
    uris = _split_uris(rec.get("image_uris"))
    if not uris:
        raise InvalidInput("no image URI given")
    submitted = str(rec.get("submitted_at") or "").strip()
    if submitted:
        try:
            submitted = parse_time(submitted)
        except ValueError:
            raise InvalidInput(f"submitted_at '{submitted}' is not an ISO-8601 date or time") from None
    text = str(rec.get("text") or "")
    if "\ufffd" in text or "\ufffd" in review_id:
        raise InvalidInput("text is not valid UTF-8")
    return Row(line, review_id, review_type, uris, str(rec.get("product") or "").strip(),
               str(rec.get("user_id") or "").strip(), submitted, text)


def parse_manifest(data: bytes, *, name: str, review_types: Iterable[str]) -> tuple[list[Row], list[dict[str, Any]]]:
    """Parse a CSV (.csv) or JSON Lines (.jsonl/.json/.ndjson) manifest into rows and per-line errors.

    Raises InvalidInput when the whole file is unusable (unknown format, missing required columns).
    """
    review_types = set(review_types)
    text, bad_lines = _decode_text(data)
    rows: list[Row] = []
    errors: list[dict[str, Any]] = []
    suffix = PurePosixPath(name.lower()).suffix
    if suffix == ".json" and text.lstrip().startswith("["):
        return _parse_json_array(text, review_types)
    if suffix in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            if n in bad_lines:
                errors.append({"line": n, "reason": "not valid UTF-8"})
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise InvalidInput("a line must be a JSON object")
                rows.append(_validate(n, rec, review_types))
            except json.JSONDecodeError as exc:
                errors.append({"line": n, "reason": f"not valid JSON: {exc.msg}"})
            except InvalidInput as exc:
                errors.append({"line": n, "reason": str(exc)})
        return rows, errors
    if suffix != ".csv":
        raise InvalidInput(f"{name}: manifest must be .csv or .jsonl, not '{suffix or 'no extension'}'")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [ALIASES.get((h or "").strip(), (h or "").strip()) for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidInput(
            f"{name}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}. "
            f"Expected {', '.join(REQUIRED + OPTIONAL)}"
        )
    for rec in reader:
        n = reader.line_num
        if n in bad_lines:
            errors.append({"line": n, "reason": "not valid UTF-8"})
            continue
        try:
            rows.append(_validate(n, rec, review_types))
        except InvalidInput as exc:
            errors.append({"line": n, "reason": str(exc)})
    return rows, errors


def _parse_json_array(text: str, review_types: set[str]) -> tuple[list[Row], list[dict[str, Any]]]:
    """A .json file holding one array of review objects; errors name the record's position."""
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON at line {exc.lineno}: {exc.msg} (or use JSON Lines: one object per line)") from None
    rows, errors = [], []
    for n, rec in enumerate(records, start=1):
        try:
            if not isinstance(rec, dict):
                raise InvalidInput("each record must be a JSON object")
            rows.append(_validate(n, rec, review_types))
        except InvalidInput as exc:
            errors.append({"line": n, "reason": f"record {n}: {exc}"})
    return rows, errors


def rows_from_listing(prefix_uri: str, *, store: ObjectStore, review_type: str) -> Iterator[Row]:
    """One review per photo under a folder or S3 prefix; the review id is neutral (``listing_review_id``: a server
    path would tell an inspector the answer), the same on every import."""
    for n, obj in enumerate(store.list(prefix_uri, suffixes=IMAGE_SUFFIXES), start=1):
        yield Row(n, listing_review_id(obj.uri), review_type, [obj.uri])


# ---------------------------------------------------------------------------------------------------
# loading


def _read_and_hash(store: ObjectStore, uri: str, max_pixels: int) -> tuple[str | None, int, int, int, str | None]:
    """(sha256, size, width, height, error) for one photo; never raises for a bad photo."""
    try:
        data = store.read(uri)
        sha = hashlib.sha256(data).hexdigest()
        w, h, _ = imgs.probe(data, max_pixels=max_pixels)
        return sha, len(data), w, h, None
    except ConsoleError as exc:
        return None, 0, 0, 0, str(exc)


def ingest_rows(
    db: sqlite_utils.Database, *, rows: Iterable[Row], store: ObjectStore, batch: str, actor: str, chunk: int = 2000
) -> IngestReport:
    """Load validated rows; returns counts and per-photo errors. Raises PermissionDenied unless ``actor`` may
    run jobs (ingesting is one)."""
    require(db, actor=actor, action="jobs.manage")
    report = IngestReport()
    max_pixels = get_settings(db)["max_pixels"]
    buf: list[Row] = []
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="ingest") as pool:
        for row in rows:
            buf.append(row)
            if len(buf) >= chunk:
                _load_chunk(db, buf, store, pool, batch, max_pixels, report)
                buf = []
        if buf:
            _load_chunk(db, buf, store, pool, batch, max_pixels, report)
    record(db, actor=actor, action="ingest", target=batch, detail={k: v for k, v in report.as_dict().items() if k != "errors"})
    return report


def _load_chunk(db, rows, store, pool, batch, max_pixels, report) -> None:  # type: ignore[no-untyped-def]
    report.rows += len(rows)
    ids = list({r.review_id for r in rows})
    known: dict[tuple[str, str], str] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        for rid, uri, status in db.execute(
            f"SELECT review_id, uri, status FROM images WHERE review_id IN ({','.join('?' * len(part))})", part
        ):
            known[(rid, uri)] = status
    todo: dict[str, None] = {}
    for r in rows:
        for uri in r.image_uris:
            if known.get((r.review_id, uri)) in (None, "failed"):
                todo[uri] = None
    cache: dict[str, tuple] = {}
    for uri, res in zip(todo, pool.map(lambda u: _read_and_hash(store, u, max_pixels), list(todo))):
        cache[uri] = res
    now = now_iso()
    seen: set[tuple[str, str]] = set()  # (review, URI) already handled in this chunk: a repeat is a duplicate
    with db.atomic():
        for r in rows:
            cur = db.execute(
                "INSERT OR IGNORE INTO reviews (id, review_type, product, user_id, submitted_at, text, batch, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [r.review_id, r.review_type, r.product, r.user_id, r.submitted_at or now, r.text, batch, now],
            )
            report.reviews_added += cur.rowcount
            for uri in r.image_uris:
                status = known.get((r.review_id, uri))
                if (status is not None and status != "failed") or (r.review_id, uri) in seen:
                    report.duplicates += 1
                    continue
                seen.add((r.review_id, uri))
                sha, size, w, h, error = cache[uri]
                if status == "failed" and sha and db.execute(
                    "SELECT 1 FROM images WHERE review_id = ? AND sha256 = ? AND uri != ?", [r.review_id, sha, uri]
                ).fetchone():
                    # readable now, and the same bytes as another photo of this review: keep the photo once
                    # (as a first import would), instead of breaking the unique (review, sha256) index
                    db.execute("DELETE FROM images WHERE review_id = ? AND uri = ?", [r.review_id, uri])
                    report.duplicates += 1
                    continue
                if status == "failed":
                    report.images_retried += 1
                    db.execute(
                        "UPDATE images SET sha256 = ?, size = ?, width = ?, height = ?, status = ?, error = ? "
                        "WHERE review_id = ? AND uri = ?",
                        [sha, size, w, h, "failed" if error else "pending", error, r.review_id, uri],
                    )
                else:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO images (review_id, uri, sha256, size, width, height, status, error, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [r.review_id, uri, sha, size, w, h, "failed" if error else "pending", error, now],
                    )
                    if cur.rowcount == 0:  # same bytes already in this review under another URI
                        report.duplicates += 1
                        continue
                    report.images_added += 1
                known[(r.review_id, uri)] = "failed" if error else "pending"
                if error:
                    report.images_failed += 1
                    report.errors.append({"line": r.line, "uri": uri, "reason": error})


def ingest_manifest(db: sqlite_utils.Database, *, uri: str, store: ObjectStore, actor: str) -> IngestReport:
    """Ingest a manifest file (local or s3://). Raises InvalidInput/StorageError/NotFound for the file itself."""
    require(db, actor=actor, action="jobs.manage")
    data = store.read(uri)
    rows, errors = parse_manifest(data, name=uri, review_types=get_settings(db)["credit_rules"].keys())
    report = ingest_rows(db, rows=rows, store=store, batch=uri, actor=actor)
    report.rows += len(errors)
    report.errors = errors + report.errors
    return report


def ingest_listing(
    db: sqlite_utils.Database, *, prefix_uri: str, store: ObjectStore, review_type: str, actor: str
) -> IngestReport:
    """Ingest every photo under a folder or S3 prefix as a review of ``review_type``, one per photo.

    Raises InvalidInput for an unknown review type, NotFound/StorageError for the folder or bucket.
    """
    require(db, actor=actor, action="jobs.manage")
    types = get_settings(db)["credit_rules"].keys()
    if review_type not in types:
        raise InvalidInput(f"review type '{review_type}' is not one of {', '.join(sorted(types))}")
    rows = list(rows_from_listing(prefix_uri, store=store, review_type=review_type))
    for part in range(0, len(rows), 500):  # reviews imported before neutral ids kept their path as id: not twice
        uris = [r.image_uris[0] for r in rows[part:part + 500]]
        old = {r[0] for r in db.execute(f"SELECT id FROM reviews WHERE id IN ({','.join('?' * len(uris))})", uris)}
        for n in range(part, min(part + 500, len(rows))):
            if rows[n].image_uris[0] in old:
                rows[n] = replace(rows[n], review_id=rows[n].image_uris[0])
    return ingest_rows(db, rows=rows, store=store, batch=prefix_uri, actor=actor)


class IngestKind(SingleTaskKind):
    """Ingest as a background job: a manifest, or a folder or prefix of photos."""

    name = "ingest"

    def items_for(self, ctx: Any) -> list[str]:
        source = ctx.params.get("manifest") or ctx.params.get("prefix")
        if not source:
            raise InvalidInput("an ingest job needs a manifest or a folder/S3 prefix to read: neither was given")
        return [source]

    def run(self, ctx: Any, item: str) -> dict[str, Any]:
        store = object_store(ctx.db)
        if ctx.params.get("manifest"):
            report = ingest_manifest(ctx.db, uri=item, store=store, actor=ctx.actor)
        else:
            report = ingest_listing(ctx.db, prefix_uri=item, store=store,
                                    review_type=ctx.params.get("review_type", "product"), actor=ctx.actor)
        return report.as_dict()
