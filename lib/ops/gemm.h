/* gemm.h - which kernel multiplies BF16-packed weights (lib/ops/gemm.c):
 * for tests, which run each one, and for tuning. */
#ifndef VT_OPS_GEMM_H
#define VT_OPS_GEMM_H

#include "ops.h"

enum {
    VT_BF16_PORTABLE = 0,   /* widen a panel block to f32, OpenBLAS */
    VT_BF16_FMA = 1,        /* widen in registers, f32 FMA tile (AVX-512F) */
    VT_BF16_DPBF16 = 2,     /* vdpbf16ps tile, x rounded to bf16 (AVX512_BF16) */
    VT_BF16_FP16 = 3,       /* weights packed as fp16, vfmadd231ph tile, x
                               rounded to fp16, sums widened to f32 every
                               few steps (AVX512_FP16) */
};

/* The kernel BF16 packs run on: the one forced below, else VT_BF16 from
 * the environment, else the fastest of fp16, dpbf16 and fma timed once
 * when the CPU has more than one; never one the CPU (or vt_cpu_cap)
 * lacks. A weight packed while the kernel is fp16 is packed as fp16 and
 * runs the fp16 kernel (portable if the CPU is capped below it later);
 * other packs run the kernel chosen at the call (dpbf16 for fp16). */
int vt_gemm_bf16_kernel(void);
/* Force a kernel (tests); -1 returns to the default. */
void vt_gemm_bf16_force(int kernel);

#endif
