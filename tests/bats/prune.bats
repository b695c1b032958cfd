#!/usr/bin/env bats
# vt-prune: budgets, the four methods on real token sets, pairing with
# sigmaps by name, errors; topk and fuse continued logits against DeiT block
# math in PyTorch (tests/prune-reference.py).
load helper
bats_require_minimum_version 1.5.0

VIT=$FIX/vit

setup_file() {
  local d=$BATS_FILE_TMPDIR
  "$BIN/vt-convert" --arch deit_small_patch16_224 --random -o "$d/s.safetensors"
  "$BIN/vt-classify" -m "$d/s.safetensors" --until 3 "$SAMPLES/tench.jpg" "$SAMPLES/cheetah.jpg" \
    > "$d/t3"
}

S() { echo "$BATS_FILE_TMPDIR/s.safetensors"; }
T3() { echo "$BATS_FILE_TMPDIR/t3"; }

have_torch() { [ -x "$PY" ] && "$PY" -c 'import torch, numpy' 2>/dev/null; }

# meta KEY FILE: the value of KEY in the first frame of FILE
meta() { "$BIN/vt-convert" --info "$2" | sed -n "s/^  $1 = //p" | head -1; }
# tensor NAME FRAME OUT.npy: one tensor of a one-frame file as .npy
tensor() { "$BIN/vt-convert" --to npy --tensor "$1" -o "$3" "$2"; }

@test "prune: --help is short and exact; --version" {
  run "$BIN/vt-prune" --help
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "usage: vt-prune (--keep R | --tokens N) [options] [INPUT...]" ]
  for o in --keep --tokens --method --sigmap; do [[ "$output" == *"$o"* ]]; done
  [[ "$output" == *"topk (default), fuse, reallocate, cluster"* ]]
  [ "${#lines[@]}" -le 15 ]
  run "$BIN/vt-prune" --version
  [ "$output" = "vt-prune (vtkit) 0.1.0" ]
}

@test "prune: usage errors exit 2 with one line" {
  for args in "" "--keep 0.5 --tokens 3" "--keep 0" "--keep 1.5" "--keep x" "--tokens 0" \
              "--keep 0.5 --method random" "--keep 0.5 --no-such" "--keep"; do
    run_err "$BIN/vt-prune" $args "$(T3)"
    [ "$status" -eq 2 ]
    [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ]
  done
  run_err "$BIN/vt-prune" --keep 0.5 --sigmap - - < "$(T3)"
  [ "$status" -eq 2 ]
}

@test "prune: --keep 1.0 and a budget of all tokens are the identity for every method" {
  [ -x "$PY" ] || skip "no /usr/bin/python3"
  "$BIN/vt-classify" -m "$(S)" --logits "$(T3)" > "$T/full" 2>/dev/null
  for m in topk fuse reallocate cluster; do
    for b in "--keep 1.0" "--tokens 196" "--tokens 5000"; do
      "$BIN/vt-prune" $b --method $m "$(T3)" > "$T/p"
      "$PY" - "$(T3)" "$T/p" <<'PY'
import json, struct, sys
def frames(p):
    b = open(p, "rb").read(); pos = 0; out = []
    while pos < len(b):
        n = struct.unpack("<Q", b[pos:pos + 8])[0]; h = json.loads(b[pos + 8:pos + 8 + n])
        m = h.pop("__metadata__"); base = pos + 8 + n
        ts = {k: b[base + v["data_offsets"][0]:base + v["data_offsets"][1]] for k, v in h.items()}
        out.append((m, ts)); pos = base + max(v["data_offsets"][1] for v in h.values())
    return out
a, b = frames(sys.argv[1]), frames(sys.argv[2])
assert len(a) == len(b) == 2
for (ma, ta), (mb, tb) in zip(a, b):
    assert ta == tb, "tensors differ"          # tokens, boxes, extra, cls_attn: every byte
    assert mb["pruned"].endswith(":196/196:cls"), mb["pruned"]
PY
    done
    "$BIN/vt-classify" -m "$(S)" --logits "$T/p" > "$T/l" 2>/dev/null
    cmp "$T/full" "$T/l"
  done
}

