"""Command-line commands for local accounts: create a user (the first admin), list users.

The password is read from standard input (``--password-stdin``) or asked for without echo, never taken
from an argument (it would show in the process list and the shell history).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from services.config import Workspace


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        from services.errors import InvalidInput

        raise InvalidInput("the two passwords differ")
    return first


def cmd_create_user(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    from services.accounts import create_user
    from services.cli import _actor

    return create_user(ws.db(), username=args.username, password=_password(args), roles=args.role, actor=_actor())


def cmd_users(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    from services.accounts import list_users
    from services.cli import _actor

    return {"users": list_users(ws.db(), actor=_actor())}


def add_commands(sub: Any) -> None:
    """Add the account commands to the console's argument parser."""
    s = sub.add_parser("create-user", help="create a local account (e.g. the first admin: --role admin)")
    s.add_argument("--username", required=True)
    s.add_argument("--role", action="append", required=True, choices=["inspector", "ops", "admin"])
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    s.set_defaults(fn=cmd_create_user)
    s = sub.add_parser("users", help="list local accounts (never their password hashes)")
    s.set_defaults(fn=cmd_users)
