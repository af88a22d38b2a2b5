#!/usr/bin/env bash
# Runs the whole suite in the project venv (mitmproxy >= 12 on Python >= 3.12).
set -u
VENV=${VENV:-.venv}
mitm=$("$VENV/bin/python" -c 'import mitmproxy.version as v; print(v.VERSION)')
echo "=== mitmproxy $mitm on $("$VENV/bin/python" -V 2>&1) ==="
# shellcheck disable=SC2086
exec "$VENV/bin/python" -m pytest ${PYTEST_ARGS:-}
