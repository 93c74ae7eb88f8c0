#!/usr/bin/env bash
# Regenerates src/gen from proto/ (the generated code is committed, so a fresh
# clone needs nothing else). Lints first: the contract must stay buf-clean.
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
rm -rf src/gen
npx buf generate
