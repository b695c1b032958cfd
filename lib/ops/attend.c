/* attend.c - cross attention over a separate key set and window
 * attention, both with optional column sums of the attention. See
 * attend.h. */
#include <cblas.h>
#include <string.h>

#include "ops/attend.h"

/* ---- queries over their own key set ----------------------------------- */

typedef struct attend_job {
    const vt_attend_head *heads;
    int ldq, ldk, ldv, ldo, nq, nk, d, nchunk;
    float scale;
    size_t per_thread;  /* scratch floats of each thread */
    float *scores;      /* [threads, per_thread] */
    float *part;        /* [tasks, nk] column sums, or NULL */
} attend_job;

static void attend_task(void *ctx, int task, int thread)
{
    const attend_job *j = ctx;
    const vt_attend_head *hd = &j->heads[task / j->nchunk];
    int r0 = (task % j->nchunk) * VT_ATTEND_ROWS;
    int rows = j->nq - r0 < VT_ATTEND_ROWS ? j->nq - r0 : VT_ATTEND_ROWS;
    float *s = j->scores + (size_t)thread * j->per_thread;
    if (!j->part) {
        /* nobody looks at the probabilities: fused */
        vt_attn_head(hd->o + (size_t)r0 * j->ldo, j->ldo, hd->q + (size_t)r0 * j->ldq, j->ldq,
                     hd->k, j->ldk, hd->v, j->ldv, rows, j->nk, j->d, j->scale, s);
        return;
    }
    /* s[rows, nk] = scale * q[r0:r0+rows] k^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, j->nk, j->d,
                j->scale, hd->q + (size_t)r0 * j->ldq, j->ldq, hd->k, j->ldk,
                0.0f, s, j->nk);
    vt_softmax(s, rows, j->nk);
    float *cs = j->part + (size_t)task * j->nk;
    memset(cs, 0, (size_t)j->nk * sizeof *cs);
    for (int r = 0; r < rows; r++)
        vt_add(cs, s + (size_t)r * j->nk, (size_t)j->nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, j->d, j->nk,
                1.0f, s, j->nk, hd->v, j->ldv, 0.0f,
                hd->o + (size_t)r0 * j->ldo, j->ldo);
}

/* per thread: a [VT_ATTEND_ROWS, nk] score block, or the fused head's */
static size_t attend_per_thread(int nk, int d)
{
    size_t explicit = (size_t)VT_ATTEND_ROWS * nk, fused = vt_attn_head_scratch(nk, d);
    return explicit > fused ? explicit : fused;
}

size_t vt_attend_scratch(const vt_pool *p, int heads, int nq, int nk, int d)
{
    size_t tasks = (size_t)heads * ((nq + VT_ATTEND_ROWS - 1) / VT_ATTEND_ROWS);
    return (size_t)vt_pool_size(p) * attend_per_thread(nk, d) + tasks * (size_t)nk;
}

void vt_attend(vt_pool *p, const vt_attend_head *heads, int nheads, int ldq,
               int ldk, int ldv, int ldo, int nq, int nk, int d, float scale,
               float *scratch, float *colsum)
{
    int nchunk = (nq + VT_ATTEND_ROWS - 1) / VT_ATTEND_ROWS;
    int ntask = nheads * nchunk;
    size_t per = attend_per_thread(nk, d);
    float *part = scratch + (size_t)vt_pool_size(p) * per;
    attend_job j = {heads, ldq, ldk, ldv, ldo, nq, nk, d, nchunk, scale, per,
                    scratch, colsum ? part : NULL};
    vt_pool_run_work(p, ntask, attend_task, &j, 4.0 * nheads * nq * nk * d);
    if (!colsum)
        return;
    memset(colsum, 0, (size_t)nk * sizeof *colsum);
    for (int t = 0; t < ntask; t++)
        vt_add(colsum, part + (size_t)t * nk, (size_t)nk);
}

/* ---- window attention ------------------------------------------------- */

typedef struct window_job {
    const float *q, *k, *v;
    float *out, *scratch, *colsum;
    int ldq, ldkv, ldo, h, w, ws, d, nwin, wcols;
    float scale;
} window_job;

/* per thread: q, k, v, o [t, d], then the score block or the fused head's */
static size_t window_per_thread(int t, int d)
{
    size_t explicit = (size_t)t * t, fused = vt_attn_head_scratch(t, d);
    return 4 * (size_t)t * d + (explicit > fused ? explicit : fused);
}

size_t vt_window_scratch(const vt_pool *p, int ws, int d)
{
    return (size_t)vt_pool_size(p) * window_per_thread(ws * ws, d);
}

/* One (head, window): gather q, k, v of the window's tokens, attend,
 * scatter the output back to the grid. */
static void window_task(void *ctx, int task, int thread)
{
    const window_job *j = ctx;
    int t = j->ws * j->ws, d = j->d;
    int head = task / j->nwin, win = task % j->nwin;
    int wy = win / j->wcols, wx = win % j->wcols;
    float *q = j->scratch + (size_t)thread * window_per_thread(t, d);
    float *k = q + (size_t)t * d, *v = k + (size_t)t * d, *o = v + (size_t)t * d;
    float *s = o + (size_t)t * d;
    for (int i = 0; i < t; i++) {
        size_t n = (size_t)(wy * j->ws + i / j->ws) * j->w + wx * j->ws + i % j->ws;
        size_t hc = (size_t)head * d;
        memcpy(q + (size_t)i * d, j->q + n * j->ldq + hc, (size_t)d * sizeof *q);
        memcpy(k + (size_t)i * d, j->k + n * j->ldkv + hc, (size_t)d * sizeof *k);
        memcpy(v + (size_t)i * d, j->v + n * j->ldkv + hc, (size_t)d * sizeof *v);
    }
    if (j->colsum) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, d, j->scale, q, d,
                    k, d, 0.0f, s, t);
        vt_softmax(s, t, t);
        float *cs = j->colsum + (size_t)task * t;
        memset(cs, 0, (size_t)t * sizeof *cs);
        for (int r = 0; r < t; r++)
            vt_add(cs, s + (size_t)r * t, (size_t)t);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, d, t, 1.0f, s, t,
                    v, d, 0.0f, o, d);
    } else {
        vt_attn_head(o, d, q, d, k, d, v, d, t, t, d, j->scale, s);
    }
    for (int i = 0; i < t; i++) {
        size_t n = (size_t)(wy * j->ws + i / j->ws) * j->w + wx * j->ws + i % j->ws;
        memcpy(j->out + n * j->ldo + (size_t)head * d, o + (size_t)i * d,
               (size_t)d * sizeof *o);
    }
}

void vt_window_attend(vt_pool *p, int heads, const float *q, int ldq,
                      const float *k, const float *v, int ldkv, float *out,
                      int ldo, int h, int w, int ws, int d, float scale,
                      float *scratch, float *colsum)
{
    int wcols = w / ws, nwin = (h / ws) * wcols;
    window_job j = {q, k, v, out, scratch, colsum, ldq, ldkv, ldo, h, w, ws, d,
                    nwin, wcols, scale};
    vt_pool_run_work(p, heads * nwin, window_task, &j, 4.0 * heads * h * w * ws * ws * d);
}
