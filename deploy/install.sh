#!/usr/bin/env bash
# deploy/install.sh — idempotent host setup for the checkpoint/migration service
# on Debian/Ubuntu (run as root; non-interactive, CI-safe).
#
# Ensures:
#   1. the Debian packages the service and its tests need (apt-get update only
#      runs if something is missing);
#   2. CRIU >= 4.1 that passes `criu check`; if absent, it is built from the
#      `criu` source package of a newer Debian suite (sid, then trixie), fetched
#      through a throw-away apt configuration whose mirror URI is taken from this
#      machine's own apt sources, and installed to /usr/local/sbin/criu;
#   3. sysctl fs.pipe-max-size >= 4 MiB (CRIU lazy-pages; runtime only);
#   4. a Rust toolchain (cargo) — only checked, it cannot be installed here.
#
# Usage: deploy/install.sh [--check]
#   --check   only report what is missing; exit 1 if anything is.
# Environment overrides:
#   CRIU_SRC_MIRROR   Debian mirror URI for the CRIU source (default: from apt config)
#   CRIU_SRC_SUITES   suites to try, in order (default: "sid trixie")
#
# Every step prints one line: "install: <thing> ... (<status>)".
set -euo pipefail

CHECK_ONLY=0
case "${1:-}" in
  "") ;;
  --check) CHECK_ONLY=1 ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

PREFIX=/usr/local
CRIU_MIN=4.1
PIPE_MAX_MIN=4194304
CRIU_SRC_SUITES=${CRIU_SRC_SUITES:-"sid trixie"}

# podman: the runc-compatible CLI (migrate-runc) is tested under it.
PACKAGES=(build-essential pkg-config iptables iproute2 busybox-static runc tar gzip
          zstd util-linux procps psmisc libc6-dev git ca-certificates curl protobuf-compiler
          podman)
CRIU_BUILD_DEPS=(build-essential libbsd-dev libcap-dev libgnutls28-dev libnet1-dev
                 libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev pkgconf
                 protobuf-c-compiler protobuf-compiler python3-protobuf uuid-dev
                 dpkg-dev xz-utils)

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C
MISSING=0
TMP_DIRS=()
cleanup() { local d; for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf -- "$d"; done; }
trap cleanup EXIT

say()  { echo "install: $*"; }
die()  { echo "install: ERROR: $*" >&2; exit 1; }
miss() { say "$* (missing)"; MISSING=1; }

if [ "$CHECK_ONLY" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "must run as root (or use --check)"
fi

APT_UPDATED=0
apt_q() { apt-get -q -o DPkg::Lock::Timeout=300 "$@" </dev/null; }

# Prints the packages among "$@" that are not installed.
missing_pkgs() {
  local p st
  for p in "$@"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [ "${st:0:2}" = "ii" ] || echo "$p"
  done
}

# ensure_pkgs LABEL PKG... — install whatever is missing (update once, first).
ensure_pkgs() {
  local label=$1; shift
  local missing
  missing=$(missing_pkgs "$@" | tr '\n' ' ')
  missing=${missing% }
  if [ -z "$missing" ]; then
    say "$label: $# packages present (ok)"
    return
  fi
  if [ "$CHECK_ONLY" = 1 ]; then miss "$label: $missing"; return; fi
  local log
  log=$(mktemp /tmp/install-apt.XXXXXX.log); TMP_DIRS+=("$log")
  if [ "$APT_UPDATED" = 0 ]; then
    apt_q update >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  # shellcheck disable=SC2086
  apt_q install -y --no-install-recommends $missing >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "apt-get install failed for: $missing"; }
  say "$label: installed $missing (installed)"
}

# ---------------------------------------------------------------- 1. packages
ensure_pkgs "debian packages" "${PACKAGES[@]}"

# ---------------------------------------------------------------- 2. CRIU
criu_version() {  # prints e.g. 4.2 or 4.2.1; empty on failure
  "$1" --version 2>/dev/null | sed -n 's/^Version: *\([0-9][0-9.]*\).*/\1/p' | head -n1
}
criu_good() {  # criu_good PATH -> 0 if version >= min and `criu check` looks good
  local v out
  v=$(criu_version "$1")
  [ -n "$v" ] && dpkg --compare-versions "$v" ge "$CRIU_MIN" || return 1
  out=$("$1" check 2>&1) || return 1
  grep -q "Looks good" <<<"$out"
}

