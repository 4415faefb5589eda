// Signs test cases with Twilio's npm SDK, for tests/it/signature_sdk.rs.
//
// Usage: node tests/sdk/sign.mjs CASES
//
// CASES holds one JSON object a line: {"token", "url", "params": [[name, value], ...],
// "port_checks": [{"url", "signature"}, ...]}. For each, prints one JSON line:
// {"signature": getExpectedTwilioSignature(...), "port_checks": [validateRequest(...), ...]}.

import { readFileSync } from "node:fs";
import twilio from "twilio";

// The body as Express's urlencoded parser hands it over: an object without a prototype
// (so names like `__proto__` are plain keys), a repeated name's values in an array.
function formParams(pairs) {
  const params = Object.create(null);
  for (const [name, value] of pairs) {
    if (!(name in params)) {
      params[name] = value;
    } else if (Array.isArray(params[name])) {
      params[name].push(value);
    } else {
      params[name] = [params[name], value];
    }
  }
  return params;
}

const lines = readFileSync(process.argv[2], "utf8").split("\n").filter((line) => line !== "");
const answers = lines.map((line) => {
  const { token, url, params: pairs, port_checks: portChecks } = JSON.parse(line);
  const params = formParams(pairs);
  return JSON.stringify({
    signature: twilio.getExpectedTwilioSignature(token, url, params),
    port_checks: portChecks.map((check) =>
      twilio.validateRequest(token, check.signature, check.url, params),
    ),
  });
});
process.stdout.write(answers.map((answer) => answer + "\n").join(""));
