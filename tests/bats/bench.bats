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

@test "vt-bench: a dge model's GMACs spent on --image are its gates' count, next to the dense one" {
  have_numpy || skip "no /usr/bin/python3 with numpy"
  local D=$FIX/dge/deit_dge
  "$BIN/vt-convert" --arch deit_dge_s124_tiny_patch16_256 --config "$D/meta.json" \
    "$D/checkpoint.pth" -o "$T/m.safetensors"
  "$BIN/vt-bench" -m "$T/m.safetensors" --image "$D/input.npy" -t 1 --runs 1 --warmup 0 \
    --format json > "$T/out"
  "$BIN/vt-bench" -m "$T/m.safetensors" --image "$D/input.npy" -t 1 --runs 1 --warmup 0 \
    --format csv > "$T/csv"
  "$PY" - "$T/out" "$D" "$T/csv" <<'PY'
import json, sys
import numpy as np
r = json.loads(open(sys.argv[1]).read())
c = json.load(open(sys.argv[2] + "/meta.json"))["config"]
nq = np.load(sys.argv[2] + "/num_queries.npy")[:, 0]        # image 0, per layer
C, hid, N, P, R = c["embed_dim"], c["mlp_hidden"], c["grid"] ** 2 + 1, c["patch_size"], 4
spent = (c["grid"] ** 2 * 3 * P * P * C + C * c["num_classes"]
         + sum(2 * q * C * C + 2 * N * C * C + 2 * q * N * C + 2 * q * C * hid
               + (c["grid"] // R) ** 2 * C * 3 for q in nq))
dense = c["measured"]["macs_plain_dense"]
assert abs(r["gmacs"] * 1e9 - dense) < 1e3, (r["gmacs"], dense)
assert abs(r["gmacs_spent"] * 1e9 - spent) < 1e3, (r["gmacs_spent"], spent)
assert r["gmacs_spent"] < r["gmacs"]
head, row = open(sys.argv[3]).read().split("\n")[:2]
assert head.split(",")[-1] == "gmacs_spent" and abs(float(row.split(",")[-1]) - spent / 1e9) < 1e-5
PY
  run "$BIN/vt-bench" -m "$T/m.safetensors" --image "$D/input.npy" -t 1 --runs 1 --warmup 0
  [ "$status" -eq 0 ]
  [[ "${lines[2]}" == *"GMACs spent on $D/input.npy: "*" of "*" dense ("*"%)" ]]
  # a plain model has no spent count; a bad --image is one error line
  "$BIN/vt-bench" --arch deit_tiny_patch16_224 -t 1 --runs 1 --warmup 0 --format json > "$T/plain"
  ! grep -q gmacs_spent "$T/plain"
  run_err "$BIN/vt-bench" -m "$T/m.safetensors" --image "$T/missing.jpg" --runs 1
  [ "$status" -eq 1 ]
  one_error_line "missing.jpg" "No such file"
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
  [ "$(awk '{print $6}' <<< "${lines[1]}")" = "$(awk '{print $6}' <<< "${lines[2]}")" ]
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
    [ "$(sed -n ${l}p "$T/out" | tr ',' '\n' | wc -l)" -eq 24 ]
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
  # swin splits, but continues only its full grid: named, it is refused
  run_err "$BIN/vt-bench" --arch swin_tiny_patch4_window7_224 --keep 0.5 --after 0 --runs 1 --warmup 0 -t 1
  [ "$status" -eq 1 ]
  one_error_line "vt-bench: swin_tiny_patch4_window7_224" "continues the full 56x56 grid"
}

@test "vt-bench --all --keep tries only the families that continue a pruned set" {
  # --after 50 fails each model it tries before any forward pass: the
  # error lines are the archs tried, which must be every vit arch and no other
  run_err "$BIN/vt-bench" --all --keep 0.5 --after 50 --runs 1 --warmup 0 -t 1 -s 32
  [ "$status" -eq 1 ]
  tried=$(printf '%s\n' "$err" | sed -n 's/^vt-bench: \([^:]*\): the model has blocks 0 to 11, not 50$/\1/p' | sort)
  want=$("$BIN/vt-convert" --list-archs | awk '$2 == "vit" {print $1}' | sort)
  [ -n "$want" ]
  [ "$tried" = "$want" ]
  [ "$(printf '%s\n' "$err" | grep -c .)" -eq "$(wc -l <<< "$want")" ]
}

@test "vt-bench --size: an arch built for another side, in every format" {
  have_numpy || skip "no /usr/bin/python3"
  "$BIN/vt-bench" --arch deit_tiny_patch16_224 -s 384 -t 1 --runs 1 --warmup 0 --format json > "$T/json"
  "$BIN/vt-bench" --arch deit_tiny_patch16_224 -s 384 -t 1 --runs 1 --warmup 0 --format csv --explain > "$T/csv"
  "$PY" - "$T/json" "$T/csv" <<'PY'
import csv, json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["size"] == 384, r
# 576 patches + CLS: the GMACs grow with the tokens (1.254 at 224)
assert abs(r["gmacs"] - 4.682) < 0.005, r["gmacs"]
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 1 and rows[0]["size"] == "384", rows
parts = dict(p.split("=") for p in rows[0]["parts"].split(";"))
assert abs(sum(map(float, parts.values())) - float(rows[0]["gmacs"])) < 1e-3, parts
assert "patch_embed" in parts, parts
PY
}

@test "vt-bench --size: a model file runs at another side where the family can" {
  "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random -o "$T/vit.safetensors" 2>/dev/null
  run "$BIN/vt-bench" -m "$T/vit.safetensors" -s 256 -t 1 --runs 1 --warmup 0 --format csv
  [ "$status" -eq 0 ]
  # the size column, found by its name in the header
  [ "$(printf '%s\n' "${lines[@]}" | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "size") c = i }
                                              NR == 2 { print $c }')" = 256 ]
  "$BIN/vt-convert" --arch sgformer_s --random -o "$T/sg.safetensors" 2>/dev/null
  run_err "$BIN/vt-bench" -m "$T/sg.safetensors" -s 448 -t 1 --runs 1
  [ "$status" -eq 1 ]
  one_error_line "sg.safetensors" "pos_embed is for 224 .*runs at 224 only"
}

@test "vt-bench --size: families that cannot run at that side say why" {
  run_err "$BIN/vt-bench" --arch stvit_r_swin_t -s 448 -t 1 --runs 1
  [ "$status" -eq 1 ]
  one_error_line "stvit_r_swin_t" "224x224 input only"
  run_err "$BIN/vt-bench" --arch swin_tiny_patch4_window7_224 -s 256 -t 1 --runs 1
  [ "$status" -eq 1 ]
  one_error_line "swin_tiny_patch4_window7_224" "not a multiple of the 7-token window"
  run "$BIN/vt-bench" --arch deit_tiny_patch16_224 -s 0
  [ "$status" -eq 2 ]
}

@test "vt-bench names a model file safely in json and csv, and is quiet on stderr off a terminal" {
  have_numpy || skip "no /usr/bin/python3"
  "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random -o "$T/a \"b\",c.safetensors" 2>/dev/null
  "$BIN/vt-bench" -m "$T/a \"b\",c.safetensors" -t 1 --runs 1 --warmup 0 --format json > "$T/json" 2> "$T/err"
  "$BIN/vt-bench" -m "$T/a \"b\",c.safetensors" -t 1 --runs 1 --warmup 0 --format csv > "$T/csv" 2>> "$T/err"
  [ ! -s "$T/err" ]
  "$PY" - "$T/json" "$T/csv" <<'PY'
import csv, json, sys
r = json.loads(open(sys.argv[1]).read())
assert r["model"].endswith('a "b",c.safetensors'), r["model"]
rows = list(csv.reader(open(sys.argv[2])))
assert len(rows[0]) == len(rows[1]) and rows[1][0] == r["model"], rows
PY
}

@test "vt-bench sgformer: GMACs per stage with --explain" {
  have_numpy || skip "no /usr/bin/python3"
  "$BIN/vt-bench" --arch sgformer_s -t 1 --runs 1 --warmup 0 --format json --explain > "$T/json"
  "$PY" - "$T/json" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read())
assert abs(r["gmacs"] - 4.784) < 0.001, r["gmacs"]   # paper: 4.8 G
p = r["parts"]
assert abs(sum(p.values()) - r["gmacs"]) < 1e-3, p
for k in ["stem", "stage1 hybrid global attn", "stage1 hybrid window attn", "stage1 realloc attn",
          "stage3 realloc attn", "stage4 mhsa", "stage4 mlp", "head"]:
    assert k in p, k
PY
}

@test "bench scripts: model table, help, and the vs-pytorch/startup tables from raw lines" {
  have_numpy || skip "no /usr/bin/python3"
  run "$ROOT/bench/vs-pytorch.sh" --list sgformer
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 3 ] && [ "${lines[0]}" = "sgformer sgformer_s" ]
  "$ROOT/bench/vs-pytorch.sh" --help | grep -q -- '-b B,...'
  "$ROOT/bench/vs-pytorch.sh" --help | grep -q -- '-d D,...'
  "$ROOT/bench/startup.sh" --help | grep -q -- '-i IMAGE'
  "$ROOT/bench/refgen-check.sh" --list deit_small | grep -q '^vit  *deit_small_patch16_224  *7  *2$'
  cat > "$T/raw" <<'RAW'
round=1 impl=vtkit variant=m {"model":"x","batch":2,"threads":2,"params":10,"gmacs":1.5,"ms_per_image":10,"peak_rss_mb":40}
round=1 tune=omp impl=torch variant=m batch=2 threads=2 params=2000000 ms_per_image=30 rss_mb=300
round=1 tune=blas impl=torch variant=m batch=2 threads=1 params=2000000 ms_per_image=25 rss_mb=310
round=2 impl=vtkit variant=m {"model":"x","batch":2,"threads":2,"params":10,"gmacs":1.5,"ms_per_image":30,"peak_rss_mb":40}
round=2 tune=blas impl=torch variant=m batch=2 threads=1 params=2000000 ms_per_image=35 rss_mb=310
round=2 tune=omp impl=torch variant=m batch=2 threads=2 params=2000000 ms_per_image=50 rss_mb=300
round=1 impl=vtkit dtype=bf16 variant=m {"model":"y","batch":2,"threads":2,"params":10,"gmacs":1.5,"ms_per_image":12,"peak_rss_mb":25}
round=2 impl=vtkit dtype=bf16 variant=m {"model":"y","batch":2,"threads":2,"params":10,"gmacs":1.5,"ms_per_image":18,"peak_rss_mb":25}
RAW
  run "$PY" "$ROOT/bench/summarize.py" vs-pytorch "$T/raw"
  [ "$status" -eq 0 ] && [ "${#lines[@]}" -eq 3 ]
  # medians over rounds: vtkit 20, omp 40, blas 30: tuned = blas, 1.50x;
  # a line without dtype= is f32; the bf16 rows share the PyTorch runs
  read -r model dtype batch thr params gmacs vt pt tune ratio omp blas vrss prss <<< "${lines[1]}"
  [ "$model $dtype $batch $thr $params $gmacs" = "m f32 2 2 2.00 1.500" ]
  [ "$vt $pt $tune $ratio $omp $blas $vrss $prss" = "20.00 30.00 blas 1.50x 40.00 30.00 40.0 310.0" ]
  read -r model dtype batch thr params gmacs vt pt tune ratio omp blas vrss prss <<< "${lines[2]}"
  [ "$model $dtype $vt $pt $ratio $vrss" = "m bf16 15.00 30.00 2.00x 25.0" ]
  printf '%s\n' "round=1 impl=vtkit variant=m threads=2 top1=3 ms=100" \
    "round=1 impl=torch variant=m threads=2 top1=3 wall_ns=1 import_ms=1 build_ms=2 load_ms=3 image_ms=4 forward_ms=5 ms=900" > "$T/raw"
  run "$PY" "$ROOT/bench/summarize.py" startup "$T/raw"
  [[ "${lines[1]}" == m*100*900*9.0x*same ]]
}

@test "vt-bench: -m and --arch repeat, one row each in order, STViT-R beside its Swin" {
  "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random -o "$T/vit.safetensors" 2>/dev/null
  run "$BIN/vt-bench" --arch swin_tiny_patch4_window7_224 -m "$T/vit.safetensors" \
    --arch stvit_r_swin_t -t 1 --runs 1 --warmup 0
  [ "$status" -eq 0 ]
  [ "${#lines[@]}" -eq 4 ]
  [[ "${lines[1]}" == swin_tiny_patch4_window7_224\ * ]]
  [[ "${lines[2]}" == "$T/vit.safetensors "* ]]
  [[ "${lines[3]}" == stvit_r_swin_t\ * ]]
  # Swin-T 4.491 GMACs, STViT-R-Swin-T 3.598: the semantic tokens' saving shows
  [ "$(awk '{print $6}' <<< "${lines[1]}")" = 4.491 ]
  [ "$(awk '{print $6}' <<< "${lines[3]}")" = 3.598 ]
  # one failing model: the others still reported, exit 1
  run_err "$BIN/vt-bench" --arch deit_tiny_patch16_224 -m "$T/missing.safetensors" -t 1 --runs 1 --warmup 0
  [ "$status" -eq 1 ]
  one_error_line "missing.safetensors" "No such file"
}
