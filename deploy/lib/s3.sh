# shellcheck shell=bash
# S3-compatible object store: MinIO built with `go install`.
# Sourced by deploy/stack.sh.
#
# The module proxy has no MinIO RELEASE.* tags (they are not semver), only
# pseudo-versions of commits; this pin is what `@latest` resolved to when the
# stack was written (MinIO's repository is archived, so it will not move).

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
S3_PORT=9000
S3_CONSOLE_PORT=9001
S3_DATA="$DATA_DIR/minio"
S3_ACCESS_KEY=chatflow
S3_SECRET_KEY=chatflow-secret
S3_BUCKET=chatflow-media
S3_REGION=us-east-1

s3_install() {
  go_install minio "$MINIO_MODULE@$MINIO_VERSION"
}

s3_healthy() {
  [[ "$(http_code "http://$HOST:$S3_PORT/minio/health/live")" == 200 ]]
}

s3_bucket() {
  node "$DEPLOY_DIR/lib/s3-bucket.js" "http://$HOST:$S3_PORT" "$S3_REGION" \
    "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$S3_BUCKET"
}

s3_up() {
  if already_up minio s3_healthy; then
    s3_bucket >/dev/null
    return 0
  fi
  ensure_port_free minio "$S3_PORT"
  ensure_port_free minio "$S3_CONSOLE_PORT"
  mkdir -p "$S3_DATA" "$STACK_DIR/minio/certs"
  say "minio: starting on $HOST:$S3_PORT (console $S3_CONSOLE_PORT, data in $S3_DATA)"
  MINIO_ROOT_USER="$S3_ACCESS_KEY" \
  MINIO_ROOT_PASSWORD="$S3_SECRET_KEY" \
  MINIO_REGION="$S3_REGION" \
  MINIO_UPDATE=off \
  MINIO_CALLHOME_ENABLE=off \
    start_bg minio "$BIN_DIR/minio" server "$S3_DATA" \
      --address "$HOST:$S3_PORT" \
      --console-address "$HOST:$S3_CONSOLE_PORT" \
      --certs-dir "$STACK_DIR/minio/certs" \
      --quiet
  wait_for minio s3_healthy
  s3_bucket >/dev/null || fail_with_log minio "could not create bucket $S3_BUCKET"
}

s3_down() { stop_proc minio 15; }

# Anonymous GET must be refused with an S3 XML error; signed bucket HEAD must pass.
s3_check() {
  grep -q '<Error>' <<<"$(curl -s -m 5 "http://$HOST:$S3_PORT/$S3_BUCKET")" && s3_bucket >/dev/null
}
