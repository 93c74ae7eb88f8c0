# shellcheck shell=bash
# NATS server with JetStream, built with `go install`. Sourced by deploy/stack.sh.

NATS_VERSION=v2.10.29
NATS_PORT=4222
NATS_MONITOR_PORT=8222
NATS_DATA="$DATA_DIR/nats"

nats_install() {
  go_install nats-server "github.com/nats-io/nats-server/v2@$NATS_VERSION"
}

nats_healthy() {
  [[ "$(http_code "http://$HOST:$NATS_MONITOR_PORT/healthz")" == 200 ]]
}

nats_up() {
  already_up nats nats_healthy && return 0
  ensure_port_free nats "$NATS_PORT"
  ensure_port_free nats "$NATS_MONITOR_PORT"
  mkdir -p "$NATS_DATA"
  say "nats: starting on $HOST:$NATS_PORT (JetStream in $NATS_DATA, monitor $NATS_MONITOR_PORT)"
  start_bg nats "$BIN_DIR/nats-server" \
    -c "$DEPLOY_DIR/nats.conf" \
    -a "$HOST" -p "$NATS_PORT" \
    -js -sd "$NATS_DATA" \
    -m "$NATS_MONITOR_PORT" \
    -n chatflow-local
  wait_for nats nats_healthy
}

nats_down() { stop_proc nats 15; }

# JetStream enabled and healthy (healthz checks JetStream when it is on).
nats_check() {
  nats_healthy && grep -q '"config"' <<<"$(curl -s -m 5 "http://$HOST:$NATS_MONITOR_PORT/jsz")"
}
