/* grid.c - ops on token grids: GroupNorm(1, C), depthwise 3x3 on tokens,
 * stride-r patch gathering, stable argsort. See grid.h. */
#include <math.h>
#include <string.h>

#include "ops/cpu.h"
#include "ops/grid.h"

void vt_groupnorm1_tokens(float *x, int n, int c, const float *w,
                          const float *b, float eps, int gelu)
{
    size_t total = (size_t)n * c;
    double sum = 0, sq = 0;
    for (size_t i = 0; i < total; i++)
        sum += x[i];
    double mean = sum / (double)total;
    for (size_t i = 0; i < total; i++) {
        double d = x[i] - mean;
        sq += d * d;
    }
    float rstd = (float)(1.0 / sqrt(sq / (double)total + eps));
    float m = (float)mean;
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * c;
        for (int j = 0; j < c; j++)
            r[j] = (r[j] - m) * rstd * w[j] + b[j];
    }
    if (gelu)
        vt_gelu(x, total);
}

void vt_dw3_weights(float *wt9, const float *wt, int c)
{
    for (int ch = 0; ch < c; ch++)
        for (int t = 0; t < 9; t++)
            wt9[(size_t)t * c + ch] = wt[(size_t)ch * 9 + t];
}

typedef struct dw3_job {
    float *out;
    const float *x, *wt9, *b;
    int h, w, c, flags, rows;
} dw3_job;

#define LANES 16

/* One output row range. Per output pixel the channels go in blocks of 16
 * with the sum in registers over the taps inside the grid (vectorized by
 * the clones); the sum order per value is the same as ever: the center
 * (residual) or 0, the bias, then the taps row-major. */
VT_CLONES
static void dw3_task(void *ctx, int task, int thread)
{
    (void)thread;
    const dw3_job *j = ctx;
    int h = j->h, w = j->w, c = j->c, res = j->flags & VT_DW3_RESIDUAL;
    const float *restrict b = j->b;
    int y0 = task * j->rows, y1 = y0 + j->rows < h ? y0 + j->rows : h;
    for (int oy = y0; oy < y1; oy++)
        for (int ox = 0; ox < w; ox++) {
            float *restrict o = j->out + ((size_t)oy * w + ox) * c;
            const float *restrict xc = j->x + ((size_t)oy * w + ox) * c;
            int ky0 = oy > 0 ? 0 : 1, ky1 = oy < h - 1 ? 3 : 2;
            int kx0 = ox > 0 ? 0 : 1, kx1 = ox < w - 1 ? 3 : 2;
            int ch = 0;
            for (; ch + LANES <= c; ch += LANES) {
                float acc[LANES];
                for (int l = 0; l < LANES; l++)
                    acc[l] = res ? xc[ch + l] : 0.0f;
                if (b)
                    for (int l = 0; l < LANES; l++)
                        acc[l] += b[ch + l];
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *restrict xi =
                            j->x + ((size_t)(oy - 1 + ky) * w + ox - 1 + kx) * c + ch;
                        const float *restrict wk = j->wt9 + (size_t)(ky * 3 + kx) * c + ch;
                        for (int l = 0; l < LANES; l++)
                            acc[l] += xi[l] * wk[l];
                    }
                for (int l = 0; l < LANES; l++)
                    o[ch + l] = acc[l];
            }
            for (; ch < c; ch++) {
                float acc = res ? xc[ch] : 0.0f;
                if (b)
                    acc += b[ch];
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++)
                        acc += j->x[((size_t)(oy - 1 + ky) * w + ox - 1 + kx) * c + ch] *
                               j->wt9[(size_t)(ky * 3 + kx) * c + ch];
                o[ch] = acc;
            }
            if (j->flags & VT_DW3_GELU)
                vt_gelu(o, (size_t)c);
        }
}

void vt_dw3_tokens(vt_pool *p, float *out, const float *x, int h, int w,
                   int c, const float *wt9, const float *b, int flags)
{
    int T = vt_pool_size(p);
    int ntask = T > 1 ? 4 * T : 1;
    if (ntask > h)
        ntask = h;
    dw3_job j = {out, x, wt9, b, h, w, c, flags, (h + ntask - 1) / ntask};
    ntask = (h + j.rows - 1) / j.rows;
    vt_pool_run_work(p, ntask, dw3_task, &j, 18.0 * h * w * c);
}

void vt_tokens_to_planes(float *out, const float *x, int n, int c)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            out[(size_t)ch * n + i] = x[(size_t)i * c + ch];
}

void vt_patchify_tokens(float *cols, const float *x, int h, int w, int c, int r)
{
    int ho = h / r, wo = w / r;
    size_t kk = (size_t)c * r * r;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
            float *row = cols + ((size_t)oy * wo + ox) * kk;
            for (int ky = 0; ky < r; ky++)
                for (int kx = 0; kx < r; kx++) {
                    const float *xi = x + ((size_t)(oy * r + ky) * w + ox * r + kx) * c;
                    for (int ch = 0; ch < c; ch++)
                        row[((size_t)ch * r + ky) * r + kx] = xi[ch];
                }
        }
}

/* a sorts after b: larger value, NaN after every number */
static int after(float a, float b)
{
    if (isnan(a))
        return !isnan(b);
    if (isnan(b))
        return 0;
    return a > b;
}

void vt_argsort_stable(int *idx, const float *v, int n, int *tmp)
{
    for (int i = 0; i < n; i++)
        idx[i] = i;
    /* bottom-up merge sort: take from the right run only when the left
     * run's head sorts strictly after it, so ties keep index order */
    int *src = idx, *dst = tmp;
    for (int width = 1; width < n; width *= 2) {
        for (int lo = 0; lo < n; lo += 2 * width) {
            int mid = lo + width < n ? lo + width : n;
            int hi = lo + 2 * width < n ? lo + 2 * width : n;
            int a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                dst[k++] = after(v[src[a]], v[src[b]]) ? src[b++] : src[a++];
            while (a < mid)
                dst[k++] = src[a++];
            while (b < hi)
                dst[k++] = src[b++];
        }
        int *t = src;
        src = dst;
        dst = t;
    }
    if (src != idx)
        memcpy(idx, src, (size_t)n * sizeof *idx);
}
