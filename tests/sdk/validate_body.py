"""Validates JSON deliveries with Twilio's Python SDK (RequestValidator.validate with the body
as a string), for tests/it/signature_sdk.rs.

Usage: .venv/bin/python tests/sdk/validate_body.py CASES

CASES holds one JSON object a line: {"token", "url", "body", "signature"}. For each, prints one
JSON line: {"valid": validate(url, body, signature)}.
"""

import json
import sys

from twilio.request_validator import RequestValidator


def main(path):
    with open(path, encoding="utf-8") as cases:
        for line in cases:
            case = json.loads(line)
            validator = RequestValidator(case["token"])
            valid = validator.validate(case["url"], case["body"], case["signature"])
            print(json.dumps({"valid": valid}))


if __name__ == "__main__":
    main(sys.argv[1])
