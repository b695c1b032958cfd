/* linear.c - matrix products on OpenBLAS (1 thread per pool thread):
 * linear layers and multi-head attention. */
#include <cblas.h>
#include <string.h>

#include "ops.h"

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

/* ---- attention -------------------------------------------------------- */

typedef struct attn_job {
    float *out, *scratch, *cls;
    const float *qkv;
    int batch, t, heads, dh, nq, rows;
    float scale;
} attn_job;

size_t vt_attention_scratch(const vt_pool *p, int t)
{
    return (size_t)vt_pool_size(p) * (size_t)t * (size_t)t;
}

/* One (image, head, query chunk): S = scale q k^T, softmax, out = S v. */
static void attn_task(void *ctx, int task, int thread)
{
    const attn_job *j = ctx;
    int t = j->t, d = j->heads * j->dh, ld = 3 * d;
    int qc = task % j->nq, h = (task / j->nq) % j->heads;
    int b = task / (j->nq * j->heads);
    int r0 = qc * j->rows, r1 = r0 + j->rows < t ? r0 + j->rows : t;
    if (r0 >= r1)
        return;
    int rows = r1 - r0;
    const float *base = j->qkv + (size_t)b * t * ld;
    const float *q = base + (size_t)r0 * ld + h * j->dh;
    const float *k = base + d + h * j->dh;
    const float *v = base + 2 * d + h * j->dh;
    float *s = j->scratch + (size_t)thread * t * t;     /* [rows, t] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, t, j->dh,
                j->scale, q, ld, k, ld, 0.0f, s, t);
    vt_softmax(s, rows, t);
    if (j->cls && r0 == 0)
        memcpy(j->cls + ((size_t)b * j->heads + h) * t, s, (size_t)t * sizeof *s);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, j->dh, t,
                1.0f, s, t, v, ld, 0.0f,
                j->out + ((size_t)b * t + r0) * d + h * j->dh, d);
}

void vt_attention(vt_pool *p, float *out, const float *qkv, int batch, int t,
                  int heads, int dh, float scale, float *scratch, float *cls)
{
    int T = vt_pool_size(p), pairs = batch * heads;
    /* Whole (image, head) products when they spread evenly over the
     * threads; otherwise split the queries too so no thread idles. */
    int nq = 1;
    if (T > 1 && (pairs < 4 * T && pairs % T != 0))
        nq = (4 * T + pairs - 1) / pairs;
    if (nq > t)
        nq = t;
    attn_job j = {out, scratch, cls, qkv, batch, t, heads, dh, nq,
                  (t + nq - 1) / nq, scale};
    vt_pool_run_work(p, pairs * nq, attn_task, &j, 4.0 * pairs * t * t * dh);
}
