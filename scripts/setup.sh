#!/usr/bin/env bash
# tsswarm: one idempotent setup step for developers, tests and CI.
#
#   bash scripts/setup.sh        (also: npm run setup; npm test runs it first)
#
# a. Debian packages (apt-get only when something is missing)
# b. npm ci (only when node_modules is missing or older than package-lock.json)
# c. the C helper build/tsswarm-shim (only when src/engine/native/ changed)
# d. tsc -p tsconfig.json -> dist/ (always)
# e. Consul v1.16.2 built from the Go module proxy into a cache outside the
#    repository: ${TSSWARM_CACHE:-/var/cache/tsswarm}/consul-v1.16.2/consul
#    (only when missing; takes minutes on 2 cores the first time)
# f. a one-line summary
#
# When everything is already in place this takes a few seconds. Any failure
# ends with one line "setup: FAILED at step <step> ..." on stderr.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

export DEBIAN_FRONTEND=noninteractive
# CI strips some variables; go and npm need HOME for their caches.
if [[ -z ${HOME:-} ]]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME=${HOME:-/root}
fi

CACHE=${TSSWARM_CACHE:-/var/cache/tsswarm}
CONSUL_VERSION=v1.16.2
CONSUL_DIR=$CACHE/consul-$CONSUL_VERSION
CONSUL_BIN=$CONSUL_DIR/consul
SHIM=build/tsswarm-shim
NATIVE=src/engine/native
APT_PACKAGES=(
  etcd-server etcd-client busybox-static iproute2 iptables ipvsadm runc crun
  attr openssl musl-tools iperf3 util-linux e2fsprogs procps psmisc zstd
  docker-registry skopeo apache2-utils
)

STEP=init
T0=$(date +%s)
CLEANUP=()   # paths removed on exit, whatever happens

on_exit() {
  local rc=$?
  local p
  for p in "${CLEANUP[@]}"; do rm -rf -- "$p"; done
  if ((rc != 0)); then
    echo "setup: FAILED at step $STEP (exit $rc)" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "setup: $*"; }

# run_logged LOG CMD...: run CMD with its output in LOG; on failure print the
# log's tail and return CMD's exit code.
run_logged() {
  local log=$1 rc=0
  shift
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc != 0)); then
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2
    echo "----" >&2
  fi
  return "$rc"
}

mkdir -p "$CACHE"

# ---------------------------------------------------------------- a. packages
STEP="a (Debian packages)"
missing=()
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)
for pkg in "${APT_PACKAGES[@]}"; do
  grep -qx "$pkg install ok installed" <<<"$installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (${missing[*]}) and not root: run as root" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  # Never let a package start its daemon (etcd-server would): there is no
  # systemd here and tests start their own etcd/consul on their own ports.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    CLEANUP+=(/usr/sbin/policy-rc.d)
  fi
  run_logged "$CACHE/apt.log" apt-get update
  run_logged "$CACHE/apt-install.log" apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# ---------------------------------------------------------------- b. npm ci
STEP="b (npm ci)"
command -v node >/dev/null || { echo "setup: node not found (Node.js >= 20 is required)" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "setup: Node.js >= 20 required, found $(node --version)" >&2
  exit 1
fi
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json ||
      package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "npm ci"
  run_logged "$CACHE/npm-ci.log" npm ci --no-audit --no-fund
fi

# ---------------------------------------------------------------- c. C shim
STEP="c (native shim: $NATIVE/build.sh)"
if [[ ! -f $NATIVE/build.sh ]]; then
  say "WARNING: $NATIVE/build.sh not present; $SHIM not built"
elif [[ ! -x $SHIM || -n $(find "$NATIVE" -newer "$SHIM" -print -quit) ]]; then
  say "building $SHIM"
  mkdir -p "$(dirname "$SHIM")"
  # A failed build must not leave a fresh-looking binary behind.
  bash "$NATIVE/build.sh" "$SHIM" || { rc=$?; rm -f "$SHIM"; exit "$rc"; }
  [[ -x $SHIM ]] || { echo "setup: $NATIVE/build.sh did not produce $SHIM" >&2; exit 1; }
fi

# ---------------------------------------------------------------- d. tsc
STEP="d (tsc -p tsconfig.json)"
npx --no-install tsc -p tsconfig.json
# Drop compiled files whose .ts source is gone (a deleted test would still run).
if [[ -d dist ]]; then
  while IFS= read -r -d '' f; do
    rel=${f#dist/}
    base=${rel%.map}
    base=${base%.js}
    [[ -e $base.ts || -e $base.tsx || -e $base.js ]] || rm -f -- "$f"
  done < <(find dist -type f \( -name '*.js' -o -name '*.js.map' \) -print0)
fi

# ---------------------------------------------------------------- e. consul
STEP="e (consul $CONSUL_VERSION build)"
consul_ok() { [[ -x $CONSUL_BIN ]] && "$CONSUL_BIN" version >/dev/null 2>&1; }
if ! consul_ok; then
  mkdir -p "$CONSUL_DIR"
  # Serialise concurrent setups: one builds, the others wait for it.
  exec 9>"$CONSUL_DIR/.lock"
  flock 9
  if ! consul_ok; then
    if ! command -v go >/dev/null; then export PATH=/usr/local/go/bin:$PATH; fi
    command -v go >/dev/null || { echo "setup: go not found (expected /usr/local/go/bin/go)" >&2; exit 1; }
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
    log=$CONSUL_DIR/build.log
    b0=$(date +%s)
    say "building consul $CONSUL_VERSION with $(go env GOVERSION) into $CONSUL_BIN (several minutes; log: $log)"
    json=$(go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" 2>&1) ||
      { echo "$json" | tail -n 20 >&2; exit 1; }
    src=$(sed -n 's/.*"Dir": "\(.*\)",/\1/p' <<<"$json")
    [[ -n $src && -d $src ]] || { echo "$json" | tail -n 20 >&2; echo "setup: go mod download gave no Dir" >&2; exit 1; }
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/tsswarm-consul-src.XXXXXX")
    tmpbin=$(mktemp "$CONSUL_DIR/consul.tmp.XXXXXX")
    CLEANUP+=("$scratch" "$tmpbin")
    cp -a "$src/." "$scratch/"
    chmod -R u+w "$scratch"
    rc=0
    (cd "$scratch" && go build -trimpath -o "$tmpbin" .) >"$log" 2>&1 || rc=$?
    if ((rc != 0)) && grep -q 'linkname' "$log"; then
      say "link refused a go:linkname; retrying with -ldflags=-checklinkname=0"
      rc=0
      (cd "$scratch" && go build -trimpath -ldflags=-checklinkname=0 -o "$tmpbin" .) >>"$log" 2>&1 || rc=$?
    fi
    if ((rc != 0)); then
      echo "---- last lines of $log ----" >&2
      tail -n 40 "$log" >&2
      echo "----" >&2
      exit "$rc"
    fi
    chmod 755 "$tmpbin"
    "$tmpbin" version >/dev/null
    mv -f "$tmpbin" "$CONSUL_BIN"
    say "consul built in $(($(date +%s) - b0))s"
  fi
  exec 9>&-
fi

# ---------------------------------------------------------------- f. summary
STEP="f (summary)"
etcd_v=$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')
consul_v=$("$CONSUL_BIN" version | sed -n '1s/^Consul //p')
if [[ -x $SHIM ]]; then shim_s=$REPO/$SHIM; else shim_s="$SHIM (not built)"; fi
say "ok in $(($(date +%s) - T0))s: etcd ${etcd_v:-?}, consul ${consul_v:-?} ($CONSUL_BIN), shim $shim_s"
