#!/usr/bin/env bash
# Runs every test from a fresh clone. Installs what the tests need into .venv (Python
# packages from PyPI), and leaves no process behind: each test starts and stops its own
# servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format and lints"
cargo fmt --check
cargo clippy --all-targets -- -D warnings

echo "== tests"
cargo test --all-targets
