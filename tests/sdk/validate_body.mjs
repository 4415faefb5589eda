// Validates JSON deliveries with Twilio's npm SDK (validateRequestWithBody), for
// tests/it/signature_sdk.rs.
//
// Usage: node tests/sdk/validate_body.mjs CASES
//
// CASES holds one JSON object a line: {"token", "url", "body", "signature"}. For each, prints
// one JSON line: {"valid": validateRequestWithBody(token, signature, url, body)}.

import { readFileSync } from "node:fs";
import twilio from "twilio";

const lines = readFileSync(process.argv[2], "utf8").split("\n").filter((line) => line !== "");
const answers = lines.map((line) => {
  const { token, url, body, signature } = JSON.parse(line);
  return JSON.stringify({ valid: twilio.validateRequestWithBody(token, signature, url, body) });
});
process.stdout.write(answers.map((answer) => answer + "\n").join(""));
