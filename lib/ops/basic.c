/* basic.c - elementwise ops, softmax and LayerNorm.
 *
 * The loops are written so the compiler vectorizes them without
 * -ffast-math: reductions keep 16 independent partial sums, and exp/erf
 * are inline polynomials instead of libm calls. The hot ones are compiled
 * for AVX-512 and AVX2 as well as the portable target (target_clones), so
 * the portable build still uses the wide units on this machine. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops.h"
#include "ops/cpu.h"
#include "ops/vecmath.h"


#define LANES 16

/* exp(x): range reduction to r in [-ln2/2, ln2/2], Cephes' degree-6
 * polynomial, 2^n put into the exponent bits. Inputs below -87 give
 * ~1e-38 instead of denormals/0, which is what softmax needs. */
static inline __attribute__((always_inline)) float expf_inline(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick (floorf would be a libm
     * call that stops vectorization) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

/* erf(x): Abramowitz & Stegun 7.1.26 refined (max abs error ~1.2e-7 in
 * exact arithmetic), odd symmetry. */
static inline __attribute__((always_inline)) float erff_inline(float x)
{
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float y = 1.061405429f;
    y = y * t - 1.453152027f;
    y = y * t + 1.421413741f;
    y = y * t - 0.284496736f;
    y = y * t + 0.254829592f;
    y = 1.0f - y * t * expf_inline(-a * a);
    return x < 0 ? -y : y;
}

float vt_expf(float x) { return expf_inline(x); }
float vt_erff(float x) { return erff_inline(x); }

/* GCC's -O2 cost model ("very cheap") vectorizes only loops that need no
 * scalar epilogue, so the loops below run in blocks of LANES (unrolled and
 * vectorized whole) followed by a scalar tail. */
VT_CLONES
void vt_add(float *restrict y, const float *restrict x, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            y[i + l] += x[i + l];
    for (; i < n; i++)
        y[i] += x[i];
}

void vt_add_bias(float *restrict x, const float *restrict b, int m, int n)
{
    for (int i = 0; i < m; i++) {
        float *r = x + (size_t)i * n;
        for (int j = 0; j < n; j++)
            r[j] += b[j];
    }
}

/* The A&S erf is accurate to ~1e-7 absolute; for large |x| GELU must be
 * exact (x or 0), which 1 +- erf gives since erf saturates to +-1. */
static inline __attribute__((always_inline)) float gelu1(float v)
{
    return 0.5f * v * (1.0f + erff_inline(v * 0.70710678118654752f));
}

VT_CLONES
void vt_gelu(float *restrict x, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            x[i + l] = gelu1(x[i + l]);
    for (; i < n; i++)
        x[i] = gelu1(x[i]);
}

VT_CLONES
void vt_softmax(float *x, int m, int n)
{
    for (int i = 0; i < m; i++) {
        float *restrict r = x + (size_t)i * n;
        float mx[LANES], sm[LANES];
        int j = 0;
        for (int l = 0; l < LANES; l++)
            mx[l] = -INFINITY, sm[l] = 0;
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++)
                mx[l] = r[j + l] > mx[l] ? r[j + l] : mx[l];
        float M = -INFINITY;
        for (int l = 0; l < LANES; l++)
            M = mx[l] > M ? mx[l] : M;
        for (; j < n; j++)
            M = r[j] > M ? r[j] : M;
        j = 0;
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float e = expf_inline(r[j + l] - M);
                r[j + l] = e;
                sm[l] += e;
            }
        float S = 0;
        for (; j < n; j++) {
            float e = expf_inline(r[j] - M);
            r[j] = e;
            S += e;
        }
        for (int l = 0; l < LANES; l++)
            S += sm[l];
        float inv = 1.0f / S;
        for (j = 0; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++)
                r[j + l] *= inv;
        for (; j < n; j++)
            r[j] *= inv;
    }
}

/* Columns 0..nl-1 (nl <= LANES) of x: max, exp and sum, scale. The sums
 * run in float over chunks of 64 rows and add up in double, so a column of
 * thousands of rows keeps float accuracy. Inlined with nl = LANES for the
 * blocks (vectorized) and with the rest for the tail: each column gets the
 * same arithmetic either way, so its result does not depend on where it
 * lies (GroupMix softmaxes 40-column slices of what was one 160-column
 * block, and must get the same bits). */
static inline __attribute__((always_inline)) void
softmax_col_block(float *x, int m, int ld, int nl)
{
    float mx[LANES], part[LANES], inv[LANES];
    double tot[LANES];
    for (int l = 0; l < nl; l++)
        mx[l] = -INFINITY, part[l] = 0, tot[l] = 0;
    for (int i = 0; i < m; i++) {
        const float *restrict r = x + (size_t)i * ld;
        for (int l = 0; l < nl; l++)
            mx[l] = r[l] > mx[l] ? r[l] : mx[l];
    }
    for (int i = 0; i < m; i++) {
        float *restrict r = x + (size_t)i * ld;
        for (int l = 0; l < nl; l++) {
            float e = expf_inline(r[l] - mx[l]);
            r[l] = e;
            part[l] += e;
        }
        if (i % 64 == 63 || i == m - 1)
            for (int l = 0; l < nl; l++)
                tot[l] += part[l], part[l] = 0;
    }
    for (int l = 0; l < nl; l++)
        inv[l] = (float)(1.0 / tot[l]);
    for (int i = 0; i < m; i++) {
        float *restrict r = x + (size_t)i * ld;
        for (int l = 0; l < nl; l++)
            r[l] *= inv[l];
    }
}

