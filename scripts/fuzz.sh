#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, on the stable toolchain) of every input surface: the
# rules document, the callback's form body, TaskAttributes, API Gateway event JSON and the
# X-Twilio-Signature header. Each target asserts the documented outcomes (a 200 decision or
# a 4xx with a JSON error, never a panic); see fuzz/fuzz_targets/.
#
#   scripts/fuzz.sh                      # every target, 10 minutes each
#   scripts/fuzz.sh 60                   # every target, 60 s each
#   scripts/fuzz.sh 600 rules_document   # one target
#
# Targets run side by side, one per core. The corpus grows in target/fuzz/corpus/TARGET and
# is reused by the next run; a failing input is kept in target/fuzz/artifacts/TARGET/ and
# replayed with `target/debug/TARGET FILE`. Seeds come from the repository's own events,
# fixtures and rules documents. `make test` runs this for 20 s per target.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
all=(rules_document form_body task_attributes lambda_event signature_header)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
work=target/fuzz

# The fuzz workspace uses the product's exact dependency versions (its own lock file is a
# copy, not kept in git), so the build reuses what `cargo test` compiled.
cp Cargo.lock fuzz/Cargo.lock
started=$(date +%s)
RUSTC_WRAPPER="$PWD/fuzz/rustc-sancov.sh" \
  cargo build --quiet --manifest-path fuzz/Cargo.toml --target-dir target --bins
echo "fuzz: built the targets in $(($(date +%s) - started)) s"

# Seeds: fuzz/seeds/, the repository's rules documents, API Gateway events, their form
# bodies and the TaskAttributes inside those bodies, and the TaskAttributes fixtures.
rm -rf "$work/seeds"
mkdir -p "$work/seeds"
python3 - "$work/seeds" <<'EOF'
import base64, glob, json, os, sys
from urllib.parse import parse_qsl

out = sys.argv[1]
def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# fuzz/seeds/TARGET/: inputs kept for a target (documents, inputs that once failed).
for path in glob.glob("fuzz/seeds/*/*"):
    put(os.path.basename(os.path.dirname(path)), os.path.basename(path), open(path, "rb").read())
put("rules_document", "events-rules.json", open("events/rules.json", "rb").read())
for path in sorted(glob.glob("tests/data/fixtures/*.json")):
    text = open(path, "rb").read()
    for selector in (0, 3, 9):
        put("task_attributes", f"{selector}-{os.path.basename(path)}", bytes([selector]) + text)
for path in sorted(glob.glob("tests/data/events/*.json") + glob.glob("events/*.json")):
    name = os.path.basename(path)
    event = json.load(open(path))
    if not isinstance(event, dict) or "requestContext" not in event:
        continue
    put("lambda_event", name, open(path, "rb").read())
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    put("form_body", name + ".form", raw)
    for key, value in parse_qsl(raw.decode("utf-8", "replace")):
        if key == "TaskAttributes":
            put("task_attributes", name + ".attributes", b"\x00" + value.encode())
EOF

max_len() {
  case $1 in
    signature_header) echo 4096 ;;
    *) echo 16384 ;;
  esac
}

run() {
  local target=$1 corpus="$work/corpus/$1" artifacts="$work/artifacts/$1/"
  mkdir -p "$corpus" "$artifacts" "$work/logs"
  local seeds=()
  [ -d "$work/seeds/$target" ] && seeds=("$work/seeds/$target")
  # -close_fd_mask=2: the service's metric lines (one per decision, on stderr) stay out of
  # the log; a failure is replayed below to show its panic message.
  "target/debug/$target" "$corpus" "${seeds[@]}" \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
    -dict=fuzz/dicts/json.dict -artifact_prefix="$artifacts" -print_final_stats=1 \
    -close_fd_mask=2 >"$work/logs/$target.log" 2>&1
}

# One target per core at a time.
jobs=$(nproc)
failed=()
pids=()
names=()
wait_one() {
  local pid=${pids[0]} name=${names[0]}
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  if ! wait "$pid"; then failed+=("$name"); fi
}
echo "fuzz: ${#targets[@]} targets, $seconds s each, $jobs at a time"
for target in "${targets[@]}"; do
  [ -x "target/debug/$target" ] || { echo "fuzz: no target named $target"; exit 2; }
  [ ${#pids[@]} -lt "$jobs" ] || wait_one
  run "$target" &
  pids+=($!)
  names+=("$target")
done
while [ ${#pids[@]} -gt 0 ]; do wait_one; done

for target in "${targets[@]}"; do
  log="$work/logs/$target.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  files=$(find "$work/corpus/$target" -type f | wc -l)
  printf 'fuzz: %-17s %9s runs, %5s edges covered, %5s corpus inputs\n' \
    "$target" "${runs:-?}" "${cov:-?}" "$files"
done
if [ ${#failed[@]} -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "fuzz: $target FAILED; the end of $work/logs/$target.log:"
    tail -20 "$work/logs/$target.log"
    input=$(find "$work/artifacts/$target" -type f -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
    if [ -n "$input" ]; then
      echo "fuzz: replaying $input (target/debug/$target FILE):"
      RUST_BACKTRACE=0 timeout 60 "target/debug/$target" "$input" 2>&1 |
        grep -v -e '^{"' -e '^INFO:' -e '^WARNING:' | head -20 || true
    fi
  done
  exit 1
fi
echo "fuzz: no failure in $(($(date +%s) - started)) s"
