#!/usr/bin/env bash
# Regenerates the code for proto/ (the generated code is committed, so a fresh
# clone needs nothing else). Lints first: the contract must stay buf-clean.
#   src/gen          ts-proto + grpc-js: the server and the CLI (buf.gen.yaml)
#   gateway/web/gen  protobuf-es: the browser page and the embedded gRPC-Web
#                    endpoint, used with Connect's gRPC-Web transport (buf.gen.web.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
npx buf lint
rm -rf src/gen gateway/web/gen
npx buf generate
npx buf generate --template buf.gen.web.yaml
