"""services.reviews.ingest: manifests (CSV, JSON Lines), folders and S3 prefixes into a real workspace database."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import pytest
from PIL import Image

from services.core.errors import InvalidInput, NotFound
from services.core.jobs import create_job, failed_items, get_job, run_job
from services.core.storage import ObjectStore
from services.reviews.identifiers import listing_review_id, shown_review_id
from services.reviews.ingest import Row, ingest_listing, ingest_manifest, ingest_rows, parse_manifest

TYPES = ("product", "style")
HEADER = "review_id,review_type,image_uris,product,user_id,submitted_at,text\n"


def photo_bytes(color: tuple[int, int, int], size=(48, 32), fmt="JPEG") -> bytes:
    img = Image.new("RGB", size, color)
    img.paste((color[2], color[0], color[1]), (0, 0, size[0] // 2, size[1] // 2))  # not a flat colour
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def jsonl(*records: dict) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def counts(db) -> dict[str, int]:
    return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("reviews", "images")}


def image(db, review_id: str, uri: str) -> dict | None:
    rows = list(db.query("SELECT * FROM images WHERE review_id = ? AND uri = ?", [review_id, uri]))
    return rows[0] if rows else None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# parse_manifest


def test_csv_bad_rows_are_reported_with_line_and_reason_good_rows_load() -> None:
    data = (
        HEADER
        + "r1,product,a.jpg,shoe,u1,2024-05-01T10:00:00Z,nice\n"  # 2 ok
        + ",product,b.jpg,,,,\n"  # 3 empty id
        + "r3,selfie,c.jpg,,,,\n"  # 4 unknown type
        + "r4,product,,,,,\n"  # 5 no URIs
        + "r5,product,d.jpg,,,yesterday,\n"  # 6 bad date
        + "r6,style,e.jpg|f.jpg,,,2024-05-01,\n"  # 7 ok, two URIs
        + "r7,product,g.jpg,p,u,2024-05-01,text,EXTRA\n"  # 8 extra value
        + '"r8",product," h.jpg | i.jpg |",,,2024-05-01T12:00:00+02:00,"multi\nline"\n'  # 9-10 ok
    ).encode()
    rows, errors = parse_manifest(data, name="batch.csv", review_types=TYPES)
    assert [r.review_id for r in rows] == ["r1", "r6", "r8"]
    assert [r.line for r in rows] == [2, 7, 10]
    r1, r6, r8 = rows
    assert (r1.review_type, r1.image_uris, r1.product, r1.user_id, r1.text) == ("product", ["a.jpg"], "shoe", "u1", "nice")
    assert r1.submitted_at == "2024-05-01T10:00:00.000000Z"
    assert r6.image_uris == ["e.jpg", "f.jpg"] and r6.submitted_at == "2024-05-01T00:00:00.000000Z"
    assert r8.image_uris == ["h.jpg", "i.jpg"] and r8.submitted_at == "2024-05-01T10:00:00.000000Z"
    assert r8.text == "multi\nline"
    reasons = {e["line"]: e["reason"] for e in errors}
    assert set(reasons) == {3, 4, 5, 6, 8}
    assert reasons[3] == "review_id is empty"
    assert "'selfie'" in reasons[4] and "product, style" in reasons[4]
    assert reasons[5] == "no image URI given"
    assert "'yesterday'" in reasons[6] and "ISO-8601" in reasons[6]
    assert "more values than columns" in reasons[8]


def test_jsonl_bad_lines_are_reported_good_lines_load() -> None:
    lines = [
        json.dumps({"review_id": "j1", "review_type": "product", "image_uris": ["a.jpg", "b.jpg"]}),  # 1 ok
        "{not json",  # 2
        json.dumps(["j3", "product", "c.jpg"]),  # 3 array
        "",  # 4 blank: skipped, not an error
        json.dumps({"review_id": "  ", "review_type": "product", "image_uris": "d.jpg"}),  # 5 empty id
        json.dumps({"review_id": "j6", "review_type": "Product", "image_uris": "e.jpg"}),  # 6 type is case-sensitive
        json.dumps({"review_id": "j7", "review_type": "style", "image_uris": []}),  # 7 no URIs
        json.dumps({"review_id": "j8", "review_type": "style", "image_uris": "f.jpg", "submitted_at": "31/12/2024"}),
        json.dumps({"review_id": 9, "type": "style", "images": "g.jpg|h.jpg", "user": "u9"}),  # 9 aliases, numeric id
        "42",  # 10 scalar
    ]
    rows, errors = parse_manifest("\n".join(lines).encode(), name="s3://bucket/in/batch.JSONL", review_types=TYPES)
    assert [(r.line, r.review_id, r.image_uris) for r in rows] == [(1, "j1", ["a.jpg", "b.jpg"]), (9, "9", ["g.jpg", "h.jpg"])]
    assert rows[1].review_type == "style" and rows[1].user_id == "u9"
    reasons = {e["line"]: e["reason"] for e in errors}
    assert set(reasons) == {2, 3, 5, 6, 7, 8, 10}
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == reasons[10] == "a line must be a JSON object"
    assert reasons[5] == "review_id is empty"
    assert "'Product'" in reasons[6]
    assert reasons[7] == "no image URI given"
    assert "'31/12/2024'" in reasons[8]


@pytest.mark.parametrize("name", ["batch.csv", "batch.jsonl"])
def test_a_latin1_line_is_reported_the_others_load(name: str) -> None:
    if name.endswith(".csv"):
        data = HEADER.encode() + b"r1,product,a.jpg,,,,ok\n" + b"r2,product,b.jpg,,,,caf\xe9\n" + b"r3,style,c.jpg,,,,\xc3\xa9t\xc3\xa9\n"
        bad_line = 3
    else:
        def rec(rid, text):
            return b'{"review_id": "' + rid + b'", "review_type": "product", "image_uris": "x.jpg", "text": "' + text + b'"}'

        data = b"\n".join([rec(b"r1", b"ok"), rec(b"r2", b"caf\xe9"), rec(b"r3", b"\xc3\xa9t\xc3\xa9")])
        bad_line = 2
    rows, errors = parse_manifest(data, name=name, review_types=TYPES)
    assert [r.review_id for r in rows] == ["r1", "r3"]
    assert rows[1].text == "été"
    assert errors == [{"line": bad_line, "reason": "not valid UTF-8"}]


def test_csv_with_bom_crlf_and_aliases() -> None:
    data = "\ufeffreview_id,type,images,user\r\nr1,product,a.jpg|b.jpg,u1\r\nr2,style,c.jpg,u2\r\n".encode()
    rows, errors = parse_manifest(data, name="B.CSV", review_types=TYPES)
    assert errors == []
    assert [(r.review_id, r.review_type, r.image_uris, r.user_id) for r in rows] == [
        ("r1", "product", ["a.jpg", "b.jpg"], "u1"),
        ("r2", "style", ["c.jpg"], "u2"),
    ]


def test_commas_and_semicolons_stay_inside_a_uri() -> None:
    data = b'review_id,review_type,image_uris\nr1,product,"s3://b/photo,1;v2.jpg|s3://b/x.jpg"\n'
    rows, errors = parse_manifest(data, name="m.csv", review_types=TYPES)
    assert errors == [] and rows[0].image_uris == ["s3://b/photo,1;v2.jpg", "s3://b/x.jpg"]


def test_json_array_file_loads_and_names_bad_records() -> None:
    data = b'[\n {"review_id": "r1", "review_type": "product", "image_uris": ["a.jpg"]},\n {"review_id": ""},\n 7\n]'
    rows, errors = parse_manifest(data, name="batch.json", review_types=TYPES)
    assert [r.review_id for r in rows] == ["r1"]
    assert [e["line"] for e in errors] == [2, 3] and "record 2: review_id is empty" in errors[0]["reason"]
    with pytest.raises(InvalidInput, match="JSON Lines"):
        parse_manifest(b"[{", name="batch.json", review_types=TYPES)


def test_csv_missing_column_names_it_and_the_found_ones() -> None:
    data = b"review_id,review_type,photo\nr1,product,a.jpg\n"
    with pytest.raises(InvalidInput) as info:
        parse_manifest(data, name="batch.csv", review_types=TYPES)
    msg = str(info.value)
    assert "batch.csv" in msg and "missing column(s) image_uris" in msg
    assert "found review_id, review_type, photo" in msg


def test_empty_csv_says_there_is_no_header() -> None:
    with pytest.raises(InvalidInput, match="no header"):
        parse_manifest(b"", name="batch.csv", review_types=TYPES)


@pytest.mark.parametrize("name, shown", [("batch.txt", "'.txt'"), ("batch", "no extension"), ("batch.xlsx", "'.xlsx'")])
def test_unknown_manifest_extension(name: str, shown: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_manifest(HEADER.encode(), name=name, review_types=TYPES)
    assert shown in str(info.value) and ".csv or .jsonl" in str(info.value)


def test_multiple_uris_as_csv_pipe_and_json_list() -> None:
    rows, _ = parse_manifest((HEADER + "r1,product,s3://b/a.jpg|s3://b/b.jpg|s3://b/c.jpg,,,,\n").encode(),
                             name="m.csv", review_types=TYPES)
    assert rows[0].image_uris == ["s3://b/a.jpg", "s3://b/b.jpg", "s3://b/c.jpg"]
    rows, _ = parse_manifest(jsonl({"review_id": "r1", "review_type": "product", "image_uris": ["s3://b/a.jpg", " ", "s3://b/b.jpg"]}),
                             name="m.ndjson", review_types=TYPES)
    assert rows[0].image_uris == ["s3://b/a.jpg", "s3://b/b.jpg"]


# --------------------------------------------------------------------------------------------------
# ingest_manifest / ingest_rows into a real workspace


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, str]:
    """Real photo files plus broken ones; values are their paths (URIs)."""
    d = tmp_path / "photos"
    return {
        "red": write(d / "red.jpg", photo_bytes((200, 20, 20))),
        "green": write(d / "green.png", photo_bytes((20, 200, 20), fmt="PNG")),
        "blue": write(d / "blue.webp", photo_bytes((20, 20, 200), fmt="WEBP")),
        "red_copy": write(d / "copy of red.jpg", photo_bytes((200, 20, 20))),
        "corrupt": write(d / "corrupt.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3),
        "empty": write(d / "empty.jpg", b""),
        "text": write(d / "notes.jpg", b"just some text, saved with the wrong name\n"),
        "missing": str(d / "missing.jpg"),
    }


def _manifest(tmp_path: Path, records: list[dict], name: str = "batch.jsonl") -> str:
    return write(tmp_path / name, jsonl(*records))


def test_ingest_manifest_loads_good_rows_and_reimport_adds_nothing(db, tmp_path: Path, photos: dict[str, str]) -> None:
    uri = _manifest(tmp_path, [
        {"review_id": "r1", "review_type": "product", "image_uris": [photos["red"], photos["green"]], "product": "mug",
         "user_id": "u1", "submitted_at": "2024-03-01T09:00:00Z", "text": "great"},
        {"review_id": "r2", "review_type": "style", "image_uris": photos["blue"]},
        {"review_id": "r3", "review_type": "nope", "image_uris": photos["blue"]},
    ])
    report = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="alice")
    assert (report.rows, report.reviews_added, report.images_added, report.images_failed, report.duplicates) == (3, 2, 3, 0, 0)
    assert report.errors == [{"line": 3, "reason": "review_type 'nope' is not one of product, style"}]
    assert counts(db) == {"reviews": 2, "images": 3}
    review = db["reviews"].get("r1")
    assert (review["review_type"], review["product"], review["user_id"], review["text"], review["batch"]) == (
        "product", "mug", "u1", "great", uri)
    assert review["submitted_at"] == "2024-03-01T09:00:00.000000Z"
    red = image(db, "r1", photos["red"])
    assert red["status"] == "pending" and red["error"] is None
    assert (red["width"], red["height"], red["size"]) == (48, 32, Path(photos["red"]).stat().st_size)
    assert len(red["sha256"]) == 64
    audit = list(db.query("SELECT * FROM audit_log WHERE action = 'ingest'"))
    assert len(audit) == 1 and audit[0]["actor"] == "alice" and audit[0]["target"] == uri

    snapshot = list(db.query("SELECT * FROM images ORDER BY id"))
    again = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="alice")
    assert (again.rows, again.reviews_added, again.images_added, again.images_failed, again.images_retried) == (3, 0, 0, 0, 0)
    assert again.duplicates == 3
    assert again.errors == report.errors
    assert counts(db) == {"reviews": 2, "images": 3}
    assert list(db.query("SELECT * FROM images ORDER BY id")) == snapshot


def test_same_bytes_twice_in_one_review_is_stored_once(db, tmp_path: Path, photos: dict[str, str]) -> None:
    uri = _manifest(tmp_path, [
        {"review_id": "r1", "review_type": "product", "image_uris": [photos["red"], photos["red_copy"], photos["green"]]},
        {"review_id": "r2", "review_type": "product", "image_uris": [photos["red_copy"]]},  # another review: kept
    ])
    report = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (report.images_added, report.duplicates, report.images_failed) == (3, 1, 0)
    assert [r["uri"] for r in db.query("SELECT uri FROM images WHERE review_id = 'r1' ORDER BY id")] == [photos["red"], photos["green"]]
    assert image(db, "r2", photos["red_copy"])["sha256"] == image(db, "r1", photos["red"])["sha256"]
    again = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (again.images_added, again.duplicates) == (0, 4)
    assert counts(db) == {"reviews": 2, "images": 3}


def test_same_uri_twice_is_one_image(db, photos: dict[str, str]) -> None:
    rows = [Row(1, "r1", "product", [photos["red"], photos["red"], photos["missing"], photos["missing"]]),
            Row(2, "r1", "product", [photos["missing"]])]
    report = ingest_rows(db, rows=rows, store=ObjectStore(), batch="b", actor="t")
    assert (report.images_added, report.images_failed, report.images_retried, report.duplicates) == (2, 1, 0, 3)
    assert len(report.errors) == 1
    assert counts(db) == {"reviews": 1, "images": 2}


def test_unreadable_photos_are_failed_with_reasons_others_load(db, tmp_path: Path, photos: dict[str, str]) -> None:
    uri = _manifest(tmp_path, [
        {"review_id": "ok", "review_type": "product", "image_uris": [photos["red"]]},
        {"review_id": "mixed", "review_type": "style",
         "image_uris": [photos["missing"], photos["green"], photos["corrupt"], photos["empty"], photos["text"]]},
        {"review_id": "ok2", "review_type": "style", "image_uris": [photos["blue"]]},
    ])
    report = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (report.reviews_added, report.images_added, report.images_failed) == (3, 7, 4)
    by_uri = {e["uri"]: e for e in report.errors}
    assert set(by_uri) == {photos["missing"], photos["corrupt"], photos["empty"], photos["text"]}
    assert all(e["line"] == 2 for e in report.errors)
    assert "not found" in by_uri[photos["missing"]]["reason"] and photos["missing"] in by_uri[photos["missing"]]["reason"]
    assert "empty" in by_uri[photos["empty"]]["reason"]
    assert "not an image" in by_uri[photos["text"]]["reason"]
    assert by_uri[photos["corrupt"]]["reason"]
    for name in ("missing", "corrupt", "empty", "text"):
        row = image(db, "mixed", photos[name])
        assert row["status"] == "failed" and row["error"] == by_uri[photos[name]]["reason"] and row["sha256"] is None
    for rid, name in (("ok", "red"), ("mixed", "green"), ("ok2", "blue")):
        assert image(db, rid, photos[name])["status"] == "pending"
    assert report.as_dict()["error_count"] == 4

    # importing again retries the failed ones (still failing) and adds nothing
    again = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (again.reviews_added, again.images_added, again.images_retried, again.images_failed) == (0, 0, 4, 4)
    assert counts(db) == {"reviews": 3, "images": 7}


def test_reimport_after_the_missing_file_appears_retries_it(db, tmp_path: Path, photos: dict[str, str]) -> None:
    uri = _manifest(tmp_path, [{"review_id": "r1", "review_type": "product", "image_uris": [photos["red"], photos["missing"]]}])
    first = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (first.images_added, first.images_failed) == (2, 1)
    failed = image(db, "r1", photos["missing"])
    assert failed["status"] == "failed" and "not found" in failed["error"]

    write(Path(photos["missing"]), photo_bytes((90, 90, 10)))
    second = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (second.images_retried, second.images_failed, second.images_added, second.duplicates) == (1, 0, 0, 1)
    assert second.errors == []
    fixed = image(db, "r1", photos["missing"])
    assert fixed["id"] == failed["id"]
    assert fixed["status"] == "pending" and fixed["error"] is None and fixed["sha256"] and fixed["width"] == 48
    third = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (third.images_retried, third.images_added, third.duplicates) == (0, 0, 2)
    assert counts(db) == {"reviews": 1, "images": 2}


def test_retried_photo_with_the_same_bytes_as_another_is_kept_once(db, tmp_path: Path, photos: dict[str, str]) -> None:
    """The missing file turns up as a copy of a photo already in the review: no crash, nothing else lost."""
    uri = _manifest(tmp_path, [
        {"review_id": "r1", "review_type": "product", "image_uris": [photos["red"], photos["missing"]]},
        {"review_id": "r2", "review_type": "product", "image_uris": [photos["green"]]},
    ])
    ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    Path(photos["missing"]).write_bytes(Path(photos["red"]).read_bytes())
    again = ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t")
    assert (again.images_failed, again.images_retried, again.images_added, again.duplicates) == (0, 0, 0, 3)
    assert [r["uri"] for r in db.query("SELECT uri FROM images WHERE review_id = 'r1'")] == [photos["red"]]
    assert image(db, "r2", photos["green"])["status"] == "pending"
    assert ingest_manifest(db, uri=uri, store=ObjectStore(), actor="t").duplicates == 3


def test_rows_across_chunks(db, photos: dict[str, str]) -> None:
    rows = [Row(1, "r1", "product", [photos["red"]]), Row(2, "r1", "product", [photos["red_copy"]]),
            Row(3, "r2", "style", [photos["missing"]]), Row(4, "r2", "style", [photos["green"]])]
    report = ingest_rows(db, rows=rows, store=ObjectStore(), batch="b", actor="t", chunk=1)
    assert (report.rows, report.reviews_added, report.images_added, report.images_failed, report.duplicates) == (4, 2, 3, 1, 1)


def test_missing_manifest_is_not_found(db, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="nothing-here.csv"):
        ingest_manifest(db, uri=str(tmp_path / "nothing-here.csv"), store=ObjectStore(), actor="t")
    assert counts(db) == {"reviews": 0, "images": 0}


def test_ingest_job_reports_counts_and_a_bad_manifest_as_a_failed_item(ws, db, tmp_path: Path, photos: dict[str, str]) -> None:
    uri = _manifest(tmp_path, [{"review_id": "r1", "review_type": "product", "image_uris": [photos["red"], photos["missing"]]}])
    job = create_job(db, kind="ingest", params={"manifest": uri}, actor="t")
    assert run_job(ws, job_id=job) == job
    done = get_job(db, job)
    assert (done["state"], done["done"], done["failed"]) == ("done", 1, 0)
    assert (done["result"]["images_added"], done["result"]["images_failed"]) == (2, 1)

    write(tmp_path / "batch.txt", b"review_id\n")
    bad = create_job(db, kind="ingest", params={"manifest": str(tmp_path / "batch.txt")}, actor="t")
    run_job(ws, job_id=bad)
    job_row = get_job(db, bad)
    assert (job_row["state"], job_row["failed"]) == ("failed", 1)
    assert "must be .csv or .jsonl" in job_row["error"]
    [item] = failed_items(db, bad)
    assert "must be .csv or .jsonl" in item["error"]


def test_ingest_job_without_a_source_fails_with_a_clear_message(ws, db) -> None:
    job = create_job(db, kind="ingest", params={}, actor="t")
    run_job(ws, job_id=job)
    row = get_job(db, job)
    assert row["state"] == "failed"
    assert row["error"] == "an ingest job needs a manifest or a folder/S3 prefix to read: neither was given"


def test_ingest_job_over_a_folder(ws, db, tmp_path: Path) -> None:
    write(tmp_path / "drop" / "a.jpg", photo_bytes((5, 50, 150)))
    job = create_job(db, kind="ingest", params={"prefix": str(tmp_path / "drop"), "review_type": "style"}, actor="t")
    run_job(ws, job_id=job)
    row = get_job(db, job)
    assert (row["state"], row["done"], row["result"]["images_added"]) == ("done", 1, 1)
    assert db.execute("SELECT review_type FROM reviews").fetchone()[0] == "style"


# --------------------------------------------------------------------------------------------------
# ingest_listing: folders and S3 prefixes


def test_ingest_listing_folder_one_review_per_photo(db, tmp_path: Path) -> None:
    root = tmp_path / "drop"
    a = write(root / "a.jpg", photo_bytes((10, 100, 200)))
    b = write(root / "sub" / "B.PNG", photo_bytes((100, 10, 200), fmt="PNG"))
    bad = write(root / "broken.jpeg", b"nope")
    write(root / "notes.txt", b"not a photo")
    write(root / "manifest.csv", HEADER.encode())
    write(root / ".hidden.jpg", photo_bytes((1, 1, 1)))
    report = ingest_listing(db, prefix_uri=str(root), store=ObjectStore(), review_type="style", actor="t")
    assert (report.rows, report.reviews_added, report.images_added, report.images_failed) == (3, 3, 3, 1)
    reviews = {r["id"]: r for r in db.query("SELECT * FROM reviews")}
    ids = {uri: listing_review_id(uri) for uri in (a, b, bad)}  # neutral: a path would give the label away
    assert set(reviews) == set(ids.values()) and all(i.startswith("photo-") and len(i) == 18 for i in reviews)
    assert {r["review_type"] for r in reviews.values()} == {"style"} and reviews[ids[a]]["batch"] == str(root)
    assert [r["uri"] for r in db.query("SELECT uri FROM images WHERE review_id = ?", [ids[a]])] == [a]
    assert image(db, ids[bad], bad)["status"] == "failed"
    again = ingest_listing(db, prefix_uri=str(root), store=ObjectStore(), review_type="style", actor="t")
    assert (again.reviews_added, again.images_added, again.duplicates) == (0, 0, 2)
    assert counts(db) == {"reviews": 3, "images": 3}


def test_a_folder_imported_before_neutral_ids_is_not_imported_twice(db, tmp_path: Path) -> None:
    """Issue 20 item 2: reviews that kept their path as id (imported before neutral ids) are matched by it, so
    importing the folder again adds nothing; the console shows them by the neutral id."""
    root = tmp_path / "drop"
    a, b = write(root / "a.jpg", photo_bytes((10, 100, 200))), write(root / "b.jpg", photo_bytes((200, 100, 10)))
    ingest_rows(db, rows=[Row(1, a, "style", [a])], store=ObjectStore(), batch=str(root), actor="t")  # the old way
    again = ingest_listing(db, prefix_uri=str(root), store=ObjectStore(), review_type="style", actor="t")
    assert (again.reviews_added, again.images_added) == (1, 1)
    assert {r[0] for r in db.execute("SELECT id FROM reviews")} == {a, listing_review_id(b)}
    assert shown_review_id(a) == listing_review_id(a) and shown_review_id("R-17") == "R-17"


def test_ingest_listing_bad_type_or_folder(db, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="review type 'selfie' is not one of product, style"):
        ingest_listing(db, prefix_uri=str(tmp_path), store=ObjectStore(), review_type="selfie", actor="t")
    with pytest.raises(NotFound, match="no-such-folder"):
        ingest_listing(db, prefix_uri=str(tmp_path / "no-such-folder"), store=ObjectStore(), review_type="product", actor="t")
    assert counts(db) == {"reviews": 0, "images": 0}


def test_ingest_listing_s3_prefix(db, s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    store.write(f"s3://{bucket}/batch1/a.jpg", photo_bytes((200, 0, 0)))
    store.write(f"s3://{bucket}/batch1/deep/b.webp", photo_bytes((0, 200, 0), fmt="WEBP"))
    store.write(f"s3://{bucket}/batch1/zero.jpg", b"")
    store.write(f"s3://{bucket}/batch1/readme.md", b"# not a photo")
    store.write(f"s3://{bucket}/batch10/other.jpg", photo_bytes((0, 0, 200)))  # a sibling prefix, not under batch1/
    report = ingest_listing(db, prefix_uri=f"s3://{bucket}/batch1", store=store, review_type="product", actor="t")
    assert (report.rows, report.images_added, report.images_failed) == (3, 3, 1)
    assert {r["id"] for r in db.query("SELECT id FROM reviews")} == {listing_review_id(f"s3://{bucket}/batch1/{k}")
                                                                     for k in ("a.jpg", "deep/b.webp", "zero.jpg")}
    ok = image(db, listing_review_id(f"s3://{bucket}/batch1/a.jpg"), f"s3://{bucket}/batch1/a.jpg")
    assert ok["status"] == "pending" and ok["width"] == 48
    zero = image(db, listing_review_id(f"s3://{bucket}/batch1/zero.jpg"), f"s3://{bucket}/batch1/zero.jpg")
    assert zero["status"] == "failed" and "empty" in zero["error"]
    again = ingest_listing(db, prefix_uri=f"s3://{bucket}/batch1/", store=store, review_type="product", actor="t")
    assert (again.reviews_added, again.images_added) == (0, 0)
    assert counts(db) == {"reviews": 3, "images": 3}


def test_ingest_manifest_from_s3(db, s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    store.write(f"s3://{bucket}/p/1.jpg", photo_bytes((9, 9, 200)))
    manifest = f"s3://{bucket}/manifests/m.csv"
    store.write(manifest, (HEADER + f"r1,product,s3://{bucket}/p/1.jpg|s3://{bucket}/p/gone.jpg,,,,\n").encode())
    report = ingest_manifest(db, uri=manifest, store=store, actor="t")
    assert (report.images_added, report.images_failed) == (2, 1)
    assert "not found" in report.errors[0]["reason"] and report.errors[0]["uri"] == f"s3://{bucket}/p/gone.jpg"


def test_ingest_listing_missing_bucket_is_not_found(db, s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    missing = f"{bucket}-does-not-exist"
    with pytest.raises(NotFound) as info:
        ingest_listing(db, prefix_uri=f"s3://{missing}/photos/", store=store, review_type="product", actor="t")
    assert "bucket not found" in str(info.value) and missing in str(info.value)
    assert counts(db) == {"reviews": 0, "images": 0}


def test_photo_on_a_dead_s3_endpoint_fails_that_image_only(db, photos: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = ObjectStore(endpoint_url=endpoint, max_attempts=1, connect_timeout=1, read_timeout=1)
    rows = [Row(1, "local", "product", [photos["red"]]),
            Row(2, "remote", "product", ["s3://photos/r/1.jpg", photos["green"]]),
            Row(3, "local2", "style", [photos["blue"]])]
    report = ingest_rows(db, rows=rows, store=store, batch="b", actor="t")
    assert (report.reviews_added, report.images_added, report.images_failed) == (3, 4, 1)
    [err] = report.errors
    assert err["line"] == 2 and err["uri"] == "s3://photos/r/1.jpg"
    assert "cannot reach the S3 endpoint" in err["reason"] and endpoint in err["reason"]
    assert image(db, "remote", "s3://photos/r/1.jpg")["status"] == "failed"
    assert image(db, "remote", photos["green"])["status"] == "pending"
    assert image(db, "local", photos["red"])["status"] == "pending"
