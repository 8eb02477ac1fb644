"""Command-line commands for local accounts: create a user (the first admin), list users.

The password is read from standard input (``--password-stdin``) or asked for without echo, never taken
from an argument (it would show in the process list and the shell history).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from services.access import sso
from services.access.accounts import create_user, list_users
from services.cli.common import cli_actor
from services.core.config import Workspace
from services.core.errors import InvalidInput


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:

        raise InvalidInput("the two passwords differ")
    return first


def cmd_create_user(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return create_user(ws.db(), username=args.username, password=_password(args), roles=args.role, actor=cli_actor())


def cmd_users(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return {"users": list_users(ws.db(), actor=cli_actor())}


def cmd_sso_map(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    kind, subject = ("identity", args.identity) if args.identity else ("group", args.group)
    if args.remove:
        sso.remove_mapping(ws.db(), kind=kind, subject=subject, actor=cli_actor())
        return {"removed": {"kind": kind, "subject": subject}}
    return sso.set_mapping(ws.db(), kind=kind, subject=subject, roles=args.role or [], actor=cli_actor())


def cmd_sso_mappings(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return {"mappings": sso.mappings(ws.db(), actor=cli_actor())}


def add_commands(sub: Any) -> None:
    """Add the account commands to the console's argument parser."""
    s = sub.add_parser("create-user", help="create a local account (e.g. the first admin: --role admin)")
    s.add_argument("--username", required=True)
    s.add_argument("--role", action="append", required=True, choices=["inspector", "ops", "admin"])
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    s.set_defaults(fn=cmd_create_user)
    s = sub.add_parser("users", help="list accounts, local and single sign-on (never their password hashes)")
    s.set_defaults(fn=cmd_users)
    s = sub.add_parser("sso-map", help="map a single sign-on identity or group to roles (e.g. the admins' group)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity", help="the identity claim's value, e.g. an email")
    who.add_argument("--group", help="a value of the groups claim")
    s.add_argument("--role", action="append", choices=["inspector", "ops", "admin"])
    s.add_argument("--remove", action="store_true", help="remove the mapping instead")
    s.set_defaults(fn=cmd_sso_map)
    s = sub.add_parser("sso-mappings", help="list the single sign-on role mappings")
    s.set_defaults(fn=cmd_sso_mappings)
