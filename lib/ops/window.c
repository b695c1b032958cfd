/* window.c - Swin window partition, shift masks, relative position bias,
 * patch merging gather, and attention with bias and kept probabilities.
 * See window.h. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops/attend.h"
#include "ops/window.h"

static int wrap(int v, int n) { return ((v % n) + n) % n; }

/* map position of window token t of window w, with shift s */
static size_t window_src(int w, int t, int W, int H, int ws, int s)
{
    int nwx = W / ws, a = w / nwx, b = w % nwx, r = t / ws, c = t % ws;
    int y = wrap(a * ws + r + s, H), x = wrap(b * ws + c + s, W);
    return (size_t)y * W + x;
}

void vt_window_partition(float *xw, const float *x, int H, int W, int C, int ws, int s)
{
    int nW = (H / ws) * (W / ws), N = ws * ws;
    for (int w = 0; w < nW; w++)
        for (int t = 0; t < N; t++)
            memcpy(xw + ((size_t)w * N + t) * C, x + window_src(w, t, W, H, ws, s) * C,
                   (size_t)C * sizeof *xw);
}

void vt_window_reverse(float *y, const float *xw, int H, int W, int C, int ws, int s,
                       int accumulate)
{
    int nW = (H / ws) * (W / ws), N = ws * ws;
    for (int w = 0; w < nW; w++)
        for (int t = 0; t < N; t++) {
            float *dst = y + window_src(w, t, W, H, ws, s) * C;
            const float *src = xw + ((size_t)w * N + t) * C;
            if (accumulate)
                vt_add(dst, src, (size_t)C);
            else
                memcpy(dst, src, (size_t)C * sizeof *dst);
        }
}

void vt_window_rel_index(int *idx, int ws)
{
    int N = ws * ws;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            idx[i * N + j] = (i / ws - j / ws + ws - 1) * (2 * ws - 1) + (i % ws - j % ws + ws - 1);
}

void vt_window_rel_bias(float *bias, const float *table, int ws, int nh)
{
    int N = ws * ws;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            int id = (i / ws - j / ws + ws - 1) * (2 * ws - 1) + (i % ws - j % ws + ws - 1);
            for (int h = 0; h < nh; h++)
                bias[((size_t)h * N + i) * N + j] = table[(size_t)id * nh + h];
        }
}

/* region label of coordinate v on a side of length n: 0, 1 or 2 */
static int region(int v, int n, int ws, int s)
{
    return v < n - ws ? 0 : v < n - s ? 1 : 2;
}

void vt_window_shift_mask(float *mask, int H, int W, int ws, int s, float value)
{
    int nwx = W / ws, nW = (H / ws) * nwx, N = ws * ws;
    int lab[N];
    for (int w = 0; w < nW; w++) {
        int a = w / nwx, b = w % nwx;
        for (int t = 0; t < N; t++)
            lab[t] = 3 * region(a * ws + t / ws, H, ws, s) + region(b * ws + t % ws, W, ws, s);
        float *m = mask + (size_t)w * N * N;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                m[i * N + j] = lab[i] == lab[j] ? 0.0f : value;
    }
}

typedef struct merge_job {
    float *out;
    const float *x;
    int H, W, C, rows, per;
} merge_job;

/* Output rows [task * per, ...) of all images (row r: image r / (H/2)). */
static void merge_task(void *ctx, int task, int thread)
{
    (void)thread;
    static const int dy[4] = {0, 1, 0, 1}, dx[4] = {0, 0, 1, 1};
    const merge_job *j = ctx;
    int h2 = j->H / 2, w2 = j->W / 2, C = j->C;
    int r0 = task * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    for (int r = r0; r < r1; r++) {
        const float *x = j->x + (size_t)(r / h2) * j->H * j->W * C;
        int y = r % h2;
        for (int xx = 0; xx < w2; xx++) {
            float *o = j->out + ((size_t)r * w2 + xx) * 4 * C;
            for (int k = 0; k < 4; k++)
                memcpy(o + (size_t)k * C,
                       x + ((size_t)(2 * y + dy[k]) * j->W + 2 * xx + dx[k]) * C,
                       (size_t)C * sizeof *o);
        }
    }
}

