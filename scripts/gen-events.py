#!/usr/bin/env python3
"""Generate the Lambda HTTP events under tests/data/events/ and events/.

Each event is the JSON document AWS hands to the function when Twilio
TaskRouter POSTs an assignment callback through one of the three HTTP front
doors that `lambda_http` understands:

  flavour "http"  API Gateway HTTP API, payload format 2.0
  flavour "rest"  API Gateway REST API (Lambda proxy), payload format 1.0
  flavour "url"   Lambda function URL (payload format 2.0 shape)

tests/data/events/ holds the test fixtures (one callback, a placeholder
signature). events/ holds the documented examples for `sam local invoke` and
`cargo lambda invoke`: callbacks signed with the test auth token
TEST_AUTH_TOKEN for their documented URL, with rules.json and env.json.

Python 3 standard library only. Output is deterministic (request ids, trace
ids and so on are derived from the event name), so re-running the script
rewrites byte-identical files unless the inputs here change.

    python3 scripts/gen-events.py                   # (re)write every file
    python3 scripts/gen-events.py --check           # exit 1 if any file is stale
    python3 scripts/gen-events.py --out DIR         # write the fixtures somewhere else
    python3 scripts/gen-events.py --events-out DIR  # write the examples somewhere else

To add a fixture, add an entry to FIXTURES; to add an example, an entry to
EXAMPLES (or import this file and call make_event() directly).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
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


# --------------------------------------------------------------------------
# events/: signed examples for `sam local invoke` and `cargo lambda invoke`
# --------------------------------------------------------------------------

# A documented test auth token: not a secret, and no account's real token.
TEST_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"

# The template's default rules document (template.yaml, RulesParameter), which
# is also the embedded example: outbound calls, and calls in the placeholder
# queue WQ000..., are not recorded.
EXAMPLE_RULES = {
    "enabled": True,
    "exclude_queues": ["WQ00000000000000000000000000000000"],
    "exclude_attributes": [{"key": "direction", "value": "outbound"}],
}

# `sam local invoke --env-vars events/env.json`: the test token instead of the
# SSM token parameter (an empty value counts as unset); the rules still come
# from the deployed rules parameter (RULES_PARAMETER in the template).
SAM_ENV = {
    "DecisionFunction": {
        "TWILIO_AUTH_TOKEN_PARAMETER": "",
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "PUBLIC_URL": "",
    }
}

# What the sweep's schedule sends (template.yaml, SweepFunction's ScheduleV2
# Input) with the default SweepWindow: reconcile --fix over the last 48 hours.
SWEEP_EVENT = {"reconcile": {"since": "48h", "fix": True}}

# The route the template's HttpApi event declares.
TEMPLATE_ROUTE_KEY = "POST /assignment"

INBOUND_QUEUE = "WQ11111111111111111111111111111111"
OUTBOUND_QUEUE = "WQ22222222222222222222222222222222"
CHAT_QUEUE = "WQ33333333333333333333333333333333"
EXCLUDED_QUEUE = "WQ00000000000000000000000000000000"  # in EXAMPLE_RULES


def sid(prefix: str, digit: str) -> str:
    return prefix + digit * 32


def called_url(flavour: str, stage: str, path: str, query: str = "") -> str:
    """The Assignment Callback URL configured in TaskRouter, which the
    signature covers: a named stage is part of it, $default is not."""
    host = URL_HOST if flavour == "url" else API_HOST
    staged = path if stage == "$default" else f"/{stage}{path}"
    return f"https://{host}{staged}" + (f"?{query}" if query else "")


def twilio_signature(token: str, url: str, params: dict[str, str] | list[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(token, URL + every parameter name
    and value, sorted by name (a repeated name's values sorted), no delimiters)).
    Python orders str by code point, which is UTF-8 byte order."""
    pairs = params.items() if isinstance(params, dict) else params
    data = url + "".join(name + value for name, value in sorted(pairs))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def inbound_attributes(n: str) -> dict:
    """A Flex inbound call (Studio "Send to Flex"), task WT<n...>, call CA<n...>;
    the shape of tests/data/fixtures/inbound-voice-task-attributes.json."""
    return {
        "type": "inbound",
        "name": "+14155550100",
        "direction": "inbound",
        "from": "+14155550100",
        "to": "+18005550199",
        "caller": "+14155550100",
        "called": "+18005550199",
        "call_sid": sid("CA", n),
        "account_sid": "AC00000000000000000000000000000000",
        "api_version": "2010-04-01",
        "from_city": "SAN FRANCISCO",
        "from_state": "CA",
        "from_zip": "94107",
        "from_country": "US",
        "caller_city": "SAN FRANCISCO",
        "caller_state": "CA",
        "caller_zip": "94107",
        "caller_country": "US",
        "to_city": "",
        "to_state": "",
        "to_zip": "",
        "to_country": "US",
        "called_city": "",
        "called_state": "",
        "called_zip": "",
        "called_country": "US",
        "ivr": {"language": "en-US", "menu_path": ["main", "billing"], "consent": True,
                "choice": "billing"},
        "customers": {
            "customer_label_1": "Account",
            "customer_value_1": "000123456",
            "customer_label_2": "Tier",
            "customer_value_2": "gold",
            "name": "Pat Example",
            "email": "pat@example.com",
            "phone": "+14155550100",
        },
        "conversations": {
            "conversation_id": sid("WT", n),
            "communication_channel": "Call",
            "direction": "Inbound",
            "initiated_by": "Customer",
            "virtual": "No",
            "abandoned": "No",
            "queue_time": 12,
            "in_business_hours": "Yes",
            "language": "en-US",
            "topics": ["billing", "address change"],
            "content": "Customer asked about an invoice",
            "conversation_attribute_1": "campaign-2026-q4",
            "conversation_attribute_2": "ivr-billing",
            "conversation_measure_1": 3,
        },
        "transferTargetType": "queue",
        "flow_sid": "FW99999999999999999999999999999999",
        "studio_execution_sid": "FN88888888888888888888888888888888",
        "skills_needed": ["billing", "english"],
        "priority_reason": "gold tier",
    }


