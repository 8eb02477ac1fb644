"""Queue latency at 1,000,000 images: claim-next plus decide, and the queue page's server-side render.

    python benchmarks/queue_latency.py [--quick] [--images N] [--ops M] [--threads-ops M] [--rebuild] [--profile]

The workspace is built once with bulk inserts into the app's real tables (migrated by
``Workspace.open(...).db()``, no extra indexes) and cached in benchmarks/out/queue_ws_<N>/, keyed by N,
the build parameters and the applied migrations. Every run works on a fresh copy of that database
(benchmarks/out/queue_ws_<N>_run/), so runs start from the same state. Photos: 50 small distinct JPEGs
in the workspace's objects folder, shared by all images (each image has its own synthetic sha256).

States, as the classify job leaves them: about 78% decided (automatically, plus the inspectors' history
below), 2% audit (an automatic decision, still queued), 19% queued low_confidence, 1% queued no_model
(no prediction). History: ``--history`` answers (default N/20) by 20 inspectors: single answers with
their decisions, overlap photos answered by three with a consensus, gold items and gold answers, the
claim/answer events and audit entries, and the inspectors' reliability estimated by the real service.

Timed: 8 inspectors round-robin from one process, each with its own connection, doing
``services.hitl.queue.claim_next`` then ``services.hitl.answers.submit`` (the headline p50/p95). Like the queue
page, each inspector holds the claim of the photo on screen between turns, so a pair is that photo's
claim (timed at the inspector's previous turn) plus its submit. Then 8 real threads doing the same at
once, without pauses (contention, reported separately as conc_*); then the queue page through AppTest
(page_first_render_s, page_render_s: median of 5 reruns, page_decide_next_s: a number-key button, i.e.
submit + the next claim + render). Settings stay at their defaults (overlap_rate 0.1, gold_rate 0.05).
``--profile`` adds EXPLAIN QUERY PLAN for one operation's statements and per-statement times.
The last line is one JSON object (images, p50_ms, p95_ms, page_render_s, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from common import OUT, ROOT, cpu_ticks, others_share

BUILD_VERSION = 1  # bump when the generated data changes
SEED = 20260301
N_INSPECTORS = 20
N_PHOTOS = 50
CLASS_P = (0.15, 0.45, 0.25, 0.15)  # package, product, full_length, half_length
DAYS = 60
GOAL_P95_MS, GOAL_RENDER_S = 20.0, 0.5
BULK_TABLES = ("reviews", "images", "predictions", "decisions", "answers", "queue_events", "audit_log",
               "gold_items", "consensus", "queue_snapshots")


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (numpy's linear interpolation), in the values' unit; NaN for no values."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def ms(values: list[float], q: float) -> float:
    return round(pct(values, q) * 1000, 2)


# ------------------------------------------------------------------------------------------ build


def fingerprint(n: int, history: int, gold: int) -> dict[str, Any]:
    from db.migrations import MIGRATIONS

    return {"images": n, "history": history, "gold": gold, "build": BUILD_VERSION, "seed": SEED,
            "migrations": [name for name, _ in MIGRATIONS]}


def make_photos(folder: Path) -> list[tuple[str, int, int, int]]:
    """N_PHOTOS small distinct JPEGs in ``folder``: (path, bytes, width, height)."""
    from ingest import build_pool
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(build_pool(N_PHOTOS)[0]):
        dst = folder / f"photo_{i:02d}.jpg"
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((480, 480))
            im.save(dst, "JPEG", quality=85)
            w, h = im.size
        out.append((str(dst), dst.stat().st_size, w, h))
    return out


def iso(ts: np.ndarray) -> list[str]:
    """Epoch seconds -> the app's ISO strings ('YYYY-MM-DDTHH:MM:SS.ffffffZ'), vectorised."""
    s = np.datetime_as_string((np.asarray(ts) * 1e6).astype("datetime64[us]"), unit="us")
    return [x + "Z" for x in s.tolist()]