void vt_patch_merge_gather(vt_pool *p, float *out, const float *x, int batch, int H, int W,
                           int C)
{
    int rows = batch * (H / 2), T = vt_pool_size(p);
    int ntask = rows < 4 * T ? (rows > 0 ? rows : 1) : 4 * T;
    merge_job j = {out, x, H, W, C, rows, (rows + ntask - 1) / ntask};
    vt_pool_run_work(p, (rows + j.per - 1) / j.per, merge_task, &j,
                     (double)batch * H * W * C);
}

typedef struct mha_job {
    float *out, *probs;
    const float *q, *k, *v, *bias, *mask;
    int ldo, ldq, ldk, ldv, nq, nk, d;
    float scale;
} mha_job;

/* One head. */
static void mha_task(void *ctx, int h, int thread)
{
    (void)thread;
    const mha_job *j = ctx;
    size_t plane = (size_t)j->nq * j->nk;
    float *P = j->probs + h * plane;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->nq, j->nk, j->d, j->scale,
                j->q + h * j->d, j->ldq, j->k + h * j->d, j->ldk, 0.0f, P, j->nk);
    if (j->bias)
        vt_add(P, j->bias + h * plane, plane);
    if (j->mask)
        vt_add(P, j->mask, plane);
    vt_softmax(P, j->nq, j->nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->nq, j->d, j->nk, 1.0f, P, j->nk,
                j->v + h * j->d, j->ldv, 0.0f, j->out + h * j->d, j->ldo);
}

void vt_mha_probs(vt_pool *p, float *out, int ldo, const float *q, int ldq, const float *k,
                  int ldk, const float *v, int ldv, int nq, int nk, int heads, int d,
                  float scale, const float *bias, const float *mask, float *probs)
{
    mha_job j = {out, probs, q, k, v, bias, mask, ldo, ldq, ldk, ldv, nq, nk, d, scale};
    vt_pool_run_work(p, heads, mha_task, &j, 4.0 * heads * nq * nk * d);
}

typedef struct swin_job {
    float *out;
    const float *qkv, *bias, *mask;
    int N, heads, d, mask_nw;
    float scale;
    float *scratch;     /* [threads, vt_attn_head_scratch(N, d)] */
} swin_job;

/* One (window, head), fused: nobody keeps Swin's probabilities. */
static void swin_task(void *ctx, int task, int thread)
{
    const swin_job *j = ctx;
    int C = j->heads * j->d, w = task / j->heads, h = task % j->heads;
    size_t N = j->N;
    const float *q = j->qkv + (size_t)w * N * 3 * C + (size_t)h * j->d;
    vt_attn_head_biased(j->out + (size_t)w * N * C + (size_t)h * j->d, C, q, 3 * C, q + C,
                        3 * C, q + 2 * C, 3 * C, j->N, j->N, j->d, j->scale,
                        j->bias ? j->bias + (size_t)h * N * N : NULL,
                        j->mask ? j->mask + (size_t)(w % j->mask_nw) * N * N : NULL,
                        j->scratch + (size_t)thread * vt_attn_head_scratch(j->N, j->d));
}

size_t vt_swin_attn_scratch(const vt_pool *p, int heads, int N, int d)
{
    (void)heads;
    return (size_t)vt_pool_size(p) * vt_attn_head_scratch(N, d);
}

void vt_swin_attn(vt_pool *p, float *out, const float *qkv, int nW, int mask_nw, int N,
                  int heads, int d, float scale, const float *bias, const float *mask,
                  float *scratch)
{
    swin_job j = {out, qkv, bias, mask, N, heads, d, mask_nw, scale, scratch};
    vt_pool_run_work(p, nW * heads, swin_task, &j, 4.0 * nW * N * N * heads * d);
}

/* ---- one Swin block ---------------------------------------------------- */

/* The block's two passes between products, split over windows on the pool
 * (both were a serial copy per token): LayerNorm written straight into
 * window order (LN1 and the partition in one pass), and the reverse with
 * the residual add, each row's LN2 made while it is in cache (into xn, map
 * order). Windows of all images: window w is window w % nW of image
 * w / nW. */
typedef struct wpass_job {
    float *x, *xw, *xn;
    const float *w, *b;         /* LN1 */
    const float *w2, *b2;       /* LN2 */
    int H, W, C, ws, shift, nW, per;
    float eps;
    int reverse;
} wpass_job;

