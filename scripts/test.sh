#!/usr/bin/env bash
# The one command that runs every test of s1-bridge, on a fresh machine or a warm one.
# It installs what the tests need (DynamoDB Local, moto and cfn-lint, SAM CLI, cargo-lambda), checks
# formatting, lints and the SAM template, starts the emulators on free loopback ports, runs
# every test, builds the four function binaries and runs each under a Lambda runtime emulator, stops
# what it started, and exits
# non-zero on any failure. Nothing is skipped for a missing tool: it is installed or the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (rustup) first" >&2; exit 1; }
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo --version

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "emulators"
# shellcheck source=scripts/emulators.sh
source scripts/emulators.sh
emulators_start

step "template"
# cfn-lint comes with moto[server] in the venv the emulator step installed.
"$TOOLS/venv/bin/cfn-lint" infra/template.yaml
echo "infra/template.yaml: cfn-lint clean"
# And as a deployer checks it: SAM's own validation (the transform) with its linter, offline
# (the emulator step set fake credentials and a region, and turned instance metadata off).
# shellcheck source=scripts/sam.sh
source scripts/sam.sh
sam_install
sam validate --lint

step "tests"
LOG=$(mktemp)
trap 'rm -f "$LOG"; emulators_stop' EXIT
cargo test --workspace --all-targets --locked 2>&1 | tee -a "$LOG"
cargo test --workspace --doc --locked 2>&1 | tee -a "$LOG"

step "lambda"
# The four function binaries (the test build's profile), each run under a Lambda runtime emulator.
# shellcheck source=scripts/lambda-check.sh
source scripts/lambda-check.sh
lambda_check

# One closing line over every test binary, so the total is plain to see.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$LOG"