@test "prune: budgets: ceil(R N) tokens, --tokens N, at most N for cluster; history in 'pruned'" {
  for m in topk fuse reallocate; do
    for k in 0.7:138 0.5:98 0.25:49; do
      "$BIN/vt-prune" --keep ${k%:*} --method $m "$(T3)" > "$T/p"
      [ "$(meta tokens "$T/p")" = "${k#*:}" ]
      [ "$(meta pruned "$T/p")" = "$m:${k#*:}/196:cls" ]
    done
    "$BIN/vt-prune" --tokens 60 --method $m "$(T3)" > "$T/p"
    [ "$(meta tokens "$T/p")" -le 60 ]
    [ "$(meta tokens "$T/p")" -ge 58 ]
  done
  "$BIN/vt-prune" --tokens 60 --method cluster "$(T3)" > "$T/p"
  [ "$(meta tokens "$T/p")" -le 60 ]
  [ "$(meta tokens "$T/p")" -ge 30 ]
  # twice: the history grows, the second reduction works on the first's output
  "$BIN/vt-prune" --keep 0.5 "$(T3)" | "$BIN/vt-prune" --keep 0.5 --method fuse > "$T/p2"
  [ "$(meta pruned "$T/p2")" = "topk:98/196:cls;fuse:49/98:cls" ]
  [ "$(meta block "$T/p2")" = 3 ]
}

@test "prune: topk and fuse continued logits match PyTorch DeiT block math (DeiT-S, after block 3)" {
  have_torch || skip "needs /usr/bin/python3 with torch and numpy"
  "$BIN/vt-convert" -m "$(S)" "$SAMPLES/tench.jpg" "$SAMPLES/cheetah.jpg" > "$T/img"
  "$BIN/vt-classify" -m "$(S)" --until 3 "$T/img" > "$T/t"
  cases=()
  for m in topk fuse; do
    for k in 0.7 0.5 0.25; do
      "$BIN/vt-prune" --keep $k --method $m "$T/t" > "$T/p$m$k"
      "$BIN/vt-classify" -m "$(S)" --logits "$T/p$m$k" > "$T/l$m$k" 2>/dev/null
      cases+=("$m:$T/p$m$k:$T/l$m$k")
    done
  done
  run "$PY" "$ROOT/tests/prune-reference.py" "$(S)" "$T/img" "${cases[@]}"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"12 reductions checked: ok"* ]]
  # the check can fail: the unpruned logits are not those of a pruned pass
  "$BIN/vt-classify" -m "$(S)" --logits "$T/img" > "$T/full" 2>/dev/null
  run "$PY" "$ROOT/tests/prune-reference.py" "$(S)" "$T/img" "topk:$T/ptopk0.5:$T/full"
  [ "$status" -eq 1 ]
}

@test "prune: topk and fuse against PyTorch on the small fixtures (sharper attention, distilled)" {
  have_torch || skip "needs /usr/bin/python3 with torch and numpy"
  for f in tiny dist; do
    "$BIN/vt-convert" "$VIT/$f-input.npy" > "$T/img"
    "$BIN/vt-classify" -m "$VIT/$f.safetensors" --until 0 "$T/img" > "$T/t"
    cases=()
    for m in topk fuse; do
      for n in 1 3 7 15; do
        "$BIN/vt-prune" --tokens $n --method $m "$T/t" > "$T/p$m$n"
        "$BIN/vt-classify" -m "$VIT/$f.safetensors" --logits "$T/p$m$n" > "$T/l$m$n" 2>/dev/null
        cases+=("$m:$T/p$m$n:$T/l$m$n")
      done
    done
    run "$PY" "$ROOT/tests/prune-reference.py" "$VIT/$f.safetensors" "$T/img" "${cases[@]}"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"reductions checked: ok"* ]]
  done
}

@test "prune: reallocate tiles the grid, fine where the sigmap is high, coarse where low" {
  have_numpy || skip "needs /usr/bin/python3 with numpy"
  # a sigmap high in the top-left corner, for each image of t3
  "$PY" - "$T/maps" <<'PY'
import json, struct, sys
out = open(sys.argv[1], "wb")
for name in ("tench.jpg", "cheetah.jpg"):
    vals = [1.0 / (1 + x + y) for y in range(14) for x in range(14)]
    data = struct.pack("<196f", *vals)
    h = {"__metadata__": {"vt": "1", "kind": "sigmap", "name": name},
         "sigmap": {"dtype": "F32", "shape": [14, 14], "data_offsets": [0, len(data)]}}
    hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
    out.write(struct.pack("<Q", len(hb)) + hb + data)
PY
  "$BIN/vt-prune" --keep 0.3 --method reallocate --sigmap "$T/maps" "$(T3)" > "$T/p"
  [ "$(meta pruned "$T/p")" = "reallocate:59/196:sigmap" ]
  "$PY" - "$T/p" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); pos = 0; count = 0
