"""What every command module shares: who the command acts as."""

from __future__ import annotations

import getpass


def cli_actor() -> str:
    """The acting principal of a command: ``cli:<OS user>`` (a system principal, see services.core.authz)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
