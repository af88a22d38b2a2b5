#!/usr/bin/env bash
# Runs the suite once per mitmproxy line: 11.x on the default python3, 12.x on the
# first Python >= 3.12 found on PATH or in pyenv's versions folder.
set -u
VENV=${VENV:-.venv}
status=0
summary=()

run_line() {  # venv label
  local venv=$1 label=$2
  local mitm
  mitm=$("$venv/bin/python" -c 'import mitmproxy.version as v; print(v.VERSION)')
  echo "=== mitmproxy $mitm on $label ==="
  if "$venv/bin/python" -m pytest "${PYTEST_ARGS[@]}"; then
    summary+=("mitmproxy $mitm on $label: passed")
  else
    summary+=("mitmproxy $mitm on $label: FAILED")
    status=1
  fi
}

PYTEST_ARGS=(${PYTEST_ARGS:-})
run_line "$VENV" "$("$VENV/bin/python" -V 2>&1)"

newer=""
for cand in python3.13 python3.12 "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python; do
  path=$(command -v "$cand" 2>/dev/null) || continue
  if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    newer=$path
    break
  fi
done

if [ -n "$newer" ]; then
  ver=$("$newer" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv12=".venv-py$ver"
  if [ ! -f "$venv12/.stamp" ] || [ pyproject.toml -nt "$venv12/.stamp" ]; then
    echo "=== setting up $venv12 ($newer) for the mitmproxy 12 line ==="
    "$newer" -m venv "$venv12" && "$venv12/bin/pip" install -q --upgrade pip \
      && "$venv12/bin/pip" install -q -e '.[dev]' && touch "$venv12/.stamp" || {
        summary+=("mitmproxy 12 line on Python $ver: could not install"); status=1; }
  fi
  [ -f "$venv12/.stamp" ] && run_line "$venv12" "$("$venv12/bin/python" -V 2>&1)"
else
  summary+=("mitmproxy 12 line: SKIPPED, no Python >= 3.12 found on PATH or in ~/.pyenv/versions")
fi

echo
echo "=== lines ==="
printf '%s\n' "${summary[@]}"
exit $status
