#!/bin/sh
# Process start to the first classified image, vtkit against PyTorch: one
# photo, one process per try, interleaved, in rounds. vtkit: vt-classify
# on the model file (map, check, build, decode, preprocess, forward,
# print). PyTorch: bench/torch_startup.py (import torch and the authors'
# code, build the model, torch.load the checkpoint, preprocess with PIL,
# forward). Same weights on both sides (refgen's seeded checkpoint,
# converted for vtkit), so the top-1 classes must agree.
#
#   VT_REFS=DIR bench/startup.sh [-t T] [-n ROUNDS] [-i IMAGE] [-w DIR] [PATTERN...]
#
#   -t T       threads (2)
#   -n ROUNDS  tries per model and side (3)
#   -i IMAGE   the photo (share/samples/tench.jpg)
#   -w DIR     keep the prepared models in DIR and reuse them (default: a
#              temporary folder, removed); shared with bench/vs-pytorch.sh
#   PATTERN    only models of bench/models whose "family variant" holds one
#
# stdout: per model, the median wall time of each side in ms (page cache
# warm after the first round), their ratio, PyTorch's own stages, and
# whether the top-1 classes agree. Raw lines: DIR/startup.raw.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

threads=2 rounds=3 image=share/samples/tench.jpg work= seed=0
while [ $# -gt 0 ]; do
  case $1 in
    -t) threads=$2; shift 2;;
    -n) rounds=$2; shift 2;;
    -i) image=$2; shift 2;;
    -w) work=$2; shift 2;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    -*) echo "startup: unknown option $1 (see --help)" >&2; exit 2;;
    *) break;;
  esac
done
[ -n "$(models "$@")" ] || { echo "startup: no model matches" >&2; exit 2; }
need_refs
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/startup.XXXXXX")
  trap 'rm -rf "$work"' EXIT INT TERM
fi
mkdir -p "$work"
raw=$work/startup.raw
: > "$raw"
coretype=$(torch_coretype)

models "$@" | while read -r fam var; do
  progress "startup: preparing $var"
  prepare "$fam" "$var" "$seed" "$work/$var-seed$seed" || exit 1
done

for r in $(seq 1 "$rounds"); do
  models "$@" | while read -r fam var; do
    dir=$work/$var-seed$seed
    progress "startup: round $r/$rounds: $var"
    t0=$(now_ms)
    top=$(bin/vt-classify -m "$dir/model.safetensors" -t "$threads" -k 1 --format tsv "$image" \
          </dev/null 2>/dev/null) || { echo "startup: $var: vt-classify failed" >&2; exit 1; }
    t1=$(now_ms)
    echo "round=$r impl=vtkit variant=$var threads=$threads top1=$(echo "$top" | cut -f3) ms=$((t1 - t0))" >> "$raw"
    set -- env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS="$threads"
    [ -n "$coretype" ] && set -- "$@" OPENBLAS_CORETYPE="$coretype"
    t0=$(date +%s%N)
    out=$("$@" "$PY" bench/torch_startup.py "$fam" "$var" "$dir/checkpoint.pth" "$dir/meta.json" \
          "$image" --threads "$threads" </dev/null 2>"$work/torch.err") ||
      { echo "startup: $var: PyTorch failed:" >&2; cat "$work/torch.err" >&2; exit 1; }
    # to the moment the result was ready (interpreter teardown not counted)
    wall=$(echo "$out" | sed -n 's/.*wall_ns=\([0-9]*\).*/\1/p')
    echo "round=$r $out ms=$(( (wall - t0) / 1000000 ))" >> "$raw"
  done
done
progress_done
"$PY" bench/summarize.py startup "$raw"
