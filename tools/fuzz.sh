#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for FUZZTIME each (default
# 10s, as in CI; `FUZZTIME=5m make fuzz` for a longer run by hand). Targets
# are found automatically: packages whose tests declare func FuzzXxx(*testing.F),
# confirmed with `go test -list`. FUZZ_MATCH (a regexp) limits the run to
# matching target names. A failing target does not stop the others; the
# script exits 1 at the end and names each failing input file, which the
# fuzzer saved under <package>/testdata/fuzz/<Target>/ (commit it as a
# regression seed once fixed).
#
# FUZZMINIMIZETIME (default 100x: one hundred runs) bounds how long the
# fuzzer spends shrinking each new input. Go's default, 60s per input, can
# swallow the whole FUZZTIME on a slow target such as the config loader.
set -uo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-10s}
minimize=${FUZZMINIMIZETIME:-100x}
match=${FUZZ_MATCH:-.}
go=${GO:-go}

# Candidate packages: directories with a fuzz target in a test file.
mapfile -t dirs < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(\w+ \*testing\.F\)' . \
  | grep -v '/testdata/' | xargs -r -n1 dirname | sort -u)
if [ ${#dirs[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

# go test -list prints a package's matching test names, then "ok  <import path>".
targets=()
names=()
listing=$("$go" test -list '^Fuzz' "${dirs[@]}") || { echo "$listing"; echo "fuzz: go test -list failed" >&2; exit 1; }
while IFS= read -r line; do
  case $line in
    Fuzz*) names+=("$line") ;;
    ok*)
      pkg=$(awk '{print $2}' <<<"$line")
      for n in "${names[@]}"; do
        [[ $n =~ $match ]] && targets+=("$pkg $n")
      done
      names=()
      ;;
  esac
done <<<"$listing"
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz target matches FUZZ_MATCH=$match" >&2
  exit 1
fi

module=$("$go" list -m)
echo "fuzz: ${#targets[@]} targets, $fuzztime each"
failed=()
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "fuzz: $pkg $name"
  log=$(mktemp)
  ok=false
  for try in 1 2; do
    if "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" >"$log" 2>&1; then
      ok=true
      break
    fi
    # Go's fuzzing coordinator can fail a target with a bare "context
    # deadline exceeded" when -fuzztime ends while a starved worker is
    # mid-call: no input is saved and nothing was found. Run it once more;
    # a failure with a saved input, or a second such one, counts.
    if [ "$try" = 1 ] && ! grep -q 'testdata/fuzz/' "$log" && grep -q '^    context deadline exceeded$' "$log"; then
      echo "fuzz: $name stopped on the fuzzer's own deadline with nothing found; running it again"
      continue
    fi
    break
  done
  if $ok; then
    tail -n 1 "$log"
  else
    # Show the failure without the progress lines.
    grep -v '^fuzz: elapsed' "$log"
    dir=${pkg#"$module"}
    dir=${dir#/}
    input=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | head -n 1)
    if [ -n "$input" ]; then
      failed+=("$name: ${dir:-.}/$input")
    else
      failed+=("$name ($pkg): failed, no input saved (see the output above)")
    fi
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo
  echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed; failing inputs:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
