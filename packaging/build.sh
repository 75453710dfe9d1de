#!/usr/bin/env bash
# Builds the packages from stripped release binaries:
#   ./packaging/build.sh   -> target/debian/oxibot_<version>_<arch>.deb
#                             target/generate-rpm/oxibot-<version>-1.<arch>.rpm
# Needs cargo-deb and cargo-generate-rpm (cargo install --locked …).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
cargo build --release --locked --bins -p oxibot-broker -p oxibotctl -p oxibot-channeld -p oxibot-toold -p oxibot-healthd -p oxibot-egressd
out=target/packaging
rm -rf "$out" && mkdir -p "$out/man" "$out/completions"
for bin in oxibot-broker oxibotctl oxibot-channeld oxibot-toold oxibot-healthd oxibot-egressd; do
    "target/release/$bin" --man-page | gzip -9n > "$out/man/$bin.8.gz"
done
target/release/oxibotctl --completions bash > "$out/completions/oxibotctl"
cargo deb --no-build -p oxibot-broker
cargo generate-rpm -p oxibot-broker
ls -l target/debian/*.deb target/generate-rpm/*.rpm
