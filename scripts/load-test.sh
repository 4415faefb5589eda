#!/usr/bin/env bash
# A bounded load test of `serve` on loopback: signatures enforced, rules from an SSM
# emulator (moto_server; refreshed every 5 s under load, and a new version published half-way
# through), one real signed callback posted over and over by wrk. Fails on any socket error,
# any answer but 200 with the expected decision, a failed refresh, or resident memory that
# keeps growing; prints the figures BENCHMARKS.md keeps.
#
#   scripts/load-test.sh                 # 60 s at 50 connections, release build
#   scripts/load-test.sh 10 20 debug     # what `make test` runs: the debug build it made
#
# Needs wrk (Debian's package; installed here when missing) and the test virtualenv (.venv,
# made by `make test`) for moto_server and Twilio's SDK, which signs the callback. Sends
# traffic to 127.0.0.1 only, stops by itself, and leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
connections=${2:-50}
build=${3:-release}
work=target/load-test
mkdir -p "$work"

if [ -z "$(command -v wrk || true)" ]; then
  echo "load: installing wrk"
  if ! apt-get install -y -qq wrk >"$work/apt.log" 2>&1; then
    apt-get update -qq && apt-get install -y -qq wrk
  fi
fi
for program in .venv/bin/moto_server .venv/bin/python; do
  [ -x "$program" ] || { echo "load: $program is missing: run make test first"; exit 1; }
done

case $build in
  release) cargo build --quiet --release ;;
  # The binary `cargo test` builds (and had built already, under `make test`): a plain
  # `cargo build` would compile the AWS SDK again with other features.
  debug) cargo test --quiet --no-run --all-targets >"$work/build.log" 2>&1 ;;
  *) echo "load: the build is release or debug, not $build"; exit 2 ;;
esac
binary=target/$build/conditional-recording

free_port() {
  .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for_port() {
  .venv/bin/python -c '
import socket, sys, time
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("load: nothing listens on port " + sys.argv[1])
        time.sleep(0.1)
' "$1"
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>&- || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>&- || true; done
}
trap cleanup EXIT

moto_port=$(free_port)
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_for_port "$moto_port"
# Dummy credentials; empty shared AWS files and no metadata probes.
: >"$work/aws-config"
export AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE="$PWD/$work/aws-config" \
  AWS_SHARED_CREDENTIALS_FILE="$PWD/$work/aws-config"

# The rules: outbound calls are not recorded (the example document), so the inbound call
# posted below is answered record-from-start.
publish_rules() {
  .venv/bin/python -c '
import boto3
answer = boto3.client("ssm").put_parameter(
    Name="/conditional-recording/rules", Type="String", Overwrite=True,
    Value="{\"enabled\": true, \"exclude_queues\": [\"WQ00000000000000000000000000000000\"],"
          " \"exclude_attributes\": [{\"key\": \"direction\", \"value\": \"outbound\"}]}")
print("load: rules version", answer["Version"], "published")
'
}
publish_rules

token=0123456789abcdef0123456789abcdef
port=$(free_port)
env -u RULES_FILE -u TWILIO_AUTH_TOKEN_PARAMETER -u PUBLIC_URL -u TWILIO_ACCOUNT_SID \
  -u TWILIO_SIGNATURE_VALIDATION -u ANSWER_MODE -u AWS_LAMBDA_RUNTIME_API \
  RULES_PARAMETER=/conditional-recording/rules RULES_CACHE_TTL_SECONDS=5 \
  TWILIO_AUTH_TOKEN=$token RUST_LOG=info \
  "$binary" serve --addr "127.0.0.1:$port" >"$work/serve.out" 2> >(
    # A decision line per callback (its record with its metrics) would fill gigabytes: they
    # are counted, every other line is kept.
    rm -f "$work/serve.counts"
    awk -v counts="$work/serve.counts" '
      /"message":"decision"/ { decisions++; if (/"Decisions":1/) metrics++; next }
      /"Decisions":1/ { metrics++; next }
      { print; fflush() }
      END { print decisions + 0, metrics + 0 > counts }' >"$work/serve.log"
  ) &
serve=$!
pids+=($serve)
wait_for_port "$port"
url="http://127.0.0.1:$port/assignment"

# One inbound call, signed by Twilio's own SDK for this URL: the same body is valid each time.
.venv/bin/python - "$url" "$token" "$work/callback.lua" <<'PYTHON'
import json, sys
from urllib.parse import urlencode
from twilio.request_validator import RequestValidator

url, token, out = sys.argv[1:]
attributes = json.dumps({"call_sid": "CA11111111111111111111111111111111",
                         "direction": "inbound", "conversations": {"topics": ["billing"]}})
params = {
    "AccountSid": "AC11111111111111111111111111111111",
    "WorkspaceSid": "WS11111111111111111111111111111111",
    "WorkflowSid": "WW11111111111111111111111111111111",
    "TaskQueueSid": "WQ11111111111111111111111111111111",
    "WorkerSid": "WK11111111111111111111111111111111",
    "WorkerAttributes": '{"skills":["billing"]}',
    "TaskSid": "WT11111111111111111111111111111111",
    "TaskAttributes": attributes,
    "TaskAge": "12",
    "TaskPriority": "0",
    "ReservationSid": "WR11111111111111111111111111111111",
    "Timestamp": "1767225600",
}
signature = RequestValidator(token).compute_signature(url, params)
lua = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["X-Twilio-Signature"] = %s

local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) server_errors = 0; other_status = 0; wrong_answer = 0 end
function response(status, headers, body)
  if status >= 500 then server_errors = server_errors + 1
  elseif status ~= 200 then other_status = other_status + 1
  elseif not string.find(body, '"conference_record":"record-from-start"', 1, true) then
    wrong_answer = wrong_answer + 1
  end
