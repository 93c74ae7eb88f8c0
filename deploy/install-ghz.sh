#!/usr/bin/env bash
# Builds the ghz gRPC load tester into .stack/bin/ghz (go install). Idempotent:
# skips the build when .stack/bin/ghz already is the pinned version.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

go_install_tool ghz github.com/bojand/ghz/cmd/ghz@v0.121.0 --version