while pos < len(b):
    n = struct.unpack("<Q", b[pos:pos + 8])[0]; h = json.loads(b[pos + 8:pos + 8 + n])
    h.pop("__metadata__"); base = pos + 8 + n
    s, e = h["boxes"]["data_offsets"]
    boxes = [struct.unpack("<4i", b[base + i:base + i + 16]) for i in range(s, e, 16)]
    seen = {}
    for (x0, y0, x1, y1) in boxes:
        for y in range(y0, y1):
            for x in range(x0, x1):
                assert (x, y) not in seen; seen[(x, y)] = x1 - x0
    assert len(seen) == 196, len(seen)
    assert seen[(0, 0)] == 1 and seen[(1, 1)] == 1, "fine at the top left"
    assert seen[(13, 13)] >= 2 and seen[(9, 9)] == 4, "coarse at the bottom right"
    pos = base + max(v["data_offsets"][1] for v in h.values()); count += 1
assert count == 2
PY
  # continued: a real forward pass on the pooled tokens
  "$BIN/vt-classify" -m "$(S)" -k 1 --format tsv "$T/p" > "$T/res" 2>/dev/null
  [ "$(wc -l < "$T/res")" -eq 2 ]
  # refused: a budget below the 4x4 tiling, and a set that is no longer the grid
  run_err "$BIN/vt-prune" --tokens 10 --method reallocate "$(T3)"
  [ "$status" -eq 1 ]
  [[ "$err" == *"tench.jpg: reallocate: 10 tokens are fewer than the 16 4x4 regions of the 14x14 grid"* ]]
  run_err sh -c "'$BIN/vt-prune' --keep 0.5 '$(T3)' | '$BIN/vt-prune' --keep 0.5 --method reallocate"
  [ "$status" -eq 1 ]
  [[ "$err" == *"reallocate re-tiles a full token grid"* ]]
}

@test "prune: cluster gives semantic tokens whose boxes cover their members" {
  "$BIN/vt-prune" --tokens 20 --method cluster "$(T3)" > "$T/p"
  n=$(meta tokens "$T/p")
  [ "$n" -ge 10 ] && [ "$n" -le 20 ]
  "$BIN/vt-classify" -m "$(S)" -k 1 --format tsv "$T/p" > "$T/res" 2>/dev/null
  [ "$(wc -l < "$T/res")" -eq 2 ]
}

@test "prune: sigmaps pair by name from --sigmap FILE, in any order, or before tokens on one stream" {
  "$BIN/vt-sigmap" -m "$(S)" "$SAMPLES/cheetah.jpg" "$SAMPLES/tench.jpg" > "$T/maps"   # reversed
  "$BIN/vt-prune" --keep 0.5 --sigmap "$T/maps" "$(T3)" > "$T/a"
  [ "$(meta pruned "$T/a")" = "topk:98/196:sigmap" ]
  cat "$T/maps" "$(T3)" | "$BIN/vt-prune" --keep 0.5 > "$T/b"
  cmp "$T/a" "$T/b"
  "$BIN/vt-prune" --keep 0.5 --sigmap - "$(T3)" < "$T/maps" > "$T/c"
  cmp "$T/a" "$T/c"
  # scored by the sigmap, not by the CLS attention of block 3
  "$BIN/vt-prune" --keep 0.5 "$(T3)" > "$T/d"
  ! cmp -s "$T/a" "$T/d"
  # by stem: a map of tench.png pairs with the tokens of tench.jpg
  cp "$SAMPLES/tench.jpg" "$T/tench.jpeg"
  "$BIN/vt-sigmap" -m "$(S)" "$T/tench.jpeg" > "$T/m2"
  "$BIN/vt-classify" -m "$(S)" --until 3 "$SAMPLES/tench.jpg" |
    "$BIN/vt-prune" --keep 0.5 --sigmap "$T/m2" > "$T/e"
  [ "$(meta pruned "$T/e")" = "topk:98/196:sigmap" ]
  # the canonical chain of the README, with process substitution
  run bash -c "'$BIN/vt-classify' -m '$(S)' --until 3 '$SAMPLES/tench.jpg' | '$BIN/vt-prune' --keep 0.5 --sigmap <('$BIN/vt-sigmap' -m '$(S)' '$SAMPLES/tench.jpg') | '$BIN/vt-classify' -m '$(S)' --format tsv -k 1 2>/dev/null"
  [ "$status" -eq 0 ]
  [[ "$output" == "tench.jpg"$'\t'"1"$'\t'* ]]
}

