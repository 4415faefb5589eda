#!/usr/bin/env bash
# Measures the release binary beside a hello-world lambda_http binary built the same way
# (scripts/measure/hello, with this package's [profile.release]), and in Lambda mode also
# beside a hello world that reads one SSM parameter at init the usual way, on the SDK's default
# HTTPS client (scripts/measure/hello-ssm):
#   - start-to-ready: process start to the first answered request, in `serve` with file rules
#     and in Lambda mode against a local Runtime API (cargo lambda watch) with rules and token
#     from an SSM emulator (moto) on 127.0.0.1;
#   - RSS after 10,000 requests, in both modes;
#   - the stripped binary's size (this machine's target) and the zipped arm64 `bootstrap`
#     (cargo lambda build --release --arm64, as `sam build` runs it).
# Prints a table and writes target/measure/results.json. Nothing leaves 127.0.0.1.
#
#   scripts/measure.sh              everything (the two arm64 builds take several minutes)
#   scripts/measure.sh --no-arm64   skip the arm64 builds
# Environment: PROBE_RUNS (start-to-ready runs, default 15), PROBE_REQUESTS (default 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=target/measure
mkdir -p "$out"

arm64=1
[ "${1:-}" = "--no-arm64" ] && arm64=0

if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/cargo-lambda ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
if [ "$arm64" = 1 ] && ! .venv/bin/python -c 'import ziglang' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-deploy.txt
fi

echo "== machine"
load=$(cut -d' ' -f1 /proc/loadavg)
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(uname -r), load $load"
awk -v l="$load" 'BEGIN { exit !(l > 1.0) }' \
  && echo "warning: load average $load; timings are noisy while other work runs (check ps)"

echo "== building (release profile)"
cargo build --release --quiet --bin conditional-recording
bin=${CARGO_TARGET_DIR:-target}/release/conditional-recording

# The hello worlds: their sources, this package's lock file (same crate versions) and this
# package's release profile, under target/.
build_baseline() { # $1: name under scripts/measure
  local src=$out/$1
  rm -rf "$src"
  mkdir -p "$src"
  cp -r "scripts/measure/$1/src" "$src/"
  cp Cargo.lock "$src/"
  {
    cat "scripts/measure/$1/Cargo.toml.in"
    echo
    awk '/^\[/ { on = ($0 == "[profile.release]") } on' Cargo.toml
  } > "$src/Cargo.toml"
  CARGO_TARGET_DIR="$root/$out/$1-target" cargo build --release --quiet \
    --manifest-path "$src/Cargo.toml"
}
build_baseline hello
build_baseline hello-ssm
hello_src=$out/hello
hello=$out/hello-target/release/hello
hello_ssm=$out/hello-ssm-target/release/hello-ssm

for b in "$bin" "$hello"; do
  file "$b" | grep -q 'not stripped' && { echo "$b is not stripped"; exit 1; }
done

arm64_size() { # $1: manifest dir, $2: binary name, $3: target dir
  (
    export PATH="$root/.venv/bin:$PATH" CARGO_TARGET_DIR="$root/$3"
    cd "$1"
    cargo-lambda lambda build --release --arm64 --bin "$2" --quiet >/dev/null
  )
  local bootstrap="$3/lambda/$2/bootstrap"
  file "$bootstrap" | grep -q 'ARM aarch64' || { echo "not arm64: $bootstrap" >&2; exit 1; }
  echo "$(stat -c %s "$bootstrap") $(cd "$(dirname "$bootstrap")" && zip -q -9 -X - bootstrap | wc -c)"
}
if [ "$arm64" = 1 ]; then
  echo "== building arm64 bootstraps (cargo lambda build --release --arm64)"
  read -r arm_bin arm_zip < <(arm64_size . conditional-recording "$out/arm64")
  read -r arm_hello arm_hello_zip < <(arm64_size "$hello_src" hello "$out/hello-arm64")
else
  arm_bin=None arm_zip=None arm_hello=None arm_hello_zip=None # Python literals below
