# Shared setup for the bats suites: paths and a scratch directory per test.
ROOT=${VT_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
BIN=${VT_BIN:-$ROOT/bin}
FIX=$ROOT/tests/fixtures
SAMPLES=$ROOT/share/samples
PY=/usr/bin/python3

setup() {
  T=$(mktemp -d)
}

teardown() {
  rm -rf "$T"
}

have_numpy() { [ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null; }
have_pil() { [ -x "$PY" ] && "$PY" -c 'import numpy, PIL' 2>/dev/null; }
have_shared() { [ -n "${VT_SHARED:-}" ] && [ -d "$VT_SHARED/conformance" ]; }

# Exactly one line on stderr, naming the file and matching a reason.
one_error_line() {   # $1 = file $2 = reason pattern; stderr text in $err
  [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] &&
  printf '%s\n' "$err" | grep -Eq -- "$1: .*($2)"
}

# Run a command keeping its stderr in $err and its exit status in $status.
run_err() { status=0; err=$("$@" 2>&1 >/dev/null) || status=$?; }
