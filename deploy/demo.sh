#!/usr/bin/env bash
# The main demo: installs what it needs, builds, starts two hosts (network namespaces) with an
# agent on each, runs a stateful container with a TCP client on host1, moves it live to host2 and
# prints the move report and what the client saw. It cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace --bins --quiet
exec target/release/demo "$@"
