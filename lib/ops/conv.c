/* conv.c - convolutions: im2col + sgemm for dense ones (patch embedding),
 * a direct loop for depthwise ones. */
#include <cblas.h>
#include <string.h>

#include "ops.h"

/* Output side of a k-window with stride s and padding pad; 0 when the
 * window is larger than the padded input (C's division truncates toward
 * zero, so the plain formula would say 1). */
static int out_size(int in, int k, int s, int pad)
{
    return in + 2 * pad < k ? 0 : (in + 2 * pad - k) / s + 1;
}

/* Output rows oy0 .. oy1-1 of vt_im2col: cols[ho*wo, c*k*k], one row per
 * output position, in the weight's (c, ky, kx) order, zeros where the
 * window leaves the image. */
static void im2col_rows(float *cols, const float *x, int c, int h, int w, int k, int s,
                        int pad, int oy0, int oy1)
{
    int wo = out_size(w, k, s, pad);
    size_t kk = (size_t)c * k * k;
    for (int oy = oy0; oy < oy1; oy++)
        for (int ox = 0; ox < wo; ox++) {
            float *row = cols + ((size_t)oy * wo + ox) * kk;
            for (int ci = 0; ci < c; ci++)
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * s - pad + ky;
                    float *dst = row + ((size_t)ci * k + ky) * k;
                    if (iy < 0 || iy >= h) {
                        memset(dst, 0, (size_t)k * sizeof *dst);
                        continue;
                    }
                    const float *src = x + ((size_t)ci * h + iy) * w;
                    int ix0 = ox * s - pad;
                    if (ix0 >= 0 && ix0 + k <= w) {
                        memcpy(dst, src + ix0, (size_t)k * sizeof *dst);
                    } else {
                        for (int kx = 0; kx < k; kx++) {
                            int ix = ix0 + kx;
                            dst[kx] = ix >= 0 && ix < w ? src[ix] : 0.0f;
                        }
                    }
                }
        }
}

void vt_im2col(float *cols, const float *x, int c, int h, int w, int k, int s, int pad)
{
    im2col_rows(cols, x, c, h, w, k, s, pad, 0, out_size(h, k, s, pad));
}

/* vt_im2col_tokens for output rows [oy0, oy1) only: cols starts at the
 * row of (oy0, 0). */
static void im2col_tokens_rows(float *cols, const float *x, int h, int w, int c, int k,
                               int s, int pad, int oy0, int oy1)
{
    int wo = out_size(w, k, s, pad);
    size_t run = (size_t)k * c;     /* one kernel row of the output row */
    for (int oy = oy0; oy < oy1; oy++)
        for (int ox = 0; ox < wo; ox++) {
            float *row = cols + ((size_t)(oy - oy0) * wo + ox) * k * run;
            int ix0 = ox * s - pad;
            /* the taps kx0..kx1-1 inside the image are adjacent tokens of
             * x: one copy per kernel row, zeros either side */
            int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = w - ix0 < k ? w - ix0 : k;
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * s - pad + ky;
                float *dst = row + ky * run;
                if (iy < 0 || iy >= h || kx0 >= kx1) {
                    memset(dst, 0, run * sizeof *dst);
                    continue;
                }
                memset(dst, 0, (size_t)kx0 * c * sizeof *dst);
                memcpy(dst + (size_t)kx0 * c, x + ((size_t)iy * w + ix0 + kx0) * c,
                       (size_t)(kx1 - kx0) * c * sizeof *dst);
                memset(dst + (size_t)kx1 * c, 0, (size_t)(k - kx1) * c * sizeof *dst);
            }
        }
}

void vt_im2col_tokens(float *cols, const float *x, int h, int w, int c, int k,
                      int s, int pad)
{
    im2col_tokens_rows(cols, x, h, w, c, k, s, pad, 0, out_size(h, k, s, pad));
}

/* Output rows oy0 .. oy1-1 of vt_im2col_tokens_chw: vt_im2col's columns
 * from tokens, each tap's c channels scattered k*k apart. */
static void im2col_tokens_chw_rows(float *cols, const float *x, int h, int w, int c, int k,
                                   int s, int pad, int oy0, int oy1)
{
    int wo = out_size(w, k, s, pad), kk = k * k;
    for (int oy = oy0; oy < oy1; oy++)
        for (int ox = 0; ox < wo; ox++) {
            float *row = cols + ((size_t)oy * wo + ox) * c * kk;
            for (int t = 0; t < kk; t++) {
                int iy = oy * s - pad + t / k, ix = ox * s - pad + t % k;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                    for (int ch = 0; ch < c; ch++)
                        row[ch * kk + t] = 0.0f;
                    continue;
                }
                const float *src = x + ((size_t)iy * w + ix) * c;
                for (int ch = 0; ch < c; ch++)
                    row[ch * kk + t] = src[ch];
            }
        }
}

/* Both im2cols split over output rows on the pool: at a stem's sizes
 * (hundreds of output rows, megabytes of columns) one thread copying them
 * is a good part of the convolution's time. */
typedef struct im2col_job {
    float *cols;
    const float *x;
    int c, h, w, k, s, pad, ho, per;
    int tokens;         /* 0: planes; 1: tokens, (ky, kx, c); 2: tokens, (c, ky, kx) */
} im2col_job;

static void im2col_task(void *ctx, int task, int thread)
{
    (void)thread;
    const im2col_job *j = ctx;
    int oy0 = task * j->per, oy1 = oy0 + j->per < j->ho ? oy0 + j->per : j->ho;
    if (j->tokens == 2)
        im2col_tokens_chw_rows(j->cols, j->x, j->h, j->w, j->c, j->k, j->s, j->pad, oy0, oy1);
    else if (j->tokens)
        im2col_tokens_rows(j->cols + (size_t)oy0 * out_size(j->w, j->k, j->s, j->pad) * j->k *
                               j->k * j->c, j->x, j->h, j->w, j->c, j->k, j->s, j->pad, oy0, oy1);
    else
        im2col_rows(j->cols, j->x, j->c, j->h, j->w, j->k, j->s, j->pad, oy0, oy1);
}

