#!/usr/bin/env bash
# Release artefacts: what someone without a Rust toolchain deploys (docs/deploy.md, "From a
# release"). Into dist/:
#   <function>.zip      the arm64 bootstraps, one cargo lambda build of every function package,
#                       each zipped as `bootstrap` (mode 755, fixed timestamps: same binary, same zip)
#   s1-bridge.yaml      infra/template.yaml with each CodeUri pointing at its zip in S3
#                       (parameters ArtifactBucket and ArtifactPrefix) and no build metadata;
#                       cfn-lint must pass on it
#   SHA256SUMS          sha256sum of the zips and the template (`sha256sum -c SHA256SUMS`)
#   release-notes.md    the CHANGELOG section of the version (not a release asset)
#
#   scripts/release.sh 1.2.0     # a release: the CHANGELOG must have a "## [1.2.0]" section
#   scripts/release.sh           # version "dev", for trying it out (no CHANGELOG check)
#   scripts/release.sh --check   # the test command's check: everything but the cross build,
#                                # on the test build's own binaries (target/debug), in a temp dir
#                                # (RELEASE_CHECK_OUT=dir keeps it there)
#
# The build installs what it needs like scripts/sam.sh (cargo-lambda with zig, SAM CLI for its
# cfn-lint, Rust's aarch64 target) and uses the same `cargo lambda build --release --arm64` as
# `sam build`, in the same target directory: after `scripts/sam.sh build` it compiles nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/sam.sh
source scripts/sam.sh

check=false
if [ "${1:-}" = "--check" ]; then check=true; shift; fi
version="${1:-dev}"
version="${version#v}"
if [ "$version" != dev ] && ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "error: '$version' is not a version (X.Y.Z, or vX.Y.Z as a tag)" >&2; exit 2
fi
target_dir="${CARGO_TARGET_DIR:-target}"

# The functions, in template order: each CodeUri names its package, whose one bin is its name.
mapfile -t functions < <(sed -n 's#^ *CodeUri: \.\./functions/\([a-z0-9-]*\) *$#\1#p' infra/template.yaml)
[ "${#functions[@]}" -gt 0 ] || { echo "error: no CodeUri ../functions/<name> in infra/template.yaml" >&2; exit 1; }

release_notes() { # version -> the CHANGELOG section's body, or failure when there is none
  awk -v v="$1" '
    index($0, "## [" v "]") == 1 { found = 1; next }
    found && /^## \[/ { exit }
    found { print }
    END { if (!found) exit 1 }' CHANGELOG.md
}

# zip_bootstrap binary zip level: one entry "bootstrap", mode 755, 1980 timestamp.
zip_bootstrap() {
  python3 - "$@" <<'PY'
import sys, zipfile
src, dst, level = sys.argv[1], sys.argv[2], int(sys.argv[3])
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16
info.create_system = 3  # unix, so the mode above is read
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)
PY
}

# package_template out-file version: the template deployable from the zips in S3.
package_template() {
  python3 - infra/template.yaml "$1" "$2" "${#functions[@]}" <<'PY'
import re, sys
src, dst, version, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
text = open(src).read()
# The build metadata goes: nothing is built from this template.
text, n_meta = re.subn(r"^( +)Metadata:\n\1  BuildMethod: rust-cargolambda\n", "", text, flags=re.M)
def code_uri(m):
    pad, name = m.group(1), m.group(2)
    return (f"{pad}CodeUri:\n{pad}  Bucket: !Ref ArtifactBucket\n"
            f"{pad}  Key: !Sub \"${{ArtifactPrefix}}{name}.zip\"\n")
text, n_code = re.subn(r"^( +)CodeUri: \.\./functions/([a-z0-9-]+) *\n", code_uri, text, flags=re.M)
if not (n_meta == n_code == count):
    sys.exit(f"error: rewrote {n_code} CodeUri and {n_meta} Metadata blocks, expected {count} of each")
params = f"""Parameters:
  ArtifactBucket:
    Type: String
    AllowedPattern: "[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]"
    Description: >-
      S3 bucket holding this release's function zips, in the stack's region (Lambda reads code
      only from a bucket in its own region).
  ArtifactPrefix:
    Type: String
    Default: s1-bridge/{version}/
    Description: Key prefix of the zips in ArtifactBucket (each zip keeps its release file name).
"""
if text.count("\nParameters:\n") != 1:
    sys.exit("error: expected one top-level Parameters section")
text = text.replace("\nParameters:\n", "\n" + params, 1)
banner = (f"# s1-bridge {version}: infra/template.yaml packaged by scripts/release.sh. The functions'\n"
          "# code is the release's zips, read from s3://<ArtifactBucket>/<ArtifactPrefix><function>.zip.\n")
open(dst, "w").write(banner + text)
PY
}