def outbound_attributes(n: str) -> dict:
    """A call from the Flex dialer: direction outbound, outbound_to, no
    call_sid yet (tests/data/fixtures/outbound-voice-task-attributes.json)."""
    return {
        "direction": "outbound",
        "name": "+14155550123",
        "from": "+18005550199",
        "outbound_to": "+14155550123",
        "targetWorker": "client:alice",
        "autoAnswer": "true",
        "conversations": {
            "conversation_id": sid("WT", n),
            "communication_channel": "Call",
            "direction": "Outbound",
            "initiated_by": "Agent",
            "external_contact": "+14155550123",
        },
    }


def chat_attributes(n: str) -> dict:
    """A Flex web chat: channelType web, no call_sid
    (tests/data/fixtures/chat-task-attributes.json)."""
    return {
        "channelType": "web",
        "channelSid": "CH77777777777777777777777777777777",
        "conversationSid": "CH77777777777777777777777777777777",
        "from": "Visitor 4821",
        "name": "Visitor 4821",
        "direction": "inbound",
        "customerAddress": "visitor-4821",
        "conversations": {"conversation_id": sid("WT", n), "communication_channel": "Chat"},
    }


def sms_outbound_attributes(n: str) -> dict:
    """An agent-initiated outbound SMS (Flex Conversations): direction
    outbound, but a conversation, not a call
    (tests/data/fixtures/sms-outbound-task-attributes.json)."""
    return {
        "channelType": "sms",
        "conversationSid": "CH88888888888888888888888888888888",
        "flexInteractionChannelSid": "UO88888888888888888888888888888888",
        "from": "+18005550199",
        "name": "+14155550177",
        "customerAddress": "+14155550177",
        "direction": "outbound",
        "conversations": {
            "conversation_id": sid("WT", n),
            "communication_channel": "SMS",
            "direction": "Outbound",
            "initiated_by": "Agent",
        },
    }


def assignment(n: str, queue: str, attributes: dict) -> dict[str, str]:
    """An assignment callback for task WT<n...> and reservation WR<n...>."""
    return {
        "AccountSid": "AC00000000000000000000000000000000",
        "WorkspaceSid": "WS00000000000000000000000000000000",
        "WorkflowSid": "WW00000000000000000000000000000000",
        "TaskQueueSid": queue,
        "WorkerSid": "WK00000000000000000000000000000000",
        "WorkerAttributes": _compact_json(WORKER_ATTRIBUTES),
        "TaskSid": sid("WT", n),
        "ReservationSid": sid("WR", n),
        "TaskAge": "12",
        "TaskPriority": "0",
        "Timestamp": str(EVENT_TIMESTAMP),
        "TaskAttributes": _compact_json(attributes),
    }


