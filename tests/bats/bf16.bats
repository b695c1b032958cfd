#!/usr/bin/env bats
# BF16 model files (vt-convert --dtype bf16) of every family against the
# same model in F32: logits within 2% (max |bf16 - f32| <= 0.02 max |f32|)
# and the same top-1 class, on every kernel the CPU has (VT_BF16 forces
# one; a kernel the CPU lacks falls back to the next). The project's
# fixtures always; ../shared's when they are there.
load helper

# The config a model file's metadata holds, as JSON on stdout.
model_config() {
  "$PY" - "$1" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n))["__metadata__"]["config"])
EOF
}

# $1 = got.npy $2 = f32.npy: the 2% bound and equal top-1 per row. With
# TIES=1 a row whose f32 top two lie closer than twice the error may pick
# either (random-weight fixtures of 10 classes have such near-ties: one
# tiny GroupMix's top two are 0.0036 apart, its bf16 error 0.018).
close2() {
  TIES=${TIES:-0} FRAC=${FRAC:-0.02} "$PY" - "$1" "$2" <<'EOF'
import os, sys
import numpy as np
got, want = np.load(sys.argv[1]).astype(np.float64), np.load(sys.argv[2]).astype(np.float64)
got, want = got.reshape(-1, want.shape[-1]), want.reshape(-1, want.shape[-1])
err, bound = np.abs(got - want).max(), float(os.environ["FRAC"]) * np.abs(want).max()
rows = np.arange(len(want))
same = got.argmax(1) == want.argmax(1)
tied = want[rows, got.argmax(1)] >= want.max(1) - 2 * err
ok = same.all() or (os.environ["TIES"] == "1" and (same | tied).all())
top1 = "same" if same.all() else "a near-tie" if ok else "differs"
print(f"max abs err {err:.3g} bound {bound:.3g} top-1 {top1}")
sys.exit(0 if err <= bound and ok and np.isfinite(got).all() else 1)
EOF
}

# $1 = model (F32), $2 = model (BF16), $3 = input.npy: every kernel
check_pair() {
  "$BIN/vt-convert" "$3" | "$BIN/vt-classify" -m "$1" --logits 2>/dev/null |
    "$BIN/vt-convert" --to npy -o "$T/f32.npy" -
  for k in portable fma dpbf16 fp16; do
    "$BIN/vt-convert" "$3" | VT_BF16=$k "$BIN/vt-classify" -m "$2" --logits 2>/dev/null |
      "$BIN/vt-convert" --to npy -o "$T/bf16.npy" -
    frac=0.02
    [ "$k" != dpbf16 ] || frac=${DPBF16_FRAC:-0.02}
    out=$(FRAC=$frac close2 "$T/bf16.npy" "$T/f32.npy") || { echo "# $2 ($k): $out" >&3; return 1; }
    [ -z "$VT_BF16_SHOW" ] || echo "# $k: $out" >&3
  done
}

@test "bf16: the project's vit fixtures within 2% of f32, same top-1, every kernel" {
  have_numpy || skip "no /usr/bin/python3 with numpy"
  for m in tiny dist; do
    model_config "$FIX/vit/$m.safetensors" > "$T/cfg.json"
    arch=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["arch"])' "$T/cfg.json")
    "$BIN/vt-convert" --arch "$arch" --config "$T/cfg.json" "$FIX/vit/$m.safetensors" \
      --dtype bf16 -o "$T/$m-bf16.safetensors"
    "$BIN/vt-convert" --info "$T/$m-bf16.safetensors" | grep -q 'blocks.0.mlp.fc1.weight *BF16'
    check_pair "$FIX/vit/$m.safetensors" "$T/$m-bf16.safetensors" "$FIX/vit/$m-input.npy"
  done
}

# $1 = a refgen fixture directory (checkpoint.pth, meta.json; input.npy or
# not): its F32 and BF16 model files against each other, on its input or
# on a seeded normal [batch,3,size,size] one
check_fixture() {
  local fx=$1 variant
  variant=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["variant"])' "$fx/meta.json")
  "$BIN/vt-convert" --arch "$variant" --config "$fx/meta.json" "$fx/checkpoint.pth" -o "$T/f32.safetensors"
  "$BIN/vt-convert" --arch "$variant" --config "$fx/meta.json" "$fx/checkpoint.pth" \
    --dtype bf16 -o "$T/bf16.safetensors"
  if [ -f "$fx/input.npy" ]; then
    cp "$fx/input.npy" "$T/input.npy"
  else
    "$PY" - "$fx/meta.json" "$T/input.npy" <<'EOF'
import json, sys
import numpy as np
m = json.load(open(sys.argv[1]))
x = np.random.default_rng(5).standard_normal((m.get("batch", 1), 3, m["size"], m["size"]))
np.save(sys.argv[2], x.astype(np.float32))
EOF
  fi
  [ -z "$VT_BF16_SHOW" ] || echo "# $fx" >&3
  # DeiT's fixtures must keep their top-1 outright (the issue's bf16 goal)
  local ties=1 dp=0.02
  case $(basename "$fx") in vit-*) ties=0 ;; esac
  # vdpbf16ps rounds the activations to bf16 too; a tiny GroupMix (BN
  # folded into 3-channel convs) then drifts 2.6% (full-size: 1.4-1.7%)
  case $(basename "$fx") in groupmix*) dp=0.03 ;; esac
  DPBF16_FRAC=$dp TIES=$ties check_pair "$T/f32.safetensors" "$T/bf16.safetensors" "$T/input.npy"
}

@test "bf16: the project's fixtures of every other family within 2% of f32 (GroupMix on dpbf16 3%), same top-1, every kernel" {
  have_numpy || skip "no /usr/bin/python3 with numpy"
  n=0
  for fx in "$FIX"/*/ "$FIX"/dge/*/; do
    [ -f "$fx/meta.json" ] && [ -f "$fx/checkpoint.pth" ] || continue
    check_fixture "$fx"
    n=$((n + 1))
  done
  [ "$n" -ge 9 ]
}

@test "bf16: ../shared fixtures of every family within 2% of f32 (GroupMix on dpbf16 3%), same top-1, every kernel" {
  have_shared || skip "../shared is not present"
  have_numpy || skip "no /usr/bin/python3 with numpy"
  n=0
  for fx in "$VT_SHARED"/conformance/fixtures/*-*/; do
    [ -f "$fx/meta.json" ] && [ -f "$fx/checkpoint.pth" ] || continue
    check_fixture "$fx"
    n=$((n + 1))
  done
  [ "$n" -ge 6 ]
}
