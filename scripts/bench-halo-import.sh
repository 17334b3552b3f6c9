#!/usr/bin/env bash
# The first Halo import of a large console (issue 25's target: 5,000 agents in about the 50
# minutes Halo's budget allows, through continuations; not a test). One tenant on the simulator
# sends its agents to the Halo stand-in through the real sync-assets consumer, which runs one
# message at a time from an in-process queue (delays honoured) and sends itself a continuation
# after each partial run. Time is scaled: Halo's 300 s budget window becomes HALO_WINDOW_S (6 s:
# 50 times faster), and with it the client's pacing, the shared budget, the continuation delay
# and the invocation's limit (the Lambda's 900 s); S1 listing, the store and CPU are not scaled.
# Prints one JSON object: Halo requests (in total, per asset, by route), the most requests the
# stand-in saw in one window against the budget, runs, assets created (and any created twice),
# the measured time and the projected real time (measured x scale). docs/benchmarks.md records
# the figures.
#
#   scripts/bench-halo-import.sh                                   # 5,000 agents, 500 per window
#   HALO_AGENTS=1000 HALO_WINDOW_S=3 scripts/bench-halo-import.sh
#   HALO_ARGS="--accounts 20 --sites-per-account 5" scripts/bench-halo-import.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p s1-bridge
# shellcheck disable=SC2086
target/release/s1-bridge bench-halo-import \
  --agents "${HALO_AGENTS:-5000}" --budget "${HALO_BUDGET:-500}" --window-s "${HALO_WINDOW_S:-6}" \
  ${HALO_ARGS:-}
