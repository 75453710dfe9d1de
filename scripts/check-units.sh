#!/usr/bin/env bash
# The exposure gate: systemd's own rating of each unit's hardening
# (`systemd-analyze security --offline=true`, 0 = locked down, 10 = exposed),
# printed, and refused above the bound each role allows.
set -euo pipefail
cd "$(dirname "$0")/../systemd"
fail=0
for entry in oxibot-broker.service:1.5 oxibot-channeld@.service:1.5 oxibot-toold.service:2.0 oxibot-egressd.service:1.5; do
    unit=${entry%%:*}
    max=${entry##*:}
    score=$(systemd-analyze security --offline=true --no-pager "$unit" 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$score" ]; then
        echo "$unit: no exposure level (systemd-analyze failed)"
        fail=1
    elif awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
        echo "$unit: exposure $score, above the bound $max"
        fail=1
    else
        echo "$unit: exposure $score (bound $max)"
    fi
done
exit $fail