fi

echo "== start-to-ready and RSS"
# The callback `serve` answers: the example event's fields with a 2 KB TaskAttributes.
export PROBE_BODY
PROBE_BODY=$(python3 - <<'EOF'
import json, urllib.parse
attributes = json.load(open("benches/data/task-attributes.json"))
print(urllib.parse.urlencode({
    "AccountSid": "AC00000000000000000000000000000000",
    "WorkspaceSid": "WS00000000000000000000000000000000",
    "TaskQueueSid": "WQ11111111111111111111111111111111",
    "TaskSid": "WT55555555555555555555555555555555",
    "ReservationSid": "WR55555555555555555555555555555555",
    "TaskAttributes": json.dumps(attributes, separators=(",", ":")),
}))
EOF
)

moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$moto_port") 2>/dev/null && break
  sleep 0.1
done
# The variables tests/it/moto.rs gives the service: the emulator, dummy credentials, nothing
# that probes the network.
aws_env=(
  AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
)
env "${aws_env[@]}" .venv/bin/python - <<'EOF'
import boto3, os
ssm = boto3.client("ssm", region_name=os.environ["AWS_REGION"], endpoint_url=os.environ["AWS_ENDPOINT_URL_SSM"])
ssm.put_parameter(Name="/conditional-recording/rules", Type="String", Overwrite=True,
                  Value=open("events/rules.json").read())
# The documented test token the example events are signed with (not a secret).
ssm.put_parameter(Name="/conditional-recording/twilio-auth-token", Type="SecureString",
                  Overwrite=True, Value="0123456789abcdef0123456789abcdef")
EOF

export PROBE_EMULATOR="$root/.venv/bin/cargo-lambda" PROBE_EVENT="$root/events/http-inbound-recorded.json"
serve_bin=$(env -i PATH="$PATH" RULES_FILE=events/rules.json PROBE_BODY="$PROBE_BODY" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_REQUESTS:-10000}" python3 scripts/measure/probe.py serve "$bin")
serve_hello=$(env -i PATH="$PATH" PROBE_BODY="$PROBE_BODY" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_REQUESTS:-10000}" python3 scripts/measure/probe.py serve "$hello")
lambda_bin=$(env -i PATH="$PATH" "${aws_env[@]}" \
  RULES_PARAMETER=/conditional-recording/rules \
  TWILIO_AUTH_TOKEN_PARAMETER=/conditional-recording/twilio-auth-token \
  PROBE_EMULATOR="$PROBE_EMULATOR" PROBE_EVENT="$PROBE_EVENT" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_REQUESTS:-10000}" python3 scripts/measure/probe.py lambda "$bin")
# As the stack deploys it: the ledger (each callback writes its first decision to moto's
# DynamoDB before answering) and a recordings bucket (its S3 client built at start).
.venv/bin/python scripts/create-ledger-table.py --endpoint "http://127.0.0.1:$moto_port" --table cr-ledger
lambda_deployed=$(env -i PATH="$PATH" "${aws_env[@]}" \
  AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$moto_port" AWS_ENDPOINT_URL_S3="http://127.0.0.1:$moto_port" \
  LEDGER_TABLE=cr-ledger RECORDINGS_BUCKETS=cr-media \
  RULES_PARAMETER=/conditional-recording/rules \
  TWILIO_AUTH_TOKEN_PARAMETER=/conditional-recording/twilio-auth-token \
  PROBE_EMULATOR="$PROBE_EMULATOR" PROBE_EVENT="$PROBE_EVENT" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_DEPLOYED_REQUESTS:-2000}" python3 scripts/measure/probe.py lambda "$bin")
