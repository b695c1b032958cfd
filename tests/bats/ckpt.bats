#!/usr/bin/env bats
# Checkpoint import through vt-convert: --info against torch.load (when
# Debian's python3-torch is present), hostile files, conversion, --random.

setup() {
  : "${VT_ROOT:=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}"
  : "${VT_BIN:=$VT_ROOT/bin}"
  FX=$VT_ROOT/tests/fixtures/ckpt
  TMP=$(mktemp -d)
}

teardown() { rm -rf "$TMP"; }

have_torch() { /usr/bin/python3 -c 'import torch' 2>/dev/null; }

# torch.load's view: the state dict vtkit's default picks (timm's EMA set,
# else "model", ...), "module." stripped; "name<TAB>DTYPE<TAB>[shape]".
torch_list() {
  /usr/bin/python3 - "$1" <<'PY'
import sys, torch
DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
      torch.uint8: "U8", torch.bool: "BOOL"}
ck = torch.load(sys.argv[1], map_location="cpu")
sd = ck
for _ in range(3):
    if all(torch.is_tensor(v) for v in sd.values()):
        break
    sd = next(sd[k] for k in ("state_dict_ema", "model", "state_dict", "module", "model_ema")
              if isinstance(sd.get(k), dict))
for k, v in sd.items():
    k = k[7:] if k.startswith("module.") else k
    print("%s\t%s\t[%s]" % (k, DT[v.dtype], ",".join(str(d) for d in v.shape)))
PY
}

@test "ckpt: --info lists what torch.load gives, for every conformance checkpoint" {
  [ -n "${VT_SHARED:-}" ] || skip "VT_SHARED not set"
  have_torch || skip "python3-torch not installed"
  n=0
  for ck in "$VT_SHARED"/conformance/fixtures/*/checkpoint.pth; do
    torch_list "$ck" > "$TMP/torch.txt"
    "$VT_BIN/vt-convert" --info "$ck" | grep -v '^checkpoint:' > "$TMP/vt.txt"
    diff -u "$TMP/torch.txt" "$TMP/vt.txt" || { echo "differs: $ck"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 0 ]
}

@test "ckpt: --info lists what torch.load gives, for the small fixtures" {
  have_torch || skip "python3-torch not installed"
  for f in top model model_ema timm module state_dict_module dtypes views param numpy proto4 deflated zip64; do
    torch_list "$FX/$f.pth" > "$TMP/torch.txt"
    "$VT_BIN/vt-convert" --info "$FX/$f.pth" | grep -v '^checkpoint:' > "$TMP/vt.txt"
    diff -u "$TMP/torch.txt" "$TMP/vt.txt" || { echo "differs: $f"; return 1; }
  done
}

@test "ckpt: a pickle calling os.system is refused and runs nothing" {
  pwned=/tmp/vtkit-ckpt-pwned
  rm -f "$pwned"
  for f in h_system_top h_system_entry h_system_storage h_system_proto4 h_eval; do
    run "$VT_BIN/vt-convert" --info "$FX/$f.pth"
    [ "$status" -ne 0 ]
    [[ "$output" == *"system"* || "$output" == *"eval"* ]]
    [[ "$output" == *"refusing"* ]]
  done
  run "$VT_BIN/vt-convert" "$FX/h_system_entry.pth" --arch deit_tiny_patch16_224 -o "$TMP/m.safetensors"
  [ "$status" -ne 0 ]
  [[ "$output" == *"needs posix.system to build a tensor"* ]]
  [ ! -e "$TMP/m.safetensors" ]
  [ ! -e "$pwned" ]
}

@test "ckpt: legacy torch.save files get a clear message" {
  run "$VT_BIN/vt-convert" "$FX/h_legacy.pth" --arch deit_tiny_patch16_224 -o "$TMP/m.safetensors"
  [ "$status" -ne 0 ]
  [[ "$output" == *"legacy (pre-1.6) torch.save format"* ]]
}

@test "ckpt: the vit conformance checkpoints convert with --arch vit --config meta.json" {
  [ -n "${VT_SHARED:-}" ] || skip "VT_SHARED not set"
  for d in "$VT_SHARED"/conformance/fixtures/vit-*/; do
    "$VT_BIN/vt-convert" "$d/checkpoint.pth" --arch vit --config "$d/meta.json" -o "$TMP/m.safetensors"
    [ -s "$TMP/m.safetensors" ]
  done
}

@test "ckpt: .pth and .safetensors of the same weights give identical model files but for metadata" {
  cfg=$TMP/cfg.json
  /usr/bin/python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["config"]))' \
    "$FX/vit_rt.json" > "$cfg" 2>/dev/null || skip "python3 missing"
  "$VT_BIN/vt-convert" "$FX/vit_rt.pth" --arch deit_tiny_patch16_224 --config "$cfg" -o "$TMP/a.safetensors"
  "$VT_BIN/vt-convert" "$FX/vit_rt.safetensors" --arch deit_tiny_patch16_224 --config "$cfg" -o "$TMP/b.safetensors"
  # the tensor data is the tail of each file, after the header
  sa=$(stat -c %s "$TMP/a.safetensors"); sb=$(stat -c %s "$TMP/b.safetensors")
  ha=$(od -An -tu8 -N8 "$TMP/a.safetensors" | tr -d ' '); hb=$(od -An -tu8 -N8 "$TMP/b.safetensors" | tr -d ' ')
  [ $((sa - ha)) -eq $((sb - hb)) ]
  cmp <(tail -c $((sa - 8 - ha)) "$TMP/a.safetensors") <(tail -c $((sb - 8 - hb)) "$TMP/b.safetensors")
}

@test "ckpt: --random is deterministic and says so" {
  "$VT_BIN/vt-convert" --arch deit_tiny_patch16_224 --random --seed 3 -o "$TMP/r1.safetensors"
  "$VT_BIN/vt-convert" --arch deit_tiny_patch16_224 --random --seed 3 -o "$TMP/r2.safetensors"
  "$VT_BIN/vt-convert" --arch deit_tiny_patch16_224 --random --seed 4 -o "$TMP/r3.safetensors"
  cmp <(tail -c 100000 "$TMP/r1.safetensors") <(tail -c 100000 "$TMP/r2.safetensors")
  ! cmp -s <(tail -c 100000 "$TMP/r1.safetensors") <(tail -c 100000 "$TMP/r3.safetensors")
  head -c 4096 "$TMP/r1.safetensors" | grep -q '"random":"1"'
  head -c 4096 "$TMP/r1.safetensors" | grep -q '"source":"random seed 3"'
}
