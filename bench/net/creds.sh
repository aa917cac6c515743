#!/usr/bin/env bash
# What the credential proxy costs: HTTPS requests through airlock's proxy as a plain CONNECT
# tunnel vs as a credential host (TLS terminated, placeholder swapped, response scrubbed):
# per-request latency p50/p99 and time to the first SSE event on a fresh connection.
# Loopback only. Prints a markdown table for docs/credentials.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --quiet --release -p airlock-net --example cred_bench -- \
  --requests "${REQUESTS:-5000}" --connections "${CONNECTIONS:-300}"
