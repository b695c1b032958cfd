/* gemm.h - which kernel multiplies BF16-packed weights (lib/ops/gemm.c):
 * for tests, which run each one, and for tuning. */
#ifndef VT_OPS_GEMM_H
#define VT_OPS_GEMM_H

#include "ops.h"

enum {
    VT_BF16_PORTABLE = 0,   /* widen a panel block to f32, OpenBLAS */
    VT_BF16_FMA = 1,        /* widen in registers, f32 FMA tile (AVX-512F) */
    VT_BF16_DPBF16 = 2,     /* vdpbf16ps tile, x rounded to bf16 (AVX512_BF16) */
};

/* The kernel BF16 packs run on: the one forced below, else VT_BF16 from
 * the environment, else the faster of dpbf16 and fma timed once when the
 * CPU has both; never one the CPU (or vt_cpu_cap) lacks. */
int vt_gemm_bf16_kernel(void);
/* Force a kernel (tests); -1 returns to the default. */
void vt_gemm_bf16_force(int kernel);

#endif
