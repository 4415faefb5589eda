#!/usr/bin/env python3
"""Generate the Lambda HTTP fixture events under tests/data/events/.

Each fixture is the JSON document AWS hands to the function when Twilio
TaskRouter POSTs an assignment callback through one of the three HTTP front
doors that `lambda_http` understands:

  flavour "http"  API Gateway HTTP API, payload format 2.0
  flavour "rest"  API Gateway REST API (Lambda proxy), payload format 1.0
  flavour "url"   Lambda function URL (payload format 2.0 shape)

Python 3 standard library only. Output is deterministic (request ids, trace
ids and so on are derived from the event name), so re-running the script
rewrites byte-identical files unless the inputs here change.

    python3 scripts/gen-events.py            # (re)write every fixture
    python3 scripts/gen-events.py --check    # exit 1 if any fixture is stale
    python3 scripts/gen-events.py --out DIR  # write somewhere else

To add a fixture, add an entry to FIXTURES at the bottom (or import this file
and call make_event() directly).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

# --------------------------------------------------------------------------
# The TaskRouter assignment callback
# --------------------------------------------------------------------------

TASK_ATTRIBUTES = {
    "type": "inbound",
    "direction": "inbound",
    "from": "+14155550100",
    "to": "+18005550199",
    "caller": "+14155550100",
    "called": "+18005550199",
    "call_sid": "CA11111111111111111111111111111111",
    "conversations": {"communication_channel": "Call", "topics": ["billing"]},
}

WORKER_ATTRIBUTES = {"contact_uri": "client:alice", "routing": {"skills": ["billing"]}}

# Unix seconds of the TaskRouter event (2025-11-24T16:00:00Z). The AWS side
# of every fixture is stamped a little after this.
EVENT_TIMESTAMP = 1764000000


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# Insertion order is the order of the fields in the encoded body.
ASSIGNMENT_PARAMS: dict[str, str] = {
    "AccountSid": "AC00000000000000000000000000000000",
    "WorkspaceSid": "WS00000000000000000000000000000000",
    "WorkflowSid": "WW00000000000000000000000000000000",
    "TaskQueueSid": "WQ11111111111111111111111111111111",
    "WorkerSid": "WK00000000000000000000000000000000",
    "WorkerAttributes": _compact_json(WORKER_ATTRIBUTES),
    "TaskSid": "WT11111111111111111111111111111111",
    "ReservationSid": "WR11111111111111111111111111111111",
    "TaskAge": "12",
    "TaskPriority": "0",
    "Timestamp": str(EVENT_TIMESTAMP),
    "TaskAttributes": _compact_json(TASK_ATTRIBUTES),
}


def encode_form(params: dict[str, str]) -> str:
    """application/x-www-form-urlencoded, as Twilio sends it (spaces as '+')."""
    return urllib.parse.urlencode(params)


# --------------------------------------------------------------------------
# Where the request goes
# --------------------------------------------------------------------------

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
API_ID = "abc123"
API_HOST = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
URL_ID = "abcdefghijklmnop"
URL_HOST = f"{URL_ID}.lambda-url.{REGION}.on.aws"

CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
USER_AGENT = "TwilioProxy/1.1"
TWILIO_SIGNATURE = "dGVzdA=="  # placeholder, not a real HMAC

# Headers Twilio puts on a webhook request, in the case Twilio sends them.
# Host / Content-Type / Content-Length are added per request below.
# (Accept, Cache-Control, I-Twilio-Idempotency-Token and X-Home-Region are
# what Twilio's webhook client normally adds; drop them here if unwanted.)
TWILIO_HEADERS: dict[str, str] = {
    "Accept": "*/*",
    "Cache-Control": "max-age=259200",
    "I-Twilio-Idempotency-Token": "4c7d5c1e-2b3a-4f6e-9a8b-0c1d2e3f4a5b",
    "User-Agent": USER_AGENT,
    "X-Home-Region": "us1",
    "X-Twilio-Signature": TWILIO_SIGNATURE,
}

# Documentation address ranges (RFC 5737): the caller and a CloudFront edge.
CLIENT_IP = "203.0.113.17"
EDGE_IP = "198.51.100.42"

FLAVOURS = ("http", "rest", "url")


# --------------------------------------------------------------------------
# Deterministic ids
# --------------------------------------------------------------------------


def _digest(seed: str, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}:{seed}".encode()).digest()


def _uuid(seed: str, salt: str) -> str:
    h = _digest(seed, salt).hex()
    # shape of a v4 UUID
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


def _apigw_id(seed: str, salt: str) -> str:
    """The 16-character id API Gateway uses for HTTP API requestId and
    REST API extendedRequestId (e.g. "Kx3vQhJboAMEbXw=")."""
    return base64.urlsafe_b64encode(_digest(seed, salt)[:11]).decode()


def _trace_id(seed: str, epoch_s: int) -> str:
    return f"Root=1-{epoch_s:08x}-{_digest(seed, 'trace').hex()[:24]}"


def _cf_id(seed: str) -> str:
    return base64.urlsafe_b64encode(_digest(seed, "cf") + _digest(seed, "cf2")[:8]).decode()


def _clf_time(epoch_ms: int) -> str:
    """API Gateway's `time` / `requestTime`: 24/Nov/2025:16:00:00 +0000."""
    dt = datetime.fromtimestamp(epoch_ms / 1000, timezone.utc)
    return dt.strftime("%d/%b/%Y:%H:%M:%S +0000")


