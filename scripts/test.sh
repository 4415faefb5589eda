#!/usr/bin/env bash
# Runs every test from a fresh clone. Installs what the tests need (a Python virtualenv with
# the SSM emulator and Twilio's SDK, and Twilio's npm SDK), then runs the tests; each test
# starts and stops its own servers on 127.0.0.1, so nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
if [ ! -x .venv/bin/python ] || ! cmp -s tests/requirements.txt .venv/requirements.installed; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt .venv/requirements.installed
fi
if [ -f tests/sdk/package-lock.json ]; then
  npm ci --prefix tests/sdk --silent --no-audit --no-fund
fi

echo "== format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

echo "== SAM template and sample events"
.venv/bin/cfn-lint template.yaml
SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --region us-east-1
python3 scripts/gen-events.py --check

echo "== tests"
rm -rf target/tmp/test-logs
cargo test --all-targets

echo "== log scan"
scripts/scan-logs.sh

echo "== fuzzing: every input surface, 20 s per target (scripts/fuzz.sh runs longer)"
scripts/fuzz.sh 20

echo "== load: 10 s at 20 connections on the debug build (scripts/load-test.sh: release, 60 s)"
scripts/load-test.sh 10 20 debug