@test "prune: an exact name later in --sigmap wins over a stem match read before it" {
  # maps of x.jpg then x.png; tokens of x.png then x.jpg: each by its own map
  cp "$SAMPLES/tench.jpg" "$T/x.jpg"
  cp "$SAMPLES/cheetah.jpg" "$T/x.png"
  m=$VIT/tiny.safetensors
  "$BIN/vt-sigmap" -m "$m" "$T/x.jpg" "$T/x.png" > "$T/maps"
  "$BIN/vt-classify" -m "$m" --until 0 "$T/x.png" "$T/x.jpg" > "$T/t"
  "$BIN/vt-prune" --keep 0.5 --sigmap "$T/maps" "$T/t" > "$T/a"
  : > "$T/want"
  for x in x.png x.jpg; do
    "$BIN/vt-sigmap" -m "$m" "$T/$x" > "$T/m1"
    "$BIN/vt-classify" -m "$m" --until 0 "$T/$x" | "$BIN/vt-prune" --keep 0.5 --sigmap "$T/m1" >> "$T/want"
  done
  cmp "$T/a" "$T/want"
  # the maps differ enough that a swap shows
  "$BIN/vt-prune" --keep 0.5 "$T/t" > "$T/cls"
  ! cmp -s "$T/a" "$T/cls"
}

@test "prune: a missing or misfit sigmap is reported per frame; the others are still written" {
  "$BIN/vt-sigmap" -m "$(S)" "$SAMPLES/tench.jpg" > "$T/maps"
  status=0
  "$BIN/vt-prune" --keep 0.5 --sigmap "$T/maps" "$(T3)" > "$T/p" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  err=$(cat "$T/err")
  one_error_line "vt-prune: cheetah.jpg" "no sigmap frame named cheetah.jpg in $T/maps"
  [ "$(meta name "$T/p")" = tench.jpg ]
  [ "$("$BIN/vt-convert" --info "$T/p" | grep -c '^frame ')" -eq 1 ]
  # on one stream: once sigmaps came, a tokens frame needs one before it
  status=0
  cat "$T/maps" "$(T3)" | "$BIN/vt-prune" --keep 0.5 > "$T/p" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  grep -q "cheetah.jpg: no sigmap frame named cheetah.jpg before it on the stream" "$T/err"
  # a sigmap after its tokens frame is reported unused
  status=0
  cat "$(T3)" "$T/maps" | "$BIN/vt-prune" --keep 0.5 > "$T/p" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  grep -q "tench.jpg: sigmap not used: no tokens frame of that name came after it" "$T/err"
  # a map on another grid
  "$BIN/vt-sigmap" -m "$VIT/tiny.safetensors" "$SAMPLES/tench.jpg" > "$T/small"
  run_err "$BIN/vt-prune" --keep 0.5 --sigmap "$T/small" "$(T3)"
  [ "$status" -eq 1 ]
  [[ "$err" == *"tench.jpg: sigmap is 4x4; the tokens' grid is 14x14"* ]]
  # not a tokens frame
  "$BIN/vt-convert" "$SAMPLES/tench.jpg" > "$T/img"
  run_err "$BIN/vt-prune" --keep 0.5 "$T/img"
  [ "$status" -eq 1 ]
  one_error_line "vt-prune: tench.jpg" "a 'image' frame; vt-prune takes tokens and sigmap frames"
}

