#!/usr/bin/env bats
# vt-bench: its output formats, and errors.
load helper
bats_require_minimum_version 1.5.0

@test "vt-bench text output is a table with one row per model" {
  run "$BIN/vt-bench" --arch deit_tiny_patch16_224 -t 1 --runs 2 --warmup 0
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 2 ]
  [[ "${lines[0]}" == model*params*GMACs*med* ]]
  [[ "${lines[1]}" == deit_tiny_patch16_224* ]]
}

@test "vt-bench json is one valid object per model with the documented keys" {
  have_numpy || skip "no /usr/bin/python3"
  "$BIN/vt-bench" --arch deit_tiny_patch16_224 -t 1 -b 2 --runs 3 --format json --explain > "$T/out"
  "$PY" - "$T/out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 1
r = rows[0]
for k in ["model", "batch", "threads", "params", "gmacs", "load_ms", "first_ms", "min_ms",
          "median_ms", "max_ms", "ms_per_image", "images_per_s", "gflops", "peak_rss_mb"]:
    assert k in r, k
assert r["batch"] == 2 and r["threads"] == 1
assert r["params"] == 5717416, r["params"]          # timm's deit_tiny_patch16_224
assert abs(r["gmacs"] - 1.254) < 0.005, r["gmacs"]  # DeiT paper: 1.3 GFLOPs (MACs)
parts = r["parts"]
assert abs(sum(parts.values()) - r["gmacs"]) < 1e-3, parts
assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
assert abs(r["ms_per_image"] * 2 - r["median_ms"]) <= 1e-3 * r["median_ms"]
PY
}

@test "vt-bench csv has a header and one line per model with equal column counts" {
  "$BIN/vt-bench" --arch deit_tiny_patch16_224 -t 1 --runs 1 --format csv > "$T/out"
  [ "$(wc -l < "$T/out")" -eq 2 ]
  [ "$(head -1 "$T/out" | tr ',' '\n' | wc -l)" -eq "$(tail -1 "$T/out" | tr ',' '\n' | wc -l)" ]
  head -1 "$T/out" | grep -q '^model,batch,threads,params,gmacs,'
}

@test "vt-bench errors: no model, unknown arch, missing file" {
  run "$BIN/vt-bench"
  [ "$status" -eq 2 ]
  run "$BIN/vt-bench" --arch no_such_arch
  [ "$status" -eq 2 ]
  [[ "$output" == *"unknown arch 'no_such_arch'"* ]]
  run_err "$BIN/vt-bench" -m "$T/missing.safetensors"
  [ "$status" -eq 1 ]
  one_error_line "missing.safetensors" "No such file"
}

@test "vt-bench --keep --after: one row per pass, pruned ones with tokens, speedup and ideal" {
  run "$BIN/vt-bench" --arch deit_tiny_patch16_224 -t 1 --runs 2 --warmup 0 --keep 1,0.5 --after 3
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 4 ]
  [[ "${lines[0]}" == model*GMACs*"keep after tokens speedup  ideal  real%" ]]
  # unpruned: 196 tokens, no keep; keep 1: 196 tokens, the same GMACs; keep 0.5: 98
  [[ "${lines[1]}" =~ \ -\ +3\ +196\ +1\.00\ +1\.00\ +-$ ]]
  [[ "${lines[2]}" =~ \ 1\ +3\ +196\ +[0-9.]+\ +1\.00\ +[0-9.]+%$ ]]
  [[ "${lines[3]}" =~ \ 0\.5\ +3\ +98\ +[0-9.]+\ +1\.5[0-9]\ +[0-9.]+%$ ]]
  [ "$(awk '{print $5}' <<< "${lines[1]}")" = "$(awk '{print $5}' <<< "${lines[2]}")" ]
}

@test "vt-bench --keep json: analytic GMACs of the pruned pass, speedup, ideal and realised agree" {
  have_numpy || skip "no /usr/bin/python3"
  "$BIN/vt-bench" --arch deit_small_patch16_224 -t 1 --runs 3 --warmup 0 --format json \
    --keep 0.7,0.25 --after 3 --explain > "$T/out"
  "$PY" - "$T/out" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 3 and [r["pruned"] for r in rows] == [False, True, True]
d, h, depth = 384, 1536, 12
def macs(after, n):      # the DeiT cost of vit.c, blocks after `after` on 1 + n tokens
    t, k = 197, 1 + n
    blk = lambda t: t * d * 3 * d + t * d * d + 2 * t * t * d + 2 * t * d * h
    return 196 * d * 3 * 16 * 16 + (after + 1) * blk(t) + (depth - after - 1) * blk(k) + d * 1000
full = rows[0]
assert abs(full["gmacs"] - macs(11, 196) / 1e9) < 1e-5 and full["tokens"] == 196
for r, keep, n in zip(rows[1:], (0.7, 0.25), (138, 49)):
    assert r["keep"] == keep and r["after"] == 3 and r["tokens"] == n, r
    assert abs(r["gmacs"] - macs(3, n) / 1e9) < 1e-5, (r["gmacs"], macs(3, n) / 1e9)
    assert abs(sum(r["parts"].values()) - r["gmacs"]) < 1e-3
    assert abs(r["ideal_speedup"] - full["gmacs"] / r["gmacs"]) < 1e-4
    assert abs(r["speedup"] - full["median_ms"] / r["median_ms"]) < 1e-3 * r["speedup"]
    assert abs(r["realised"] - r["speedup"] / r["ideal_speedup"]) < 1e-4
PY
}

@test "vt-bench --keep csv: extra columns on every line" {
  "$BIN/vt-bench" --arch deit_tiny_patch16_224 -t 1 --runs 1 --warmup 0 --format csv --keep 0.5 --after 0 > "$T/out"
  [ "$(wc -l < "$T/out")" -eq 3 ]
  head -1 "$T/out" | grep -q ',keep,after,tokens,speedup,ideal_speedup,realised$'
  for l in 2 3; do
    [ "$(sed -n ${l}p "$T/out" | tr ',' '\n' | wc -l)" -eq 22 ]
  done
  sed -n 2p "$T/out" | grep -q ',,0,196,1,1,1$'
  sed -n 3p "$T/out" | grep -q ',0.5,0,98,'
}

@test "vt-bench --keep errors: alone, out of range, a family without split inference" {
  run_err "$BIN/vt-bench" --arch deit_tiny_patch16_224 --keep 0.5
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-bench" --arch deit_tiny_patch16_224 --after 3
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-bench" --arch deit_tiny_patch16_224 --keep 0,0.5 --after 3
  [ "$status" -eq 2 ]
  run_err "$BIN/vt-bench" --arch deit_tiny_patch16_224 --keep 0.5 --after 12 --runs 1
  [ "$status" -eq 1 ]
  one_error_line "vt-bench: deit_tiny_patch16_224" "blocks 0 to 11, not 12"
  SGF=$FIX/sgformer
  "$BIN/vt-convert" --arch sgformer_s --config "$SGF/meta.json" "$SGF/checkpoint.pth" -o "$T/sg.safetensors"
  run_err "$BIN/vt-bench" -m "$T/sg.safetensors" --keep 0.5 --after 1 --runs 1
  [ "$status" -eq 1 ]
  one_error_line "sg.safetensors" "not available for the sgformer family"
}
