"""Page tests run a fresh workspace as the local operator who has presented the set-up token (issue 19 item 7);
tests/pages/test_setup_token.py checks the token itself (its ``CHECKS_SETUP_TOKEN = True``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _setup_token_presented(request, monkeypatch):
    if not getattr(request.module, "CHECKS_SETUP_TOKEN", False):
        monkeypatch.setattr("pages.common.setup_admitted", lambda: True)