# The main Debian archive URI from this machine's apt sources (not security,
# not third-party): an entry whose suites include the release codename.
debian_mirror() {
  local codename files=()
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  shopt -s nullglob
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  files+=(/etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v cn="$codename" '
    function consider(uris, suites,   u, s, nu, ns, i, j) {
      nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
      for (i = 1; i <= nu; i++) {
        if (u[i] == "" || u[i] ~ /security/) continue
        for (j = 1; j <= ns; j++) {
          if (s[j] ~ /security/) continue
          if (s[j] == cn && best == "") best = u[i]
          else if (s[j] ~ "^" cn "-" && alt == "") alt = u[i]
        }
      }
    }
    function flush() {
      if (types ~ /deb/ && enabled !~ /^[Nn][Oo]/) consider(uris, suites)
      types = uris = suites = ""; enabled = "yes"
    }
    FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
    /^[ \t]*#/ { next }
    deb822 && /^[ \t]*$/ { flush(); next }
    deb822 {
      if (match($0, /^[A-Za-z-]+:/)) {
        key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = val
      }
      next
    }
    $1 == "deb" || $1 == "deb-src" {
      i = 2
      if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      consider($i, $(i + 1))
    }
    END { flush(); if (best != "") print best; else if (alt != "") print alt }
  ' "${files[@]}"
}

build_criu() {
  local mirror work suite ok=0 tarball src
  mirror=${CRIU_SRC_MIRROR:-$(debian_mirror)}
  [ -n "$mirror" ] || die "could not find the Debian archive URI in /etc/apt/sources.list{,.d}; set CRIU_SRC_MIRROR"
  say "criu source mirror: $mirror (from apt config)"

  ensure_pkgs "criu build deps" "${CRIU_BUILD_DEPS[@]}"

  work=$(mktemp -d /var/tmp/criu-build.XXXXXX)
  TMP_DIRS+=("$work")
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
  local apt_opts=(
    -o "Dir::Etc::sourcelist=$work/apt/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/apt/lists"
    -o "Dir::Cache=$work/apt/cache"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
  )
  local signed=""
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] \
    && signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "

  for suite in $CRIU_SRC_SUITES; do
    echo "deb-src ${signed}${mirror} ${suite} main" >"$work/apt/sources.list"
    rm -rf "$work/apt/lists"/* "$work/src"/*; mkdir -p "$work/apt/lists/partial"
    if ! apt-get -q "${apt_opts[@]}" update </dev/null >"$work/update.log" 2>&1; then
      say "criu source: apt-get update for suite $suite failed, trying next"
      continue
    fi
    # The Debian patch tarball may 404 here and make apt exit non-zero;
    # the upstream orig tarball alone is enough.
    (cd "$work/src" && apt-get -q "${apt_opts[@]}" source --download-only criu \
       </dev/null >"$work/source.log" 2>&1) || true
    tarball=$(find "$work/src" -maxdepth 1 -name 'criu_*.orig.tar.*' ! -name '*.asc' \
              -printf '%f\n' | sort -V | tail -n1)
    if [ -n "$tarball" ]; then ok=1; break; fi
    say "criu source: no orig tarball from suite $suite, trying next"
  done
  [ "$ok" = 1 ] || { cat "$work/update.log" "$work/source.log" 2>/dev/null >&2 || true;
                     die "could not download the criu source from $mirror ($CRIU_SRC_SUITES)"; }
  say "criu source: $tarball from suite $suite"

  mkdir -p "$work/build"
  tar -xf "$work/src/$tarball" -C "$work/build" --strip-components=1
  src="$work/build"
  if ! make -C "$src" -j"$(nproc)" criu >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2; die "criu build failed"
  fi
  if ! make -C "$src" install-criu PREFIX="$PREFIX" >>"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2; die "criu install failed"
  fi
  hash -r
}

CRIU_BIN=""
for c in "$PREFIX/sbin/criu" /usr/sbin/criu "$(command -v criu 2>/dev/null || true)"; do
  if [ -n "$c" ] && [ -x "$c" ]; then CRIU_BIN=$c; break; fi
done

if [ -n "$CRIU_BIN" ] && criu_good "$CRIU_BIN"; then
  say "criu $(criu_version "$CRIU_BIN") at $CRIU_BIN (ok)"
else
  if [ -n "$CRIU_BIN" ]; then
    why="criu $(criu_version "$CRIU_BIN") at $CRIU_BIN is too old or fails 'criu check'"
  else
    why="criu not found"
  fi
  if [ "$CHECK_ONLY" = 1 ]; then
    miss "$why; need >= $CRIU_MIN"
  else
    say "$why; building from Debian source"
    build_criu
    CRIU_BIN=$PREFIX/sbin/criu
    [ -x "$CRIU_BIN" ] || die "$CRIU_BIN missing after install"
    v=$(criu_version "$CRIU_BIN")
    { [ -n "$v" ] && dpkg --compare-versions "$v" ge "$CRIU_MIN"; } \
      || die "installed criu reports version '${v:-?}', need >= $CRIU_MIN"
    if ! out=$("$CRIU_BIN" check 2>&1) || ! grep -q "Looks good" <<<"$out"; then
      echo "$out" >&2; die "'$CRIU_BIN check' does not look good"
    fi
    say "criu $v at $CRIU_BIN (built and installed; criu check: Looks good.)"
  fi
fi

# ---------------------------------------------------------------- 3. sysctl
pipe_max=$(cat /proc/sys/fs/pipe-max-size)
if [ "$pipe_max" -ge "$PIPE_MAX_MIN" ]; then
  say "sysctl fs.pipe-max-size = $pipe_max (ok)"
elif [ "$CHECK_ONLY" = 1 ]; then
  miss "sysctl fs.pipe-max-size = $pipe_max < $PIPE_MAX_MIN"
else
  echo "$PIPE_MAX_MIN" >/proc/sys/fs/pipe-max-size \
    || die "cannot raise fs.pipe-max-size to $PIPE_MAX_MIN"
  say "sysctl fs.pipe-max-size = $(cat /proc/sys/fs/pipe-max-size) (raised from $pipe_max; runtime only)"
fi

# ---------------------------------------------------------------- 4. Rust
CARGO=$(command -v cargo 2>/dev/null || true)
if [ -z "$CARGO" ] && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  CARGO=${HOME:-/root}/.cargo/bin/cargo
fi
if [ -n "$CARGO" ]; then
  say "$("$CARGO" --version 2>/dev/null || echo cargo) at $CARGO (ok)"
else
  echo "install: ERROR: Rust (cargo) is required but not found on PATH or in ~/.cargo/bin;" \
       "install it with rustup (it cannot be downloaded by this script)" >&2
  MISSING=1
  [ "$CHECK_ONLY" = 1 ] || exit 1
fi

if [ "$CHECK_ONLY" = 1 ] && [ "$MISSING" = 1 ]; then
  say "check: something is missing (see above)"
  exit 1
fi
exit 0
