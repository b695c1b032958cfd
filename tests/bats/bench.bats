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
  "$ROOT/bench/startup.sh" --help | grep -q -- '-i IMAGE'
  "$ROOT/bench/refgen-check.sh" --list deit_small | grep -q '^vit  *deit_small_patch16_224  *7  *2$'
  cat > "$T/raw" <<'RAW'
round=1 impl=vtkit variant=m {"model":"x","batch":2,"threads":2,"params":10,"gmacs":1.5,"ms_per_image":10,"peak_rss_mb":40}
round=1 tune=omp impl=torch variant=m batch=2 threads=2 params=2000000 ms_per_image=30 rss_mb=300
round=1 tune=blas impl=torch variant=m batch=2 threads=1 params=2000000 ms_per_image=25 rss_mb=310
round=2 impl=vtkit variant=m {"model":"x","batch":2,"threads":2,"params":10,"gmacs":1.5,"ms_per_image":30,"peak_rss_mb":40}
round=2 tune=blas impl=torch variant=m batch=2 threads=1 params=2000000 ms_per_image=35 rss_mb=310
round=2 tune=omp impl=torch variant=m batch=2 threads=2 params=2000000 ms_per_image=50 rss_mb=300
RAW
  run "$PY" "$ROOT/bench/summarize.py" vs-pytorch "$T/raw"
  [ "$status" -eq 0 ]
  # medians over rounds: vtkit 20, omp 40, blas 30: tuned = blas, 1.50x
  read -r model batch thr params gmacs vt pt tune ratio omp blas vrss prss <<< "${lines[1]}"
  [ "$model $batch $thr $params $gmacs" = "m 2 2 2.00 1.500" ]
  [ "$vt $pt $tune $ratio $omp $blas $vrss $prss" = "20.00 30.00 blas 1.50x 40.00 30.00 40.0 310.0" ]
  printf '%s\n' "round=1 impl=vtkit variant=m threads=2 top1=3 ms=100" \
    "round=1 impl=torch variant=m threads=2 top1=3 wall_ns=1 import_ms=1 build_ms=2 load_ms=3 image_ms=4 forward_ms=5 ms=900" > "$T/raw"
  run "$PY" "$ROOT/bench/summarize.py" startup "$T/raw"
  [[ "${lines[1]}" == m*100*900*9.0x*same ]]
}
