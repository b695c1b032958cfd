/* sepconv.c - depthwise k x k convolution on token grids, hard-swish.
 * See sepconv.h. */
#include <string.h>

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

static void dwk_task(void *ctx, int task, int thread)
{
    (void)thread;
    const dwk_job *j = ctx;
    int c = j->c, k = j->k, pad = k / 2;
    int y0 = task * j->rows, y1 = y0 + j->rows < j->ho ? y0 + j->rows : j->ho;
    for (int oy = y0; oy < y1; oy++)
        for (int ox = 0; ox < j->wo; ox++) {
            float *restrict o = j->out + ((size_t)oy * j->wo + ox) * j->ldo;
            if (j->b)
                memcpy(o, j->b, (size_t)c * sizeof *o);
            else
                memset(o, 0, (size_t)c * sizeof *o);
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * j->s - pad + ky;
                if (iy < 0 || iy >= j->h)
                    continue;
                for (int kx = 0; kx < k; kx++) {
                    int ix = ox * j->s - pad + kx;
                    if (ix < 0 || ix >= j->w)
                        continue;
                    const float *restrict xi = j->x + ((size_t)iy * j->w + ix) * j->ldx;
                    const float *restrict wk = j->wtk + ((size_t)ky * k + kx) * c;
                    for (int ch = 0; ch < c; ch++)
                        o[ch] += xi[ch] * wk[ch];
                }
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

void vt_hswish(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float t = x[i] + 3.0f;
        t = t < 0.0f ? 0.0f : t > 6.0f ? 6.0f : t;
        x[i] = x[i] * t / 6.0f;
    }
}
