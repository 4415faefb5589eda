#!/usr/bin/env bash
# Scans every log line the test suite's processes wrote (kept in target/tmp/test-logs by the
# tests) for the test suite's auth tokens, API secrets, signatures and caller data. Any hit
# fails the run: secrets and caller data must never reach a log.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/tmp/test-logs

files=$(find "$dir" -name '*.log' 2>/dev/null | wc -l)
lines=$(cat "$dir"/*.log 2>/dev/null | wc -l)
if [ "$files" -eq 0 ] || [ "$lines" -lt 100 ]; then
  echo "log scan: only $files files / $lines lines were kept; the tests did not run?"
  exit 1
fi

# Test tokens and secrets (every one the tests configure), and the fixtures' caller data.
patterns=(
  '0123456789abcdef0123456789abcdef'
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
  'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
  'ffffffffffffffffffffffffffffffff'
  'fedcba9876543210fedcba9876543210'
  'Zq7Xv2Lp9Rt4Wm8Ks1Nd6Hf3Jb5Gc0Ya'
  '\+?1?[ -]?(415|800)[ -]?555[ -]?[0-9]{4}'
  'Pat Example'
  'pat@example\.com'
  'Customer asked about an invoice'
  'client:alice'
)
found=0
for pattern in "${patterns[@]}"; do
  # A token is a whole word (a SID such as WQaaaa... merely contains one).
  bounded="(^|[^0-9A-Za-z])($pattern)([^0-9A-Za-z]|\$)"
  if hits=$(grep -rEn -- "$bounded" "$dir" | head -3) && [ -n "$hits" ]; then
    echo "log scan: /$pattern/ found in a log line:"
    echo "$hits" | cut -c1-300
    found=1
  fi
done
[ "$found" -eq 0 ] || exit 1
echo "log scan: $lines lines from $files processes, no token, secret or caller data"
