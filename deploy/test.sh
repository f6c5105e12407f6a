#!/usr/bin/env bash
# Runs every test: installs what the tests need (idempotent, fast when present), builds all
# binaries (the runtime's helper `migrate-rt-init` is found next to the test binaries), then
# runs the whole workspace's tests. Needs root: the tests create namespaces, mounts and cgroups.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins --quiet
cargo test --workspace "$@"
