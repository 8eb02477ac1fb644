"""Sign-in abuse: a remote guesser against the admin account while the admin signs in from elsewhere.

    python benchmarks/sign_in_abuse.py [--quick] [--burst N] [--hours H]

A fresh workspace with one admin (the real argon2id hasher, the real ``services.access.accounts.authenticate``
and its throttle). Time is simulated (``now`` is passed in; the slow-down for clean addresses is recorded,
not slept), so the run takes the CPU the hashes take and no more. Phases, all from the attacker's one address
unless said otherwise:

1. burst: ``--burst`` wrong passwords back to back (0.2 s apart), the admin signing in from the office
   address after every 10th;
2. lock ends: one wrong password each time the attacker's lock ends, for ``--hours`` simulated hours (the
   issue's case: that alone kept ``admin`` locked for three hours), the admin signing in after each;
3. spray: wrong passwords for made-up names from a second address until it is refused (unknown names cost
   the dummy hash a known one costs, and a blocked address costs none).

The last line is one JSON object: attempts (phases 1 and 2), attacker_hashes (of those, the ones that cost a
password check), hashes (password checks computed over all phases, the admin's included), attacker_blocked_after (attempts until the first refusal without a hash), admin_locked_out (must be
false), admin_sign_ins, admin_slowed_s (simulated), spray_attempts_before_block, cpu_seconds (this process,
all phases), hash_ms (median CPU of one check), others_cpu_share.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_ticks, others_share

ATTACKER, SPRAYER, OFFICE = "203.0.113.9", "198.51.100.7", "10.0.0.2"
PASSWORD = "correct horse battery staple"


class CountingHasher:
    """The real hasher, timing each password check (each one an argon2 computation)."""

    def __init__(self, real: Any) -> None:
        self.real, self.cpu = real, []

    def verify(self, hashed: str, password: str) -> bool:
        t0 = time.process_time()
        try:
            return self.real.verify(hashed, password)
        finally:
            self.cpu.append(time.process_time() - t0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def run(*, burst: int, hours: float) -> dict[str, Any]:
    from services.access import accounts
    from services.access.accounts import authenticate, create_user
    from services.core.config import Workspace
    from services.core.errors import PermissionDenied

    with tempfile.TemporaryDirectory() as tmp:
        db = Workspace.open(Path(tmp) / "ws").db()
        create_user(db, username="admin", password=PASSWORD, roles=["admin"], actor="cli:bench")
        hasher = accounts._HASHER = CountingHasher(accounts._HASHER)
        slept: list[float] = []
        admin = {"ok": 0, "refused": 0}

        def attempt(name: str, password: str, source: str, now: float) -> str:
            """'ok', 'wrong' (a hash was computed) or 'refused' (no hash), and the seconds left when refused."""
            before = len(hasher.cpu)
            try:
                authenticate(db, username=name, password=password, source=source, now=now, sleep=slept.append)
                return "ok"
            except PermissionDenied:
                return "wrong" if len(hasher.cpu) > before else "refused"

        def admin_signs_in(now: float) -> None:
            admin["ok" if attempt("admin", PASSWORD, OFFICE, now) == "ok" else "refused"] += 1

        cpu0, ticks0, t = time.process_time(), cpu_ticks(), 1_000_000.0
        attempts, blocked_after, outcomes = 0, None, {"wrong": 0, "refused": 0, "ok": 0}

        def attack(now: float) -> str:
            outcome = attempt("admin", "not the password", ATTACKER, now)
            outcomes[outcome] += 1
            return outcome

        for i in range(burst):
            attempts += 1
            if attack(t) == "refused" and blocked_after is None:
                blocked_after = attempts - 1
            if i % 10 == 9:
                admin_signs_in(t + 0.1)
            t += 0.2
        print(f"burst: {burst} attempts, {len(hasher.cpu)} hashes, blocked after {blocked_after}", flush=True)
        end = t + hours * 3600
        while t < end:
            until = db.execute("SELECT max(blocked_until) FROM sign_in_failures WHERE address = ?",
                               [ATTACKER]).fetchone()[0] or t
            t = max(t, until) + 0.5
            attempts += 1
            attack(t)
            admin_signs_in(t + 0.1)
        print(f"lock ends: {attempts} attempts in all, {len(hasher.cpu)} hashes, admin {admin}", flush=True)
        spray_before = None
        for i in range(200):
            if attempt(f"guess{i}", "not the password", SPRAYER, t + i) == "refused":
                spray_before = i
                break
        print(f"spray: refused after {spray_before} made-up names", flush=True)
        cpu = time.process_time() - cpu0
        db.close()
    return {"attempts": attempts, "attacker_hashes": outcomes["wrong"], "hashes": len(hasher.cpu), "attacker_blocked_after": blocked_after,
            "admin_locked_out": admin["refused"] > 0, "admin_sign_ins": admin["ok"],
            "admin_slowed_s": round(sum(slept), 1), "simulated_hours": hours,
            "spray_attempts_before_block": spray_before, "cpu_seconds": round(cpu, 2),
            "hash_ms": round(1000 * statistics.median(hasher.cpu), 1), "others_cpu_share": others_share(ticks0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a short burst and three simulated hours")
    parser.add_argument("--burst", type=int, default=None, help="back-to-back attempts (default 500; quick 100)")
    parser.add_argument("--hours", type=float, default=None, help="simulated hours of lock-end attempts (default 24; quick 3)")
    args = parser.parse_args()
    burst = args.burst if args.burst is not None else (100 if args.quick else 500)
    hours = args.hours if args.hours is not None else (3.0 if args.quick else 24.0)
    print(json.dumps(run(burst=burst, hours=hours)))


if __name__ == "__main__":
    main()
