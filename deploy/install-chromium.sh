#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (for browser / gRPC-Web tests)
# when /usr/bin/chromium is missing. Idempotent; uses sudo only when not root.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  echo "[chromium] already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[chromium] ERROR: not root and no sudo" >&2; exit 1; }
  SUDO=(sudo)
fi

t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "[chromium] installed in $(( $(date +%s) - t0 ))s: $(/usr/bin/chromium --version)"