INBOUND = assignment("5", INBOUND_QUEUE, inbound_attributes("5"))

# The inbound callback with its direction rewritten to dodge recording: it
# keeps INBOUND's signature, which no longer matches.
FORGED = dict(INBOUND, TaskAttributes=_compact_json(
    dict(inbound_attributes("5"), direction="outbound")))

# A Voice status callback posted to the assignment URL by mistake: signed like
# any Twilio webhook, but no TaskSid, ReservationSid or TaskAttributes.
VOICE_STATUS_CALLBACK = {
    "AccountSid": "AC00000000000000000000000000000000",
    "ApiVersion": "2010-04-01",
    "CallSid": sid("CA", "9"),
    "CallStatus": "completed",
    "CallDuration": "42",
    "Called": "+18005550199",
    "Caller": "+14155550100",
    "Direction": "inbound",
    "From": "+14155550100",
    "To": "+18005550199",
    "Timestamp": "Mon, 24 Nov 2025 16:00:00 +0000",
    "CallbackSource": "call-progress-events",
    "SequenceNumber": "0",
}

# --------------------------------------------------------------------------
# POST /events: the two deliveries of TaskRouter events (SPEC section 8)
# --------------------------------------------------------------------------

EVENTS_ROUTE_KEY = "POST /events"
WORKSPACE = "WS00000000000000000000000000000000"
ACCOUNT = "AC00000000000000000000000000000000"


def workspace_event(kind: str, n: str, queue: str, attributes: dict) -> dict[str, str]:
    """A Workspace Event Callback (form) for task WT<n...>, reservation WR<n...>,
    in the order TaskRouter lists a reservation event's fields."""
    return {
        "EventType": kind,
        "ResourceType": "reservation" if kind.startswith("reservation.") else "task",
        "ResourceSid": sid("WR" if kind.startswith("reservation.") else "WT", n),
        "EventDescription": f"{kind} for task {sid('WT', n)}",
        "Timestamp": str(EVENT_TIMESTAMP + 30),
        "TimestampMs": str((EVENT_TIMESTAMP + 30) * 1000),
        "AccountSid": ACCOUNT,
        "WorkspaceSid": WORKSPACE,
        "WorkspaceName": "Flex Task Assignment",
        "TaskSid": sid("WT", n),
        "TaskAttributes": _compact_json(attributes),
        "TaskQueueSid": queue,
        "TaskQueueName": "Billing" if queue != EXCLUDED_QUEUE else "Payments",
        "TaskChannelUniqueName": "voice",
        "ReservationSid": sid("WR", n),
        "WorkerSid": "WK00000000000000000000000000000000",
        "WorkerName": "alice",
    }


def cloud_event(kind: str, n: str, queue: str, attributes: dict) -> dict:
    """One CloudEvent of an Event Streams delivery: the same event's fields, in
    snake case, under data.payload."""
    form = workspace_event(kind, n, queue, attributes)
    payload = {
        "account_sid": form["AccountSid"],
        "workspace_sid": form["WorkspaceSid"],
        "workspace_name": form["WorkspaceName"],
        "task_sid": form["TaskSid"],
        "task_attributes": form["TaskAttributes"],
        "task_queue_sid": form["TaskQueueSid"],
        "task_queue_name": form["TaskQueueName"],
        "task_channel_unique_name": form["TaskChannelUniqueName"],
        "worker_sid": form["WorkerSid"],
        "worker_name": form["WorkerName"],
        "timestamp": form["Timestamp"],
    }
    if kind.startswith("reservation."):
        payload["reservation_sid"] = form["ReservationSid"]
    return {
        "specversion": "1.0",
        "type": f"com.twilio.taskrouter.{kind}",
        "source": f"/v1/Workspaces/{WORKSPACE}/Tasks/{form['TaskSid']}",
        "id": "EZ" + _digest(kind + n, "ez").hex()[:32],
        "dataschema": f"https://events-schemas.twilio.com/TaskRouter.{kind}/1",
        "datacontenttype": "application/json",
        "time": "2025-11-24T16:00:30.000Z",
        "data": {"name": kind, "payload": payload},
    }


