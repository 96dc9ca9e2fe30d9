#!/bin/sh
# Build tsswarm-shim. Usage: build.sh [OUTPUT]  (default: <repo>/build/tsswarm-shim)
# Prefers a static musl build (tiny memory footprint); falls back to gcc -O2.
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../../../build/tsswarm-shim"}
mkdir -p "$(dirname "$out")" || { echo "build.sh: cannot create $(dirname "$out")" >&2; exit 1; }
src="$here/shim.c"
tmp="$out.tmp.$$"
warn="-Wall -Wextra -Wno-unused-parameter"
if command -v musl-gcc >/dev/null 2>&1; then
  if musl-gcc -std=gnu11 -static -Os -s $warn -o "$tmp" "$src"; then
    mv -f "$tmp" "$out" && exit 0
  fi
  echo "build.sh: musl-gcc build failed, trying gcc" >&2
fi
cc=${CC:-}
if [ -z "$cc" ]; then
  if command -v gcc >/dev/null 2>&1; then cc=gcc
  elif command -v cc >/dev/null 2>&1; then cc=cc
  else echo "build.sh: no C compiler found (install musl-tools or gcc)" >&2; exit 1
  fi
fi
if "$cc" -std=gnu11 -O2 -s $warn -o "$tmp" "$src"; then
  mv -f "$tmp" "$out" && exit 0
fi
rm -f "$tmp"
echo "build.sh: failed to build tsswarm-shim with $cc" >&2
exit 1
