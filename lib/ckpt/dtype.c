/* dtype.c - element conversions between the floating dtypes (the 16-bit
 * ones as lib/ops/half.h converts them). Sources may be unaligned
 * (safetensors offsets). */
#include <string.h>
#include "internal.h"
#include "ops/half.h"

int vt_dtype_is_float(vt_dtype t)
{
    return t == VT_F32 || t == VT_F16 || t == VT_BF16 || t == VT_F64;
}

static double get(const uint8_t *p, vt_dtype t)
{
    uint16_t h;
    float f;
    double d;
    switch (t) {
    case VT_F16: memcpy(&h, p, 2); return vt_f16_to_f32(h);
    case VT_BF16: memcpy(&h, p, 2); return vt_bf16_to_f32(h);
    case VT_F32: memcpy(&f, p, 4); return f;
    default: memcpy(&d, p, 8); return d;
    }
}

static void put(uint8_t *p, vt_dtype t, double v)
{
    uint16_t h;
    float f = (float)v;
    switch (t) {
    case VT_F16: h = vt_f32_to_f16(f); memcpy(p, &h, 2); break;
    case VT_BF16: h = vt_f32_to_bf16(f); memcpy(p, &h, 2); break;
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
