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
    int res;            /* add x at the output position first (s = 1) */
    int gelu;           /* GELU on the outputs, by the task that made them */
    vt_task_fn conv;    /* the task that convolves (with gelu) */
} dwk_job;

#define LANES 16

/* One output row range. Per output pixel the channels go in blocks of 16
 * with the sum in registers over the taps inside the grid (vectorized by
 * the clones); the sum order per value stays: the residual (or 0), the
 * bias, then the taps row-major. */
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
            const float *restrict xc = j->x + ((size_t)oy * j->w + ox) * j->ldx;
            int iy0 = oy * j->s - pad, ix0 = ox * j->s - pad;
            int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = j->h - iy0 < k ? j->h - iy0 : k;
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = j->w - ix0 < k ? j->w - ix0 : k;
            int ch = 0;
            for (; ch + LANES <= c; ch += LANES) {
                float acc[LANES];
                for (int l = 0; l < LANES; l++)
                    acc[l] = j->res ? xc[ch + l] : 0.0f;
                if (b)
                    for (int l = 0; l < LANES; l++)
                        acc[l] += b[ch + l];
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
                float acc = j->res ? xc[ch] : 0.0f;
                if (b)
                    acc += b[ch];
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

/* R (<= GROUP) output pixels along row oy from ox, one block of 16
 * channels (mask m), taps ky in [ky0, ky1). R independent sums hide the
 * FMA latency (one sum per pixel is a chain of k*k dependent FMAs); the
 * weight vector of a tap is loaded once for the R of them. clip: some
 * pixels' windows leave the row, their outside taps load zeros (a load
 * under an empty mask touches no memory); else every tap is inside.
 * Sum order per value as the portable code: residual, bias, taps
 * row-major (a zero tap adds exactly nothing). */
VT_AVX512 static inline __attribute__((always_inline)) void
dwk_pixels(const dwk_job *j, int oy, int ox, int ch, __mmask16 m, int R, int clip, int ky0,
           int ky1)
{
    int k = j->k, s = j->s, iy0 = oy * s - k / 2, ix0 = ox * s - k / 2;
    size_t ld = (size_t)j->ldx;
    float *o = j->out + ((size_t)oy * j->wo + ox) * j->ldo + ch;
    __m512 acc[GROUP];
    __m512 init = j->b ? _mm512_maskz_loadu_ps(m, j->b + ch) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < GROUP; r++) {
        acc[r] = init;
        if (j->res && r < R)    /* x + b (x + 0 is x) */
            acc[r] = _mm512_add_ps(
                _mm512_maskz_loadu_ps(m, j->x + ((size_t)oy * j->w + ox + r) * ld + ch), init);
    }
    for (int ky = ky0; ky < ky1; ky++) {
        const float *xr = j->x + (size_t)(iy0 + ky) * j->w * ld + ch;
        const float *wr = j->wtk + (size_t)ky * k * j->c + ch;
        for (int kx = 0; kx < k; kx++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, wr + (size_t)kx * j->c);
#pragma GCC unroll 8
            for (int r = 0; r < GROUP; r++)
                if (r < R) {
                    int ix = ix0 + r * s + kx;
                    __mmask16 mr = m;
                    if (clip) {
                        int in = ix >= 0 && ix < j->w;
                        mr = in ? m : 0;
                        ix = in ? ix : 0;
                    }
                    __m512 xv = _mm512_maskz_loadu_ps(mr, xr + (size_t)ix * ld);
                    acc[r] = _mm512_fmadd_ps(xv, wv, acc[r]);
                }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < GROUP; r++)
        if (r < R)
            _mm512_mask_storeu_ps(o + (size_t)r * j->ldo, m, acc[r]);
}

/* GROUP pixels from ox, stride 1, every tap inside, k = K known at compile
 * time: per kernel row the GROUP + K - 1 input vectors are loaded once and
 * each feeds up to K sums (the generic loop loads one per FMA). Same sums
 * in the same order as dwk_pixels. */
