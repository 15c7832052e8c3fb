#!/bin/sh
# run-demo.sh: `make run`. Serves the demo on http://127.0.0.1:8080/ in the
# foreground, with httpgate started per connection by systemd-socket-activate
# exactly as systemd would, and contrib/names.example filled in for this
# checkout. The PicoLisp app starts on the first request. Ctrl-C stops the
# gate and the app it started (found by the port it listens on).
#
# Environment: HTTPGATE_DEMO_LISTEN (127.0.0.1:8080), HTTPGATE_DEMO_PORT
# (8081, the app's port), HTTPGATE_DEMO_USER (the app's user; as root, a
# system user httpgate-demo is created when missing).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd -P)
listen=${HTTPGATE_DEMO_LISTEN:-127.0.0.1:8080}
app_port=${HTTPGATE_DEMO_PORT:-8081}
gate=$top/httpgate

die() { echo "run-demo: $*" >&2; exit 1; }

[ -x "$gate" ] || die "$gate is missing: run make"
command -v systemd-socket-activate >/dev/null || die "systemd-socket-activate is missing (package systemd)"
command -v pil >/dev/null || die "pil is missing (package picolisp)"

# The app never runs as root: the gate refuses uid 0.
if [ "$(id -u)" = 0 ]; then
        user=${HTTPGATE_DEMO_USER:-httpgate-demo}
        if ! id -u "$user" >/dev/null 2>&1; then
                echo "run-demo: creating system user $user"
                useradd --system --user-group --no-create-home --home-dir /nonexistent \
                        --shell /usr/sbin/nologin --comment "httpgate demo" "$user"
        fi
        [ "$(id -u "$user")" != 0 ] || die "user $user is root"
        as_user() { runuser -u "$user" -- "$@"; }
else
        user=${HTTPGATE_DEMO_USER:-$(id -un)}
        as_user() { "$@"; }
fi

run=$(mktemp -d "${TMPDIR:-/tmp}/httpgate-demo.XXXXXX")
chmod 755 "$run"
log=$run/demo.log
: >"$log"
[ "$(id -u)" != 0 ] || chown "$user:" "$log"

# The app runs in the checkout's contrib/demo when its user can read it
# there, else in a copy (a checkout under /root, say).
dir=$top/contrib/demo
if ! as_user test -r "$dir/demo.l" 2>/dev/null; then
        mkdir "$run/demo"
        cp "$dir/demo.l" "$dir/void" "$run/demo/"
        chmod -R a+rX "$run/demo"
        dir=$run/demo
fi

names=$run/names
sed -e "s|@DEMO_PORT@|$app_port|" -e "s|@DEMO_USER@|$user|" \
    -e "s|@DEMO_DIR@|$dir|" -e "s|@DEMO_LOG@|$log|" \
    "$top/contrib/names.example" >"$names"
"$gate" --check "$names" >/dev/null || die "$names: see above"

gate_pid=
# The demo server listening on the app's port, and its children (the
# sessions), by PID; only processes running in the demo's directory.
app_pids() {
        for p in $(ss -ltnpH "sport = :$app_port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
                [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$dir" ] || continue
                echo "$p"
                pgrep -P "$p" || true
        done
}
cleanup() {
        trap - INT TERM EXIT
        [ -z "$gate_pid" ] || kill "$gate_pid" 2>/dev/null || true
        pids=$(app_pids)
        if [ -n "$pids" ]; then
                echo "run-demo: stopping the demo app (pid $(echo $pids))"
                kill $pids 2>/dev/null || true
        fi
        rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 0' INT   # Ctrl-C is how the demo ends
trap 'exit 143' TERM

cat <<MSG
httpgate demo
  open      http://$listen/          (the PicoLisp app starts on the first request)
  names     $names
  app log   $log
  gate log  this terminal
  Ctrl-C stops the gate and the app.
MSG
# --launcher= : start the app directly (spawn), never through an installed
# httpgate-launch.socket, which would read /etc/httpgate/names instead.
# --void: the page for session URLs whose session has ended (/PORT/...~...
# routes name no entry, so the entry's own void file is not looked up).
systemd-socket-activate --accept -l "$listen" "$gate" --launcher= --lock-dir="$run" \
        --void="$dir/void" "$names" &
gate_pid=$!
wait "$gate_pid" || true
