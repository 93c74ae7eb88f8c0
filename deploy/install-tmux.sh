#!/usr/bin/env bash
# Installs tmux (Debian's package) for the test that drives the interactive CLI
# in a real terminal. Idempotent; uses sudo only when not root.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

apt_install tmux tmux -V tmux
