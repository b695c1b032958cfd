# bench/lib.sh - sourced by bench/vs-pytorch.sh and bench/startup.sh, from
# the project root.
PY=/usr/bin/python3
VT_SHARED=${VT_SHARED:-../shared}
export VT_SHARED

progress() {   # a progress line on stderr, only when it is a terminal
  [ -t 2 ] && printf '\r\033[K%s' "$*" >&2
  return 0
}
progress_done() { [ -t 2 ] && printf '\r\033[K' >&2; return 0; }

selected() {   # "family variant" [PATTERN...]: no patterns, or one matches
  line=$1; shift
  [ $# -eq 0 ] && return 0
  for p in "$@"; do
    case $line in *"$p"*) return 0;; esac
  done
  return 1
}

models() {     # [PATTERN...]: "family variant" lines of bench/models
  sed 's/#.*//' bench/models | while read -r fam var _; do
    if [ -n "$fam" ] && selected "$fam $var" "$@"; then echo "$fam $var"; fi
  done
}

need_refs() {
  : "${VT_REFS:?set VT_REFS to the folder of unpacked official repositories (bench/README.md)}"
  export VT_REFS
  [ -f "$VT_SHARED/conformance/refgen.py" ] ||
    { echo "${0##*/}: no $VT_SHARED/conformance/refgen.py (set VT_SHARED)" >&2; exit 2; }
  [ -x bin/vt-bench ] || make -s all
}

# OpenBLAS kernels for the PyTorch processes, chosen as vtkit chooses its
# own (lib/ops/pool.c): Debian 12's OpenBLAS 0.3.21 does not know recent
# Xeons and falls back to generic SSE3 kernels, so both sides get the best
# core type the CPU runs, unless OPENBLAS_CORETYPE is set already.
torch_coretype() {
  if [ -n "${OPENBLAS_CORETYPE:-}" ]; then echo "$OPENBLAS_CORETYPE"; return; fi
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { case $flags in *" $1 "*) return 0;; esac; return 1; }
  if has avx512f && has avx512bw && has avx512vl && has avx512dq; then echo SkylakeX
  elif has avx2 && has fma; then echo Haswell
  fi
}

# family variant seed dir: the authors' model with refgen's seeded weights
# (checkpoint.pth, meta.json) and the same weights as a vtkit model file
# (model.safetensors); made once, kept in dir.
prepare() {
  if [ -s "$4/model.safetensors" ]; then return 0; fi
  mkdir -p "$4"
  if ! "$PY" "$VT_SHARED/conformance/refgen.py" "$1" "$2" --out "$4" --seed "$3" --batch 1 \
       > "$4/prepare.log" 2>&1 </dev/null ||
     ! bin/vt-convert --arch "$2" --config "$4/meta.json" "$4/checkpoint.pth" \
       -o "$4/model.safetensors" >> "$4/prepare.log" 2>&1 </dev/null; then
    echo "${0##*/}: $2: could not prepare the model:" >&2
    cat "$4/prepare.log" >&2
    return 1
  fi
}

# model_file DIR DTYPE: the prepared model file of that dtype
model_file() {
  if [ "$2" = f32 ]; then echo "$1/model.safetensors"; else echo "$1/model-$2.safetensors"; fi
}

# prepare_dtype VARIANT DTYPE DIR: the prepared model again in DTYPE
prepare_dtype() {
  case $2 in
    f32) return 0;;
    bf16|f16) ;;
    *) echo "${0##*/}: unknown dtype $2 (f32, bf16, f16)" >&2; return 1;;
  esac
  f=$(model_file "$3" "$2")
  [ -s "$f" ] && return 0
  bin/vt-convert --arch "$1" --config "$3/meta.json" "$3/checkpoint.pth" --dtype "$2" \
    -o "$f" >> "$3/prepare.log" 2>&1 </dev/null ||
    { echo "${0##*/}: $1: could not convert to $2:" >&2; cat "$3/prepare.log" >&2; return 1; }
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