# The excluded-queue call answered at assignment (WT8...): once accepted, its
# recordings (the conference named after the task, the customer's leg) go.
ACCEPTED_IN_EXCLUDED_QUEUE = workspace_event(
    "reservation.accepted", "8", EXCLUDED_QUEUE, inbound_attributes("8"))

# An Event Streams batch: the dialer's call accepted (WT6..., do-not-record by
# its direction, so its recordings go) and the recorded inbound call's task
# completed (WT5..., recorded: nothing of it is touched).
STREAM_BATCH = _compact_json([
    cloud_event("reservation.accepted", "6", OUTBOUND_QUEUE, outbound_attributes("6")),
    cloud_event("task.completed", "5", INBOUND_QUEUE, inbound_attributes("5")),
])

# The same batch with its first event's direction rewritten, posted under the
# original's bodySHA256 and signature.
TAMPERED_BATCH = STREAM_BATCH.replace('\\"direction\\":\\"outbound\\"',
                                      '\\"direction\\":\\"inbound\\"', 1)
assert TAMPERED_BATCH != STREAM_BATCH


# A sink created without batching: one CloudEvent object per request, not an
# array. The excluded-queue call WT2... is accepted; its conference recording
# goes.
STREAM_SINGLE = _compact_json(
    cloud_event("reservation.accepted", "2", EXCLUDED_QUEUE, inbound_attributes("2")))

# The content type of a single CloudEvent in the CloudEvents HTTP binding
# (structured mode); a batching sink sends application/json.
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


