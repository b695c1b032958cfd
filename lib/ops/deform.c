/* deform.c - deformable point attention over a token grid. See deform.h. */
#include <math.h>
#include <string.h>

#include "ops/deform.h"

#define DEFORM_ROWS 64      /* query tokens per task */

void vt_bilinear_point(float *out, const float *v, int ld, int h, int w, int d,
                       float x, float y, float wt)
{
    float x0f = floorf(x), y0f = floorf(y);
    float tx = x - x0f, ty = y - y0f;
    /* corners in the kernel's order, with their weights */
    float cw[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
    float fx[4] = {x0f, x0f + 1, x0f, x0f + 1}, fy[4] = {y0f, y0f, y0f + 1, y0f + 1};
    const float *src[4];
    int any = 0;
    for (int k = 0; k < 4; k++) {
        int in = fx[k] >= 0 && fx[k] < w && fy[k] >= 0 && fy[k] < h;
        src[k] = in ? v + ((size_t)fy[k] * w + (size_t)fx[k]) * ld : NULL;
        any |= in;
    }
    if (!any)
        return;     /* the sample is 0: out += wt * 0 changes nothing */
    for (int c = 0; c < d; c++) {
        float s = 0;
        for (int k = 0; k < 4; k++)
            if (src[k])
                s += cw[k] * src[k][c];
        out[c] += wt * s;
    }
}

typedef struct deform_job {
    float *out;
    const float *v, *off, *wts;
    int ldo, ldv, h, w, heads, P, d;
} deform_job;

static void deform_task(void *ctx, int task, int thread)
{
    (void)thread;
    const deform_job *j = ctx;
    int n0 = task * DEFORM_ROWS, n1 = n0 + DEFORM_ROWS, N = j->h * j->w;
    if (n1 > N)
        n1 = N;
    for (int n = n0; n < n1; n++) {
        float r = (float)(n / j->w), c = (float)(n % j->w);
        const float *off = j->off + (size_t)n * j->heads * j->P * 2;
        const float *wt = j->wts + (size_t)n * j->heads * j->P;
        for (int hd = 0; hd < j->heads; hd++) {
            float *o = j->out + (size_t)n * j->ldo + (size_t)hd * j->d;
            memset(o, 0, (size_t)j->d * sizeof *o);
            for (int p = 0; p < j->P; p++) {
                int k = hd * j->P + p;
                vt_bilinear_point(o, j->v + (size_t)hd * j->d, j->ldv, j->h, j->w, j->d,
                                  c + off[2 * k], r + off[2 * k + 1], wt[k]);
            }
        }
    }
}

void vt_deform_attend(vt_pool *p, float *out, int ldo, const float *v, int ldv,
                      const float *off, const float *wts, int h, int w,
                      int heads, int P, int d)
{
    deform_job j = {out, v, off, wts, ldo, ldv, h, w, heads, P, d};
    int N = h * w;
    vt_pool_run(p, (N + DEFORM_ROWS - 1) / DEFORM_ROWS, deform_task, &j);
}
