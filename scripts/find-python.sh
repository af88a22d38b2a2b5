#!/usr/bin/env bash
# Prints the first Python >= 3.12 found on PATH, then in ~/.pyenv/versions (oldest supported first: 3.12 is the Docker image's).
# wxgate needs mitmproxy >= 12, which needs Python >= 3.12.
set -u
for cand in python3 python3.12 python3.13 python3.14 \
    $(ls -d "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -V); do
  path=$(command -v "$cand" 2>/dev/null) || continue
  if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
echo "wxgate needs Python 3.12 or newer and none was found on PATH or in ~/.pyenv/versions: install python3.12 (apt-get install python3.12 python3.12-venv, or pyenv install 3.12) and run make again, or pass PYTHON=/path/to/python3.12." >&2
exit 1
