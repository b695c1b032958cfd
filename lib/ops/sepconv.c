/* sepconv.c - depthwise k x k convolution on token grids, hard-swish.
 * See sepconv.h. */
#include <string.h>

#include "ops/cpu.h"
#include "ops/vecmath.h"
#include "ops/sepconv.h"

void vt_dwk_weights(float *wtk, const float *wt, int c, int k)
{
    int kk = k * k;
    for (int ch = 0; ch < c; ch++)
        for (int t = 0; t < kk; t++)
            wtk[(size_t)t * c + ch] = wt[(size_t)ch * kk + t];
}

int vt_dwk_out(int in, int k, int s)
{
    return (in + 2 * (k / 2) - k) / s + 1;
}

typedef struct dwk_job {
    float *out;
    const float *x, *wtk, *b;
    int ldo, ldx, h, w, c, k, s, ho, wo, rows;
} dwk_job;

#define LANES 16

/* One output row range. Per output pixel the channels go in blocks of 16
 * with the sum in registers over the taps inside the grid (vectorized by
 * the clones); the sum order per value stays bias, then taps row-major. */
VT_CLONES
static void dwk_task(void *ctx, int task, int thread)
{
    (void)thread;
    const dwk_job *j = ctx;
    int c = j->c, k = j->k, pad = k / 2;
    const float *restrict b = j->b;
    int y0 = task * j->rows, y1 = y0 + j->rows < j->ho ? y0 + j->rows : j->ho;
    for (int oy = y0; oy < y1; oy++)
        for (int ox = 0; ox < j->wo; ox++) {
            float *restrict o = j->out + ((size_t)oy * j->wo + ox) * j->ldo;
            int iy0 = oy * j->s - pad, ix0 = ox * j->s - pad;
            int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = j->h - iy0 < k ? j->h - iy0 : k;
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = j->w - ix0 < k ? j->w - ix0 : k;
            int ch = 0;
            for (; ch + LANES <= c; ch += LANES) {
                float acc[LANES];
                for (int l = 0; l < LANES; l++)
                    acc[l] = b ? b[ch + l] : 0.0f;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *restrict xi =
                            j->x + ((size_t)(iy0 + ky) * j->w + ix0 + kx) * j->ldx + ch;
                        const float *restrict wk = j->wtk + ((size_t)ky * k + kx) * c + ch;
                        for (int l = 0; l < LANES; l++)
                            acc[l] += xi[l] * wk[l];
                    }
                for (int l = 0; l < LANES; l++)
                    o[ch + l] = acc[l];
            }
            for (; ch < c; ch++) {
                float acc = b ? b[ch] : 0.0f;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++)
                        acc += j->x[((size_t)(iy0 + ky) * j->w + ix0 + kx) * j->ldx + ch] *
                               j->wtk[((size_t)ky * k + kx) * c + ch];
                o[ch] = acc;
            }
        }
}

#ifdef VT_HAVE_X86_KERNELS
#define GROUP 8     /* output pixels of a row summed at once (AVX-512) */

/* R output pixels along a row, one block of 16 channels (mask m): the
 * pixel r reads input columns ix0 + r*s + kx for kx in [kx0, kx1), rows
 * iy0 + ky for ky in [ky0, ky1). R independent sums hide the FMA latency
 * (one sum per pixel is a chain of k*k dependent FMAs); the weight vector
 * of a tap is loaded once for the R of them. Sum order per value as the
 * portable code: bias, then the taps row-major. */
