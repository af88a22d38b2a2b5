#!/usr/bin/env bash
# Render an HTML report in headless Chromium and save a PNG to look at.
#
#   bench/screenshot_report.sh [REPORT.html] [OUT.png]
#
# Without REPORT.html, builds a sample capture (several apps, every kind of verdict the
# audit judges offline), audits it with `python -m wxgate.cli audit` and shoots that report.
# Needs /usr/bin/chromium (Debian: apt-get install chromium). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
OUTDIR=bench/out
mkdir -p "$OUTDIR"
REPORT=${1:-}
PNG=${2:-$OUTDIR/report.png}
if [ ! -x "$CHROMIUM" ]; then
  echo "screenshot_report.sh: $CHROMIUM is not installed (apt-get install chromium)." >&2
  exit 2
fi
if [ -z "$REPORT" ]; then
  REPORT=$OUTDIR/sample-report.html
  "$PYTHON" - "$OUTDIR" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.audit_helpers import MP, T0, UA, make_flow, write_config, write_flows, write_har, har_entry
out = Path(sys.argv[1])
other = {"Referer": "https://servicewechat.com/wx00000000000000ff/0/page-frame.html", "User-Agent": UA}
flows = [make_flow(f"https://api.example.com/ok/{i}", start=T0 + i, headers=MP) for i in range(20)]
flows += [
    make_flow("http://api.example.com/login", start=T0 + 21, headers=MP),
    make_flow("https://evil.example.net/track?u=1", start=T0 + 22, headers=MP),
    make_flow("https://api.weixin.qq.com/cgi-bin/token", start=T0 + 23, headers=MP),
    make_flow("https://api.example.com/report", start=T0 + 24, duration=7.5, headers=MP),
    make_flow("https://api.example.com/me", start=T0 + 40, headers={"User-Agent": UA}),
    make_flow("https://api.example.com/other", start=T0 + 41, headers=other),
]
flows += [make_flow(f"https://api.example.com/feed/{i}", start=T0 + 50 + i / 50, duration=1, headers=MP) for i in range(12)]
flows += [make_flow("wss://ws.example.com/chat", start=T0 + 60 + i / 50, websocket_for=3, headers=MP) for i in range(6)]
write_flows(out / "sample.mitm", flows)
write_har(out / "sample.har", [
    har_entry("https://api.example.com:8443/upload", start=T0 + 70, headers=MP),
    har_entry("https://10.0.0.8/debug", start=T0 + 71, headers=MP),
])
write_config(out)
PY
  "$PYTHON" -m addons.cli audit "$OUTDIR/sample.mitm" "$OUTDIR/sample.har" -c "$OUTDIR/wxgate.yaml" \
    --html "$REPORT" --no-progress > /dev/null || [ $? -eq 1 ]
fi
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --user-data-dir="$PROFILE" \
  --window-size=1400,1800 --screenshot="$PNG" "file://$(realpath "$REPORT")" 2>/dev/null
echo "screenshot: $PNG (of $REPORT)"
