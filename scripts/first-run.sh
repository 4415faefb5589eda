#!/usr/bin/env bash
# How long a newcomer waits: from a fresh clone of this repository to the first answer of the
# README's first command (`make serve`), measured by polling the README's curl. Prints one
# RESULT line for BENCHMARKS.md.
#
#   scripts/first-run.sh                  # the README's command, crates already downloaded
#   scripts/first-run.sh --fresh-crates   # also downloads every crate (an empty CARGO_HOME)
#   PROFILE=release scripts/first-run.sh  # the same with another cargo profile
#
# Clones HEAD into a temporary directory (its own target directory, so nothing is reused),
# serves on a free port on 127.0.0.1, and removes the clone and everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-local}
fresh_crates=false
[ "${1:-}" = "--fresh-crates" ] && fresh_crates=true

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

git clone --quiet . "$work/clone"
if $fresh_crates; then
  export CARGO_HOME="$work/cargo-home"
  mkdir -p "$CARGO_HOME"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
load=$(cut -d' ' -f1-3 /proc/loadavg)

started=$(date +%s.%N)
(cd "$work/clone" && exec cargo run --quiet --profile "$profile" -- serve --addr "127.0.0.1:$port") \
  >"$work/serve.out" 2>"$work/serve.err" &
server=$!

answer=
deadline=$(( $(date +%s) + 1800 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "first-run: the build or the server stopped:"; tail -20 "$work/serve.err"; exit 1
  fi
  answer=$(curl -s --max-time 2 "http://127.0.0.1:$port/assignment" \
    --data-urlencode TaskSid=WT11111111111111111111111111111111 \
    --data-urlencode ReservationSid=WR11111111111111111111111111111111 \
    --data-urlencode TaskQueueSid=WQ11111111111111111111111111111111 \
    --data-urlencode 'TaskAttributes={"call_sid":"CA11111111111111111111111111111111","direction":"outbound"}' \
    || true)
  [ -n "$answer" ] && break
  sleep 0.5
done
ended=$(date +%s.%N)
[ "$answer" = '{"instruction":"conference","conference_record":"do-not-record"}' ] || {
  echo "first-run: unexpected answer: $answer"; exit 1; }
seconds=$(python3 -c "print(round($ended - $started, 1))")
binary=$(find "$work/clone/target/$([ "$profile" = dev ] && echo debug || echo "$profile")" \
  -maxdepth 1 -name conditional-recording -type f -printf '%s')
echo "RESULT profile=$profile fresh_crates=$fresh_crates seconds_to_first_answer=$seconds binary_bytes=$binary load_at_start=\"$load\" cores=$(nproc)"
