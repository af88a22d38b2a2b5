#!/bin/sh
# The wxgate image's entrypoint: turns WXGATE_* environment variables into
# `wxgate run` arguments, then execs it so that wxgate is PID 1 and gets
# `docker stop`'s SIGTERM itself. Extra arguments (compose `command:`, or what
# follows the image name in `docker run`) are appended, so they win: mitmproxy
# refuses an option set twice, so an option they --set is not set here as well.
#
#   WXGATE_CONFIG         config file (-c); unset in the image: wxgate's bundled default
#                         (compose.yaml sets it to the config it mounts)
#   WXGATE_MODE           enforce | report: overrides the config's mode
#   WXGATE_WEB            1 = mitmweb with its UI on all interfaces (port 8081); default 0
#   WXGATE_WEB_PASSWORD   fixed mitmweb password instead of a token printed at start-up
#   WXGATE_PORT           proxy port; default 8080
#   WXGATE_CONTROL_PORT   control API port, on 127.0.0.1 only (the HEALTHCHECK's); default 8082, 0 = off
#   WXGATE_CONFDIR        mitmproxy's confdir, where the CA lives; the image sets the CA volume
#   WXGATE_BIN            the wxgate executable; default wxgate
#   WXGATE_DRY_RUN        1 = print the command, one argument per line, instead of running it
#
# A first argument that is not an option is run as a command instead
# (`docker compose run --rm wxgate wxgate check-config`, or `sh`).
set -eu

fail() {
    printf 'wxgate entrypoint: %s\n' "$1" >&2
    exit 2
}

is_port() {
    case $1 in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "${#1}" -le 5 ] && [ "$1" -le 65535 ]
}

mode=${WXGATE_MODE:-}
web=${WXGATE_WEB:-0}
port=${WXGATE_PORT:-8080}
control_port=${WXGATE_CONTROL_PORT:-8082}
dry_run=${WXGATE_DRY_RUN:-0}

case $mode in
    '' | enforce | report) ;;
    *) fail "WXGATE_MODE must be enforce or report, not '$mode'." ;;
esac
case $web in
    0 | 1) ;;
    *) fail "WXGATE_WEB must be 0 or 1, not '$web'." ;;
esac
[ -z "${WXGATE_BLOCK_GLOBAL:-}" ] ||
    fail "WXGATE_BLOCK_GLOBAL is gone: who may use the proxy is the config's clients: list (docker/README.md)."
case $dry_run in
    0 | 1) ;;
    *) fail "WXGATE_DRY_RUN must be 0 or 1, not '$dry_run'." ;;
esac
is_port "$port" || fail "WXGATE_PORT must be a port number (0-65535), not '$port'."
is_port "$control_port" ||
    fail "WXGATE_CONTROL_PORT must be a port number (0-65535), not '$control_port'."

if [ $# -gt 0 ]; then
    case $1 in
        -*) ;;
        *)
            if [ "$dry_run" = 1 ]; then
                printf '%s\n' "$@"
                exit 0
            fi
            exec "$@"
            ;;
    esac
fi

# The mitmproxy options that the extra arguments set themselves, as " key key ".
theirs=' '
after_set=0
for arg; do
    if [ "$after_set" = 1 ]; then
        theirs="$theirs${arg%%=*} "
    fi
    case $arg in
        --set=*)
            option=${arg#--set=}
            theirs="$theirs${option%%=*} "
            ;;
    esac
    after_set=0
    if [ "$arg" = --set ]; then
        after_set=1
    fi
done

ours() {
    case $theirs in
        *" $1 "*) return 1 ;;
    esac
}

# POSIX sh has no arrays: the wxgate arguments are appended after the extra
# ones, then the extra ones are rotated to the end, each quoted exactly once.
extra=$#
set -- "$@" "${WXGATE_BIN:-wxgate}" run
if [ -n "${WXGATE_CONFIG:-}" ]; then
    set -- "$@" -c "$WXGATE_CONFIG"
fi
set -- "$@" -p "$port" --control-port "$control_port"
if [ -n "$mode" ] && ours wxgate_mode; then
    set -- "$@" --set "wxgate_mode=$mode"
fi
if [ -n "${WXGATE_CONFDIR:-}" ] && ours confdir; then
    set -- "$@" --set "confdir=$WXGATE_CONFDIR"
fi
if [ "$web" = 1 ]; then
    # mitmweb listens on 127.0.0.1 by default, which is unreachable from outside
    # the container; there is no browser to open inside it.
    set -- "$@" --web
    if ours web_host; then
        set -- "$@" --set web_host=0.0.0.0
    fi
    if ours web_open_browser; then
        set -- "$@" --set web_open_browser=false
    fi
    if [ -n "${WXGATE_WEB_PASSWORD:-}" ] && ours web_password; then
        set -- "$@" --set "web_password=$WXGATE_WEB_PASSWORD"
    fi
fi
while [ "$extra" -gt 0 ]; do
    set -- "$@" "$1"
    shift
    extra=$((extra - 1))
done

if [ "$dry_run" = 1 ]; then
    printf '%s\n' "$@"
    exit 0
fi
exec "$@"