VT_AVX512 static inline __attribute__((always_inline)) void
dwk_pixels(const dwk_job *j, float *o, int iy0, int ix0, int ch, __mmask16 m, int R,
           int ky0, int ky1, int kx0, int kx1)
{
    __m512 acc[GROUP];
    __m512 init = j->b ? _mm512_maskz_loadu_ps(m, j->b + ch) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        acc[r] = init;
    size_t step = (size_t)j->s * j->ldx;
    for (int ky = ky0; ky < ky1; ky++) {
        const float *xr = j->x + ((size_t)(iy0 + ky) * j->w + ix0) * j->ldx + ch;
        const float *wr = j->wtk + (size_t)ky * j->k * j->c + ch;
        for (int kx = kx0; kx < kx1; kx++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, wr + (size_t)kx * j->c);
            const float *xp = xr + (size_t)kx * j->ldx;
#pragma GCC unroll 8
            for (int r = 0; r < R; r++)
                acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, xp + r * step), wv, acc[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        _mm512_mask_storeu_ps(o + (size_t)r * j->ldo, m, acc[r]);
}

/* One pixel ox of output row oy, its taps clipped to the grid. */
VT_AVX512 static void dwk_edge(const dwk_job *j, float *orow, int oy, int ox, int ch,
                               __mmask16 m, int ky0, int ky1)
{
    int iy0 = oy * j->s - j->k / 2, ix0 = ox * j->s - j->k / 2;
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = j->w - ix0 < j->k ? j->w - ix0 : j->k;
    dwk_pixels(j, orow + (size_t)ox * j->ldo + ch, iy0, ix0, ch, m, 1, ky0, ky1, kx0, kx1);
}

/* Output rows of one task: per row and block of 16 channels, the pixels
 * whose window lies inside the row in groups of GROUP, those at the edges
 * one by one with their taps clipped. */
VT_AVX512 static void dwk_task_avx512(void *ctx, int task, int thread)
{
    (void)thread;
    const dwk_job *j = ctx;
    int k = j->k, s = j->s, pad = k / 2;
    /* inside: ox in [in0, in1) has ix0 = ox*s - pad >= 0 and ix0 + k <= w */
    int in0 = (pad + s - 1) / s, in1 = j->w + pad - k >= 0 ? (j->w + pad - k) / s + 1 : 0;
    in0 = in0 < j->wo ? in0 : j->wo;
    in1 = in1 < j->wo ? in1 : j->wo;
    in1 = in1 > in0 ? in1 : in0;
    int y0 = task * j->rows, y1 = y0 + j->rows < j->ho ? y0 + j->rows : j->ho;
    for (int oy = y0; oy < y1; oy++) {
        int iy0 = oy * s - pad;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = j->h - iy0 < k ? j->h - iy0 : k;
        float *orow = j->out + (size_t)oy * j->wo * j->ldo;
        for (int ch = 0; ch < j->c; ch += 16) {
            __mmask16 m = j->c - ch >= 16 ? 0xffff : (__mmask16)((1u << (j->c - ch)) - 1);
            int ox = 0;
            for (; ox < in0; ox++)
                dwk_edge(j, orow, oy, ox, ch, m, ky0, ky1);
            for (; ox + GROUP <= in1; ox += GROUP)
                dwk_pixels(j, orow + (size_t)ox * j->ldo + ch, iy0, ox * s - pad, ch, m, GROUP,
                           ky0, ky1, 0, k);
            for (; ox + GROUP / 2 <= in1; ox += GROUP / 2)
                dwk_pixels(j, orow + (size_t)ox * j->ldo + ch, iy0, ox * s - pad, ch, m,
                           GROUP / 2, ky0, ky1, 0, k);
            for (; ox < j->wo; ox++)
                dwk_edge(j, orow, oy, ox, ch, m, ky0, ky1);
        }
    }
}
#endif

void vt_dwk_tokens(vt_pool *p, float *out, int ldo, const float *x, int ldx,
                   int h, int w, int c, const float *wtk, const float *b,
                   int k, int s)
{
    dwk_job j = {out, x, wtk, b, ldo, ldx, h, w, c, k, s,
                 vt_dwk_out(h, k, s), vt_dwk_out(w, k, s), 1};
    if (j.ho < 1 || j.wo < 1 || c < 1)
        return;
    vt_task_fn fn = dwk_task;
#ifdef VT_HAVE_X86_KERNELS
    if (vt_cpu() >= VT_CPU_AVX512)
        fn = dwk_task_avx512;
#endif
    /* about 4 tasks per thread, whole rows each */
    int want = 4 * vt_pool_size(p);
    j.rows = (j.ho + want - 1) / want;
    int ntask = (j.ho + j.rows - 1) / j.rows;
    vt_pool_run_work(p, ntask, fn, &j, 2.0 * j.ho * j.wo * c * k * k);
}

static inline float hswish1(float v)
{
    float t = v + 3.0f;
    t = t < 0.0f ? 0.0f : t > 6.0f ? 6.0f : t;
    return v * t / 6.0f;
}

VT_CLONES
void vt_hswish(float *x, size_t n)
{
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            x[i + l] = hswish1(x[i + l]);
    for (; i < n; i++)
        x[i] = hswish1(x[i]);
}
