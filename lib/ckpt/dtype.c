/* dtype.c - element conversions between the floating dtypes: F16 and BF16
 * widen exactly; narrowing rounds to nearest, ties to even, like PyTorch's
 * .half() and .bfloat16(). Sources may be unaligned (safetensors offsets). */
#include <string.h>
#include "internal.h"

int vt_dtype_is_float(vt_dtype t)
{
    return t == VT_F32 || t == VT_F16 || t == VT_BF16 || t == VT_F64;
}

static float f16_to_f32(uint16_t h)
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

static uint16_t f32_to_f16(float f)
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

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  /* quiet nan */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static double get(const uint8_t *p, vt_dtype t)
{
    uint16_t h;
    float f;
    double d;
    switch (t) {
    case VT_F16: memcpy(&h, p, 2); return f16_to_f32(h);
    case VT_BF16: memcpy(&h, p, 2); return bf16_to_f32(h);
    case VT_F32: memcpy(&f, p, 4); return f;
    default: memcpy(&d, p, 8); return d;
    }
}

static void put(uint8_t *p, vt_dtype t, double v)
{
    uint16_t h;
    float f = (float)v;
    switch (t) {
    case VT_F16: h = f32_to_f16(f); memcpy(p, &h, 2); break;
    case VT_BF16: h = f32_to_bf16(f); memcpy(p, &h, 2); break;
    case VT_F32: memcpy(p, &f, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

void vt_convert_elems(const void *src, vt_dtype st, void *dst, vt_dtype dt, size_t n)
{
    size_t ss = vt_dtype_size(st), ds = vt_dtype_size(dt);
    if (st == dt || !vt_dtype_is_float(st) || !vt_dtype_is_float(dt)) {
        memcpy(dst, src, n * ss);   /* callers only pair equal non-float types */
        return;
    }
    const uint8_t *s = src;
    uint8_t *d = dst;
    /* F64 -> F16/BF16 rounds twice (through F32); only F64 -> F32 is exact. */
    for (size_t i = 0; i < n; i++) put(d + i * ds, dt, get(s + i * ss, st));
}
