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
# The heavy tenants' side (their console, their receiver, their runs) is a child process at
# `nice -n 19`: on Lambda every invocation has a processor share of its own, so a heavy run must
# not take processor time from the measured idle runs. A heavy message still holds one of the
# pool's slots until its run ends (MaximumConcurrency counts it). The queue stays in-process
# and routes the heavy tenants' messages to the child: moto's SQS shared by two processes would
# put moto's own processor time (10,000 messages a minute) into the measurement. On a shared
# 2-core machine nice 19 is an approximation: the child still gets idle cycles and a small
# share under contention; other work on the machine (load shown before and after) competes too.
#
#   scripts/bench-fleet.sh                                  # 10,000 tenants, 20 heavy
#   FLEET_TENANTS=2000 FLEET_BACKLOG=20000 scripts/bench-fleet.sh
#   FLEET_ARGS="--workers 200 --invocation-s 120" scripts/bench-fleet.sh
#   FLEET_ARGS="--heavy-nice 0" scripts/bench-fleet.sh      # the heavy side as an equal, to compare
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p s1-bridge
echo "before: $(nproc) cores, $(uptime)" >&2
# shellcheck disable=SC2086
target/release/s1-bridge bench-fleet \
  --tenants "${FLEET_TENANTS:-10000}" --heavy "${FLEET_HEAVY:-20}" --backlog "${FLEET_BACKLOG:-100000}" \
  ${FLEET_ARGS:-}
echo "after: $(uptime)" >&2
