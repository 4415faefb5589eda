#!/usr/bin/env python3
"""Times a binary's start and measures its memory, for scripts/measure.sh.

    probe.py serve  BINARY [ARGS..]   start-to-ready and RSS of `BINARY serve`
    probe.py lambda BINARY            the same in Lambda mode, against a Runtime API emulator

Start-to-ready is the time from just before the process is spawned to the first answered
request: for `serve`, the first 200 to a POST; in Lambda mode, the answer to an invocation
queued before the process starts. Each run starts a fresh process (and, in Lambda mode, a fresh
emulator). RSS is read from /proc after a number of requests on one process.

Prints one JSON object. Python standard library only; everything is on 127.0.0.1.
Environment:
  PROBE_RUNS       start-to-ready runs (default 15)
  PROBE_REQUESTS   requests before RSS is read (default 10000)
  PROBE_EMULATOR   the `cargo-lambda` binary (Lambda mode)
  PROBE_EVENT      the API Gateway event to invoke with (Lambda mode)
  PROBE_BODY       the form body to POST (serve mode), PROBE_SIGNATURE its signature
Variables the binary needs (rules, AWS endpoint, tokens) are passed through from the caller.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time

RUNS = int(os.environ.get("PROBE_RUNS", "15"))
REQUESTS = int(os.environ.get("PROBE_REQUESTS", "10000"))
# No start, and no single answer, may take longer than this.
DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"exited before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"nothing listens on {port}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=DEADLINE_S)


def rss_kib(pid: int) -> dict:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields


def summary(samples_ms: list[float]) -> dict:
    return {
        "runs": len(samples_ms),
        "median_ms": round(statistics.median(samples_ms), 2),
        "min_ms": round(min(samples_ms), 2),
        "max_ms": round(max(samples_ms), 2),
    }


# ---------------------------------------------------------------------------------------------
# serve


def serve_request(port: int, connection: http.client.HTTPConnection | None = None) -> int:
    body = os.environ.get("PROBE_BODY", "")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if os.environ.get("PROBE_SIGNATURE"):
        headers["X-Twilio-Signature"] = os.environ["PROBE_SIGNATURE"]
    own = connection is None
    if own:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    try:
        connection.request("POST", "/assignment", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        if own:
            connection.close()


def serve_start(command: list[str]) -> tuple[subprocess.Popen, int, float]:
    """Starts `command serve --addr` and returns it with its port and its start-to-ready."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        command + ["serve", "--addr", f"127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            status = serve_request(port)
            ready = time.perf_counter() - started
            if status != 200:
                raise SystemExit(f"the first answer was {status}")
            return process, port, ready * 1000
        except (ConnectionRefusedError, ConnectionResetError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("serve did not answer")
            time.sleep(0.0005)


def serve(command: list[str]) -> dict:
    samples = []
    for _ in range(RUNS):
        process, _, ready = serve_start(command)
        samples.append(ready)
        stop(process)
    process, port, _ = serve_start(command)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
        started = time.perf_counter()
        for _ in range(REQUESTS):
            if serve_request(port, connection) != 200:
                raise SystemExit("a request was not answered 200")
        elapsed = time.perf_counter() - started
        memory = rss_kib(process.pid)
    finally:
        stop(process)
    return {
        "start_to_ready": summary(samples),
        "requests": REQUESTS,
        "requests_per_s": round(REQUESTS / elapsed),
        "rss_kib": memory["VmRSS"],
        "peak_rss_kib": memory["VmHWM"],
    }


# ---------------------------------------------------------------------------------------------
# Lambda mode


class Emulator:
    """`cargo lambda watch --only-lambda-apis`: the Lambda Runtime API and Invoke API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                os.environ["PROBE_EMULATOR"],
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                str(self.port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, self.process)

    def runtime_api(self) -> str:
        return f"http://127.0.0.1:{self.port}/.rt"

    def invoke(self, event: bytes, connection: http.client.HTTPConnection | None = None) -> dict:
        own = connection is None
        if own:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE_S)
        try:
            send_invocation(connection, event)
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise SystemExit(f"invoke answered {response.status}: {payload[:200]!r}")
            return json.loads(payload)
        finally:
            if own:
                connection.close()

    def close(self) -> None:
        stop(self.process)


def send_invocation(connection: http.client.HTTPConnection, event: bytes) -> None:
    """Sends an invocation to the emulator's Invoke API; the answer is read by the caller."""
    connection.request(
        "POST",
        "/2015-03-31/functions/_/invocations",
        body=event,
        headers={"Content-Type": "application/json"},
    )


def lambda_start(command: list[str], emulator: Emulator, event: bytes) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ)
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": emulator.runtime_api(),
            "AWS_LAMBDA_FUNCTION_NAME": "_",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
        }
    )
    # The invocation is sent first and waits in the emulator for the function to ask for it.
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=DEADLINE_S)
    send_invocation(connection, event)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    response = connection.getresponse()
    payload = response.read()
    ready = time.perf_counter() - started
    connection.close()
    answer = json.loads(payload) if response.status == 200 else {}
    if answer.get("statusCode") != 200:
        stop(process)
        raise SystemExit(f"the first invocation got {response.status}: {payload[:300]!r}")
    return process, ready * 1000


def lambda_mode(command: list[str]) -> dict:
    with open(os.environ["PROBE_EVENT"], "rb") as f:
        event = f.read()
    samples = []
    for _ in range(RUNS):
        emulator = Emulator()
        try:
            process, ready = lambda_start(command, emulator, event)
            samples.append(ready)
            stop(process)
        finally:
            emulator.close()
    emulator = Emulator()
    try:
        process, _ = lambda_start(command, emulator, event)
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=DEADLINE_S)
        started = time.perf_counter()
        for _ in range(REQUESTS):
            if emulator.invoke(event, connection).get("statusCode") != 200:
                raise SystemExit("an invocation was not answered 200")
        elapsed = time.perf_counter() - started
        memory = rss_kib(process.pid)
        stop(process)
    finally:
        emulator.close()
    return {
        "start_to_ready": summary(samples),
        "requests": REQUESTS,
        "requests_per_s": round(REQUESTS / elapsed),
        "rss_kib": memory["VmRSS"],
        "peak_rss_kib": memory["VmHWM"],
    }


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("serve", "lambda"):
        raise SystemExit(__doc__)
    mode, command = sys.argv[1], sys.argv[2:]
    result = serve(command) if mode == "serve" else lambda_mode(command)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