static void im2col_run(vt_pool *p, im2col_job *j)
{
    int ho = j->ho, T = vt_pool_size(p);
    if (ho < 1)
        return;
    int want = 4 * T < ho ? 4 * T : ho;
    j->per = (ho + want - 1) / want;
    double bytes = (double)ho * out_size(j->w, j->k, j->s, j->pad) * j->c * j->k * j->k;
    vt_pool_run_work(p, (ho + j->per - 1) / j->per, im2col_task, j, bytes);
}

void vt_im2col_mt(vt_pool *p, float *cols, const float *x, int c, int h, int w, int k, int s,
                  int pad)
{
    im2col_job j = {cols, x, c, h, w, k, s, pad, out_size(h, k, s, pad), 0, 0};
    im2col_run(p, &j);
}

void vt_im2col_tokens_mt(vt_pool *p, float *cols, const float *x, int h, int w, int c, int k,
                         int s, int pad)
{
    im2col_job j = {cols, x, c, h, w, k, s, pad, out_size(h, k, s, pad), 0, 1};
    im2col_run(p, &j);
}

void vt_im2col_tokens_chw_mt(vt_pool *p, float *cols, const float *x, int h, int w, int c,
                             int k, int s, int pad)
{
    im2col_job j = {cols, x, c, h, w, k, s, pad, out_size(h, k, s, pad), 0, 2};
    im2col_run(p, &j);
}

/* ---- dense convolution on tokens, in bands of output rows ------------- */

/* floats of one band's columns: about 256 KB, so a band stays in L2
 * between its im2col and its product */
#define CONV_BAND_FLOATS (64 << 10)

static int conv_band_rows(int wo, int c, int k)
{
    size_t row = (size_t)wo * k * k * c;
    size_t rows = row ? CONV_BAND_FLOATS / row : 1;
    return rows > 0 ? (int)rows : 1;
}

size_t vt_conv_tokens_scratch(const vt_pool *p, int w, int c, int k, int s, int pad)
{
    int wo = out_size(w, k, s, pad);
    return (size_t)vt_pool_size(p) * conv_band_rows(wo, c, k) * wo * k * k * c;
}

typedef struct conv_job {
    float *out, *cols;
    const float *x, *b;
    const vt_wpack *wt;
    int h, w, c, k, s, pad, ho, wo, band;
    size_t per_thread;
} conv_job;

static void conv_task(void *ctx, int task, int thread)
{
    const conv_job *j = ctx;
    int oy0 = task * j->band, oy1 = oy0 + j->band < j->ho ? oy0 + j->band : j->ho;
    float *cols = j->cols + (size_t)thread * j->per_thread;
    im2col_tokens_rows(cols, j->x, j->h, j->w, j->c, j->k, j->s, j->pad, oy0, oy1);
    vt_linear_packed(NULL, j->out + (size_t)oy0 * j->wo * j->wt->n, cols, j->wt, j->b,
                     (oy1 - oy0) * j->wo, 0.0f, 0);
}

void vt_conv_tokens(vt_pool *p, float *out, const float *x, int h, int w, int c,
                    const vt_wpack *wt, const float *b, int k, int s, int pad,
                    float *cols)
{
    int ho = out_size(h, k, s, pad), wo = out_size(w, k, s, pad);
    if (ho < 1 || wo < 1)
        return;
    int band = conv_band_rows(wo, c, k);
    conv_job j = {out, cols, x, b, wt, h, w, c, k, s, pad, ho, wo, band,
                  (size_t)band * wo * k * k * c};
    vt_pool_run_work(p, (ho + band - 1) / band, conv_task, &j,
                     2.0 * ho * wo * k * k * c * wt->n);
}

void vt_conv_weight_hwc(float *out, const float *wt, int o, int c, int k)
{
    size_t kk = (size_t)c * k * k;
    for (int oc = 0; oc < o; oc++)
        for (int ch = 0; ch < c; ch++)
            for (int t = 0; t < k * k; t++)
                out[oc * kk + (size_t)t * c + ch] = wt[oc * kk + (size_t)ch * k * k + t];
}

void vt_conv2d_tokens(vt_pool *p, float *out, const float *x, int c, int h,
                      int w, const float *wt, const float *b, int o, int k,
                      int s, int pad, float *cols)
{
    int ho = out_size(h, k, s, pad), wo = out_size(w, k, s, pad);
    vt_im2col_mt(p, cols, x, c, h, w, k, s, pad);
    /* out[ho*wo, o] = cols[ho*wo, c*k*k] @ wt[o, c*k*k]^T + b */
    vt_linear(p, out, cols, wt, b, ho * wo, c * k * k, o, 0.0f, 0);
}

void vt_conv2d(vt_pool *p, float *out, const float *x, int c, int h, int w,
               const float *wt, const float *b, int o, int k, int s, int pad,
               float *cols)
{
    (void)p;
    int ho = out_size(h, k, s, pad), wo = out_size(w, k, s, pad);
    int n = ho * wo, kk = c * k * k;
    vt_im2col(cols, x, c, h, w, k, s, pad);
    /* out[o, n] = wt[o, kk] @ cols[n, kk]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o, n, kk, 1.0f, wt,
                kk, cols, kk, 0.0f, out, n);
    if (b)
        for (int i = 0; i < o; i++)
            for (int j = 0; j < n; j++)
                out[(size_t)i * n + j] += b[i];
}

