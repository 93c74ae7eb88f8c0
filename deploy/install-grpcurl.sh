#!/usr/bin/env bash
# Builds grpcurl (a command-line gRPC client that needs no .proto: it asks the
# server by reflection) into .stack/bin/grpcurl from the Go module proxy.
# Idempotent: skips the build when .stack/bin/grpcurl already is the pinned version.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

go_install_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3 -version