# With the recordings bucket alone: what the S3 client adds to a start.
lambda_bucket=$(env -i PATH="$PATH" "${aws_env[@]}" \
  AWS_ENDPOINT_URL_S3="http://127.0.0.1:$moto_port" RECORDINGS_BUCKETS=cr-media \
  RULES_PARAMETER=/conditional-recording/rules \
  TWILIO_AUTH_TOKEN_PARAMETER=/conditional-recording/twilio-auth-token \
  PROBE_EMULATOR="$PROBE_EMULATOR" PROBE_EVENT="$PROBE_EVENT" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_DEPLOYED_REQUESTS:-2000}" python3 scripts/measure/probe.py lambda "$bin")
lambda_hello=$(env -i PATH="$PATH" PROBE_EMULATOR="$PROBE_EMULATOR" PROBE_EVENT="$PROBE_EVENT" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_REQUESTS:-10000}" python3 scripts/measure/probe.py lambda "$hello")
lambda_hello_ssm=$(env -i PATH="$PATH" "${aws_env[@]}" HELLO_PARAMETER=/conditional-recording/rules \
  PROBE_EMULATOR="$PROBE_EMULATOR" PROBE_EVENT="$PROBE_EVENT" \
  PROBE_RUNS="${PROBE_RUNS:-15}" PROBE_REQUESTS="${PROBE_REQUESTS:-10000}" python3 scripts/measure/probe.py lambda "$hello_ssm")
# What the service's one read at start costs the emulator alone: GetParameters for the rules
# and the token on a fresh connection, as raw HTTP (a Python SDK would add its own overhead).
# The hello world plus this is the floor for Lambda mode's start-to-ready against moto.
moto_ms=$(env "${aws_env[@]}" .venv/bin/python - <<'EOF'
import http.client, json, os, statistics, time, urllib.parse
endpoint = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL_SSM"])
body = json.dumps({"Names": ["/conditional-recording/rules", "/conditional-recording/twilio-auth-token"],
                   "WithDecryption": True})
headers = {
    "X-Amz-Target": "AmazonSSM.GetParameters",
    "Content-Type": "application/x-amz-json-1.1",
    # moto reads the region from the credential scope and does not check the signature.
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ssm/aws4_request, "
                     "SignedHeaders=host, Signature=0",
}
def read() -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    connection.request("POST", "/", body=body, headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    if response.status != 200 or len(answer.get("Parameters", [])) != 2:
        raise SystemExit(f"GetParameters answered {response.status}: {answer}")
    return (time.perf_counter() - started) * 1000
read()
print(round(statistics.median(read() for _ in range(30)), 2))
EOF
)

python3 - "$out/results.json" <<EOF
import json, subprocess, sys, datetime
r = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores",
    "load_at_start": float("$load"),
    "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
    "stripped_bytes": {"conditional-recording": $(stat -c %s "$bin"), "hello": $(stat -c %s "$hello")},
    "arm64_bootstrap_bytes": {"conditional-recording": $arm_bin, "hello": $arm_hello},
    "arm64_bootstrap_zip_bytes": {"conditional-recording": $arm_zip, "hello": $arm_hello_zip},
    "serve": {"conditional-recording": $serve_bin, "hello": $serve_hello},
    "lambda": {"conditional-recording": $lambda_bin, "hello": $lambda_hello, "hello-ssm": $lambda_hello_ssm,
               "deployed": $lambda_deployed, "bucket": $lambda_bucket},
    "moto_get_parameters_median_ms": $moto_ms,
}
for mode in ("serve", "lambda"):
    ours, base = r[mode]["conditional-recording"], r[mode]["hello"]
    r[mode]["start_to_ready_ratio"] = round(
        ours["start_to_ready"]["median_ms"] / base["start_to_ready"]["median_ms"], 2)
hello_ms = r["lambda"]["hello"]["start_to_ready"]["median_ms"]
r["lambda"]["floor_ms"] = round(hello_ms + r["moto_get_parameters_median_ms"], 2)
r["lambda"]["floor_ratio"] = round(r["lambda"]["floor_ms"] / hello_ms, 2)
r["lambda"]["start_to_ready_ratio_to_hello_ssm"] = round(
    r["lambda"]["conditional-recording"]["start_to_ready"]["median_ms"]
    / r["lambda"]["hello-ssm"]["start_to_ready"]["median_ms"], 2)
