#!/usr/bin/env bash
# RUSTC_WRAPPER used by scripts/fuzz.sh: adds libFuzzer's coverage instrumentation (the
# flags cargo-fuzz passes, all stable) to the crates the fuzz targets explore, and to no
# other: instrumenting the AWS SDK, which no target reaches, would triple the build time.
# Build scripts and proc macros are never in the list, so they are never instrumented.
set -euo pipefail
rustc=$1
shift
crate=
previous=
for arg in "$@"; do
  if [ "$previous" = --crate-name ]; then crate=$arg; fi
  previous=$arg
done
# The same crates as the `[profile.dev.package.*]` sections of fuzz/Cargo.toml, plus the
# fuzz targets themselves.
instrumented=" conditional_recording conditional_recording_fuzz rules_document form_body
  task_attributes lambda_event signature_header serde_json regex regex_automata regex_syntax
  lambda_http aws_lambda_events "
instrumented=${instrumented//$'\n'/ }
if [[ $instrumented == *" $crate "* ]]; then
  exec "$rustc" "$@" --cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares
fi
exec "$rustc" "$@"
