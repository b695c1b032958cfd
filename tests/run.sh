#!/bin/bash
# Run every test: the C unit test binaries given as arguments, then the bats
# suites. Each speaks TAP; this counts the results and ends with one line
# "N passed, N failed, N skipped". Exit 1 on any failure.
cd "$(dirname "$0")/.." || exit 2
root=$PWD
# VT_BIN: the programs under test (make SANITIZE=1 test points it at the
# sanitizer build).
export VT_ROOT=$root VT_BIN=${VT_BIN:-$root/bin} VT_SHARE=$root/share
if [ -z "${VT_SHARED:-}" ] && [ -d "$root/../shared/conformance" ]; then
  VT_SHARED=$(cd "$root/../shared" && pwd)
fi
export VT_SHARED=${VT_SHARED:-}
log=$(mktemp); trap 'rm -f "$log"' EXIT
pass=0 fail=0 skipped=0

count() {   # $1 = name; TAP on stdin
  local name=$1 line
  while IFS= read -r line; do
    case $line in
      "not ok"*) fail=$((fail+1)); echo "FAIL $name: ${line#not ok }";;
      "ok "*"# skip"*|"ok "*"# SKIP"*) skipped=$((skipped+1));;
      "ok "*) pass=$((pass+1));;
      "#"*) [ -n "${VT_VERBOSE:-}" ] || [ "$last" = fail ] && echo "  $line";;
    esac
    case $line in "not ok"*) last=fail;; "ok "*) last=ok;; esac
  done
}

for t in "$@"; do
  name=$(basename "$t")
  last=
  "$t" > "$log" 2>&1; rc=$?
  count "$name" < "$log"
  if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log"; then
    fail=$((fail+1)); echo "FAIL $name: exited with status $rc"; tail -5 "$log"
  fi
done

if ls tests/bats/*.bats >/dev/null 2>&1; then
  if command -v bats >/dev/null; then
    last=
    bats --tap tests/bats > "$log" 2>&1; rc=$?
    count bats < "$log"
    if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log"; then
      fail=$((fail+1)); echo "FAIL bats: exited with status $rc"; tail -5 "$log"
    fi
  else
    fail=$((fail+1)); echo "FAIL bats: not installed (apt-get install bats)"
  fi
fi

echo "$pass passed, $fail failed, $skipped skipped"
[ $fail -eq 0 ]