end
function done(summary, latency, requests)
  local s5, other, wrong = 0, 0, 0
  for _, t in ipairs(threads) do
    s5 = s5 + t:get("server_errors"); other = other + t:get("other_status")
    wrong = wrong + t:get("wrong_answer")
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%%d seconds=%%.1f rps=%%.0f p50_ms=%%.3f p90_ms=%%.3f p99_ms=%%.3f p999_ms=%%.3f max_ms=%%.3f socket_errors=%%d non_2xx_3xx=%%d status_5xx=%%d status_other=%%d wrong_answer=%%d\\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, s5, other, wrong))
end
""" % (json.dumps(urlencode(params)), json.dumps(signature))
open(out, "w").write(lua)
PYTHON

rss_kb() { ps -o rss= -p "$serve" | tr -d ' '; }
threads=$(( $(nproc) < connections ? $(nproc) : connections ))
echo "load: $binary serve, $connections connections, $threads wrk threads, $seconds s"

# A warm-up, so the allocator and connection handling settle before memory is read.
wrk -t"$threads" -c"$connections" -d5s -s "$work/callback.lua" "$url" >"$work/warmup.txt"
rss_before=$(rss_kb)
busy=$(uptime | sed 's/.*load average: //')
# While wrk runs: resident memory every second, and a new rules version half-way through.
(
  peak=0
  for second in $(seq 1 "$seconds"); do
    sleep 1
    rss=$(rss_kb || echo 0)
    if [ "${rss:-0}" -gt "$peak" ]; then peak=$rss; fi
    echo "$peak" >"$work/rss-peak"
    if [ "$second" = $((seconds / 2)) ]; then publish_rules; fi
  done
) &
sampler=$!
pids+=($sampler)
wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 5s --latency \
  -s "$work/callback.lua" "$url" | tee "$work/wrk.txt"
wait "$sampler" || true
rss_after=$(rss_kb)
peak=$(cat "$work/rss-peak")
result=$(grep '^RESULT' "$work/wrk.txt")
kill "$serve"
wait "$serve" || true
for _ in $(seq 1 100); do [ -s "$work/serve.counts" ] && break; sleep 0.1; done
read -r decisions metrics <"$work/serve.counts"
loaded=$(grep -c '"message":"rules loaded"' "$work/serve.log" || true)
failures=$(grep -c 'refresh failed' "$work/serve.log" || true)

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${result#RESULT}"; }
cat <<EOF | tee "$work/result.md"
| figure | value |
| --- | --- |
| command | \`scripts/load-test.sh $seconds $connections $build\` (wrk -t$threads -c$connections -d${seconds}s) |
| date | $(date -u +%Y-%m-%d) |
| machine | $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB; wrk, serve and moto_server share it |
| load average (1, 5, 15 min) as the run started | $busy |
| requests | $(field requests) in $(field seconds) s: $(field rps) requests/s |
| latency p50 / p90 / p99 / p99.9 / max | $(field p50_ms) / $(field p90_ms) / $(field p99_ms) / $(field p999_ms) / $(field max_ms) ms |
| socket errors | $(field socket_errors) |
| non-2xx answers (of which 5xx) | $(field non_2xx_3xx) ($(field status_5xx)) |
| 200 with another decision | $(field wrong_answer) |
| RSS after the warm-up / after the run / highest sampled | $((rss_before / 1024)) / $((rss_after / 1024)) / $((peak / 1024)) MiB |
| decision lines and metric lines written (warm-up included) | $decisions and $metrics |
| rules versions put in force | $loaded (the second published half-way through the run); $failures refreshes failed |
EOF

status=0
for name in socket_errors non_2xx_3xx status_5xx status_other wrong_answer; do
  value=$(field "$name")
  if [ "$value" != 0 ]; then echo "load: $name = $value, expected 0"; status=1; fi
done
# Flat: after the warm-up, the run adds at most 16 MiB or a quarter of what it had.
growth=$((rss_after - rss_before))
allowed=$(( rss_before / 4 > 16384 ? rss_before / 4 : 16384 ))
if [ "$growth" -gt "$allowed" ]; then
  echo "load: RSS grew by $((growth / 1024)) MiB during the run (allowed $((allowed / 1024)) MiB)"
  status=1
fi
if [ "$failures" != 0 ]; then echo "load: $failures rules refreshes failed under load"; status=1; fi
if [ "$loaded" != 2 ]; then echo "load: $loaded rules versions put in force, expected 2"; status=1; fi
if [ "$status" = 0 ]; then echo "load: no error, no 5xx, RSS flat"; fi
exit "$status"
