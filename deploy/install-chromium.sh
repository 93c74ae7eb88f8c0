#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (for browser / gRPC-Web tests)
# when /usr/bin/chromium is missing. Idempotent; uses sudo only when not root.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# shellcheck source=lib/common.sh
source "$DEPLOY_DIR/lib/common.sh"

apt_install chromium /usr/bin/chromium --version chromium fonts-liberation
