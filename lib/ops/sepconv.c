/* sepconv.c - depthwise k x k convolution on token grids, hard-swish.
 * See sepconv.h. */
#include <string.h>

#include "ops/cpu.h"
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

void vt_dwk_tokens(vt_pool *p, float *out, int ldo, const float *x, int ldx,
                   int h, int w, int c, const float *wtk, const float *b,
                   int k, int s)
{
    dwk_job j = {out, x, wtk, b, ldo, ldx, h, w, c, k, s,
                 vt_dwk_out(h, k, s), vt_dwk_out(w, k, s), 1};
    if (j.ho < 1 || j.wo < 1 || c < 1)
        return;
    /* about 4 tasks per thread, whole rows each */
    int want = 4 * vt_pool_size(p);
    j.rows = (j.ho + want - 1) / want;
    int ntask = (j.ho + j.rows - 1) / j.rows;
    vt_pool_run_work(p, ntask, dwk_task, &j, 2.0 * j.ho * j.wo * c * k * k);
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