def body_sha256(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


# Each example: the form body, where it is posted, and (for the forgery) the
# body its signature was computed over. The expected answers are in
# events/README.md and tests/it/lambda_runtime.rs.
EXAMPLES: dict[str, dict] = {
    # 200 record-from-start: no rule matches.
    "http-inbound-recorded.json": dict(params=INBOUND, flavour="http", stage="$default"),
    # 200 {}: a Flex dialer call (no call_sid), which Flex accepts itself; the
    # decision (do-not-record, exclude_attributes[0]) is logged.
    "http-dialer-call.json": dict(
        params=assignment("6", OUTBOUND_QUEUE, outbound_attributes("6")),
        flavour="http", stage="$default"),
    # 200 {}: an agent's outbound SMS, not a call.
    "http-sms-outbound.json": dict(
        params=assignment("3", CHAT_QUEUE, sms_outbound_attributes("3")),
        flavour="http", stage="$default"),
    # 200 do-not-record: exclude_queues[0].
    "http-excluded-queue.json": dict(
        params=assignment("8", EXCLUDED_QUEUE, inbound_attributes("8")),
        flavour="http", stage="$default"),
    # 200 {}: not a call.
    "http-chat-task.json": dict(
        params=assignment("7", CHAT_QUEUE, chat_attributes("7")),
        flavour="http", stage="$default"),
    # 403: the body is not the one signed.
    "http-bad-signature.json": dict(
        params=FORGED, signed_params=INBOUND, flavour="http", stage="$default"),
    # 400 TaskSid is missing: signed, but not an assignment callback.
    "http-malformed-body.json": dict(
        params=VOICE_STATUS_CALLBACK, flavour="http", stage="$default"),
    # 200 record-from-start, through a REST API's Prod stage.
    "rest-inbound-recorded.json": dict(
        params=assignment("4", INBOUND_QUEUE, inbound_attributes("4")),
        flavour="rest", stage="Prod"),
    # 200 {"enforced":1,...}: a Workspace Event Callback (form, signed like a
    # callback) for the excluded-queue call.
    "http-events-workspace.json": dict(
        params=ACCEPTED_IN_EXCLUDED_QUEUE, flavour="http", stage="$default", path="/events"),
    # 200 {"enforced":2,...}: an Event Streams webhook sink's JSON batch, signed
    # over the URL with its bodySHA256.
    "http-events-stream.json": dict(
        json=STREAM_BATCH, flavour="http", stage="$default", path="/events"),
    # 200 {"enforced":1,...}: a sink without batching, one CloudEvent object
    # sent as application/cloudevents+json.
    "http-events-single.json": dict(
        json=STREAM_SINGLE, flavour="http", stage="$default", path="/events",
        content_type=CLOUDEVENT_CONTENT_TYPE),
    # 403: the batch changed after it was signed; its bodySHA256 no longer matches.
    "http-events-tampered.json": dict(
        json=TAMPERED_BATCH, signed_json=STREAM_BATCH, flavour="http", stage="$default",
        path="/events"),
}


def make_example(fname: str) -> dict:
    spec = EXAMPLES[fname]
    path = spec.get("path", "/assignment")
    route_key = EVENTS_ROUTE_KEY if path == "/events" else TEMPLATE_ROUTE_KEY
    name = fname.removesuffix(".json")
    if "json" in spec:
        # Event Streams: the URL carries the hash of the body as signed, and the
        # signature covers that URL alone (no parameters).
        query = f"bodySHA256={body_sha256(spec.get('signed_json', spec['json']))}"
        url = called_url(spec["flavour"], spec["stage"], path, query)
        signature = twilio_signature(TEST_AUTH_TOKEN, url, [])
        return make_event(
            "POST", spec["json"], query, path, spec["stage"], spec["flavour"],
            name=name, route_key=route_key, base64_body=False,
            content_type=spec.get("content_type", "application/json"),
            extra_headers={"X-Twilio-Signature": signature})
    url = called_url(spec["flavour"], spec["stage"], path)
    signature = twilio_signature(TEST_AUTH_TOKEN, url, spec.get("signed_params", spec["params"]))
    return make_event(
        "POST", spec["params"], "", path, spec["stage"], spec["flavour"],
        name=name, route_key=route_key,
        extra_headers={"X-Twilio-Signature": signature})


def build_examples() -> dict[str, str]:
    files = {fname: render(make_example(fname)) for fname in EXAMPLES}
    files["rules.json"] = render(EXAMPLE_RULES)
    files["env.json"] = render(SAM_ENV)
    files["sweep.json"] = render(SWEEP_EVENT)
    return files


def validate_example(fname: str, text: str) -> None:
    """Load a rendered example back: the body round-trips, and its signature
    holds for the URL rebuilt from the event (the forgery's must not)."""
    event = json.loads(text)
    spec = EXAMPLES[fname]
    body = event["body"]
    if event["isBase64Encoded"]:
        body = base64.b64decode(body, validate=True).decode("utf-8")
    headers = {k.lower(): v for k, v in event["headers"].items()}
    if "rawPath" in event:
        path, query = event["rawPath"], event["rawQueryString"]
    else:
        path, query = event["requestContext"]["path"], ""
    url = f"{headers['x-forwarded-proto']}://{headers['host']}{path}"
    url += f"?{query}" if query else ""
    signature = headers["x-twilio-signature"]
    if "json" in spec:
        assert body == spec["json"], f"{fname}: body differs"
        events = json.loads(body)
        events = events if isinstance(events, list) else [events]
        assert all(json.loads(e["data"]["payload"]["task_attributes"]) for e in events)
        hashed = dict(urllib.parse.parse_qsl(query))["bodySHA256"]
        signed = signature == twilio_signature(TEST_AUTH_TOKEN, url, [])
        valid = signed and hashed == body_sha256(body)
        assert signed, f"{fname}: the URL's signature does not hold"
        assert valid != ("signed_json" in spec), f"{fname}: delivery valid={valid}"
        return
    pairs = urllib.parse.parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    assert pairs == list(spec["params"].items()), f"{fname}: form fields differ after decoding"
    expected_url = called_url(spec["flavour"], spec["stage"], spec.get("path", "/assignment"))
    assert url == expected_url, f"{fname}: URL {url}"
    valid = signature == twilio_signature(TEST_AUTH_TOKEN, url, pairs)
    assert valid != ("signed_params" in spec), f"{fname}: signature valid={valid}"


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=repo / "tests" / "data" / "events",
                    help="fixtures directory (default: tests/data/events)")
    ap.add_argument("--events-out", type=Path, default=repo / "events",
                    help="examples directory (default: events)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a file is missing or differs")
    args = ap.parse_args(argv)

    rendered = build_all()
    for fname, text in rendered.items():
        validate(fname, text)
    examples = build_examples()
    for fname in EXAMPLES:
        validate_example(fname, examples[fname])

    outputs = [(args.out / f, t) for f, t in rendered.items()]
    outputs += [(args.events_out / f, t) for f, t in examples.items()]

    if args.check:
        stale = [path for path, text in outputs
                 if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0

    for path, text in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
