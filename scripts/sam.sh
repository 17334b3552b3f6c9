#!/usr/bin/env bash
# The AWS SAM CLI with everything `sam build` needs for this project, installed on first use
# into .tools/ (nothing global): aws-sam-cli 1.170.0 and cargo-lambda 1.9.2 (it brings zig, the
# cross-linker) in their own Python venvs, and Rust's aarch64-unknown-linux-gnu target (the
# functions run on arm64). Then it runs `sam` with your arguments from the repository root, so
# samconfig.toml applies:
#
#   scripts/sam.sh build              # cargo lambda build --release --arm64, per function
#   scripts/sam.sh deploy --guided    # first deploy; later: scripts/sam.sh deploy
#   scripts/sam.sh validate --lint
#
# AWS credentials and region come from your environment as usual. scripts/test.sh sources this
# file for `sam validate --lint`.

SAM_ROOT="${SAM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
SAM_TOOLS="$SAM_ROOT/.tools"

sam_install() {
  mkdir -p "$SAM_TOOLS"
  if [ ! -x "$SAM_TOOLS/venv-sam/bin/sam" ]; then
    echo "installing aws-sam-cli==1.170.0 into .tools/venv-sam (about a minute, once)" >&2
    python3 -m venv "$SAM_TOOLS/venv-sam"
    "$SAM_TOOLS/venv-sam/bin/pip" install -q --disable-pip-version-check 'aws-sam-cli==1.170.0' >&2
  fi
  if [ ! -x "$SAM_TOOLS/venv-lambda/bin/cargo-lambda" ]; then
    echo "installing cargo-lambda==1.9.2 into .tools/venv-lambda (brings zig)" >&2
    python3 -m venv "$SAM_TOOLS/venv-lambda"
    "$SAM_TOOLS/venv-lambda/bin/pip" install -q --disable-pip-version-check 'cargo-lambda==1.9.2' >&2
  fi
  # Builds need cargo lambda on PATH, and cargo lambda finds zig through the `python3` on PATH
  # (the ziglang package): so its venv goes first. `sam` runs on its own venv's Python anyway.
  export PATH="$SAM_TOOLS/venv-lambda/bin:$SAM_TOOLS/venv-sam/bin:$PATH"
  export SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"
}

sam_arm64_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    echo "adding the Rust target aarch64-unknown-linux-gnu (the functions run on arm64)" >&2
    rustup target add aarch64-unknown-linux-gnu >&2
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$SAM_ROOT"
  sam_install
  case "${1:-}" in
    build | sync | deploy) sam_arm64_target ;;
  esac
  exec sam "$@"
fi
