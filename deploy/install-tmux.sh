#!/usr/bin/env bash
# Installs tmux (Debian's package) for the test that drives the interactive CLI
# in a real terminal. Idempotent; uses sudo only when not root.
set -euo pipefail

if command -v tmux >/dev/null 2>&1; then
  echo "[tmux] already installed: $(tmux -V)"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "[tmux] ERROR: not root and no sudo" >&2; exit 1; }
  SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends tmux >/dev/null
echo "[tmux] installed: $(tmux -V)"
