#!/bin/sh
# vtkit next to tuned PyTorch on the same models: the same weights (refgen's
# seeded checkpoint, converted for vtkit), the same input (vt-bench's), the
# same threads and batch; process after process, interleaved, in rounds.
#
#   VT_REFS=DIR bench/vs-pytorch.sh [-t T] [-b B[,B...]] [-d D[,D...]] [-r RUNS] [-n ROUNDS]
#                                   [-w DIR] [--list] [PATTERN...]
#
#   -t T       threads on both sides (2)
#   -b B,...   batch sizes (1)
#   -r RUNS    timed forward passes per process, after one warm-up (10)
#   -n ROUNDS  rounds; each round runs every model once per side (3)
#   -d D,...   vtkit model-file dtypes: f32 (default), bf16, f16; each is
#              a row against the same PyTorch float32 runs
#   -w DIR     keep the prepared models and raw results in DIR and reuse
#              them next time (default: a temporary folder, removed)
#   --list     the models, then stop
#   PATTERN    only models whose "family variant" contains one of them
#
# Models: bench/models (a line per model). vtkit: vt-bench on the model
# file. PyTorch: bench/torch_bench.py, the authors' code from $VT_REFS,
# tuned two ways, the faster reported as "tuned PyTorch":
#   omp   OMP_WAIT_POLICY=PASSIVE, torch.set_num_threads(T), OpenBLAS T threads
#   blas  torch.set_num_threads(1), OpenBLAS T threads
# Both with OPENBLAS_CORETYPE as vtkit picks it (bench/lib.sh).
#
# stdout: one row per model and batch: params, GMACs, ms per image of each
# side (median over rounds of each process's median), PyTorch/vtkit, peak
# RSS of each process. The raw lines are kept in DIR/vs-pytorch.raw.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

threads=2 batches=1 runs=10 rounds=3 work= list= seed=0 dtypes=f32
while [ $# -gt 0 ]; do
  case $1 in
    -t) threads=$2; shift 2;;
    -b) batches=$2; shift 2;;
    -r) runs=$2; shift 2;;
    -n) rounds=$2; shift 2;;
    -d) dtypes=$2; shift 2;;
    -w) work=$2; shift 2;;
    --list) list=1; shift;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    -*) echo "vs-pytorch: unknown option $1 (see --help)" >&2; exit 2;;
    *) break;;
  esac
done
if [ -n "$list" ]; then models "$@"; exit 0; fi
[ -n "$(models "$@")" ] || { echo "vs-pytorch: no model matches" >&2; exit 2; }
need_refs
if [ -z "$work" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/vs-pytorch.XXXXXX")
  trap 'rm -rf "$work"' EXIT INT TERM
fi
mkdir -p "$work"
raw=$work/vs-pytorch.raw
: > "$raw"
coretype=$(torch_coretype)

models "$@" | while read -r fam var; do
  progress "vs-pytorch: preparing $var"
  prepare "$fam" "$var" "$seed" "$work/$var-seed$seed" || exit 1
  for d in $(echo "$dtypes" | tr ',' ' '); do
    prepare_dtype "$var" "$d" "$work/$var-seed$seed" || exit 1
  done
done

torch_run() {   # tune round variant family batch: one PyTorch process
  tune=$1 r=$2 v=$3 f=$4 b=$5
  case $tune in
    omp) set -- env OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS="$threads"; tt=$threads;;
    blas) set -- env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS="$threads"; tt=1;;
  esac
  [ -n "$coretype" ] && set -- "$@" OPENBLAS_CORETYPE="$coretype"
  out=$("$@" "$PY" bench/torch_bench.py "$f" "$v" --batch "$b" --threads "$tt" --runs "$runs" \
        --seed "$seed" </dev/null 2>"$work/torch.err") ||
    { echo "vs-pytorch: $v: PyTorch failed:" >&2; cat "$work/torch.err" >&2; return 1; }
  echo "round=$r tune=$tune $out" >> "$raw"
}

# One untimed process per side first: the first process of a run was seen
# 30-50% slow throughout (a cold page cache, CPU frequency, the host), and
# it would otherwise be the first model's only sample in a 1-round table.
models "$@" | head -n 1 | while read -r fam var; do
  progress "vs-pytorch: warming up on $var"
  bin/vt-bench -m "$(model_file "$work/$var-seed$seed" f32)" -t "$threads" --runs 2 \
    </dev/null >/dev/null || exit 1
  "$PY" bench/torch_bench.py "$fam" "$var" --batch 1 --threads "$threads" --runs 2 \
    --seed "$seed" </dev/null >/dev/null 2>"$work/torch.err" || true
done

for r in $(seq 1 "$rounds"); do
  models "$@" | while read -r fam var; do
    for b in $(echo "$batches" | tr ',' ' '); do
      progress "vs-pytorch: round $r/$rounds: $var, batch $b"
      for d in $(echo "$dtypes" | tr ',' ' '); do
        out=$(bin/vt-bench -m "$(model_file "$work/$var-seed$seed" "$d")" -b "$b" \
              -t "$threads" --runs "$runs" --format json </dev/null) || exit 1
        echo "round=$r impl=vtkit dtype=$d variant=$var $out" >> "$raw"
      done
      # which PyTorch tuning goes first alternates between rounds
      if [ $((r % 2)) = 1 ]; then order="omp blas"; else order="blas omp"; fi
      for tune in $order; do torch_run "$tune" "$r" "$var" "$fam" "$b" || exit 1; done
    done
  done
done
progress_done
"$PY" bench/summarize.py vs-pytorch "$raw"
