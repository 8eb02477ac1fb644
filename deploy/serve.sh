#!/usr/bin/env bash
# Serve on every core (README: "Serving on every core"); started by `./run.sh --processes N [--data-dir DIR]`,
# after its set-up, from the repository's root:
#   - N Streamlit app processes (server.py) on 127.0.0.1, ports PORT+1 .. PORT+N, jobs off (REVIEW_CONSOLE_WORKER=off);
#   - one worker service (`python -m services.cli work --watch`): every background job and chore, in one process;
#   - nginx on HOST:PORT (default 127.0.0.1:8501), each browser kept on one app process (deploy/nginx.conf.template).
# All share the workspace's SQLite database (WAL; multi-step writes BEGIN IMMEDIATE: db/database.py).
# Generated files and logs: DATA_DIR/serve/ (nginx.conf, logs/, run.pid). Stop: Ctrl-C, or kill $(cat DATA_DIR/serve/run.pid).
# If one of the processes exits, the others are stopped too and this exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
N=$1
shift
DATA_ARGS=("$@")
VENV=.venv
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8501}

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$NGINX" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "nginx not found: installing Debian's nginx (apt-get install -y nginx) ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) || true
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  fi
  if [ ! -x "$NGINX" ]; then
    echo "error: --processes needs the nginx reverse proxy, which is not installed." >&2
    echo "  Debian/Ubuntu: sudo apt-get install -y nginx   (or set NGINX=/path/to/nginx; ./run.sh alone needs none)" >&2
    exit 1
  fi
fi

# the workspace (created, migrated once here, before N processes open it) and the secrets every process shares
DATA=$("$VENV/bin/python" - "${DATA_ARGS[@]}" <<'PY'
import sys
from services.core.config import Workspace
ws = Workspace.open(sys.argv[2] if len(sys.argv) > 2 else None)
ws.db().close()
print(ws.root.resolve())
PY
)
SERVE="$DATA/serve"
mkdir -p "$SERVE/logs" "$SERVE/tmp"
chmod 700 "$SERVE"
secret() { "$VENV/bin/python" -c "import secrets; print(secrets.token_urlsafe(32))"; }
# one set-up token for every process: a fresh workspace's set-up link works whichever process the browser reaches
export REVIEW_CONSOLE_SETUP_TOKEN=${REVIEW_CONSOLE_SETUP_TOKEN:-$(secret)}
export STREAMLIT_SERVER_COOKIE_SECRET=${STREAMLIT_SERVER_COOKIE_SECRET:-$(secret)}  # Streamlit's signed cookies
# nginx proves itself to the app processes with this header (services/core/network.py proxy_vouches): behind it
# every peer is 127.0.0.1, and loopback alone is no proof (any local program can forge X-Forwarded-For)
export REVIEW_CONSOLE_PROXY_SECRET=$(secret)
PUBLIC_URL="http://$HOST:$PORT"  # what people open (each app process logs its own address in its banner)

PIDS=()
stop() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -f "$SERVE/run.pid"
}
trap stop EXIT
trap 'exit 0' INT TERM
echo $$ > "$SERVE/run.pid"

SERVERS=""
for i in $(seq 1 "$N"); do
  port=$((PORT + i))
  REVIEW_CONSOLE_WORKER=off "$VENV/bin/streamlit" run server.py --server.address 127.0.0.1 --server.port "$port" \
    --server.headless true -- "${DATA_ARGS[@]}" >"$SERVE/logs/app-$i.log" 2>&1 &
  PIDS+=($!)
  SERVERS+="        server 127.0.0.1:$port max_fails=1 fail_timeout=5s;"$'\n'
done
"$VENV/bin/python" -m services.cli "${DATA_ARGS[@]}" work --watch >"$SERVE/logs/worker.log" 2>&1 &
PIDS+=($!)

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"  # nginx's workers would be 'nobody', who cannot enter the 0700 workspace
"$VENV/bin/python" - deploy/nginx.conf.template "$SERVE/nginx.conf" "$SERVE" "$HOST:$PORT" "$USER_LINE" "$SERVERS" <<'PY'
import os, sys
template, out, serve, listen, user_line, servers = sys.argv[1:]
text = open(template).read()
for key, value in {"SERVE": serve, "LISTEN": listen, "USER_LINE": user_line, "SERVERS": servers.rstrip("\n"),
                   "PROXY_SECRET": os.environ["REVIEW_CONSOLE_PROXY_SECRET"]}.items():
    text = text.replace(f"@@{key}@@", value)
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the proxy's secret
with os.fdopen(fd, "w") as f:
    f.write(text)
os.chmod(out, 0o600)
PY
NGINX_ARGS=(-p "$SERVE" -e "$SERVE/logs/nginx-error.log" -c "$SERVE/nginx.conf")
"$NGINX" -t -q "${NGINX_ARGS[@]}"
"$NGINX" "${NGINX_ARGS[@]}" &
PIDS+=($!)

# ready when every app process answers its health check through its own port
deadline=$((SECONDS + 120))
for i in $(seq 1 "$N"); do
  until "$VENV/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "http://127.0.0.1:$((PORT + i))/_stcore/health" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "error: app process $i did not start; see $SERVE/logs/app-$i.log" >&2
      exit 1
    fi
    kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null || { echo "error: app process $i exited; see $SERVE/logs/app-$i.log" >&2; exit 1; }
    sleep 0.5
  done
done
echo "Serving on http://$HOST:$PORT: $N app processes (127.0.0.1:$((PORT + 1))-$((PORT + N))), one worker, nginx." \
  "Logs: $SERVE/logs. Stop: Ctrl-C or kill \$(cat $SERVE/run.pid)"
if "$VENV/bin/python" -c "import sys; from services.core.config import Workspace; from services.core.authz import setup_mode
db = Workspace.open(sys.argv[1]).db(); sys.exit(0 if setup_mode(db) else 1)" "$DATA"; then
  "$VENV/bin/python" -c "import sys; from services.access.setup import banner; print(banner(token=sys.argv[1], url=sys.argv[2]))" \
    "$REVIEW_CONSOLE_SETUP_TOKEN" "$PUBLIC_URL"
fi
set +e
wait -n "${PIDS[@]}"
status=$?
echo "a process of the console exited ($status); stopping the others" >&2
exit 1