# --------------------------------------------------------------------------
# Event builder
# --------------------------------------------------------------------------


def _split_query(query: str) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(query, keep_blank_values=True) if query else []


def make_event(
    method: str = "POST",
    body: dict[str, str] | str | bytes | None = None,
    query: str = "",
    path: str = "/assignment",
    stage: str = "$default",
    flavour: str = "http",
    *,
    name: str = "event",
    base64_body: bool | None = None,
    resource: str | None = None,
    route_key: str = "$default",
    content_type: str | None = CONTENT_TYPE,
    extra_headers: dict[str, str] | None = None,
    epoch_ms: int | None = None,
) -> dict:
    """Build one Lambda HTTP event.

    method      HTTP method.
    body        dict -> form-encoded with encode_form(); str/bytes -> sent as
                is; None -> no body (no Content-Type / Content-Length either).
    query       raw query string without '?', already percent-encoded.
    path        request path *below* the stage, e.g. "/assignment".
    stage       "$default" or a stage name. HTTP API puts a named stage in
                rawPath; REST API keeps it out of `path` but puts it in
                requestContext.path. Function URLs only have "$default".
    flavour     "http" (HTTP API 2.0), "rest" (REST API 1.0) or "url"
                (function URL).

    Keyword options: name seeds the deterministic ids; base64_body overrides
    isBase64Encoded (default: true for http/url, false for rest); resource is
    the REST resource (default: path); route_key is the HTTP API route
    ("$default" catch-all, or e.g. "POST /assignment"); content_type=None
    drops Content-Type; extra_headers are appended to the client headers;
    epoch_ms is the request time (default: a fixed instant after the
    TaskRouter Timestamp, offset per name).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
    if flavour == "url" and stage != "$default":
        raise ValueError("function URLs only have the $default stage")
    if not path.startswith("/"):
        raise ValueError("path must start with '/'")
    method = method.upper()

    if isinstance(body, dict):
        body_bytes: bytes | None = encode_form(body).encode()
    elif isinstance(body, str):
        body_bytes = body.encode()
    else:
        body_bytes = body

    if epoch_ms is None:
        epoch_ms = EVENT_TIMESTAMP * 1000 + 180 + _digest(name, "ms")[0]
    epoch_s = epoch_ms // 1000

    # Client headers, as Twilio sends them.
    client: dict[str, str] = dict(TWILIO_HEADERS)
    if body_bytes is not None:
        if content_type is not None:
            client["Content-Type"] = content_type
    if extra_headers:
        client.update(extra_headers)

    if base64_body is None:
        base64_body = flavour in ("http", "url")
    if body_bytes is None:
        body_field = None
        base64_body = False
    elif base64_body:
        body_field = base64.b64encode(body_bytes).decode("ascii")
    else:
        body_field = body_bytes.decode("utf-8")

    pairs = _split_query(query)

    if flavour == "rest":
        return _rest_event(name, method, body_bytes, body_field, base64_body, pairs,
                           path, stage, resource or path, client, epoch_ms, epoch_s)
    return _v2_event(name, method, body_bytes, body_field, base64_body, query, pairs,
                     path, stage, route_key, client, epoch_ms, epoch_s, flavour)


def _v2_event(name, method, body_bytes, body_field, is_b64, query, pairs, path,
              stage, route_key, client, epoch_ms, epoch_s, flavour) -> dict:
    is_url = flavour == "url"
    host = URL_HOST if is_url else API_HOST
    domain_prefix = URL_ID if is_url else API_ID
    raw_path = path if stage == "$default" else f"/{stage}{path}"

    # Both HTTP APIs and function URLs lower-case every header name.
    headers = {k.lower(): v for k, v in client.items()}
    headers["host"] = host
    if body_bytes is not None:
        headers["content-length"] = str(len(body_bytes))
    headers["x-amzn-trace-id"] = _trace_id(name, epoch_s)
    headers["x-forwarded-for"] = CLIENT_IP
    headers["x-forwarded-port"] = "443"
    headers["x-forwarded-proto"] = "https"
    if is_url:
        headers["x-amzn-tls-cipher-suite"] = "TLS_AES_128_GCM_SHA256"
        headers["x-amzn-tls-version"] = "TLSv1.3"
    headers = dict(sorted(headers.items()))

    event: dict = {
        "version": "2.0",
        "routeKey": "$default" if is_url else route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
    }
    if pairs:
        # Repeated keys are joined with commas; values are percent-decoded.
        qsp: dict[str, str] = {}
        for k, v in pairs:
            qsp[k] = f"{qsp[k]},{v}" if k in qsp else v
        event["queryStringParameters"] = qsp

    event["requestContext"] = {
        "accountId": "anonymous" if is_url else ACCOUNT_ID,
        "apiId": domain_prefix,
        "domainName": host,
        "domainPrefix": domain_prefix,
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": CLIENT_IP,
            "userAgent": client.get("User-Agent", ""),
        },
        "requestId": _uuid(name, "req") if is_url else _apigw_id(name, "req"),
        "routeKey": "$default" if is_url else route_key,
        "stage": stage,
        "time": _clf_time(epoch_ms),
        "timeEpoch": epoch_ms,
    }
    if body_field is not None:
        event["body"] = body_field
    event["isBase64Encoded"] = is_b64
    return event


def _rest_event(name, method, body_bytes, body_field, is_b64, pairs, path, stage,
                resource, client, epoch_ms, epoch_s) -> dict:
    # Edge-optimized endpoint (the REST API default): CloudFront sits in front
    # and adds its headers. Header names keep the case the client used.
    # REST APIs do not pass Content-Length through to the proxy event.
    headers: dict[str, str] = {
        "CloudFront-Forwarded-Proto": "https",
        "CloudFront-Is-Desktop-Viewer": "true",
        "CloudFront-Is-Mobile-Viewer": "false",
        "CloudFront-Is-SmartTV-Viewer": "false",
        "CloudFront-Is-Tablet-Viewer": "false",
        "CloudFront-Viewer-ASN": "14618",
        "CloudFront-Viewer-Country": "US",
        "Host": API_HOST,
        "Via": f"2.0 {_digest(name, 'via').hex()[:32]}.cloudfront.net (CloudFront)",
        "X-Amz-Cf-Id": _cf_id(name),
        "X-Amzn-Trace-Id": _trace_id(name, epoch_s),
        "X-Forwarded-For": f"{CLIENT_IP}, {EDGE_IP}",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    headers.update(client)
    headers = dict(sorted(headers.items(), key=lambda kv: kv[0].lower()))

    if pairs:
        qsp: dict[str, str] | None = {}
        mvqsp: dict[str, list[str]] | None = {}
        for k, v in pairs:
            qsp[k] = v  # last value wins in the single-value map
            mvqsp.setdefault(k, []).append(v)
    else:
        qsp = mvqsp = None

    request_path = path if stage == "$default" else f"/{stage}{path}"

    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": qsp,
        "multiValueQueryStringParameters": mvqsp,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": _digest(name, "res").hex()[:6],
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": _apigw_id(name, "ext"),
            "requestTime": _clf_time(epoch_ms),
            "path": request_path,
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": API_ID,
            "requestTimeEpoch": epoch_ms,
            "requestId": _uuid(name, "req"),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": CLIENT_IP,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": client.get("User-Agent", ""),
                "user": None,
                "apiKey": None,
                "apiKeyId": None,
                "clientCert": None,
            },
            "domainName": API_HOST,
            "deploymentId": _digest(name, "dep").hex()[:6],
            "apiId": API_ID,
        },
        "body": body_field,
        "isBase64Encoded": is_b64,
    }


# --------------------------------------------------------------------------
# The fixtures
# --------------------------------------------------------------------------

FIXTURES: dict[str, dict] = {
    "http-api-default-stage.json": dict(
        method="POST", body=ASSIGNMENT_PARAMS, query="", path="/assignment",
        stage="$default", flavour="http"),
    "http-api-named-stage.json": dict(
        method="POST", body=ASSIGNMENT_PARAMS, query="tenant=acme&x=a%20b",
        path="/assignment", stage="live", flavour="http"),
    "rest-api-prod-stage.json": dict(
        method="POST", body=ASSIGNMENT_PARAMS, query="", path="/assignment",
        stage="Prod", flavour="rest"),
    "function-url.json": dict(
        method="POST", body=ASSIGNMENT_PARAMS, query="", path="/assignment",
        stage="$default", flavour="url"),
    "http-api-get.json": dict(
        method="GET", body=None, query="", path="/assignment",
        stage="$default", flavour="http"),
    "http-api-unknown-path.json": dict(
        method="POST", body=ASSIGNMENT_PARAMS, query="", path="/other",
        stage="$default", flavour="http"),
}


def render(event: dict) -> str:
    return json.dumps(event, indent=2, ensure_ascii=False) + "\n"


def build_all() -> dict[str, str]:
    return {fname: render(make_event(name=fname.removesuffix(".json"), **spec))
            for fname, spec in FIXTURES.items()}


def validate(fname: str, text: str) -> None:
    """Load a rendered fixture back and check the body round-trips."""
    event = json.loads(text)
    spec = FIXTURES[fname]
    body = spec["body"]
    expected = encode_form(body) if isinstance(body, dict) else body
    got = event.get("body")
    if expected is None:
        assert got is None, f"{fname}: unexpected body"
        assert event["isBase64Encoded"] is False, f"{fname}: isBase64Encoded without body"
        return
    if event["isBase64Encoded"]:
        got = base64.b64decode(got, validate=True).decode("utf-8")
    assert got == expected, f"{fname}: body does not round-trip"
    if isinstance(body, dict):
        parsed = dict(urllib.parse.parse_qsl(got, keep_blank_values=True, strict_parsing=True))
        assert parsed == body, f"{fname}: form fields differ after decoding"
        assert json.loads(parsed["TaskAttributes"]) == TASK_ATTRIBUTES
        assert json.loads(parsed["WorkerAttributes"]) == WORKER_ATTRIBUTES


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=repo / "tests" / "data" / "events",
                    help="output directory (default: tests/data/events)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a fixture is missing or differs")
    args = ap.parse_args(argv)

    rendered = build_all()
    for fname, text in rendered.items():
        validate(fname, text)

    if args.check:
        stale = [f for f, t in rendered.items()
                 if not (args.out / f).is_file() or (args.out / f).read_text() != t]
        for f in stale:
            print(f"stale: {args.out / f}", file=sys.stderr)
        return 1 if stale else 0

    args.out.mkdir(parents=True, exist_ok=True)
    for fname, text in rendered.items():
        (args.out / fname).write_text(text)
        print(f"wrote {args.out / fname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
