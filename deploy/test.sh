#!/usr/bin/env bash
# Runs every test: installs what the tests need (idempotent, fast when present), builds all
# binaries (the tests drive the real migrate-agent, migrate and migrate-rt-init), then runs the
# whole workspace's tests and prints one summary line. Needs root: the tests create namespaces,
# mounts and cgroups.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