VT_AVX512 static inline __attribute__((always_inline)) void
dwk_group_s1(const dwk_job *j, int oy, int ox, int ch, __mmask16 m, int ky0, int ky1, int K)
{
    int iy0 = oy - K / 2, ix0 = ox - K / 2;
    size_t ld = (size_t)j->ldx;
    float *o = j->out + ((size_t)oy * j->wo + ox) * j->ldo + ch;
    __m512 acc[GROUP], xv[GROUP + 6];
    __m512 init = j->b ? _mm512_maskz_loadu_ps(m, j->b + ch) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < GROUP; r++) {
        acc[r] = init;
        if (j->res)
            acc[r] = _mm512_add_ps(
                _mm512_maskz_loadu_ps(m, j->x + ((size_t)oy * j->w + ox + r) * ld + ch), init);
    }
    for (int ky = ky0; ky < ky1; ky++) {
        const float *xr = j->x + ((size_t)(iy0 + ky) * j->w + ix0) * ld + ch;
        const float *wr = j->wtk + (size_t)ky * K * j->c + ch;
#pragma GCC unroll 14
        for (int i = 0; i < GROUP + K - 1; i++)
            xv[i] = _mm512_maskz_loadu_ps(m, xr + i * ld);
#pragma GCC unroll 7
        for (int kx = 0; kx < K; kx++) {
            __m512 wv = _mm512_maskz_loadu_ps(m, wr + (size_t)kx * j->c);
#pragma GCC unroll 8
            for (int r = 0; r < GROUP; r++)
                acc[r] = _mm512_fmadd_ps(xv[r + kx], wv, acc[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < GROUP; r++)
        _mm512_mask_storeu_ps(o + (size_t)r * j->ldo, m, acc[r]);
}

/* Output rows of one task: per row and block of 16 channels, the pixels
 * whose windows lie inside the row in groups of GROUP and GROUP/2, the
 * others (the edges, the few left over) in clipped groups. */
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
        for (int ch = 0; ch < j->c; ch += 16) {
            __mmask16 m = j->c - ch >= 16 ? 0xffff : (__mmask16)((1u << (j->c - ch)) - 1);
            int ox = 0;
            for (; ox < in0; ox += GROUP)
                dwk_pixels(j, oy, ox, ch, m, in0 - ox < GROUP ? in0 - ox : GROUP, 1, ky0, ky1);
            ox = in0;
            if (s == 1 && k == 3)
                for (; ox + GROUP <= in1; ox += GROUP)
                    dwk_group_s1(j, oy, ox, ch, m, ky0, ky1, 3);
            else if (s == 1 && k == 5)
                for (; ox + GROUP <= in1; ox += GROUP)
                    dwk_group_s1(j, oy, ox, ch, m, ky0, ky1, 5);
            else if (s == 1 && k == 7)
                for (; ox + GROUP <= in1; ox += GROUP)
                    dwk_group_s1(j, oy, ox, ch, m, ky0, ky1, 7);
            for (; ox + GROUP <= in1; ox += GROUP)
                dwk_pixels(j, oy, ox, ch, m, GROUP, 0, ky0, ky1);
            for (; ox + GROUP / 2 <= in1; ox += GROUP / 2)
                dwk_pixels(j, oy, ox, ch, m, GROUP / 2, 0, ky0, ky1);
            for (; ox < j->wo; ox += GROUP)
                dwk_pixels(j, oy, ox, ch, m, j->wo - ox < GROUP ? j->wo - ox : GROUP, 1, ky0,
                           ky1);
        }
    }
}
#endif

/* The task's output rows, then GELU over them while they are in cache. */
static void dwk_gelu_task(void *ctx, int task, int thread)
{
    const dwk_job *j = ctx;
    j->conv(ctx, task, thread);
    int y0 = task * j->rows, y1 = y0 + j->rows < j->ho ? y0 + j->rows : j->ho;
    float *o = j->out + (size_t)y0 * j->wo * j->ldo;
    if (j->ldo == j->c) {
        vt_gelu(o, (size_t)(y1 - y0) * j->wo * j->c);
        return;
    }
    for (int i = 0; i < (y1 - y0) * j->wo; i++)
        vt_gelu(o + (size_t)i * j->ldo, (size_t)j->c);
}

