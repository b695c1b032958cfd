/* half.h - the 16-bit float formats as bits: F16 (IEEE binary16) and
 * BF16 widen exactly; narrowing rounds to nearest, ties to even, like
 * PyTorch's .half() and .bfloat16(). Used by the checkpoint converter and
 * by the packed linear layers (lib/ops/gemm.c). */
#ifndef VT_OPS_HALF_H
#define VT_OPS_HALF_H

#include <stdint.h>
#include <string.h>

static inline float vt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | man << 13;            /* inf, nan */
    } else if (exp) {
        u = sign | (exp + 112) << 23 | man << 13;       /* normal */
    } else if (man) {                                   /* subnormal: normalise */
        int e = 113;
        while (!(man & 0x400)) { man <<= 1; e--; }
        u = sign | (uint32_t)e << 23 | (man & 0x3ff) << 13;
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t vt_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));  /* nan */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);   /* rounds to inf */
    if (a < 0x38800000u) {          /* result is subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;           /* below half the least */
        int shift = 126 - (int)(a >> 23);                     /* 14..24 */
        uint32_t man = (a & 0x7fffff) | 0x800000;
        uint32_t q = man >> shift, rest = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = a - 0x38000000u;   /* rebias exponent 127 -> 15 */
    uint32_t rest = q & 0x1fff;
    q >>= 13;
    if (rest > 0x1000 || (rest == 0x1000 && (q & 1))) q++;  /* may carry into exp */
    return (uint16_t)(sign | q);
}

static inline float vt_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t vt_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  /* quiet nan */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

#endif