r["lambda"]["deployed_ratio_to_hello_ssm"] = round(
    r["lambda"]["deployed"]["start_to_ready"]["median_ms"]
    / r["lambda"]["hello-ssm"]["start_to_ready"]["median_ms"], 2)
r["lambda"]["bucket_ratio_to_hello_ssm"] = round(
    r["lambda"]["bucket"]["start_to_ready"]["median_ms"]
    / r["lambda"]["hello-ssm"]["start_to_ready"]["median_ms"], 2)
json.dump(r, open(sys.argv[1], "w"), indent=2)

def mb(b): return "-" if b is None else f"{b / 1e6:.2f} MB"
print(f"{'':34}{'conditional-recording':>24}{'hello world':>14}{'ratio':>8}")
for mode in ("serve", "lambda"):
    ours, base = r[mode]["conditional-recording"], r[mode]["hello"]
    print(f"{'start-to-ready, ' + mode + ' (median)':34}{ours['start_to_ready']['median_ms']:>21} ms"
          f"{base['start_to_ready']['median_ms']:>11} ms{r[mode]['start_to_ready_ratio']:>7}x")
    print(f"{'RSS after ' + str(ours['requests']) + ' requests, ' + mode:34}{ours['rss_kib'] / 1024:>21.1f} MiB"
          f"{base['rss_kib'] / 1024:>10.1f} MiB")
print(f"{'start-to-ready, lambda, beside':34}{r['lambda']['conditional-recording']['start_to_ready']['median_ms']:>21} ms"
      f"{r['lambda']['hello-ssm']['start_to_ready']['median_ms']:>11} ms{r['lambda']['start_to_ready_ratio_to_hello_ssm']:>7}x"
      "  (hello world + one GetParameter)")
print(f"{'start-to-ready, lambda, bucket':34}{r['lambda']['bucket']['start_to_ready']['median_ms']:>21} ms"
      f"{r['lambda']['hello-ssm']['start_to_ready']['median_ms']:>11} ms{r['lambda']['bucket_ratio_to_hello_ssm']:>7}x"
      "  (with RECORDINGS_BUCKETS: the S3 client built at start)")
print(f"{'start-to-ready, lambda, deployed':34}{r['lambda']['deployed']['start_to_ready']['median_ms']:>21} ms"
      f"{r['lambda']['hello-ssm']['start_to_ready']['median_ms']:>11} ms{r['lambda']['deployed_ratio_to_hello_ssm']:>7}x"
      "  (with LEDGER_TABLE and RECORDINGS_BUCKETS: the first answer waits for its ledger write)")
print(f"{'RSS after ' + str(r['lambda']['deployed']['requests']) + ' requests, deployed':34}{r['lambda']['deployed']['rss_kib'] / 1024:>21.1f} MiB")
print(f"{'stripped binary (this machine)':34}{mb(r['stripped_bytes']['conditional-recording']):>24}{mb(r['stripped_bytes']['hello']):>14}")
print(f"{'arm64 bootstrap':34}{mb(r['arm64_bootstrap_bytes']['conditional-recording']):>24}{mb(r['arm64_bootstrap_bytes']['hello']):>14}")
print(f"{'arm64 bootstrap, zipped':34}{mb(r['arm64_bootstrap_zip_bytes']['conditional-recording']):>24}{mb(r['arm64_bootstrap_zip_bytes']['hello']):>14}")
print(f"{'start-to-ready, lambda, floor':34}{r['lambda']['floor_ms']:>21} ms{hello_ms:>11} ms{r['lambda']['floor_ratio']:>7}x"
      "  (the hello world's start + the GetParameters alone)")
print(f"GetParameters (rules and token) to moto, raw HTTP, fresh connection: {r['moto_get_parameters_median_ms']} ms (median)")
print(f"written to {sys.argv[1]}")
EOF
