#!/usr/bin/env bash
# tsswarm test runner (npm test). Must run as root.
#
#   npm test                                  all unit + integration tests
#   npm test -- src/api/errors.test.ts        one file (.ts paths are mapped to dist/)
#   npm test -- dist/test/foo.test.js --grep=bar
#
# Runs scripts/setup.sh, removes leftovers of crashed test runs, runs tap on the
# compiled tests (dist/src/**/*.test.js, dist/test/**/*.test.js), then prints
# one closing line "N passed, N failed[, N skipped]" from tap's summary.
# Exit code: tap's.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: must be run as root (tests create namespaces, cgroups, mounts and iptables rules): sudo npm test" >&2
  exit 1
fi

bash scripts/setup.sh
rc=$?
if ((rc != 0)); then
  echo "test.sh: setup failed (exit $rc); no test was run"
  echo "0 passed, 1 failed"
  exit "$rc"
fi

export TSSWARM_CACHE=${TSSWARM_CACHE:-/var/cache/tsswarm}
export TSSWARM_CONSUL_BIN=${TSSWARM_CONSUL_BIN:-$TSSWARM_CACHE/consul-v1.16.2/consul}
export TSSWARM_SHIM=${TSSWARM_SHIM:-$PWD/build/tsswarm-shim}

if [[ -f dist/src/cli/main.js ]]; then
  if ! timeout 300 node dist/src/cli/main.js cleanup --all-test-runs </dev/null; then
    echo "test.sh: WARNING: 'tsswarm cleanup --all-test-runs' failed; continuing" >&2
  fi
fi

# Which files: explicit paths among the arguments replace the default set.
args=()
explicit=0
for a in "$@"; do
  if [[ $a != -* && $a == *.ts && -e $a ]]; then
    js=dist/${a%.ts}.js
    if [[ -e $js ]]; then a=$js; fi
  fi
  if [[ $a != -* && -e $a ]]; then explicit=1; fi
  args+=("$a")
done
files=()
if ((explicit == 0)); then
  dirs=()
  for d in dist/src dist/test; do [[ -d $d ]] && dirs+=("$d"); done
  if ((${#dirs[@]})); then
    while IFS= read -r f; do files+=("$f"); done < <(find "${dirs[@]}" -type f -name '*.test.js' | LC_ALL=C sort)
  fi
  if ((${#files[@]} == 0)); then
    echo "test.sh: no compiled test files (dist/src/**/*.test.js, dist/test/**/*.test.js)"
    echo "0 passed, 0 failed"
    exit 1
  fi
fi

out=$(mktemp "${TMPDIR:-/tmp}/tsswarm-tap.XXXXXX")
trap 'rm -f "$out"' EXIT

npx --no-install tap --reporter=tap "${files[@]}" "${args[@]}" </dev/null 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

# tap's own closing summary, e.g. "# { total: 9, pass: 4, fail: 2, todo: 1, skip: 2 }"
# counts every assertion and subtest point across all files.
summary=$(grep -E '^# \{ total: [0-9]+' "$out" | tail -n 1)
field() { sed -n "s/.*[{ ,]$1: \([0-9]\+\).*/\1/p" <<<"$summary"; }
if [[ -n $summary ]]; then
  pass=$(field pass)
  fail=$(field fail)
  skip=$(field skip)
  todo=$(field todo)
  pass=${pass:-0}
  fail=${fail:-0}
  skip=$((${skip:-0} + ${todo:-0}))
else
  # No summary (tap itself died): count the TAP points it did print, at any depth.
  read -r pass fail skip < <(awk '
    /^[ \t]*(not )?ok [0-9]+/ {
      if (toupper($0) ~ /# (SKIP|TODO)/) s++; else if ($0 ~ /^[ \t]*not ok/) f++; else p++
    }
    END { print p + 0, f + 0, s + 0 }' "$out")
fi
# The count must agree with the exit code.
if ((rc != 0 && fail == 0)); then
  echo "test.sh: tap exited $rc"
  fail=1
fi

line="$pass passed, $fail failed"
if ((skip > 0)); then line+=", $skip skipped"; fi
echo "$line"
exit "$rc"
