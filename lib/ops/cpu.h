/* cpu.h - which kernels this CPU can run. Ops carry AVX-512 (and
 * AVX512-BF16, AVX512-FP16) kernels compiled with target attributes next to portable C,
 * and pick one at run time from cpuid; the build itself stays portable
 * x86-64 (or not x86 at all: then only the portable code exists). */
#ifndef VT_OPS_CPU_H
#define VT_OPS_CPU_H

#if defined(__GNUC__) && defined(__x86_64__)
#define VT_HAVE_X86_KERNELS 1
/* tune=: with the build's -mtune=generic, GCC 12 keeps register tiles of
 * more than ~19 zmm registers partly on the stack */
#define VT_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,tune=skylake-avx512")))
#define VT_AVX512BF16 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16,tune=skylake-avx512")))
#define VT_AVX512FP16 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16,avx512fp16," \
                          "tune=skylake-avx512")))
#endif

/* Plain C loops the compiler vectorizes, compiled for AVX-512 and AVX2 as
 * well as the build's target and picked at load time (ifunc). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(__SANITIZE_ADDRESS__)
#define VT_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VT_CLONES
#endif

enum {
    VT_CPU_PORTABLE = 0,    /* plain C (and OpenBLAS) */
    VT_CPU_AVX512 = 1,      /* AVX-512 F, BW, DQ, VL */
    VT_CPU_AVX512BF16 = 2,  /* and AVX512_BF16 (vdpbf16ps) */
    VT_CPU_AVX512FP16 = 3,  /* and AVX512_FP16 (vfmadd231ph) */
};

/* The best level this CPU runs, capped by vt_cpu_cap() and by the
 * environment (VT_CPU=portable, avx512 or avx512bf16). */
int vt_cpu(void);
/* Cap the level (tests run every path on one machine); -1 uncaps. */
void vt_cpu_cap(int level);

#endif
