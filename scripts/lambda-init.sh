#!/usr/bin/env bash
# Start-up of the release bootstraps (docs/benchmarks.md): for each function, the time from
# starting its bootstrap to its first GET .../runtime/invocation/next at cargo-lambda's Lambda
# runtime emulator (`cargo lambda watch --only-lambda-apis`): the init phase, configuration and
# clients included, less the sandbox. A loopback relay in front of the emulator timestamps the
# request. Median, minimum and maximum of RUNS starts (default 15), and the bootstrap and zip sizes.
#
#   scripts/release.sh && scripts/lambda-init.sh [RUNS]
#
# The bootstraps are the arm64 ones in target/lambda/ (from scripts/release.sh or scripts/sam.sh
# build), or those in LAMBDA_DIR (e.g. an x86_64 build: `cargo lambda build --release
# --lambda-dir target/lambda-x86_64 -p ...`). An arm64 bootstrap on an x86_64 machine runs under
# qemu-user (apt packages qemu-user and libc6-arm64-cross, installed when missing), which
# translates every instruction: its times are an upper bound of what a Graviton core takes.
# Not a test; needs cargo-lambda (.tools/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/sam.sh
source scripts/sam.sh
sam_install
runs="${1:-15}"
lambda_dir="${LAMBDA_DIR:-${CARGO_TARGET_DIR:-target}/lambda}"
mapfile -t functions < <(sed -n 's#^ *CodeUri: \.\./functions/\([a-z0-9-]*\) *$#\1#p' infra/template.yaml)
for fn in "${functions[@]}"; do
  [ -f "$lambda_dir/$fn/bootstrap" ] || { echo "error: no $lambda_dir/$fn/bootstrap: run scripts/release.sh first" >&2; exit 1; }
done
runner=()
# ELF e_machine b7 00: aarch64.
if [ "$(od -An -tx1 -j18 -N2 "$lambda_dir/${functions[0]}/bootstrap" | tr -d ' ')" = b700 ] && [ "$(uname -m)" != aarch64 ]; then
  if ! command -v qemu-aarch64 >/dev/null || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
    echo "installing qemu-user and libc6-arm64-cross (apt) to run the arm64 bootstraps"
    apt-get update -qq && apt-get install -y -qq qemu-user libc6-arm64-cross >/dev/null
  fi
  runner=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
fi

# dist/'s zips are shown only beside the bootstraps they were made from (scripts/release.sh's).
show_zips=$([ -z "${LAMBDA_DIR:-}" ] && echo 1 || echo 0)
python3 - "$runs" "$lambda_dir" "${runner[*]:-}" "$show_zips" "${functions[@]}" <<'PY'
import os, socket, statistics, subprocess, sys, threading, time

runs, lambda_dir, runner = int(sys.argv[1]), sys.argv[2], sys.argv[3].split()
show_zips, functions = sys.argv[4] == "1", sys.argv[5:]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

emu_port, relay_port = free_port(), free_port()
emu = subprocess.Popen(["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(emu_port)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", emu_port), timeout=0.2).close(); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("error: the Lambda runtime emulator did not start")

first_next = {"t": None}
seen = threading.Event()

def pipe(src, dst, watch):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if watch and not seen.is_set() and b"/runtime/invocation/next" in data:
                first_next["t"] = time.monotonic(); seen.set()
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass

def relay():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", relay_port)); srv.listen(16)
    while True:
        c, _ = srv.accept()
        u = socket.create_connection(("127.0.0.1", emu_port))
        threading.Thread(target=pipe, args=(c, u, True), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c, False), daemon=True).start()

threading.Thread(target=relay, daemon=True).start()
env = dict(os.environ,
           AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{relay_port}/.rt", AWS_LAMBDA_FUNCTION_NAME="_",
           AWS_LAMBDA_FUNCTION_VERSION="1", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
           AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_SESSION_TOKEN="test",
           AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
           TABLE_NAME="s1-bridge-prod", POLL_CONCURRENCY="4", SECRET_CACHE_SECONDS="300",
           S1_BRIDGE_ALLOWED_HOSTS="*.sentinelone.net")
print(f"{'function':18} {'bootstrap':>10} {'zip':>10} {'init median':>12} {'min':>8} {'max':>8}   ({runs} starts{', under ' + runner[0] if runner else ', native'})")
try:
    for fn in functions:
        boot = os.path.join(lambda_dir, fn, "bootstrap")
        times = []
        for _ in range(runs):
            seen.clear(); first_next["t"] = None
            t0 = time.monotonic()
            p = subprocess.Popen(runner + [boot], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if not seen.wait(30):
                p.kill(); err = p.communicate()[1].decode(errors="replace")[-2000:]
                sys.exit(f"error: {fn} made no /next request within 30 s; its stderr:\n{err}")
            times.append((first_next["t"] - t0) * 1000)
            p.kill(); p.wait()
        z = os.path.join("dist", fn + ".zip")
        zsize = f"{os.path.getsize(z) / 1e6:.2f} MB" if show_zips and os.path.exists(z) else "-"
        print(f"{fn:18} {os.path.getsize(boot) / 1e6:>7.2f} MB {zsize:>10} {statistics.median(times):>9.1f} ms"
              f" {min(times):>5.1f} ms {max(times):>5.1f} ms")
finally:
    emu.terminate(); emu.wait()
PY
