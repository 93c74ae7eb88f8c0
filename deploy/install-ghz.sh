#!/usr/bin/env bash
# Builds the ghz gRPC load tester into .stack/bin/ghz (go install). Idempotent:
# skips the build when .stack/bin/ghz already is the pinned version.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

GHZ_VERSION=v0.121.0
ensure_dirs
go_install ghz "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
# Fails the script (errexit) when the built binary does not run.
ghz_version=$("$BIN_DIR/ghz" --version 2>&1)
say "ghz: $BIN_DIR/ghz (${ghz_version%%$'\n'*})"
