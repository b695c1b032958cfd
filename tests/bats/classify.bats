#!/usr/bin/env bats
# vt-classify: the CLI, its output formats, batch behaviour, and the timm
# conformance pipe of ../shared/conformance/check.sh for every vit fixture.

setup() {
  ROOT=${VT_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
  BIN=${VT_BIN:-$ROOT/bin}
  FX=$ROOT/tests/fixtures/vit
  TINY=$FX/tiny.safetensors
  PY=/usr/bin/python3
  T=$BATS_TEST_TMPDIR
}

have_numpy() { [ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null; }

# A 50x40 PPM test card.
ppm() {
  { printf 'P6\n50 40\n255\n'; head -c 6000 /dev/urandom; } > "$1"
}

@test "classify: --help is short and exact, --version" {
  run "$BIN/vt-classify" --help
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "usage: vt-classify -m MODEL [options] [INPUT...]" ]
  [ "${#lines[@]}" -le 15 ]
  run "$BIN/vt-classify" --version
  [ "$status" -eq 0 ]
  [[ "$output" == "vt-classify (vtkit) "* ]]
}

@test "classify: usage errors exit 2" {
  run "$BIN/vt-classify" "$FX/tiny-input.npy"
  [ "$status" -eq 2 ]
  [[ "$output" == *"no model"* ]]
  run "$BIN/vt-classify" -m "$TINY" --format xml "$FX/tiny-input.npy"
  [ "$status" -eq 2 ]
  run "$BIN/vt-classify" -m "$TINY" -b 0 "$FX/tiny-input.npy"
  [ "$status" -eq 2 ]
}

@test "classify: a model that is not one is reported with its name" {
  run "$BIN/vt-classify" -m "$FX/tiny-input.npy" "$FX/tiny-input.npy"
  [ "$status" -eq 1 ]
  [[ "$output" == "vt-classify: $FX/tiny-input.npy: "* ]]
}

@test "classify: text output, top-k lines per image, random weights labelled" {
  run "$BIN/vt-classify" -m "$TINY" -k 3 "$FX/tiny-input.npy"
  [ "$status" -eq 0 ]
  [[ "$output" == *"random weights"* ]]
  [ "$(printf '%s\n' "$output" | grep -c '^tiny-input.npy#[0-9]  class [0-9]  0\.[0-9]*  (random weights)$')" -eq 9 ]
}

@test "classify: tsv has 5 columns and ranks 1..k; json one object per image" {
  "$BIN/vt-classify" -m "$TINY" -k 4 --format tsv "$FX/tiny-input.npy" > "$T/out.tsv" 2>/dev/null
  [ "$(wc -l < "$T/out.tsv")" -eq 12 ]
  awk -F'\t' 'NF != 5 || $2 < 1 || $2 > 4 || $3 < 0 || $3 > 9 { exit 1 }' "$T/out.tsv"
  [ "$(head -1 "$T/out.tsv" | cut -f1)" = "tiny-input.npy#0" ]
  "$BIN/vt-classify" -m "$TINY" -k 2 --format json "$FX/tiny-input.npy" > "$T/out.json" 2>/dev/null
  [ "$(wc -l < "$T/out.json")" -eq 3 ]
  if have_numpy; then
    "$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert len(o["top"]) == 2 and o["top"][0]["rank"] == 1 and o["random_weights"] is True
    assert o["top"][0]["probability"] >= o["top"][1]["probability"]' "$T/out.json"
  fi
}

@test "classify: --logits pipe matches the reference at batch 1 and 2" {
  have_numpy || skip "needs /usr/bin/python3 with numpy"
  for b in 1 2; do
    "$BIN/vt-convert" "$FX/tiny-input.npy" | "$BIN/vt-classify" -m "$TINY" --logits -b $b 2>/dev/null \
      | "$BIN/vt-convert" --to npy -o "$T/got$b.npy" -
    "$PY" "$ROOT/../shared/conformance/compare.py" "$T/got$b.npy" "$FX/tiny-logits.npy" 2>/dev/null \
      || "$PY" -c '
import numpy as np, sys
g, w = np.load(sys.argv[1]), np.load(sys.argv[2])
assert g.shape == w.shape and np.abs(g - w).max() <= 1e-3 * np.abs(w).max() + 1e-5
assert (g.argmax(1) == w.argmax(1)).all()' "$T/got$b.npy" "$FX/tiny-logits.npy"
  done
}

@test "classify: logits frames carry kind, name and [num_classes]" {
  "$BIN/vt-classify" -m "$FX/dist.safetensors" --logits "$FX/dist-input.npy" 2>/dev/null > "$T/l.st"
  run "$BIN/vt-convert" --info "$T/l.st"
  [ "$status" -eq 0 ]
  [[ "$output" == *"dist-input.npy#1 (logits)"* ]]
  [[ "$output" == *"logits"*"F32"*"[7]"* ]]
}

@test "classify: image files are preprocessed with the model's own settings" {
  ppm "$T/a.ppm"
  run "$BIN/vt-classify" -m "$TINY" -k 1 --format tsv "$T/a.ppm"
  [ "$status" -eq 0 ]
  [[ "${lines[-1]}" == "a.ppm"$'\t'"1"$'\t'* ]]
}

@test "classify: a bad input is reported, the others still classified, exit 1" {
  ppm "$T/a.ppm"
  echo "not an image" > "$T/bad.jpg"
  "$BIN/vt-convert" "$FX/dist-input.npy" > "$T/wrong-size.st"
  run "$BIN/vt-classify" -m "$TINY" -k 1 --format tsv "$T/a.ppm" "$T/bad.jpg" "$T/missing.png" "$T/wrong-size.st" "$T/a.ppm"
  [ "$status" -eq 1 ]
  [[ "$output" == *"vt-classify: $T/bad.jpg: "* ]]
  [[ "$output" == *"vt-classify: $T/missing.png: "* ]]
  [[ "$output" == *"vt-classify: dist-input.npy#0: image is [3,40,40]; the model needs [3,32,32]"* ]]
  [ "$(printf '%s\n' "$output" | grep -c '^a.ppm	1	')" -eq 2 ]
}

@test "classify: thousands of inputs on one command line, and under xargs -P" {
  ppm "$T/a.ppm"
  for i in $(seq 1 1500); do echo "$T/a.ppm"; done > "$T/list"
  run sh -c "xargs '$BIN/vt-classify' -m '$TINY' -t 1 -b 8 -k 1 --format tsv < '$T/list' 2>/dev/null | wc -l"
  [ "$output" -eq 1500 ]
  run sh -c "xargs -P 3 -n 200 '$BIN/vt-classify' -m '$TINY' -t 1 -k 1 --format tsv < '$T/list' 2>/dev/null | wc -l"
  [ "$output" -eq 1500 ]
}

@test "classify: timm conformance fixtures through check.sh (vit family)" {
  [ -n "${VT_SHARED:-}" ] && [ -d "$VT_SHARED/conformance/fixtures" ] || skip "VT_SHARED not set"
  have_numpy || skip "needs /usr/bin/python3 with numpy"
  n=0
  for fx in "$VT_SHARED"/conformance/fixtures/vit-*; do
    run sh "$VT_SHARED/conformance/check.sh" "$fx" "$BIN"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"ok   max_abs_err"* ]]
    n=$((n + 1))
  done
  [ "$n" -ge 1 ]
}
