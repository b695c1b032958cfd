#!/bin/sh
# Full-size conformance against the authors' PyTorch code: for each run in
# the list, refgen.py builds the official model with seeded random weights
# and writes its checkpoint, input and logits; check.sh converts that
# checkpoint with vt-convert, classifies the input with vt-classify and
# compares the logits. Runs go one at a time (each is CPU heavy), each in a
# scratch folder under $TMPDIR that is deleted when the run ends
# (checkpoints reach 350 MB).
#
#   VT_REFS=DIR bench/refgen-check.sh [--seed N] [--batch B] [--bin DIR] [--list] [PATTERN...]
#
# PATTERN: only runs whose "family variant" contains one of them.
# --seed/--batch replace the list's values; --bin: the binaries to check
# (default bin/); --list prints the runs and stops.
# VT_REFS: the official repositories unpacked (bench/README.md).
# VT_SHARED: ../shared (default), for conformance/refgen.py and check.sh.
#
# Prints one line per run on stdout:
#   family variant seed batch max_abs_err bound top1 result seconds
# and each failing run's full output on stderr. Exit 1 if any run failed.
set -eu
cd "$(dirname "$0")/.."

# family variant seed batch
RUNS='
sgformer sgformer_m 7 1
sgformer sgformer_m 7 2
sgformer sgformer_s 11 1
sgformer sgformer_s 11 2
groupmix groupmixformer_m 7 1
groupmix groupmixformer_m 7 2
groupmix groupmixformer_t 7 1
groupmix groupmixformer_t 7 2
groupmix groupmixformer_s 7 1
groupmix groupmixformer_s 7 2
pale pale_tiny 7 1
pale pale_tiny 7 2
pale pale_small 7 1
pale pale_small 7 2
pale pale_base 7 1
pale pale_base 7 2
stvit swin_tiny_patch4_window7_224 7 1
stvit swin_tiny_patch4_window7_224 7 2
stvit swin_small_patch4_window7_224 7 1
stvit swin_base_patch4_window7_224 7 1
stvit stvit_r_swin_t 7 1
stvit stvit_r_swin_t 7 2
stvit stvit_r_swin_s 7 1
stvit stvit_r_swin_s 7 2
stvit stvit_r_swin_b 7 1
stvit stvit_r_swin_b 7 2
vit deit_small_patch16_224 7 1
vit deit_small_patch16_224 7 2
vit deit_base_patch16_224 7 1
vit deit_base_patch16_224 7 2
groupmix groupmixformer_b 7 1
groupmix groupmixformer_l 7 1
'

seed= batch= bin=bin list=
while [ $# -gt 0 ]; do
  case $1 in
    --seed) seed=$2; shift 2;;
    --batch) batch=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --list) list=1; shift;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0;;
    -*) echo "refgen-check: unknown option $1" >&2; exit 2;;
    *) break;;
  esac
done

shared=${VT_SHARED:-../shared}
conf=$shared/conformance
py=/usr/bin/python3

selected() {   # "family variant" matches a PATTERN argument, or there are none
  [ $# -eq 1 ] && return 0
  line=$1; shift
  for p in "$@"; do
    case $line in *"$p"*) return 0;; esac
  done
  return 1
}

if [ -z "$list" ]; then
  : "${VT_REFS:?set VT_REFS to the folder of unpacked official repositories (bench/README.md)}"
  [ -f "$conf/refgen.py" ] || { echo "refgen-check: no $conf/refgen.py (set VT_SHARED)" >&2; exit 2; }
  [ -x "$bin/vt-classify" ] || make -s all
fi
scratch=$(mktemp -d "${TMPDIR:-/tmp}/refgen-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM

if [ -n "$list" ]; then
  printf '%-9s %-30s %4s %5s\n' family variant seed batch
else
  printf '%-9s %-30s %4s %5s %10s %10s %5s %6s %7s\n' family variant seed batch max_err bound top1 result seconds
fi
echo "$RUNS" | while read -r fam var s b; do
  [ -n "$fam" ] || continue
  selected "$fam $var" "$@" || continue
  s=${seed:-$s} b=${batch:-$b}
  [ "$fam $var $s $b" != "${prev:-}" ] || continue    # --seed/--batch made it a repeat
  prev="$fam $var $s $b"
  if [ -n "$list" ]; then
    printf '%-9s %-30s %4s %5s\n' "$fam" "$var" "$s" "$b"
    continue
  fi
  dir=$scratch/$var-$s-$b
  t0=$(date +%s)
  if ! VT_REFS=$VT_REFS $py "$conf/refgen.py" "$fam" "$var" --out "$dir" --seed "$s" --batch "$b" \
       > "$scratch/log" 2>&1; then
    printf '%-9s %-30s %4s %5s %10s %10s %5s %6s %7s\n' "$fam" "$var" "$s" "$b" - - - refgen $(($(date +%s) - t0))
    cat "$scratch/log" >&2
    rm -rf "$dir"
    echo 1 > "$scratch/failed"
    continue
  fi
  out=$("$conf/check.sh" "$dir" "$bin" 2>&1) && result=ok || result=FAIL
  # check.sh's last line: "NAME: ok   max_abs_err E (bound B) cosine C top1 a/b ..."
  last=$(printf '%s\n' "$out" | tail -1)
  err=$(printf '%s\n' "$last" | sed -n 's/.*max_abs_err \([^ ]*\).*/\1/p')
  bound=$(printf '%s\n' "$last" | sed -n 's/.*(bound \([^)]*\)).*/\1/p')
  top1=$(printf '%s\n' "$last" | sed -n 's/.* top1 \([^ ]*\).*/\1/p')
  printf '%-9s %-30s %4s %5s %10s %10s %5s %6s %7s\n' "$fam" "$var" "$s" "$b" "${err:--}" "${bound:--}" \
    "${top1:--}" "$result" $(($(date +%s) - t0))
  [ "$result" = ok ] || { printf '%s\n' "$out" >&2; echo 1 > "$scratch/failed"; }
  rm -rf "$dir"
done
# the loop runs in a subshell (a pipe): failures are left in a file
[ ! -e "$scratch/failed" ]