VT_CLONES
void vt_softmax_cols(float *x, int m, int n, int ld)
{
    if (m < 1)
        return;
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        softmax_col_block(x + j, m, ld, LANES);
    /* the tail in vectors of 8 and 4 too (a head of 20 or 24 lanes) */
    if (n - j >= 8)
        softmax_col_block(x + j, m, ld, 8), j += 8;
    if (n - j >= 4)
        softmax_col_block(x + j, m, ld, 4), j += 4;
    if (j < n)
        softmax_col_block(x + j, m, ld, n - j);
}

static inline float sum_lanes(const float *restrict x, int n)
{
    float acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += x[j + l];
    float s = 0;
    for (; j < n; j++)
        s += x[j];
    for (int l = 0; l < LANES; l++)
        s += acc[l];
    return s;
}

#ifdef VT_HAVE_X86_KERNELS
/* LayerNorm rows in registers: the sums as vectors with one tree
 * reduction each (the portable loop adds its 16 partial sums one after
 * another, which for the short rows of the conv hybrids (C = 64..320)
 * costs as much as the passes), the tail under a mask. */
VT_AVX512 static void layernorm_avx512(float *y, const float *x, const float *w,
                                       const float *b, int m, int n, float eps)
{
    int nv = n / 16 * 16;
    __mmask16 mt = (__mmask16)((1u << (n - nv)) - 1);
    for (int i = 0; i < m; i++) {
        const float *r = x + (size_t)i * n;
        float *o = y + (size_t)i * n;
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        int j = 0;
        for (; j + 32 <= nv; j += 32) {
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(r + j));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(r + j + 16));
        }
        if (j < nv)
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(r + j));
        s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(mt, r + nv));
        float mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / (float)n;
        __m512 mv = _mm512_set1_ps(mean);
        s0 = s1 = _mm512_setzero_ps();
        for (j = 0; j + 32 <= nv; j += 32) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(r + j), mv);
            __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(r + j + 16), mv);
            s0 = _mm512_fmadd_ps(d0, d0, s0);
            s1 = _mm512_fmadd_ps(d1, d1, s1);
        }
        if (j < nv) {
            __m512 d = _mm512_sub_ps(_mm512_loadu_ps(r + j), mv);
            s0 = _mm512_fmadd_ps(d, d, s0);
        }
        __m512 dt = _mm512_maskz_sub_ps(mt, _mm512_maskz_loadu_ps(mt, r + nv), mv);
        s1 = _mm512_fmadd_ps(dt, dt, s1);
        float var = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / (float)n;
        __m512 rs = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (j = 0; j < nv; j += 16) {
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(r + j), mv), rs);
            _mm512_storeu_ps(o + j, _mm512_fmadd_ps(d, _mm512_loadu_ps(w + j),
                                                    _mm512_loadu_ps(b + j)));
        }
        if (mt) {
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mt, r + nv), mv), rs);
            _mm512_mask_storeu_ps(o + nv, mt, _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(mt, w + nv),
                                                               _mm512_maskz_loadu_ps(mt, b + nv)));
        }
    }
}
#endif

VT_CLONES
static void layernorm_portable(float *y, const float *x, const float *restrict w,
                               const float *restrict b, int m, int n, float eps)
{
    for (int i = 0; i < m; i++) {
        const float *r = x + (size_t)i * n;
        float *o = y + (size_t)i * n;
        float mean = sum_lanes(r, n) / (float)n;
        float acc[LANES] = {0}, v = 0;
        int j = 0;
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float d = r[j + l] - mean;
                acc[l] += d * d;
            }
        for (; j < n; j++) {
            float d = r[j] - mean;
            v += d * d;
        }
        for (int l = 0; l < LANES; l++)
            v += acc[l];
        float rstd = 1.0f / sqrtf(v / (float)n + eps);
        for (j = 0; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++)
                o[j + l] = (r[j + l] - mean) * rstd * w[j + l] + b[j + l];
        for (; j < n; j++)
            o[j] = (r[j] - mean) * rstd * w[j] + b[j];
    }
}

void vt_layernorm(float *y, const float *x, const float *w, const float *b, int m,
                  int n, float eps)
{
#ifdef VT_HAVE_X86_KERNELS
    if (vt_cpu() >= VT_CPU_AVX512) {
        layernorm_avx512(y, x, w, b, m, n, eps);
        return;
    }
#endif
    layernorm_portable(y, x, w, b, m, n, eps);
}
