"""Signs test cases with Twilio's Python SDK (RequestValidator), for tests/it/signature_sdk.rs.

Usage: .venv/bin/python tests/sdk/sign.py CASES

CASES holds one JSON object a line: {"token", "url", "params": [[name, value], ...],
"port_checks": [{"url", "signature"}, ...]}. For each, prints one JSON line:
{"signature": compute_signature(url, params), "port_checks": [validate(...), ...]}.
"""

import json
import sys

from twilio.request_validator import RequestValidator


class FormParams(dict):
    """Name -> every value sent for it, as Django's QueryDict hands a form to the SDK."""

    def getlist(self, name):
        return self[name]


def form_params(pairs):
    params = FormParams()
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def main(path):
    with open(path, encoding="utf-8") as cases:
        for line in cases:
            case = json.loads(line)
            validator = RequestValidator(case["token"])
            params = form_params(case["params"])
            answer = {
                "signature": validator.compute_signature(case["url"], params),
                "port_checks": [
                    validator.validate(check["url"], params, check["signature"])
                    for check in case["port_checks"]
                ],
            }
            print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1])