def build(root: Path, n: int, history: int, gold: int) -> dict[str, Any]:
    """Create the workspace at ``root`` (replacing any) and fill it; returns counts and timings."""
    from services.core.config import CLASSES, DEFAULTS, Workspace
    from services.reviews.rules import photo_qualifies

    t_start = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)
    ws = Workspace.open(root)
    db = ws.db()  # the app's schema, every migration applied
    conn = db.conn
    photos = make_photos(ws.objects_dir / "photos")
    schema_before = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=str)
    for pragma in ("foreign_keys = OFF", "journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000",
                   "temp_store = MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    # the app's own indexes, dropped for the bulk load and re-created from their exact SQL afterwards
    indexes = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({','.join('?' * len(BULK_TABLES))})", BULK_TABLES).fetchall()
    rng = np.random.default_rng(SEED)
    now = time.time()
    end = now - 3600.0
    start = end - DAYS * 86400.0
    rules = DEFAULTS["credit_rules"]
    why = {(rt, c): photo_qualifies(review_type=rt, label=c, rules=rules) for rt in rules for c in CLASSES}

    # reviews: 1, 2 or 3 photos (1.3 on average), submitted over DAYS days, in id order
    per = rng.choice([1, 2, 3], p=[0.75, 0.2, 0.05], size=int(n / 1.3) + 10_000)
    cum = np.cumsum(per)
    n_rev = int(np.searchsorted(cum, n) + 1)
    per = per[:n_rev].copy()
    per[-1] -= int(cum[n_rev - 1] - n)
    rev_ts = start + np.sort(rng.uniform(0, DAYS * 86400.0, n_rev))
    rev_sub, rev_created = iso(rev_ts), iso(rev_ts + 600.0)
    rev_type = np.where(rng.random(n_rev) < 2 / 3, "product", "style").tolist()
    rev_ids = [f"bq{i:07d}" for i in range(n_rev)]
    texts = ("Fits well, colour as in the photos.", "Arrived quickly, box a bit dented.", "",
             "Great quality for the price!", "Smaller than expected <b>but</b> works *fine*.")

    t = time.perf_counter()
    conn.execute("BEGIN")
    for name, _sql in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.executemany(
        "INSERT INTO reviews (id, review_type, product, user_id, submitted_at, text, batch, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ((rev_ids[i], rev_type[i], f"sku-{i % 997}", f"u{i % 50021}", rev_sub[i], texts[i % len(texts)],
          "bench", rev_created[i]) for i in range(n_rev)))
    print(f"build: {n_rev:,} reviews in {time.perf_counter() - t:.1f} s", flush=True)

    # images: state per image. 0 auto-decided, 1 audit, 2 low_confidence, 3 no_model, 4 human single,
    # 5 human overlap (three answers and a consensus)
    rev_of = np.repeat(np.arange(n_rev), per)
    k_in = np.arange(n) - np.repeat(cum[:n_rev] - per, per)
    img_ts = rev_ts[rev_of] + 600.0
    u = rng.random(n)
    state = np.select([u < 0.01, u < 0.20, u < 0.22], [3, 2, 1], default=0)
    n_gold_answers = min(gold, 15) * N_INSPECTORS if gold else 0
    n_items = int(max(0, history - n_gold_answers) / 1.2)  # 90% single, 10% overlap (3 answers each)
    old = np.flatnonzero((state == 0) & (img_ts < end - 86400.0))
    chosen = rng.choice(old, size=min(n_items, len(old)), replace=False)
    overlap_n = len(chosen) // 10
    state[chosen[:overlap_n]] = 5
    state[chosen[overlap_n:]] = 4
    has_pred = state != 3
    label = rng.choice(len(CLASSES), p=CLASS_P, size=n)
    conf = np.where((state == 0) | (state == 1), rng.uniform(0.9, 0.999, n), rng.uniform(0.5, 0.9, n))
    rest = rng.random((n, 3))
    rest = rest / rest.sum(axis=1, keepdims=True) * (1.0 - conf)[:, None]
    pred_id = np.where(has_pred, np.cumsum(has_pred), 0)
    auto = (state == 0) | (state == 1)
    auto_dec_id = np.where(auto, np.cumsum(auto), 0)
    n_auto = int(auto.sum())
    img_created = iso(img_ts)
    img_sub = [rev_sub[r] for r in rev_of.tolist()]

    # inspectors' history (python loops: tens of thousands of rows)
    inspectors = [f"inspector{i:02d}" for i in range(1, N_INSPECTORS + 1)]
    accuracy = rng.uniform(0.72, 0.97, N_INSPECTORS)
    answers: list[list[Any]] = []  # ts, image_id, inspector, label, kind, seconds, prediction_id, decision key
    human_dec: dict[int, tuple[float, int, str, str]] = {}  # image index -> (ts, label idx, actor, note)
    consensus_rows = []
    overlap_last: dict[int, int] = {}  # image index -> answer index of its last answer

    def answer_label(truth: int, who: int) -> int:
        if rng.random() < accuracy[who]:
            return truth
        return int(rng.choice([c for c in range(len(CLASSES)) if c != truth]))

    for pos, i in enumerate(chosen.tolist()):
        truth = int(label[i]) if rng.random() < 0.7 else int(rng.integers(len(CLASSES)))
        t_ans = min(img_ts[i] + rng.uniform(600.0, 2 * 86400.0), end)
        if pos >= overlap_n:
            who = int(rng.integers(N_INSPECTORS))
            lab = answer_label(truth, who)
            answers.append([t_ans, i, who, lab, "single", float(rng.lognormal(1.8, 0.5)), i])
            note = "inspector confirmed the model" if lab == label[i] else \
                f"inspector overrode the model ({CLASSES[label[i]]})"
            human_dec[i] = (t_ans, lab, inspectors[who], note)
            continue
        trio = rng.choice(N_INSPECTORS, size=3, replace=False).tolist()
        labs = [answer_label(truth, w) for w in trio]
        times = sorted(t_ans + rng.uniform(0, 3600.0, 3))
        for w, lab, ts in zip(trio, labs, times):
            answers.append([ts, i, w, lab, "overlap", float(rng.lognormal(1.8, 0.5)), None])
        overlap_last[i] = len(answers) - 1
        top, votes = Counter(labs).most_common(1)[0]
        if votes == 1:
            top = labs[int(np.argmax([accuracy[w] for w in trio]))]
        agreement = votes / 3
        confidence = {3: 0.99, 2: 0.9, 1: 0.82}[votes]
        probs = {c: round((confidence if k == top else (1 - confidence) / 3), 6) for k, c in enumerate(CLASSES)}
        consensus_rows.append([i, CLASSES[top], confidence, agreement, 3, json.dumps(probs), "dawid-skene", "decided",
                               times[-1]])
        human_dec[i] = (times[-1], top, "consensus",
                        f"consensus of 3 inspectors, agreement {agreement:.0%}, confidence {confidence:.0%}")
    singles = chosen[overlap_n:].tolist()
    gold_idx = rng.choice(singles, size=min(gold, len(singles)), replace=False).tolist() if gold else []
    gold_created = end - 20 * 86400.0
    gold_label = {i: human_dec[i][1] for i in gold_idx}
    answered_single = {(a[1], a[2]) for a in answers if a[4] == "single"}
    for w in range(N_INSPECTORS):
        for i in rng.choice(gold_idx, size=min(15, len(gold_idx)), replace=False).tolist() if gold_idx else []:
            if (i, w) in answered_single:
                continue  # answered it before it became gold
            answers.append([gold_created + rng.uniform(3600.0, 19 * 86400.0), i, w, answer_label(gold_label[i], w),
                            "gold", float(rng.lognormal(1.8, 0.5)), None])
    answers.sort(key=lambda a: a[0])
    human_order = sorted(human_dec, key=lambda i: human_dec[i][0])
    dec_id = {i: n_auto + k + 1 for k, i in enumerate(human_order)}
    img_dec = np.where(auto, auto_dec_id, 0)
    for i, d in dec_id.items():
        img_dec[i] = d

    t = time.perf_counter()
    status = np.select([state == 0, state >= 4], ["decided", "decided"], default="queued").tolist()
    reason = np.select([state == 1, state == 2, state == 3], ["audit", "low_confidence", "no_model"], default="").tolist()
    required = np.select([state == 4, state == 5], [1, 3], default=0).tolist()
    rev_of_l, k_l, dec_l = rev_of.tolist(), k_in.tolist(), img_dec.tolist()
    conn.executemany(
        "INSERT INTO images (id, review_id, uri, sha256, size, width, height, status, queue_reason, error, created_at, "
        "decision_id, submitted_at, required_answers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
        ((i + 1, rev_ids[rev_of_l[i]], photo[0], hashlib.sha256(b"bench:%d" % i).hexdigest(), *photo[1:],
          status[i], reason[i] or None, img_created[i], dec_l[i] or None, img_sub[i], required[i] or None)
         for i in range(n)
         for photo in (photos[(rev_of_l[i] * 3 + k_l[i]) % N_PHOTOS],)))  # a review's photos are distinct files
    print(f"build: {n:,} images in {time.perf_counter() - t:.1f} s", flush=True)

    t = time.perf_counter()
    conn.execute(
        "INSERT INTO model_versions (id, name, created_at, backbone, classes, hyperparams, metrics, thresholds, "
        "training_data, path, active) VALUES (1, 'bench-v1', ?, 'bench', ?, '{}', '{}', ?, '{}', 'bench-v1.npz', 1)",
        [iso(np.array([start - 86400.0]))[0], json.dumps(list(CLASSES)), json.dumps(DEFAULTS["thresholds"])])
    label_l, conf_l, rest_l, has_l = label.tolist(), conf.tolist(), rest.tolist(), has_pred.tolist()

    def probabilities(i: int) -> str:
        others = iter(rest_l[i])
        return "{" + ", ".join(f'"{c}": {conf_l[i] if k == label_l[i] else next(others):.6f}'
                               for k, c in enumerate(CLASSES)) + "}"

    conn.executemany(
        "INSERT INTO predictions (id, image_id, model_version_id, label, confidence, probabilities, created_at) "
        "VALUES (?, ?, 1, ?, ?, ?, ?)",
        ((k + 1, i + 1, CLASSES[label_l[i]], conf_l[i], probabilities(i), img_created[i])
         for k, i in enumerate(i for i in range(n) if has_l[i])))
    print(f"build: {int(has_pred.sum()):,} predictions in {time.perf_counter() - t:.1f} s", flush=True)

    t = time.perf_counter()
    pred_l = pred_id.tolist()
    rt_l = [rev_type[r] for r in rev_of_l]

    def auto_row(i: int) -> tuple[Any, ...]:
        c = CLASSES[label_l[i]]
        ok, w = why[(rt_l[i], c)]
        return (c, int(ok), f"model: {c} at {conf_l[i]:.0%} (threshold 90%); {w}", "auto", "model:bench-v1",
                img_created[i], pred_l[i])

    dec_sql = ("INSERT INTO decisions (id, image_id, label, credit, reason, source, decided_by, decided_at, "
               "prediction_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    auto_l = auto.tolist()
    conn.executemany(dec_sql, ((k + 1, i + 1, *auto_row(i)) for k, i in enumerate(i for i in range(n) if auto_l[i])))
    human_rows = []
    dec_at = iso(np.array([human_dec[i][0] for i in human_order]))
    for i, at in zip(human_order, dec_at):
        ts, lab, actor, note = human_dec[i]
        c = CLASSES[lab]
        ok, w = why[(rt_l[i], c)]
        human_rows.append((dec_id[i], i + 1, c, int(ok), f"{note}; {w}", "human", actor, at, pred_l[i] or None))
    conn.executemany(dec_sql, human_rows)
    print(f"build: {n_auto + len(human_rows):,} decisions in {time.perf_counter() - t:.1f} s", flush=True)

    # answers, their claim/answer events, audit entries, consensus, gold items, queue snapshots
    t = time.perf_counter()
    ans_rows, events, audits = [], [], []
    ans_at = iso(np.array([a[0] for a in answers]))
    claim_at = iso(np.array([a[0] - a[5] for a in answers]))
    for k, (ts, i, w, lab, kind, secs, _single) in enumerate(answers, start=1):
        ans_rows.append((k, i + 1, inspectors[w], CLASSES[lab], kind, ans_at[k - 1], round(secs, 3), pred_l[i] or None,
                         "low_confidence", dec_l[i] if kind == "gold" else None,
                         dec_id[i] if kind == "single" else None))
        detail = None
        if kind == "overlap" and overlap_last.get(i) == k - 1:
            detail = json.dumps({"decision_id": dec_id[i], "outcome": "decided"})
        events.append((ts - secs, claim_at[k - 1], i + 1, inspectors[w], "claim", None, None, None, None))
        events.append((ts, ans_at[k - 1], i + 1, inspectors[w], "answer", CLASSES[lab], round(secs, 3), k, detail))
    for i, at in zip(human_order, dec_at):
        ts, lab, actor, _note = human_dec[i]
        audits.append((ts, at, actor, "decision", f"image:{i + 1}", json.dumps({"label": CLASSES[lab]})))
    gold_at = iso(np.array([gold_created]))[0]
    for i in gold_idx:
        audits.append((gold_created, gold_at, "admin", "gold.mark", f"image:{i + 1}",
                       json.dumps({"label": CLASSES[gold_label[i]]})))
    events.sort(key=lambda e: e[0])
    audits.sort(key=lambda a: a[0])
    conn.executemany(
        "INSERT INTO answers (id, image_id, inspector, label, kind, answered_at, seconds, prediction_id, queue_reason, "
        "prev_decision_id, decision_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ans_rows)
    conn.executemany(
        "INSERT INTO queue_events (ts, at, image_id, inspector, action, label, seconds, answer_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
    conn.executemany("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                     [a[1:] for a in audits])
    conn.executemany(
        "INSERT INTO consensus (image_id, label, confidence, agreement, n_answers, probabilities, method, outcome, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r[0] + 1, *r[1:8], at) for r, at in zip(consensus_rows, iso(np.array([r[8] for r in consensus_rows])))])
    conn.executemany("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, ?, 'admin', ?)",
                     [(i + 1, CLASSES[gold_label[i]], gold_at) for i in gold_idx])
    queued_now = {"audit": int((state == 1).sum()), "low_confidence": int((state == 2).sum()),
                  "no_model": int((state == 3).sum())}
    snap_ts = np.arange(start, end, 3600.0)  # hourly: the queue grew to today's size
    snap_at = iso(snap_ts)
    grow = (0.3 + 0.7 * np.arange(1, len(snap_ts) + 1) / len(snap_ts)) * rng.uniform(0.95, 1.05, len(snap_ts))
    snaps = [{r: int(v * f) for r, v in queued_now.items()} for f in grow.tolist()]
    conn.executemany("INSERT INTO queue_snapshots (ts, at, queued, by_reason) VALUES (?, ?, ?, ?)",
                     [(ts, snap_at[k], sum(snaps[k].values()), json.dumps(snaps[k])) for k, ts in enumerate(snap_ts.tolist())])
    print(f"build: {len(ans_rows):,} answers, {len(events):,} queue events, {len(audits):,} audit entries, "
          f"{len(consensus_rows):,} consensus rows, {len(gold_idx)} gold items in {time.perf_counter() - t:.1f} s",
          flush=True)

    t = time.perf_counter()
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    print(f"build: {len(indexes)} indexes re-created in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    from services.hitl.consensus import estimate_reliability

    rel = estimate_reliability(db)
    reliability_s = time.perf_counter() - t
    print(f"build: reliability of {len(rel)} inspectors estimated in {reliability_s:.2f} s "
          f"({Counter(r['method'] for r in rel.values())})", flush=True)
    t = time.perf_counter()
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    bad_fk = conn.execute("PRAGMA foreign_key_check(answers)").fetchall() + \
        conn.execute("PRAGMA foreign_key_check(gold_items)").fetchall()
    print(f"build: ANALYZE in {time.perf_counter() - t:.1f} s", flush=True)
    schema_after = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")
                          .fetchall(), key=str)
    if schema_after != schema_before or bad_fk:
        raise SystemExit(f"build changed the schema or broke foreign keys ({len(bad_fk)} rows): refusing to time it")
    counts = dict(conn.execute("SELECT COALESCE(queue_reason, status), COUNT(*) FROM images GROUP BY 1").fetchall())
    db.close()
    info = {"reviews": n_rev, "images": n, "by_state": counts, "answers": len(ans_rows), "gold_items": len(gold_idx),
            "build_s": round(time.perf_counter() - t_start, 1), "reliability_estimate_s": round(reliability_s, 3),
            "db_mb": round((root / "console.db").stat().st_size / 1e6)}
    print(f"build: done in {info['build_s']} s, {info['db_mb']} MB: {counts}", flush=True)
    return info


def workspace_copy(n: int, history: int, gold: int, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """A fresh copy of the cached workspace for N images (built first if missing or stale)."""
    name = f"queue_ws_{n}" if history == n // 20 and gold == 200 else f"queue_ws_{n}_h{history}_g{gold}"
    cached = OUT / name
    marker = cached / "build.json"
    want = fingerprint(n, history, gold)
    info = json.loads(marker.read_text()) if marker.exists() and not rebuild else {}
    if info.get("fingerprint") != want or not (cached / "console.db").exists():
        print(f"building the workspace in {cached} ({n:,} images)", flush=True)
        info = {"fingerprint": want, **build(cached, n, history, gold)}
        marker.write_text(json.dumps(info, indent=1))
        info["cached"] = False
    else:
        print(f"reusing the workspace in {cached} (built in {info['build_s']} s)", flush=True)
        info["cached"] = True
    run = OUT / f"{name}_run"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    t = time.perf_counter()
    shutil.copyfile(cached / "console.db", run / "console.db")
    fd = os.open(run / "console.db", os.O_RDONLY)
    try:  # else the first WAL checkpoint's fsync flushes the whole copy: one commit of 0.3 s per GB, timed
        os.fsync(fd)
    finally:
        os.close(fd)
    print(f"copied the database to {run} in {time.perf_counter() - t:.1f} s", flush=True)
    return run, info


# ------------------------------------------------------------------------------------------ timing


ESTIMATES: list[float] = []  # seconds of each estimate_reliability call made by consolidate (Reliability)


class Reliability:
    """Counts and times ``estimate_reliability`` calls made inside ``consolidate`` (a measuring wrapper)."""

    def __init__(self) -> None:
        import services.hitl.consensus as consensus

        self.module, self.real, self.seconds = consensus, consensus.estimate_reliability, ESTIMATES

        def timed(db):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return self.real(db)
            finally:
                self.seconds.append(time.perf_counter() - t)

        consensus.estimate_reliability = timed

    def restore(self) -> None:
        self.module.estimate_reliability = self.real


class Inspector:
    """One simulated inspector, working like the queue page: the photo on screen is claimed; a decision
    submits it and the rerun claims the next one at once. So, between their turns, every inspector holds a
    claim (which is also what makes them count as working now when overlap photos get their k)."""

    def __init__(self, db, name: str, seed: int) -> None:  # type: ignore[no-untyped-def]
        self.db, self.name, self.rng = db, name, np.random.default_rng(seed)
        self.item: dict[str, Any] | None = None
        self.claim_s = 0.0

    def claim(self) -> bool:
        from services.hitl.queue import claim_next

        t = time.perf_counter()
        self.item = claim_next(self.db, inspector=self.name)
        self.claim_s = time.perf_counter() - t
        return self.item is not None

    def turn(self, rec: dict[str, list]) -> bool:
        """Decide the photo on screen, then claim the next: one claim+submit pair recorded (the pair is the
        claim of this photo, timed at the previous turn, plus its submit). False when the queue is empty."""
        from services.core.config import CLASSES
        from services.core.errors import ConsoleError
        from services.hitl.answers import submit

        if self.item is None and not self.claim():
            return False
        item, pred = self.item, self.item["prediction"]
        label = pred["label"] if pred and self.rng.random() < 0.85 else CLASSES[int(self.rng.integers(len(CLASSES)))]
        estimates = len(ESTIMATES)
        t = time.perf_counter()
        try:
            result = submit(self.db, image_id=item["id"], label=label, actor=self.name)
        except ConsoleError as exc:
            rec["errors"].append(f"{type(exc).__name__}: {str(exc)[:80]}")
            result = None
        submit_s = time.perf_counter() - t
        rec["claim"].append(self.claim_s)
        rec["submit"].append(submit_s)
        rec["pair"].append(self.claim_s + submit_s)
        rec["reason"].append(item["queue_reason"])
        # what the operation was (read after the timing): the answer's kind, a consensus, a reliability re-estimate
        kind = "error" if result is None else self.db.execute("SELECT kind FROM answers WHERE id = ?",
                                                              [result["answer_id"]]).fetchone()[0]
        if kind == "overlap" and self.db.execute("SELECT 1 FROM consensus WHERE image_id = ?", [item["id"]]).fetchone():
            kind = "overlap+consensus"
        rec["what"].append(kind + ("+reestimate" if len(ESTIMATES) > estimates else ""))
        self.claim()
        return True


def new_rec() -> dict[str, list]:
    return {"claim": [], "submit": [], "pair": [], "reason": [], "what": [], "errors": []}


def round_robin(root: Path, ops: int, names: list[str]) -> dict[str, list]:
    from services.core.config import Workspace

    ws = Workspace.open(root)
    people = [Inspector(ws.db(), name, seed) for seed, name in enumerate(names)]
    for person in people:
        person.claim()
    rec = new_rec()
    t = time.perf_counter()
    for op in range(ops):
        person = people[op % len(people)]
        if not person.turn(rec):
            print(f"round-robin: the queue ran empty for {person.name} after {op} operations", flush=True)
            break
        if (op + 1) % max(1, ops // 10) == 0:
            print(f"round-robin: {op + 1}/{ops} claim+submit, p50 {ms(rec['pair'], 50)} ms, "
                  f"p95 {ms(rec['pair'], 95)} ms so far ({time.perf_counter() - t:.1f} s)", flush=True)
    for person in people:
        person.db.close()
    return rec


def threaded(root: Path, ops: int, names: list[str]) -> tuple[dict[str, list], float]:
    """``len(names)`` threads at once, each with its own connection, ``ops`` operations in all."""
    from services.core.config import Workspace

    ws = Workspace.open(root)
    barrier = threading.Barrier(len(names) + 1)
    recs = [new_rec() for _ in names]
    crashes: list[str] = []

    def work(k: int, name: str) -> None:
        person = Inspector(ws.db(), name, 100 + k)
        try:
            person.claim()
            barrier.wait()
            for _ in range(ops // len(names) + (k < ops % len(names))):
                if not person.turn(recs[k]):
                    break
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            crashes.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            person.db.close()

    threads = [threading.Thread(target=work, args=(k, name)) for k, name in enumerate(names)]
    for th in threads:
        th.start()
    barrier.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    rec = new_rec()
    for r in recs:
        for key in rec:
            rec[key] += r[key]
    rec["errors"] += [f"crash {c}" for c in crashes]
    return rec, wall


def integrity(root: Path, since_answer: int) -> dict[str, int]:
    """After the timed runs: no photo answered twice as a single, no decision lost, no claim left shared."""
    from services.core.config import Workspace

    db = Workspace.open(root).db()
    q = lambda sql, *p: db.execute(sql, p).fetchone()[0]  # noqa: E731
    out = {
        "double_single_answers": q("SELECT COUNT(*) FROM (SELECT image_id FROM answers WHERE id > ? AND kind = 'single' "
                                   "GROUP BY image_id HAVING COUNT(*) > 1)", since_answer),
        "singles_without_decision": q("SELECT COUNT(*) FROM answers a LEFT JOIN decisions d ON d.id = a.decision_id "
                                      "WHERE a.id > ? AND a.kind = 'single' AND d.id IS NULL", since_answer),
        "single_decisions_not_current": q("SELECT COUNT(*) FROM answers a JOIN images i ON i.id = a.image_id "
                                          "WHERE a.id > ? AND a.kind = 'single' AND i.decision_id != a.decision_id",
                                          since_answer),
        "shared_single_claims": q("SELECT COUNT(*) FROM (SELECT c.image_id FROM queue_claims c JOIN images i ON "
                                  "i.id = c.image_id WHERE COALESCE(i.required_answers, 1) = 1 GROUP BY c.image_id "
                                  "HAVING COUNT(*) > 1)"),
    }
    out.update({f"answers_{k}": v for k, v in db.execute(
        "SELECT kind, COUNT(*) FROM answers WHERE id > ? GROUP BY kind", [since_answer]).fetchall()})
    db.close()
    return out


def page_render(root: Path, reruns: int = 5) -> dict[str, float]:
    """The queue page through AppTest (app.py, then switch_page), as tests/pages/helpers.start_app does."""
    os.environ["REVIEW_CONSOLE_DATA_DIR"] = str(root)
    os.environ["REVIEW_CONSOLE_WORKER"] = "off"
    from streamlit.testing.v1 import AppTest

    from services.core.config import CLASSES

    def check(at, what: str) -> None:  # type: ignore[no-untyped-def]
        if at.exception:
            raise SystemExit(f"{what}: the page raised {at.exception}")
        if not at.image:
            raise SystemExit(f"{what}: no photo on the page ({[e.value for e in at.error]} {[i.value for i in at.info]})")

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    t = time.perf_counter()
    at.run()
    app_start = time.perf_counter() - t
    at.switch_page("pages/queue.py")
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    check(at, "first render")
    warm = []
    for _ in range(reruns):
        t = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t)
        check(at, "rerun")
    decide = []
    for k in range(reruns):  # press a number key's button: submit, claim the next photo, render it
        shown = [r.key for r in at.radio if (r.key or "").startswith("q_label_")]
        t = time.perf_counter()
        at.button(key=f"q_quick_{CLASSES[k % len(CLASSES)]}").click().run()
        decide.append(time.perf_counter() - t)
        check(at, "decide")
        after = [r.key for r in at.radio if (r.key or "").startswith("q_label_")]
        if after == shown:
            raise SystemExit(f"decide: the page still shows {shown} ({[e.value for e in at.error]})")
    print(f"page: app start {app_start:.2f} s, first queue render {first:.2f} s, reruns "
          f"{', '.join(f'{x:.3f}' for x in warm)} s, decide+next {', '.join(f'{x:.3f}' for x in decide)} s", flush=True)
    return {"page_render_s": round(statistics.median(warm), 3), "page_first_render_s": round(first, 3),
            "page_decide_next_s": round(statistics.median(decide), 3), "app_start_s": round(app_start, 3)}


def query_plans(root: Path) -> None:
    """EXPLAIN QUERY PLAN of every statement one claim_next + submit runs (progress lines)."""
    from services.core.config import Workspace

    db = Workspace.open(root).db()
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    Inspector(db, "inspector20", 0).turn(new_rec())
    db.conn.set_trace_callback(None)
    for sql in seen:
        if sql.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "INSERT") or "SELECT" in sql[:12].upper():
            plan = db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            print(f"plan: {' '.join(sql.split())[:160]}", flush=True)
            for row in plan:
                print(f"plan:    {row[3]}", flush=True)
    db.close()


def profile_statements(root: Path, ops: int, inspectors: list[str]) -> None:
    """Per-statement wall time over ``ops`` round-robin operations: the time between two consecutive sqlite3
    trace callbacks is charged to the earlier statement (so it includes the Python work that follows it)."""
    from services.core.config import Workspace

    ws = Workspace.open(root)
    people = [Inspector(ws.db(), name, 200 + k) for k, name in enumerate(inspectors)]
    cost: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    last: list[Any] = [None, 0.0]

    def trace(sql: str) -> None:
        now = time.perf_counter()
        if last[0] is not None:
            cost[last[0]] += now - last[1]
        key = " ".join(sql.split())
        for digit in "0123456789":
            key = key.replace(digit, "#")
        last[0], last[1] = key[:200], now
        calls[last[0]] += 1

    for person in people:
        person.claim()
        person.db.conn.set_trace_callback(trace)
    rec = new_rec()
    for op in range(ops):
        people[op % len(people)].turn(rec)
        last[0] = None  # time outside the services is not charged
    for sql, sec in cost.most_common(12):
        print(f"profile: {sec * 1000 / ops:7.2f} ms/op  {calls[sql]:6d} calls  {sql[:150]}", flush=True)
    print(f"profile: {ops} operations, p50 {ms(rec['pair'], 50)} ms, p95 {ms(rec['pair'], 95)} ms (traced)", flush=True)
    for person in people:
        person.db.close()


def tail(rec: dict[str, list]) -> str:
    """Per kind of operation: how many, p50 and p95 of claim+submit, and how many are slower than the p95."""
    p95 = pct(rec["pair"], 95)
    parts = []
    for what, k in Counter(rec["what"]).most_common():
        vals = [v for v, w in zip(rec["pair"], rec["what"]) if w == what]
        parts.append(f"{what} x{k}: p50 {ms(vals, 50)} ms, p95 {ms(vals, 95)} ms, {sum(v > p95 for v in vals)} above the p95")
    return "; ".join(parts)


def summary(rec: dict[str, list], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}ops": len(rec["pair"]), f"{prefix}p50_ms": ms(rec["pair"], 50), f"{prefix}p95_ms": ms(rec["pair"], 95),
            f"{prefix}p99_ms": ms(rec["pair"], 99), f"{prefix}max_ms": ms(rec["pair"], 100),
            f"{prefix}claim_p50_ms": ms(rec["claim"], 50), f"{prefix}claim_p95_ms": ms(rec["claim"], 95),
            f"{prefix}submit_p50_ms": ms(rec["submit"], 50), f"{prefix}submit_p95_ms": ms(rec["submit"], 95),
            f"{prefix}errors": len(rec["errors"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100,000 images, 300 operations")
    ap.add_argument("--images", type=int, default=None, help="images in the workspace (default 1,000,000)")
    ap.add_argument("--ops", type=int, default=None, help="round-robin claim+submit operations (default 2,000)")
    ap.add_argument("--threads-ops", type=int, default=None, help="operations by 8 threads at once (default ops/2)")
    ap.add_argument("--history", type=int, default=None, help="earlier answers by 20 inspectors (default images/20)")
    ap.add_argument("--gold", type=int, default=200, help="gold items")
    ap.add_argument("--rebuild", action="store_true", help="build the workspace even if a cached one fits")
    ap.add_argument("--profile", action="store_true", help="also print query plans and per-statement times")
    args = ap.parse_args()
    n = args.images or (100_000 if args.quick else 1_000_000)
    ops = args.ops or (300 if args.quick else 2000)
    threads_ops = args.threads_ops if args.threads_ops is not None else ops // 2
    history = args.history if args.history is not None else n // 20

    root, info = workspace_copy(n, history, args.gold, args.rebuild)
    from services.core.config import Workspace, get_settings

    db = Workspace.open(root).db()
    settings = get_settings(db)
    since_answer = db.execute("SELECT COALESCE(MAX(id), 0) FROM answers").fetchone()[0]
    db.close()
    print(f"settings: overlap_rate {settings['overlap_rate']}, overlap_k {settings['overlap_k']}, "
          f"gold_rate {settings['gold_rate']}", flush=True)
    if args.profile:
        query_plans(root)

    ticks = cpu_ticks()
    reliability = Reliability()
    # Headline figures: 8 inspectors taking turns from one process (each with its own connection), so
    # every operation's latency is the service's own work, not time spent waiting for another writer.
    rr = round_robin(root, ops, [f"inspector{i:02d}" for i in range(1, 9)])
    rr_estimates = list(reliability.seconds)
    # Contention: 8 threads at once (own connections). SQLite serialises the writes (BEGIN IMMEDIATE), and
    # on a 2-core machine the GIL too, so these latencies include queueing behind the other inspectors.
    conc, conc_wall = threaded(root, threads_ops, [f"inspector{i:02d}" for i in range(9, 17)]) if threads_ops else (new_rec(), 0.0)
    reliability.restore()
    print(f"threads: {len(conc['pair'])} claim+submit by 8 threads in {conc_wall:.1f} s, p50 {ms(conc['pair'], 50)} ms, "
          f"p95 {ms(conc['pair'], 95)} ms, {len(conc['errors'])} errors", flush=True)
    for err, k in Counter(rr["errors"] + conc["errors"]).most_common(5):
        print(f"errors: {k} x {err}", flush=True)
    checks = integrity(root, since_answer)
    print(f"integrity: {checks}", flush=True)
    if args.profile:
        profile_statements(root, min(ops, 400), [f"inspector{i:02d}" for i in range(1, 9)])
    page = page_render(root)
    others = others_share(ticks)

    print(f"breakdown: {tail(rr)}", flush=True)
    slow = sorted(range(len(rr["pair"])), key=rr["pair"].__getitem__, reverse=True)[:5]
    print("slowest round-robin operations: " + "; ".join(
        f"{rr['pair'][k] * 1000:.1f} ms (claim {rr['claim'][k] * 1000:.1f}, submit {rr['submit'][k] * 1000:.1f}, "
        f"{rr['reason'][k]}, {rr['what'][k]})" for k in slow), flush=True)
    result = {
        "images": n, "reviews": info["reviews"], "queued": sum(v for k, v in info["by_state"].items()
                                                             if k in ("audit", "low_confidence", "no_model")),
        "scenario": "round-robin: 8 inspectors take turns from one process, own connections; claim_next + submit",
        **summary(rr),
        "by_reason": dict(Counter(rr["reason"])),
        "p95_ms_without_reestimate": ms([v for v, w in zip(rr["pair"], rr["what"]) if "reestimate" not in w], 95),
        "reliability_estimates": len(rr_estimates),
        "reliability_estimate_ms_p50": ms(rr_estimates, 50) if rr_estimates else None,
        "reliability_estimate_ms_max": ms(rr_estimates, 100) if rr_estimates else None,
        "conc_reliability_estimates": len(ESTIMATES) - len(rr_estimates),
        "threads": 8, **summary(conc, "conc_"), "conc_wall_s": round(conc_wall, 2),
        "conc_ops_per_s": round(len(conc["pair"]) / conc_wall, 1) if conc_wall else None,
        **page,
        "goal_p95_met": ms(rr["pair"], 95) <= GOAL_P95_MS, "goal_render_met": page["page_render_s"] <= GOAL_RENDER_S,
        "integrity": checks,
        "history_answers": info["answers"], "gold_items": info["gold_items"], "db_mb": info["db_mb"],
        "build_s": info["build_s"], "build_cached": info["cached"],
        "overlap_rate": settings["overlap_rate"], "gold_rate": settings["gold_rate"],
        "cpus": os.cpu_count(), "others_share": others,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
