/* cpu.c - the kernel level this CPU runs (see cpu.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cpu.h"

static atomic_int detected = -1, cap = -1;

static int detect(void)
{
    int level = VT_CPU_PORTABLE;
#ifdef VT_HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("fma"))
        level = VT_CPU_AVX512;
    if (level == VT_CPU_AVX512 && __builtin_cpu_supports("avx512bf16"))
        level = VT_CPU_AVX512BF16;
    if (level == VT_CPU_AVX512BF16 && __builtin_cpu_supports("avx512fp16"))
        level = VT_CPU_AVX512FP16;
#endif
    const char *env = getenv("VT_CPU");
    if (env && strcmp(env, "portable") == 0)
        level = VT_CPU_PORTABLE;
    else if (env && strcmp(env, "avx512") == 0 && level > VT_CPU_AVX512)
        level = VT_CPU_AVX512;
    else if (env && strcmp(env, "avx512bf16") == 0 && level > VT_CPU_AVX512BF16)
        level = VT_CPU_AVX512BF16;
    return level;
}

int vt_cpu(void)
{
    int d = atomic_load_explicit(&detected, memory_order_relaxed);
    if (d < 0)
        atomic_store(&detected, d = detect());
    int c = atomic_load_explicit(&cap, memory_order_relaxed);
    return c >= 0 && c < d ? c : d;
}

void vt_cpu_cap(int level)
{
    atomic_store(&cap, level);
}
