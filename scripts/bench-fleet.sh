#!/usr/bin/env bash
# The fleet benchmark (issue 25, item 6; not a test): tenants dispatched by the real dispatcher
# into an in-process queue behind the TenantQueue port, run by a bounded pool of concurrent
# invocations of the real consumer (what poll-threats runs), on the simulator (every S1 request
# answered after 300 ms), with heavy tenants carrying a backlog into a receiver that answers in
# 200 ms. Prints one JSON object: dispatch time, p50/p99 of "due to poll started" and "due to
# poll finished" for the idle tenants with and without the heavy ones, and per idle tenant-run
# S1 requests, store reads and writes, queue requests, CPU ms, and the process's peak memory.
# docs/fleet-cost.md turns the per-run counts into a cost per tenant-month.
#
#   scripts/bench-fleet.sh                                  # 10,000 tenants, 20 heavy
#   FLEET_TENANTS=2000 FLEET_BACKLOG=20000 scripts/bench-fleet.sh
#   FLEET_ARGS="--workers 200 --invocation-s 120" scripts/bench-fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p s1-bridge
# shellcheck disable=SC2086
target/release/s1-bridge bench-fleet \
  --tenants "${FLEET_TENANTS:-10000}" --heavy "${FLEET_HEAVY:-20}" --backlog "${FLEET_BACKLOG:-100000}" \
  ${FLEET_ARGS:-}
