#!/usr/bin/env bats
# Every reference fixture in ../shared whose arch this build knows, through
# the tools exactly as a user runs them (../shared/conformance/check.sh):
# vt-convert checkpoint -> model, input.npy | vt-classify --logits, compare.py.
load helper

@test "every shared conformance fixture of a known arch matches the official logits" {
  have_shared || skip "../shared is not present"
  have_numpy || skip "no /usr/bin/python3 with numpy"
  "$BIN/vt-convert" --list-archs | awk '{print $1}' > "$T/archs"
  n=0 failed=0
  for fx in "$VT_SHARED"/conformance/fixtures/*/; do
    [ -f "$fx/meta.json" ] || continue
    variant=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["variant"])' "$fx/meta.json")
    grep -qx "$variant" "$T/archs" || continue
    n=$((n + 1))
    if ! out=$(sh "$VT_SHARED/conformance/check.sh" "$fx" "$BIN" 2>&1); then
      echo "# FAIL $out" >&3
      failed=$((failed + 1))
    fi
  done
  echo "# $n fixtures checked, $failed failed" >&3
  [ "$n" -ge 15 ]
  [ "$failed" -eq 0 ]
}
