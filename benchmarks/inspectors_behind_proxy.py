"""``benchmarks/concurrent_inspectors.py`` through the proxy of ``./run.sh --processes N`` (README: "Serving on every
core"), each client carrying its own ``console_backend`` cookie on its websocket and photo fetches, as a browser
does. Without it every client would reach the proxy cookie-less from one address, all hashed onto one app process,
and a photo fetched through the shared HTTP session could be asked of a process that never drew it.

    cp -a benchmarks/out/inspectors_ws_600 /tmp/ws   # the workspace concurrent_inspectors.py builds
    REVIEW_CONSOLE_STORAGE_ROOTS=$PWD/benchmarks/out/inspectors_ws_600 PORT=8701 ./run.sh --processes 2 --data-dir /tmp/ws &
    python benchmarks/inspectors_behind_proxy.py --url http://127.0.0.1:8701 --data-dir /tmp/ws \\
        --server-pid $(cat /tmp/ws/serve/run.pid) --inspectors 10 [--think 0.2,0.4] [--seconds 40]

Arguments and output are concurrent_inspectors.py's (the server's CPU is its whole tree: nginx, the app processes
and the worker service). The photos' storage root is given because the workspace's photos stay in the template.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import concurrent_inspectors as ci  # noqa: E402


async def connect(self: Any) -> None:
    import websockets

    self.cookie = f"console_backend={self.username}"  # one browser each
    u = urlparse(self.url)
    self.ws = await websockets.connect(f"ws://{u.netloc}/_stcore/stream", subprotocols=["streamlit"],
                                       max_size=2**26, open_timeout=60, additional_headers={"Cookie": self.cookie})


async def fetch(self: Any, http: Any, url: str) -> None:
    async with http.get(self.url + "/" + url.lstrip("/"), headers={"Cookie": self.cookie}) as resp:
        await resp.read()
        if resp.status != 200:
            self.errors.append(f"photo fetch answered {resp.status}")


if __name__ == "__main__":
    ci.Inspector.connect = connect
    ci.Inspector.fetch = fetch
    ci.main()