static void wpass_task(void *ctx, int task, int thread)
{
    (void)thread;
    const wpass_job *j = ctx;
    int N = j->ws * j->ws, w0 = task * j->per;
    size_t img = (size_t)j->H * j->W * j->C;
    for (int w = w0; w < w0 + j->per; w++) {
        float *x = j->x + (size_t)(w / j->nW) * img, *xn = j->xn + (size_t)(w / j->nW) * img;
        float *xw = j->xw + (size_t)w * N * j->C;
        for (int t = 0; t < N; t++) {
            size_t at = window_src(w % j->nW, t, j->W, j->H, j->ws, j->shift) * j->C;
            if (j->reverse) {
                vt_add(x + at, xw + (size_t)t * j->C, (size_t)j->C);
                vt_layernorm(xn + at, x + at, j->w2, j->b2, 1, j->C, j->eps);
            } else {
                vt_layernorm(xw + (size_t)t * j->C, x + at, j->w, j->b, 1, j->C, j->eps);
            }
        }
    }
}

static void window_pass(vt_pool *p, wpass_job *j, int windows)
{
    int T = vt_pool_size(p), want = 4 * T < windows ? 4 * T : windows;
    /* whole windows per task; a divisor of the count, so no task is short */
    j->per = windows / want;
    while (windows % j->per)
        j->per--;
    double work = (double)windows * j->ws * j->ws * j->C * (j->reverse ? 9 : 8);
    vt_pool_run_work(p, windows / j->per, wpass_task, j, work);
}

size_t vt_swin_block_scratch(const vt_pool *p, const vt_swin_block_w *b, int batch, int H,
                             int W, int C)
{
    size_t L = (size_t)batch * H * W;
    /* xn [L,C], then xw [L,C], qkv [L,3C], aw [L,C] or, once they are read
     * for the last time, hidden [L,F]; then the attention's own */
    size_t mid = L * C * 5 > L * b->hidden ? L * C * 5 : L * b->hidden;
    return L * C + mid + vt_swin_attn_scratch(p, b->heads, b->ws * b->ws, C / b->heads);
}

void vt_swin_block(vt_pool *p, float *x, int batch, int H, int W, int C,
                   const vt_swin_block_w *b, float eps, float *scratch)
{
    /* every image's tokens in each product and in one attention job: L
     * rows of all images, batch * nW windows */
    int hw = H * W, L = batch * hw, N = b->ws * b->ws, nW = hw / N, d = C / b->heads;
    int F = b->hidden;
    /* laid out as vt_swin_block_scratch says: hid over xw, qkv and aw */
    size_t LC = (size_t)L * C, mid = LC * 5 > (size_t)L * F ? LC * 5 : (size_t)L * F;
    float *xn = scratch, *xw = xn + LC, *qkv = xw + LC, *aw = qkv + 3 * LC, *hid = xw;
    float *att = xw + mid;
    wpass_job wj = {x, xw, xn, b->n1w, b->n1b, b->n2w, b->n2b, H, W, C, b->ws, b->shift, nW,
                    0, eps, 0};
    window_pass(p, &wj, batch * nW);       /* xw = partition(roll(LN1(x))) */
    vt_linear(p, qkv, xw, b->qkvw, b->qkvb, L, C, 3 * C, 0, 0);
    vt_swin_attn(p, aw, qkv, batch * nW, nW, N, b->heads, d, 1.0f / sqrtf((float)d), b->bias,
                 b->mask, att);
    vt_linear(p, xw, aw, b->projw, b->projb, L, C, C, 0, 0);
    wj.reverse = 1;
    window_pass(p, &wj, batch * nW);       /* x += reverse(xw); xn = LN2(x) */
    vt_linear(p, hid, xn, b->fc1w, b->fc1b, L, C, F, 0, 1);
    vt_linear(p, x, hid, b->fc2w, b->fc2b, L, F, C, 1, 0);
}

int vt_swin_block_pack(vt_pool *p, const vt_swin_block_w *b, int C)
{
    int F = b->hidden;
    if (vt_pool_wpack_load(p, b->qkvw, 3 * C, C) < 0 || vt_pool_wpack_load(p, b->projw, C, C) < 0 ||
        vt_pool_wpack_load(p, b->fc1w, F, C) < 0 || vt_pool_wpack_load(p, b->fc2w, C, F) < 0)
        return -1;
    return 0;
}
