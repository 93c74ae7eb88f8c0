#!/usr/bin/env bash
# ghz for the load tests. The one installer is deploy/install-ghz.sh (go install
# of the pinned ghz into .stack/bin, idempotent). This wrapper adds one policy:
# when the Go checksum database cannot be reached (and only then: a checksum
# MISMATCH is never bypassed), it retries with GOSUMDB=off.
# Prints the path of the binary last.   bash loadtest/install-ghz.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INSTALL="$ROOT/deploy/install-ghz.sh"
GHZ="${CHATFLOW_STACK_DIR:-$ROOT/.stack}/bin/ghz"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if bash "$INSTALL" 2>&1 | tee "$log" >&2; then
  echo "$GHZ"
  exit 0
fi
if ! grep -q 'SECURITY ERROR' "$log" && grep -qiE 'sum\.golang\.org.*(dial tcp|lookup|no such host|timeout|connection refused|unreachable|TLS)' "$log"; then
  echo "install-ghz: the checksum database is unreachable; retrying with GOSUMDB=off" >&2
  GOSUMDB=off bash "$INSTALL" >&2
  echo "$GHZ"
  exit 0
fi
echo "install-ghz: $INSTALL failed (output above)" >&2
exit 1
