#!/usr/bin/env bash
# Runs ChatFlow's real engines as plain local processes (no Docker), all on
# 127.0.0.1, everything installed into the git-ignored .stack/ folder.
#
#   bash deploy/stack.sh install   install whatever is missing (idempotent)
#   bash deploy/stack.sh up        install if needed, start, wait until healthy
#   bash deploy/stack.sh down      stop what `up` started (pid files in .stack/run)
#   bash deploy/stack.sh env       print `export …` lines for ChatFlow
#   bash deploy/stack.sh status    which servers run and answer
#   bash deploy/stack.sh check     end-to-end smoke test of every engine
#
# npm: stack:install, stack:up, stack:down, stack:env. See deploy/README.md.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"

# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$DEPLOY_DIR/lib/kafka.sh"
# shellcheck source=lib/postgres.sh
source "$DEPLOY_DIR/lib/postgres.sh"
# shellcheck source=lib/mongo.sh
source "$DEPLOY_DIR/lib/mongo.sh"
# shellcheck source=lib/nats.sh
source "$DEPLOY_DIR/lib/nats.sh"
# shellcheck source=lib/s3.sh
source "$DEPLOY_DIR/lib/s3.sh"
# shellcheck source=lib/envoy.sh
source "$DEPLOY_DIR/lib/envoy.sh"

# The storage/messaging engines (Envoy, the optional front door, is separate).
ENGINES=(kafka ferretdb nats minio)
# FerretDB's PostgreSQL (CHATFLOW_FERRETDB_BACKEND=postgresql) runs beside them.
pg_wanted() { [[ "$FERRETDB_BACKEND" == postgresql ]]; }
if pg_wanted; then ENGINES+=(postgres); fi

cmd_install() {
  ensure_dirs
  need_cmd curl
  need_cmd node
  # Cheap ones first: a failure in a long Go build then comes last.
  kafka_install
  if pg_wanted; then pg_install; fi
  envoy_install
  nats_install
  mongo_install
  s3_install
}

# Start order: storage first, Envoy (front door) last. cmd_down stops in reverse.
cmd_up() {
  local t0 t1
  t0=$(date +%s)
  cmd_install
  kafka_up
  if pg_wanted; then pg_up; fi
  mongo_up
  nats_up
  s3_up
  envoy_up
  t1=$(date +%s)
  summary
  say "up: done in $((t1 - t0))s"
}

cmd_down() {
  ensure_dirs
  # Reverse of the start order in cmd_up.
  envoy_down
  s3_down
  nats_down
  mongo_down
  pg_down
  kafka_down
  say "down: all stopped"
}

cmd_env() {
  # Exactly the lines ChatFlow needs; `eval "$(npm run -s stack:env)"`.
  # (A note on stderr when the stack is not up; stdout stays eval-able.)
  local name
  for name in "${ENGINES[@]}"; do
    is_running "$name" || say "note: $name is not running (npm run stack:up)"
  done
  cat <<EOF
export KAFKA_BROKERS=$HOST:$KAFKA_PORT
export MONGODB_URI=mongodb://$HOST:$FERRETDB_PORT/chatflow
export NATS_URL=nats://$HOST:$NATS_PORT
export S3_ENDPOINT=http://$HOST:$S3_PORT
export S3_BUCKET=$S3_BUCKET
export S3_REGION=$S3_REGION
export S3_ACCESS_KEY_ID=$S3_ACCESS_KEY
export S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export S3_FORCE_PATH_STYLE=true
EOF
  if is_running envoy; then
    echo "export CHATFLOW_ENVOY_URL=http://$HOST:$ENVOY_PORT"
  fi
}

status_line() {
  local name=$1 endpoint=$2 healthy=$3 pid="-" state
  if is_running "$name"; then
    pid=$(cat "$(pid_file "$name")")
    if "$healthy"; then state=healthy; else state=UNHEALTHY; fi
  else
    state=stopped
  fi
  printf '  %-9s %-10s pid %-8s %s\n' "$name" "$state" "$pid" "$endpoint"
}

summary() {
  echo "ChatFlow stack ($STACK_DIR):"
  status_line kafka "kafka $KAFKA_VERSION      PLAINTEXT $HOST:$KAFKA_PORT, controller $KAFKA_CONTROLLER_PORT" kafka_healthy
  status_line ferretdb "ferretdb $FERRETDB_VERSION mongodb://$HOST:$FERRETDB_PORT ($(cat "$FERRETDB_BACKEND_FILE" 2>/dev/null || echo "$FERRETDB_BACKEND"))" mongo_healthy
  if pg_wanted || is_running postgres; then
    status_line postgres "postgres $PG_VERSION   postgres://$HOST:$PG_PORT (FerretDB's storage)" pg_healthy
  fi
  status_line nats "nats $NATS_VERSION     nats://$HOST:$NATS_PORT, JetStream, monitor http://$HOST:$NATS_MONITOR_PORT" nats_healthy
  status_line minio "minio         http://$HOST:$S3_PORT bucket $S3_BUCKET, console $S3_CONSOLE_PORT" s3_healthy
  if envoy_wanted || is_running envoy; then
    status_line envoy "envoy $ENVOY_PKG_VERSION    gRPC-Web http://$HOST:$ENVOY_PORT, admin $ENVOY_ADMIN_PORT" envoy_healthy
  else
    printf '  %-9s %-10s (no gateway/envoy.yaml)\n' envoy skipped
  fi
  echo "Logs: $LOG_DIR/<name>.log    Point ChatFlow at it: eval \"\$(npm run -s stack:env)\""
}

cmd_status() {
  ensure_dirs
  summary
  local name
  for name in "${ENGINES[@]}"; do
    is_running "$name" || return 1
  done
}

cmd_check() {
  ensure_dirs
  local ok=0
  _chk() {
    local name=$1 fn=$2
    if "$fn"; then
      printf '  %-9s OK\n' "$name"
    else
      printf '  %-9s FAILED (log: %s/%s.log)\n' "$name" "$LOG_DIR" "$name"
      ok=1
    fi
  }
  echo "Smoke test:"
  _chk kafka kafka_check
  _chk ferretdb mongo_check
  if pg_wanted; then _chk postgres pg_check; fi
  _chk nats nats_check
  _chk minio s3_check
  if is_running envoy; then _chk envoy envoy_healthy; fi
  return "$ok"
}

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  case "$cmd" in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    status) cmd_status ;;
    check) cmd_check ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