@test "prune: a sigmap of other weights is refused for its frame; the others are still written" {
  d=$BATS_FILE_TMPDIR
  [ -f "$d/ti.safetensors" ] || "$BIN/vt-convert" --arch deit_tiny_patch16_224 --random -o "$d/ti.safetensors"
  [ -f "$d/tid.safetensors" ] ||
    "$BIN/vt-convert" --arch deit_tiny_distilled_patch16_224 --random -o "$d/tid.safetensors"
  "$BIN/vt-classify" -m "$d/ti.safetensors" --until 3 "$SAMPLES/tench.jpg" "$SAMPLES/cheetah.jpg" > "$T/t"
  # the same 14x14 grid: only the weights tell the maps apart
  "$BIN/vt-sigmap" -m "$d/tid.safetensors" "$SAMPLES/tench.jpg" > "$T/maps"
  "$BIN/vt-sigmap" -m "$d/ti.safetensors" "$SAMPLES/cheetah.jpg" >> "$T/maps"
  [ "$(meta arch "$T/maps")" = deit_tiny_distilled_patch16_224 ]
  [ "$(meta model "$T/maps")" = deit_tiny_distilled_patch16_224 ]
  [ "$(meta weights_sha256 "$T/maps")" != "$(meta weights_sha256 "$T/t")" ]
  status=0
  "$BIN/vt-prune" --keep 0.5 --sigmap "$T/maps" "$T/t" > "$T/p" 2> "$T/err" || status=$?
  [ "$status" -eq 1 ]
  err=$(cat "$T/err")
  one_error_line "vt-prune: tench.jpg" "its sigmap is from another model"
  [ "$(meta name "$T/p")" = cheetah.jpg ]
  [ "$(meta pruned "$T/p")" = "topk:98/196:sigmap" ]
  [ "$("$BIN/vt-convert" --info "$T/p" | grep -c '^frame ')" -eq 1 ]
  # its own model's map, with the same weights_sha256 as the tokens
  "$BIN/vt-sigmap" -m "$d/ti.safetensors" "$SAMPLES/tench.jpg" > "$T/own"
  [ "$(meta weights_sha256 "$T/own")" = "$(meta weights_sha256 "$T/t")" ]
  "$BIN/vt-classify" -m "$d/ti.safetensors" --until 3 "$SAMPLES/tench.jpg" |
    "$BIN/vt-prune" --keep 0.5 --sigmap "$T/own" > "$T/q"
  [ "$(meta pruned "$T/q")" = "topk:98/196:sigmap" ]
}

@test "prune: without cls_attn tokens are scored by their norm" {
  have_numpy || skip "needs /usr/bin/python3 with numpy"
  # strip cls_attn from the first frame
  "$PY" - "$(T3)" "$T/nocls" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); base = 8 + n
meta = h.pop("__metadata__"); h.pop("cls_attn")
data, out, off = b"", {"__metadata__": meta}, 0
for k in ("tokens", "boxes", "extra"):
    s, e = h[k]["data_offsets"]; chunk = b[base + s:base + e]
    out[k] = dict(h[k], data_offsets=[off, off + len(chunk)]); data += chunk; off += len(chunk)
hb = json.dumps(out).encode(); hb += b" " * (-len(hb) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(hb)) + hb + data)
PY
  "$BIN/vt-prune" --tokens 10 "$T/nocls" > "$T/p"
  [ "$(meta pruned "$T/p")" = "topk:10/196:norm" ]
  tensor tokens "$T/nocls" "$T/all.npy"
  tensor boxes "$T/p" "$T/kept.npy"
  "$PY" - "$T/all.npy" "$T/kept.npy" <<'PY'
import numpy as np, sys
x, b = np.load(sys.argv[1]), np.load(sys.argv[2])
norm = np.sqrt((x.astype(np.float64) ** 2).sum(1))
want = sorted(np.argsort(-norm, kind="stable")[:10])
assert [int(r[1]) * 14 + int(r[0]) for r in b] == want, (b, want)
PY
}

@test "prune: an xargs batch: many photos per process, results for every one" {
  mkdir "$T/out"
  printf '%s\n' "$SAMPLES"/* | xargs -n 2 sh -c \
    "'$BIN/vt-classify' -m '$(S)' --until 3 -t 1 \"\$@\" | '$BIN/vt-prune' --keep 0.5 | '$BIN/vt-classify' -m '$(S)' -t 1 -k 1 --format tsv" sh \
    > "$T/res" 2>/dev/null
  [ "$(wc -l < "$T/res")" -eq "$(ls "$SAMPLES" | wc -l)" ]
}

@test "prune: the man page renders clean and names every option, method and paper" {
  command -v man >/dev/null || skip "no man"
  out=$(MANWIDTH=80 man -l "$ROOT/man/vt-prune.1" 2>&1 >/dev/null)
  [ -z "$out" ]
  text=$(MANWIDTH=80 man -l "$ROOT/man/vt-prune.1" 2>/dev/null | col -b)
  # every option --help lists, short and long
  opts=$("$BIN/vt-prune" --help | grep -E '^ +-' | grep -oE -- '(^|[ ,])--?[A-Za-z][-A-Za-z]*' | sed 's/^[ ,]//' | sort -u)
  [ "$(wc -l <<< "$opts")" -ge 6 ]   # the extraction found them
  for w in $opts; do
    grep -qE -- "(^|[^-A-Za-z])$w([^-A-Za-z]|\$)" <<< "$text" || { echo "man page lacks $w"; false; }
  done
  for w in topk fuse reallocate cluster EViT SG-Former STViT DynamicViT "CLS attention" norm; do
    grep -q -- "$w" <<< "$text"
  done
}
