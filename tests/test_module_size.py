"""House rule: modules stay under 500 lines (split by what they do before they grow past it)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 500


def test_every_module_of_the_app_stays_under_500_lines():
    modules = [ROOT / "app.py", ROOT / "server.py",
               *(p for folder in ("services", "db", "pages") for p in (ROOT / folder).rglob("*.py"))]
    assert len(modules) > 50
    long = {str(p.relative_to(ROOT)): n for p in modules if (n := len(p.read_text().splitlines())) >= LIMIT}
    assert not long, f"split these by what they do: {long}"
