/* linear.c - matrix products on OpenBLAS (1 thread per pool thread):
 * linear layers, and LayerNorm and the layer-scaled residual split over
 * rows. */
#include <cblas.h>
#include <string.h>

#include "ops.h"
#include "ops/cpu.h"

/* ---- linear ----------------------------------------------------------- */

typedef struct linear_job {
    float *y;
    const float *x, *w, *b;
    int m, k, n, gelu, ntask, by_cols;
    float beta;
} linear_job;

static void linear_task(void *ctx, int task, int thread)
{
    (void)thread;
    const linear_job *j = ctx;
    int m0 = 0, m1 = j->m, n0 = 0, n1 = j->n;
    if (j->by_cols) {
        /* column chunks in multiples of 16 floats (one AVX-512 vector) */
        int per = ((j->n + j->ntask - 1) / j->ntask + 15) & ~15;
        n0 = task * per;
        n1 = n0 + per < j->n ? n0 + per : j->n;
    } else {
        int per = (j->m + j->ntask - 1) / j->ntask;
        m0 = task * per;
        m1 = m0 + per < j->m ? m0 + per : j->m;
    }
    if (m0 >= m1 || n0 >= n1)
        return;
    int mm = m1 - m0, nn = n1 - n0;
    float *y = j->y + (size_t)m0 * j->n + n0;
    /* y[mm,nn] = beta*y + x[m0:m1, :] @ w[n0:n1, :]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mm, nn, j->k, 1.0f,
                j->x + (size_t)m0 * j->k, j->k, j->w + (size_t)n0 * j->k, j->k,
                j->beta, y, j->n);
    if (j->b || j->gelu)
        for (int i = 0; i < mm; i++) {
            float *r = y + (size_t)i * j->n;
            if (j->b)
                vt_add(r, j->b + n0, (size_t)nn);
            if (j->gelu)
                vt_gelu(r, (size_t)nn);
        }
}

void vt_linear(vt_pool *p, float *y, const float *x, const float *w,
               const float *b, int m, int k, int n, float beta, int gelu)
{
    /* model weights declared read-only: our kernel over a packed copy */
    const vt_wpack *pk = vt_pool_wpack(p, w, n, k);
    if (pk && pk->data) {
        vt_linear_packed(p, y, x, pk, b, m, beta, gelu);
        return;
    }
    if (pk)
        w = pk->raw;    /* F32 kept as given (no AVX-512): w may be a handle */
    linear_job j = {y, x, w, b, m, k, n, gelu, vt_pool_size(p), 1, beta};
    int T = j.ntask;
    /* Split the larger side; columns keep each thread on its own slice of
     * the weights, rows are used when there are few output features. */
    if (T > 1 && n < 64 * T && m > n)
        j.by_cols = 0;
    if (j.by_cols && n < 16 * T)
        j.ntask = 1;
    if (!j.by_cols && m < T)
        j.ntask = m;
    vt_pool_run_work(p, j.ntask, linear_task, &j, 2.0 * m * k * n);
}

/* ---- layernorm over rows --------------------------------------------- */

typedef struct ln_job {
    float *y;
    const float *x, *w, *b;
    int m, n, ntask;
    float eps;
} ln_job;

static void ln_task(void *ctx, int task, int thread)
{
    (void)thread;
    const ln_job *j = ctx;
    int per = (j->m + j->ntask - 1) / j->ntask, m0 = task * per;
    int m1 = m0 + per < j->m ? m0 + per : j->m;
    if (m0 < m1)
        vt_layernorm(j->y + (size_t)m0 * j->n, j->x + (size_t)m0 * j->n, j->w,
                     j->b, m1 - m0, j->n, j->eps);
}

void vt_layernorm_mt(vt_pool *p, float *y, const float *x, const float *w,
                     const float *b, int m, int n, float eps)
{
    ln_job j = {y, x, w, b, m, n, vt_pool_size(p), eps};
    if ((size_t)m * n < 16384 || m < j.ntask)
        j.ntask = 1;
    vt_pool_run_work(p, j.ntask, ln_task, &j, 8.0 * m * n);
}

/* ---- layer-scaled residual ------------------------------------------- */

typedef struct scaled_job {
    float *y;
    const float *x, *g;
    int m, n, per;
} scaled_job;

VT_CLONES
static void scaled_task(void *ctx, int task, int thread)
{
    (void)thread;
    const scaled_job *j = ctx;
    int m0 = task * j->per, m1 = m0 + j->per < j->m ? m0 + j->per : j->m;
    for (int i = m0; i < m1; i++) {
        float *restrict y = j->y + (size_t)i * j->n;
        const float *restrict x = j->x + (size_t)i * j->n, *restrict g = j->g;
        for (int c = 0; c < j->n; c++)
            y[c] += g[c] * x[c];
    }
}

void vt_add_scaled_rows(vt_pool *p, float *y, const float *x, const float *g, int m, int n)
{
    int T = vt_pool_size(p), ntask = m < 2 * T ? (m > 0 ? m : 1) : 2 * T;
    scaled_job j = {y, x, g, m, n, (m + ntask - 1) / ntask};
    vt_pool_run_work(p, ntask, scaled_task, &j, 2.0 * m * n);
}

/* ---- copy ------------------------------------------------------------- */

typedef struct copy_job {
    float *dst;
    const float *src;
    size_t n, per;
} copy_job;

static void copy_task(void *ctx, int task, int thread)
{
    (void)thread;
    const copy_job *j = ctx;
    size_t i0 = (size_t)task * j->per, i1 = i0 + j->per < j->n ? i0 + j->per : j->n;
    memcpy(j->dst + i0, j->src + i0, (i1 - i0) * sizeof *j->dst);
}

void vt_copy(vt_pool *p, float *dst, const float *src, size_t n)
{
    int T = vt_pool_size(p);
    /* chunks of whole cache lines */
    copy_job j = {dst, src, n, ((n + (size_t)T - 1) / (size_t)T + 15) & ~(size_t)15};
    if (n == 0)
        return;
    vt_pool_run_work(p, (int)((n + j.per - 1) / j.per), copy_task, &j, (double)n);
}
