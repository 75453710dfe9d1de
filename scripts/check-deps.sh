#!/usr/bin/env bash
# The dependency gate (cargo deny, deny.toml): licences, bans and sources
# must pass, and no crate may declare a dependency it does not use
# (cargo machete). Duplicate versions are printed and may not grow past what the
# chat libraries force on us today (serenity pins its own tungstenite,
# rand, thiserror…). Advisories need RustSec's database from GitHub: tried,
# and reported as not checked when it cannot be fetched.
#
# 26 = 23 + darling, darling_core, darling_macro: croner (cron expressions)
# builds its parser with derive_builder, which pins darling 0.20, while
# serde_with (slack-morphism, teloxide) uses darling 0.24. All three are
# proc-macro crates: compile time only, nothing of them is in a binary.
# 27 = 26 + nix: the chat client's line editor (rustyline 19) and the
# tests' pseudo-terminal driver (rexpect 0.7) need nix 0.31, the rest of
# the workspace is on 0.29. rustyline 15 (nix 0.29) reads an Enter that
# arrives with a paste late (it waits on the terminal with input buffered).
set -uo pipefail
cd "$(dirname "$0")/.."
MAX_DUPLICATES=27
status=0
out=$(cargo deny --offline check licenses bans sources 2>&1) || status=1
echo "$out" | grep -E '^(error|bug)' -A4 || true
echo "$out" | tail -1
duplicates=$(echo "$out" | grep -o "duplicate entries for crate '[^']*'" | sed "s/.*crate //" | sort -u)
count=$(echo "$duplicates" | grep -c . || true)
echo "duplicate versions: $count (at most $MAX_DUPLICATES):" $duplicates
if [ "$count" -gt "$MAX_DUPLICATES" ]; then
    echo "a new duplicate version: unify it, or raise MAX_DUPLICATES in $0 with the reason"
    status=1
fi
# Every declared dependency is used (cargo-machete reads the sources).
if ! cargo machete >/tmp/oxibot-machete.log 2>&1; then
    sed -n '1,/^If you believe/p' /tmp/oxibot-machete.log
    echo "unused dependencies: remove them (or list a false positive under [package.metadata.cargo-machete])"
    status=1
else
    echo "unused dependencies: none"
fi
if timeout 120 cargo deny check advisories >/tmp/oxibot-advisories.log 2>&1; then
    echo "advisories ok"
elif grep -qiE 'failed to (fetch|open|load)|unable to|network|could not resolve' /tmp/oxibot-advisories.log; then
    echo "advisories NOT CHECKED: the RustSec database cannot be fetched here ($(grep -m1 -iE 'error|failed' /tmp/oxibot-advisories.log | cut -c1-160))"
else
    cat /tmp/oxibot-advisories.log
    status=1
fi
exit $status
