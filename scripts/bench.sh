#!/usr/bin/env bash
# Benchmarks (not tests): poll-threats over a simulated backlog into a loopback receiver, on the
# embedded store and on DynamoDB Local, with batched delivery off and on, beside a fetch-only
# pass over the same simulator (S1's read rate here: the ceiling of a run on this machine).
# Prints, per source, backlog, store and batching: end-to-end items/s, its ratio to the ceiling,
# CPU ms per 1,000 items, peak RSS of the poller, and DynamoDB requests per 1,000 new and per
# 1,000 unchanged items (a rerun from a reset checkpoint). Two sources: threats (`GET /threats`)
# and unified alerts (UAM's GraphQL `alerts`, a tenant reading `sources: [unified]`).
#
#   scripts/bench.sh                          # threats: 10,000, 100,000 and 300,000;
#                                             # unified alerts: 25,000, 50,000 and 100,000
#   BENCH_SIZES="2000" BENCH_UNIFIED_SIZES="" scripts/bench.sh   # an empty list skips a source
#   BENCH_DYNAMODB_MAX=100000                 # larger backlogs run on the embedded store only
#   BENCH_WEBHOOKS=0                          # skip the writeback latency
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${BENCH_SIZES-"10000 100000 300000"}
UNIFIED_SIZES=${BENCH_UNIFIED_SIZES-"25000 50000 100000"}
DDB_MAX=${BENCH_DYNAMODB_MAX:-100000}
SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"   # test-only: opens the local receiver
TOKEN="sim-tenant-token"                          # the simulator's token
WORK=$(mktemp -d)

source scripts/emulators.sh
emulators_start
cargo build --release -q -p s1-bridge -p s1-bridge-sim
SIM_PID=""
cleanup() { [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; emulators_stop; rm -rf "$WORK"; }
trap cleanup EXIT

printf '\nmachine: %s, %s cores, %s\n' "$(uname -m)" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-8s %-8s %-9s %-6s %-6s %10s %8s %10s %9s %9s %9s\n' source backlog store batch run items/s ceiling "CPU ms/1k" "RSS MiB" "DDB/1k new" "DDB/1k seen"

# One backlog of one source: the fetch-only pass, then every store, batching and pass.
backlog() {
  local source=$1 n=$2 sim_port hook_port fetch ceiling stores table out
  local sim_items=(--threats "$n" --unified-alerts 0)
  # A third of the unified alerts are EDR twins of threats (by externalId): the simulator
  # makes them of its threats, which the unified tenant does not read.
  [ "$source" = unified ] && sim_items=(--threats $((n / 3 + 1)) --unified-alerts "$n")
  sim_port=$(free_port); hook_port=$(free_port)
  target/release/s1-bridge-sim --listen "127.0.0.1:$sim_port" "${sim_items[@]}" --agents 5000 --cloud-alerts 0 \
    --receiver "127.0.0.1:$hook_port" --receiver-secret "$SECRET" > "$WORK/sim.log" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$sim_port/web/api/v2.1/system/status" && break; sleep 0.1; done
  fetch=$(BENCH_S1_TOKEN=$TOKEN target/release/s1-bridge bench-fetch --console "http://127.0.0.1:$sim_port" --source "$source")
  ceiling=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["per_s"])' "$fetch")
  python3 - "$source" "$n" "$fetch" <<'PY'
import json, sys
source, n, out = sys.argv[1:4]
d = json.loads(out)
assert d["fetched"] == int(n), d
print(f"{source:<8} {n:<8} {'-':<9} {'-':<6} {'fetch':<6} {d['per_s']:10.0f} {1:8.2f} {d['cpu_ms_per_1000']:10.1f} {d['peak_rss_mib']:9.1f} {'-':>9} {'-':>9}")
PY
  stores="embedded"
  [ "$n" -le "$DDB_MAX" ] && stores="embedded dynamodb"
  for store in $stores; do
    for batch in off on; do
      table="bench-$n-$RANDOM"
      flags=(--source "$source")
      [ "$batch" = on ] && flags+=(--batch)
      for pass in first rerun; do
        extra=("${flags[@]}")
        [ "$pass" = rerun ] && extra+=(--reset-checkpoint)
        out=$(BENCH_S1_TOKEN=$TOKEN BENCH_WEBHOOK_SECRET=$SECRET target/release/s1-bridge bench-poll \
          --console "http://127.0.0.1:$sim_port" --webhook "http://127.0.0.1:$hook_port/hooks/s1" \
          --store "$store" --path "$WORK/$table.redb" --table "$table" "${extra[@]}")
        python3 - "$source" "$n" "$store" "$batch" "$pass" "$ceiling" "$out" <<'PY'
import json, sys
source, n, store, batch, run, ceiling, out = sys.argv[1:8]
d = json.loads(out)
r = d["report"]
assert r["outcome"] == "completed", r
per_new = d["dynamodb_requests_per_1000_new"] if run == "first" else None
per_seen = d["dynamodb_requests_per_1000_fetched"] if run == "rerun" else None
fmt = lambda v: "-" if v is None else f"{v:.1f}"
ratio = d["per_s"] / float(ceiling)
print(f"{source:<8} {n:<8} {store:<9} {batch:<6} {run:<6} {d['per_s']:10.0f} {ratio:8.2f} {d['cpu_ms_per_1000']:10.1f} {d['peak_rss_mib']:9.1f} {fmt(per_new):>9} {fmt(per_seen):>9}")
PY
      done
    done
  done
  stats=$(curl -s "http://127.0.0.1:$hook_port/hooks/stats")
  echo "                  receiver: $stats (each item once per store and batching)"
  kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=""
}

for n in $SIZES; do backlog threats "$n"; done
for n in $UNIFIED_SIZES; do backlog unified "$n"; done

[ "${BENCH_WEBHOOKS:-10000}" -gt 0 ] || exit 0
printf '\nstatus-writeback: handler latency excluding S1 time, %s signed webhooks over loopback\n' "${BENCH_WEBHOOKS:-10000}"
printf '%-9s %8s %8s %8s  %s\n' store "p50 ms" "p99 ms" "max ms" "answers"
for store in embedded dynamodb; do
  out=$(target/release/s1-bridge bench-webhook --count "${BENCH_WEBHOOKS:-10000}" --store "$store" \
    --path "$WORK/webhook.redb" --table "bench-webhook-$RANDOM")
  python3 - "$store" "$out" <<'PY'
import json, sys
store, out = sys.argv[1:3]
d = json.loads(out)
h = d["handler_ms_excluding_s1"]
print(f"{store:<9} {h['p50']:8.2f} {h['p99']:8.2f} {h['max']:8.2f}  {d['status_codes']}")
PY
done
