#!/usr/bin/env bash
# CONNECT tunnel throughput and added latency: airlock's proxy vs a direct loopback connection,
# and vs another CONNECT proxy if one is given (e.g. srt's: OTHER_PROXY=127.0.0.1:PORT).
# Loopback only. Prints a markdown table for docs/network.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
args=(--mib "${MIB:-512}" --pings "${PINGS:-20000}")
if [[ -n "${OTHER_PROXY:-}" ]]; then args+=(--proxy "$OTHER_PROXY"); fi
cargo run --quiet --release -p airlock-net --example tunnel_bench -- "${args[@]}"
