#!/usr/bin/env bash
# The whole OxiBot test suite, from a fresh machine: installs the tools it
# needs, then checks the dependencies (cargo deny) and formatting, builds
# once (debug) for every test, runs clippy, builds every fuzz target,
# rates the systemd units, runs the unit + end-to-end tests, then the
# chaos test (random kill -9 under load) and each fuzz target for 20 s,
# builds the Debian and RPM packages (release) and checks them with lintian
# and rpmlint, and installs the .deb under systemd in a container (root
# only).
#
# The end-to-end tests that run daemons as their own users need root; as
# another user they say SKIPPED and pass — unless CI is set (.ci/run sets
# it), where a test that cannot run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

started=$SECONDS
step() {
    printf '\n== [%ss] %s\n' "$((SECONDS - started))" "$*"
}
trap 'printf "\n== [%ss] done\n" "$((SECONDS - started))"' EXIT

step "tools"
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for tool in python3 git bash tar gzip dovecot smtpd openssl setpriv unshare ip systemd-analyze systemd-nspawn lintian rpmlint; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null || missing="${missing:-} $tool"
done
[ -x /usr/lib/dovecot/submission ] || missing="${missing:-} dovecot-submissiond"
if [ -n "${missing:-}" ] && [ "$(id -u)" = 0 ]; then
    echo "installing:${missing}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 git bash tar gzip openssl util-linux iproute2 dovecot-imapd dovecot-lmtpd dovecot-submissiond opensmtpd \
        systemd systemd-container lintian rpmlint rpm >/dev/null
fi
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
command -v cargo-generate-rpm >/dev/null || cargo install cargo-generate-rpm --locked
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
command -v cargo-machete >/dev/null || cargo install cargo-machete --locked

# The jail tests run in both modes: root-started (toold becomes oxibot-tool)
# and unprivileged (the broker runs as oxibot-ci; toold uses a user namespace).
# A root broker runs the channel daemons as oxibot-chan.
if [ "$(id -u)" = 0 ]; then
    step "users for the jail tests"
    id oxibot-tool >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin oxibot-tool
    # The egress door's daemon (tools.exec.allowedHosts) runs as its own user.
    id oxibot-egress >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin oxibot-egress
    # Each channel daemon runs as its own user (in group oxibot-chan, which
    # may use channel.sock when systemd starts the daemons).
    getent group oxibot-chan >/dev/null || groupadd --system oxibot-chan
    for channel in telegram discord slack whatsapp email; do
        id "oxibot-$channel" >/dev/null 2>&1 ||
            useradd --system --no-create-home --shell /usr/sbin/nologin -G oxibot-chan "oxibot-$channel"
    done
    id oxibot-ci >/dev/null 2>&1 || useradd --create-home --shell /bin/bash oxibot-ci

    step "mail servers for the e-mail tests (Dovecot, OpenSMTPD)"
    PATH="$PATH:/usr/sbin" ./scripts/mail-servers.sh
fi

step "dependencies: cargo deny (licences, bans, sources; advisories when reachable)"
# The gate reads the dependency graph offline: fetch it first (an empty
# CARGO_HOME has no registry index yet; the build needs the crates anyway).
cargo fetch --locked
./scripts/check-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "build (one debug build shared by all tests)"
cargo build --workspace --all-targets --locked

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "fuzz target builds, every target (stable toolchain; RUSTC_BOOTSTRAP enables the sanitizer flags)"
RUSTC_BOOTSTRAP=1 cargo fuzz build --dev --fuzz-dir fuzz

step "systemd units: exposure gate"
./scripts/check-units.sh

step "tests"
cargo nextest run --workspace --no-fail-fast

step "chaos test: kill -9 a random process every 2-4 s for 60 s under load, Telegram and Discord (bounded: 5 minutes)"
# Both at once; each prints sent/answered/duplicates/lost/restarts.
timeout 300 cargo nextest run --workspace --run-ignored only -E 'binary_id(oxibot-tests::chaos)' --success-output final

step "fuzzing: each target for 20 s from its seeds (bounded: 5 minutes)"
timeout 300 ./scripts/fuzz.sh 20

step "packages: release build, .deb and .rpm, lintian and rpmlint"
./packaging/build.sh
lintian --fail-on error,warning --tag-display-limit 0 target/debian/oxibot_*.deb
rpmlint -r packaging/rpm/oxibot.rpmlintrc target/generate-rpm/oxibot-*.rpm

if [ "$(id -u)" = 0 ]; then
    step "install test: the .deb under systemd in systemd-nspawn (bounded: 10 minutes)"
    # --workspace: the same feature set as the build above, so nothing is built again.
    timeout 600 cargo nextest run --workspace --run-ignored only -E 'binary_id(oxibot-tests::install)'
fi
