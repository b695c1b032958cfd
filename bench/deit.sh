#!/bin/sh
# DeiT-S and DeiT-B at batch 1 and 8 on 2 threads: vtkit next to tuned
# PyTorch (timm's model), interleaved process by process, median of each.
#   VT_REFS=/tmp/refs bench/deit.sh [ROUNDS]
# VT_REFS: the timm repository unpacked (../shared/conformance/README.md).
# PyTorch is run two tuned ways and the better one is reported:
#   omp-passive: torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE
#   blas2:       torch.set_num_threads(1), OPENBLAS_NUM_THREADS=2
# Both get OPENBLAS_CORETYPE=SkylakeX: Debian's OpenBLAS 0.3.21 does not
# know this Xeon and would use its generic SSE3 kernels (vtkit makes the same
# choice itself in lib/ops/pool.c), so the baseline is not handicapped.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
T=2
py=/usr/bin/python3
: "${VT_REFS:?set VT_REFS to the folder holding huggingface+pytorch-image-models}"
make -s all lib/libvt.a
mkdir -p build/bench
cc -O2 -std=c11 -D_GNU_SOURCE -Ilib -I/usr/include/x86_64-linux-gnu/openblas-pthread \
  bench/vit_bench.c lib/libvt.a -lopenblas -lcjson -ljpeg -lpng -lz -lm -pthread -o build/bench/vit_bench
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bin/vt-classify --version >/dev/null
./build/bench/vit_bench --peak 1
./build/bench/vit_bench --peak $T
for v in deit_small_patch16_224 deit_base_patch16_224; do
  bin/vt-convert --arch $v --random -o "$tmp/$v.safetensors" 2>/dev/null
done
gflop() { case $1 in deit_small*) echo 9.2006;; deit_base*) echo 35.1333;; esac; }
for v in deit_small_patch16_224 deit_base_patch16_224; do
  for b in 1 8; do
    it=$((b == 1 ? 20 : 5)); [ $v = deit_base_patch16_224 ] && it=$((b == 1 ? 10 : 3))
    g=$(gflop $v)
    for r in $(seq 1 "$rounds"); do
      ./build/bench/vit_bench "$tmp/$v.safetensors" $b $it $T "$g" | sed "s/^/model=$v round=$r /"
      OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE $py bench/torch_vit.py $v $b $it $T "$g" | sed "s/^/model=$v round=$r tune=omp-passive /"
      OPENBLAS_CORETYPE=SkylakeX OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=$T $py bench/torch_vit.py $v $b $it 1 "$g" | sed "s/^/model=$v round=$r tune=blas2 /"
    done
  done
done
