#!/usr/bin/env bash
# The main demo: installs what it needs, builds, and runs a container with the embedded runtime,
# showing it isolated (its own PID 1, hostname, /proc, cgroup limits) and cleaning up after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace --bins --quiet
exec target/release/demo "$@"
