#!/usr/bin/env bash
# Builds the Lambda artifact exactly as `sam build` does for deployment: the arm64 `bootstrap`
# cross-compiled by cargo-lambda with zig (both from PyPI, installed into .venv). Prints the
# artifact's architecture, size and the build time.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/sam ] || [ ! -x .venv/bin/cargo-lambda ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-deploy.txt
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu

# A target directory of its own, so this build never waits on (or for) the test builds.
export PATH="$PWD/.venv/bin:$PATH" SAM_CLI_TELEMETRY=0 CARGO_TARGET_DIR="$PWD/target/sam"
started=$(date +%s)
sam build --beta-features
elapsed=$(( $(date +%s) - started ))

# The decision and sweep functions are one build: SAM writes it once, to
# DecisionFunction-Shared, and points both functions at it.
artifact=.aws-sam/build/DecisionFunction/bootstrap
[ -f "$artifact" ] || artifact=.aws-sam/build/DecisionFunction-Shared/bootstrap
file "$artifact" | grep -q 'ARM aarch64' || { echo "not an arm64 binary: $(file "$artifact")"; exit 1; }
zip_size=$(cd "$(dirname "$artifact")" && zip -q -9 -X - bootstrap | wc -c)
echo "arm64 bootstrap: $(stat -c %s "$artifact") bytes, zipped ${zip_size} bytes, built in ${elapsed} s"