# verify out-dir: what a user relies on, checked on the files as written.
verify() {
  local out=$1 fn
  (cd "$out" && sha256sum --quiet -c SHA256SUMS) || { echo "error: SHA256SUMS does not verify" >&2; return 1; }
  for fn in "${functions[@]}"; do
    python3 - "$out/$fn.zip" <<'PY' || return 1
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
mode = (z.getinfo("bootstrap").external_attr >> 16) & 0o777 if names == ["bootstrap"] else None
if mode != 0o755:
    sys.exit(f"error: {sys.argv[1]} holds {names} (bootstrap mode {mode and oct(mode)}); expected one executable bootstrap")
PY
    grep -qF "Key: !Sub \"\${ArtifactPrefix}$fn.zip\"" "$out/s1-bridge.yaml" ||
      { echo "error: s1-bridge.yaml has no CodeUri for $fn.zip" >&2; return 1; }
  done
  if grep -nE 'CodeUri: \.\./|BuildMethod' "$out/s1-bridge.yaml"; then
    echo "error: s1-bridge.yaml still refers to the sources" >&2; return 1
  fi
  "$SAM_TOOLS/venv-sam/bin/cfn-lint" "$out/s1-bridge.yaml"
  echo "s1-bridge.yaml: cfn-lint clean"
}

sam_install   # cargo-lambda on PATH; the SAM CLI's venv carries cfn-lint
if $check; then
  if [ -n "${RELEASE_CHECK_OUT:-}" ]; then out=$RELEASE_CHECK_OUT; rm -rf "$out"; mkdir -p "$out"   # kept
  else out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
  # The test build's own binaries stand in for the arm64 ones (the cross build takes minutes:
  # CI's sam-build job and the release workflow run it); everything after the build is the same.
  for fn in "${functions[@]}"; do
    bin="$target_dir/debug/$fn"
    [ -x "$bin" ] || { echo "error: $bin missing: run after the test build (cargo build --workspace --bins)" >&2; exit 1; }
    zip_bootstrap "$bin" "$out/$fn.zip" 1
  done
  # A version the CHANGELOG does not have is refused, and the one it has last is accepted.
  if release_notes 0.0.0-not-released >/dev/null; then echo "error: notes found for a version never released" >&2; exit 1; fi
  release_notes Unreleased > "$out/release-notes.md" || { echo "error: CHANGELOG has no [Unreleased] section" >&2; exit 1; }
else
  out="$ROOT/dist"
  if [ "$version" != dev ]; then
    release_notes "$version" > /dev/null ||
      { echo "error: CHANGELOG.md has no '## [$version]' section: the release's version is the CHANGELOG's" >&2; exit 1; }
  fi
  sam_arm64_target
  rm -rf "$out"; mkdir -p "$out"
  args=()
  for fn in "${functions[@]}"; do args+=(-p "$fn"); done
  echo "cargo lambda build --release --arm64 --locked ${args[*]}"
  cargo lambda build --release --arm64 --locked "${args[@]}"
  for fn in "${functions[@]}"; do
    bin="$target_dir/lambda/$fn/bootstrap"
    # ELF e_machine 0xb7: aarch64, what Architectures: [arm64] runs.
    [ "$(od -An -tx1 -j18 -N2 "$bin" | tr -d ' ')" = b700 ] || { echo "error: $bin is not an aarch64 binary" >&2; exit 1; }
    zip_bootstrap "$bin" "$out/$fn.zip" 9
  done
  if [ "$version" = dev ]; then echo "(a dev build: no CHANGELOG section)" > "$out/release-notes.md"
  else release_notes "$version" > "$out/release-notes.md"; fi
fi

package_template "$out/s1-bridge.yaml" "$version"
(cd "$out" && sha256sum -- *.zip s1-bridge.yaml > SHA256SUMS)
verify "$out"

printf '\n%-22s %12s %12s  %s\n' file bootstrap size sha256
for fn in "${functions[@]}"; do
  bin="$target_dir/lambda/$fn/bootstrap"; $check && bin="$target_dir/debug/$fn"
  printf '%-22s %12s %12s  %s\n' "$fn.zip" "$(stat -c %s "$bin")" "$(stat -c %s "$out/$fn.zip")" \
    "$(grep " $fn.zip\$" "$out/SHA256SUMS" | cut -c1-16)…"
done
printf '%-22s %12s %12s  %s\n' s1-bridge.yaml - "$(stat -c %s "$out/s1-bridge.yaml")" \
  "$(grep ' s1-bridge.yaml$' "$out/SHA256SUMS" | cut -c1-16)…"
if $check; then echo "release check passed (version $version; debug binaries in place of the arm64 build)"
else echo "release $version in $out/"; fi
