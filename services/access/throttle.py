"""Sign-in throttling per client address and per (account, address), so a remote guesser cannot lock the
real user out and cannot make the server hash passwords without bound.

Counters live in ``sign_in_failures`` (m017): one row per (account, address), and one per address with
account ``*`` counting failures across every name. An attempt is charged before its password is
checked (so concurrent attempts see each other) and refunded when the password was right.

- (account, address): after ``PAIR_FREE_FAILURES`` failures that address is refused for that account for
  ``PAIR_BASE_SECONDS``, doubling with each further failure up to ``PAIR_MAX_SECONDS``. Other addresses
  are not locked: while the account has failed ``ACCOUNT_SLOW_FAILURES`` times or more they are only slowed
  by ``ACCOUNT_SLOW_SECONDS`` before the check.
- address: after ``ADDRESS_FREE_FAILURES`` failures across names the address is refused for
  ``ADDRESS_BASE_SECONDS``, doubling up to ``ADDRESS_MAX_SECONDS``. A refused attempt costs no hash.

Counters are forgotten ``FORGET_SECONDS`` after their last failure once no block is running.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

PAIR_FREE_FAILURES = 5
PAIR_BASE_SECONDS = 30.0
PAIR_MAX_SECONDS = 3600.0
ADDRESS_FREE_FAILURES = 20
ADDRESS_BASE_SECONDS = 60.0
ADDRESS_MAX_SECONDS = 3600.0
ACCOUNT_SLOW_FAILURES = 5
ACCOUNT_SLOW_SECONDS = 1.0
FORGET_SECONDS = 86400.0
ANY_ACCOUNT = "*"  # the account of an address's own row; never a user name (names.PUNCTUATION has no '*')


@dataclass(frozen=True)
class Gate:
    """What the throttle says before a password is checked: refused (with the seconds left and whether the
    whole address is blocked) or let through, perhaps after ``slow_seconds``."""

    refused_for: float = 0.0
    address_blocked: bool = False
    slow_seconds: float = 0.0


def back_off(failures: int, *, free: int, base: float, cap: float) -> float:
    """Seconds refused after ``failures`` failures: 0 while fewer than ``free``, then ``base`` doubling up
    to ``cap``."""
    if failures < free:
        return 0.0
    return min(cap, base * 2 ** min(failures - free, 40))


def _row(db: sqlite_utils.Database, account: str, address: str, now: float) -> tuple[int, float]:
    row = db.execute("SELECT failures, blocked_until, last_at FROM sign_in_failures WHERE account = ? AND address = ?",
                     [account, address]).fetchone()
    if row is None or (now - row[2] > FORGET_SECONDS and row[1] <= now):
        return 0, 0.0
    return int(row[0]), float(row[1])


def gate(db: sqlite_utils.Database, *, account: str, address: str, account_failures: int, now: float) -> Gate:
    """Inside the sign-in transaction: whether ``address`` may try ``account`` now. Raises nothing."""
    _, address_until = _row(db, ANY_ACCOUNT, address, now)
    if address_until > now:
        return Gate(refused_for=address_until - now, address_blocked=True)
    pair_failures, pair_until = _row(db, account, address, now)
    if pair_until > now:
        return Gate(refused_for=pair_until - now)
    slow = ACCOUNT_SLOW_SECONDS if pair_failures == 0 and account_failures >= ACCOUNT_SLOW_FAILURES else 0.0
    return Gate(slow_seconds=slow)


def _put(db: sqlite_utils.Database, account: str, address: str, failures: int, until: float, now: float) -> None:
    db.execute("INSERT INTO sign_in_failures (account, address, failures, blocked_until, last_at) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (account, address) DO UPDATE SET failures = excluded.failures, "
               "blocked_until = excluded.blocked_until, last_at = excluded.last_at",
               [account, address, failures, until, now])


def charge(db: sqlite_utils.Database, *, account: str, address: str, now: float) -> int:
    """Inside the sign-in transaction, before the password is checked: count the attempt as a failure of
    (account, address) and of the address, starting their blocks when due; old rows are dropped. Returns
    the pair's failures. Raises nothing."""
    db.execute("DELETE FROM sign_in_failures WHERE last_at < ? AND blocked_until < ?", [now - FORGET_SECONDS, now])
    pair, _ = _row(db, account, address, now)
    pair += 1
    _put(db, account, address, pair, now + back_off(pair, free=PAIR_FREE_FAILURES, base=PAIR_BASE_SECONDS,
                                                    cap=PAIR_MAX_SECONDS), now)
    total, _ = _row(db, ANY_ACCOUNT, address, now)
    total += 1
    _put(db, ANY_ACCOUNT, address, total, now + back_off(total, free=ADDRESS_FREE_FAILURES, base=ADDRESS_BASE_SECONDS,
                                                         cap=ADDRESS_MAX_SECONDS), now)
    return pair


def refund(db: sqlite_utils.Database, *, account: str, address: str, now: float) -> None:
    """After a right password: the (account, address) row is cleared and the address's charge taken back
    (its earlier failures across names still count). Raises nothing."""
    db.execute("DELETE FROM sign_in_failures WHERE account = ? AND address = ?", [account, address])
    total, until = _row(db, ANY_ACCOUNT, address, now)
    if total:
        total -= 1
        _put(db, ANY_ACCOUNT, address, total, until if total >= ADDRESS_FREE_FAILURES else 0.0, now)


def clear_account(db: sqlite_utils.Database, *, account: str) -> None:
    """Lift every (account, address) lock of ``account`` (a new password, an enabled account). Raises nothing."""
    db.execute("DELETE FROM sign_in_failures WHERE account = ?", [account])