static void dwk_run(vt_pool *p, dwk_job *j)
{
    if (j->ho < 1 || j->wo < 1 || j->c < 1)
        return;
    vt_task_fn fn = dwk_task;
#ifdef VT_HAVE_X86_KERNELS
    if (vt_cpu() >= VT_CPU_AVX512)
        fn = dwk_task_avx512;
#endif
    if (j->gelu) {
        j->conv = fn;
        fn = dwk_gelu_task;
    }
    /* about 4 tasks per thread, whole rows each */
    int want = 4 * vt_pool_size(p);
    j->rows = (j->ho + want - 1) / want;
    int ntask = (j->ho + j->rows - 1) / j->rows;
    vt_pool_run_work(p, ntask, fn, j, (2.0 * j->k * j->k + (j->gelu ? 30 : 0)) * j->ho * j->wo * j->c);
}

void vt_dwk_tokens(vt_pool *p, float *out, int ldo, const float *x, int ldx,
                   int h, int w, int c, const float *wtk, const float *b,
                   int k, int s)
{
    dwk_job j = {out, x, wtk, b, ldo, ldx, h, w, c, k, s,
                 vt_dwk_out(h, k, s), vt_dwk_out(w, k, s), 1, 0, 0, NULL};
    dwk_run(p, &j);
}

void vt_dwk_tokens_residual(vt_pool *p, float *out, const float *x, int ld, int h,
                            int w, int c, const float *wtk, const float *b, int k)
{
    dwk_job j = {out, x, wtk, b, ld, ld, h, w, c, k, 1, h, w, 1, 1, 0, NULL};
    dwk_run(p, &j);
}

void vt_dwk_tokens_residual_gelu(vt_pool *p, float *out, const float *x, int ld, int h,
                                 int w, int c, const float *wtk, const float *b, int k)
{
    dwk_job j = {out, x, wtk, b, ld, ld, h, w, c, k, 1, h, w, 1, 1, 1, NULL};
    dwk_run(p, &j);
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

/* one row: y = hswish(x * g + b), or hswish(x) without g and b */
static inline __attribute__((always_inline)) void
hswish_row(float *restrict y, const float *restrict x, int n, const float *restrict g,
           const float *restrict b)
{
    int i = 0;
    if (g) {
        for (; i + LANES <= n; i += LANES)
            for (int l = 0; l < LANES; l++)
                y[i + l] = hswish1(x[i + l] * g[i + l] + b[i + l]);
        for (; i < n; i++)
            y[i] = hswish1(x[i] * g[i] + b[i]);
    } else {
        for (; i + LANES <= n; i += LANES)
            for (int l = 0; l < LANES; l++)
                y[i + l] = hswish1(x[i + l]);
        for (; i < n; i++)
            y[i] = hswish1(x[i]);
    }
}

typedef struct hsw_job {
    float *y;
    const float *x, *g, *b;
    int ldy, ldx, m, n, rows;
} hsw_job;

VT_CLONES
static void hswish_rows_task(void *ctx, int task, int thread)
{
    (void)thread;
    const hsw_job *j = ctx;
    int r0 = task * j->rows, r1 = r0 + j->rows < j->m ? r0 + j->rows : j->m;
    for (int r = r0; r < r1; r++)
        hswish_row(j->y + (size_t)r * j->ldy, j->x + (size_t)r * j->ldx, j->n, j->g, j->b);
}

void vt_hswish_rows(vt_pool *p, float *y, int ldy, const float *x, int ldx, int m, int n,
                    const float *g, const float *b)
{
    if (m < 1 || n < 1)
        return;
    hsw_job j = {y, x, g, b, ldy, ldx, m, n, 0};
    int want = 2 * vt_pool_size(p);
    j.rows = (m + want - 1) / want;
    vt_pool_run_work(p, (m + j.rows - 1) / j.rows, hswish_rows_task, &j, 6.0 * m * n);
}
