#!/usr/bin/env bash
# Measures which syscalls the channel daemons make once their sandbox is
# installed, with their arguments where the seccomp allow-list filters on
# them (socket, ioctl, clone, prctl): every channel test runs with each
# oxibot-channeld under `strace -f`, and only what comes after the daemon's
# seccomp() call counts. The allow-list in
# oxibot-channeld/src/sandbox/mod.rs was made from this output.
#
#   ./scripts/measure-syscalls.sh        (after cargo build --workspace --all-targets; needs strace)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${TRACE_DIR:-/tmp/oxibot-syscalls}
rm -rf "$out" && mkdir -p "$out/bin" "$out/traces" && chmod 1777 "$out/traces" && chmod 755 "$out" "$out/bin"
real=$(realpath target/debug)
for b in oxibot-toold oxibot-broker oxibot-channeld; do
    cp "$real/$b" "$out/bin/$b.real"
done
ln -sf "$out/bin/oxibot-toold.real" "$out/bin/oxibot-toold"
cat > "$out/bin/oxibot-channeld" <<WRAP
#!/bin/sh
exec strace -f -qq -o "$out/traces/trace.\$\$" -- "$out/bin/oxibot-channeld.real" "\$@"
WRAP
chmod 755 "$out/bin/oxibot-channeld"
OXIBOT_TEST_BIN_DIR="$out/bin" cargo nextest run -p oxibot-tests --test channels --test telegram \
    --test discord --test slack --test whatsapp --test email --no-fail-fast >"$out/tests.log" 2>&1 || true
grep -E "Summary" "$out/tests.log" || true
# After the seccomp() call of each trace: syscall names, and the arguments
# the filter looks at.
for t in "$out"/traces/trace.*; do
    awk '/seccomp\(SECCOMP_SET_MODE_FILTER/ {on=1; next} on' "$t"
done > "$out/after-sandbox.txt"
echo "== syscalls after the sandbox, by count"
sed -E 's/^[0-9]+ +//; s/^<\.\.\. ([a-z0-9_]+) resumed>.*/\1/; s/\(.*//' "$out/after-sandbox.txt" |
    grep -E '^[a-z0-9_]+$' | sort | uniq -c | sort -rn
echo "== socket families"
grep -oE 'socket\(AF_[A-Z0-9]+' "$out/after-sandbox.txt" | sort | uniq -c
echo "== ioctl requests"
grep -oE 'ioctl\([0-9]+, [A-Z0-9_]+' "$out/after-sandbox.txt" | sed -E 's/ioctl\([0-9]+, //' | sort | uniq -c
echo "== clone flags"
grep -oE 'clone3?\(\{?[^)]*' "$out/after-sandbox.txt" | grep -oE 'flags=[A-Z_|]+|CLONE_[A-Z_|]+' | sort | uniq -c
echo "== prctl options"
grep -oE 'prctl\(PR_[A-Z_]+' "$out/after-sandbox.txt" | sort | uniq -c
