/* grid.c - ops on token grids: GroupNorm(1, C), depthwise 3x3 on tokens,
 * stride-r patch gathering, stable argsort. See grid.h. */
#include <math.h>
#include <string.h>

#include "ops/cpu.h"
#include "ops/grid.h"
#include "ops/sepconv.h"

/* GroupNorm(1, c) in GN_CHUNKS fixed chunks of rows, whatever the pool:
 * partial sums (double) per chunk, added in chunk order, so the statistics
 * are the same bits for any number of threads. */
#define GN_CHUNKS 32
#define GN_LANES 8

typedef struct gn_job {
    float *x;
    const float *w, *b;
    int n, c, per, pass, gelu;
    float mean, rstd;
    double dmean;
    double part[GN_CHUNKS];
} gn_job;

/* sum of x[n], and of (x - mean)^2, in double: GN_LANES independent sums
 * (one chain of dependent adds costs 4 cycles a value), added in lane
 * order at the end */
VT_CLONES static double sum_f64(const float *restrict x, size_t n)
{
    double lane[GN_LANES] = {0}, acc = 0;
    size_t i = 0;
    for (; i + GN_LANES <= n; i += GN_LANES)
        for (int l = 0; l < GN_LANES; l++)
            lane[l] += x[i + l];
    for (; i < n; i++)
        acc += x[i];
    for (int l = 0; l < GN_LANES; l++)
        acc += lane[l];
    return acc;
}

VT_CLONES static double sumsq_dev_f64(const float *restrict x, size_t n, double mean)
{
    double lane[GN_LANES] = {0}, acc = 0;
    size_t i = 0;
    for (; i + GN_LANES <= n; i += GN_LANES)
        for (int l = 0; l < GN_LANES; l++) {
            double d = x[i + l] - mean;
            lane[l] += d * d;
        }
    for (; i < n; i++) {
        double d = x[i] - mean;
        acc += d * d;
    }
    for (int l = 0; l < GN_LANES; l++)
        acc += lane[l];
    return acc;
}

VT_CLONES static void gn_rows(float *restrict x, int rows, int c, float mean, float rstd,
                              const float *restrict w, const float *restrict b)
{
    for (int r = 0; r < rows; r++, x += c)
        for (int ch = 0; ch < c; ch++)
            x[ch] = (x[ch] - mean) * rstd * w[ch] + b[ch];
}

static void gn_task(void *ctx, int task, int thread)
{
    (void)thread;
    gn_job *j = ctx;
    int r0 = task * j->per, r1 = r0 + j->per < j->n ? r0 + j->per : j->n;
    if (r0 >= r1) {
        j->part[task] = 0;
        return;
    }
    float *x = j->x + (size_t)r0 * j->c;
    size_t len = (size_t)(r1 - r0) * j->c;
    double acc = 0;
    if (j->pass == 0) {
        acc = sum_f64(x, len);
    } else if (j->pass == 1) {
        acc = sumsq_dev_f64(x, len, j->dmean);
    } else {
        gn_rows(x, r1 - r0, j->c, j->mean, j->rstd, j->w, j->b);
        if (j->gelu)
            vt_gelu(j->x + (size_t)r0 * j->c, len);
    }
    j->part[task] = acc;
}

static double gn_pass(vt_pool *p, gn_job *j, int pass, double work)
{
    j->pass = pass;
    vt_pool_run_work(p, GN_CHUNKS, gn_task, j, work);
    double sum = 0;
    for (int t = 0; t < GN_CHUNKS; t++)
        sum += j->part[t];
    return sum;
}

void vt_groupnorm1_tokens_mt(vt_pool *p, float *x, int n, int c, const float *w,
                             const float *b, float eps, int gelu)
{
    if (n < 1 || c < 1)
        return;
    double total = (double)n * c;
    gn_job j = {.x = x, .w = w, .b = b, .n = n, .c = c, .gelu = gelu,
                .per = (n + GN_CHUNKS - 1) / GN_CHUNKS};
    j.dmean = gn_pass(p, &j, 0, total) / total;
    double var = gn_pass(p, &j, 1, 3 * total) / total;
    j.mean = (float)j.dmean;
    j.rstd = (float)(1.0 / sqrt(var + eps));
    gn_pass(p, &j, 2, (gelu ? 30 : 4) * total);
}

void vt_dw3_weights(float *wt9, const float *wt, int c)
{
    vt_dwk_weights(wt9, wt, c, 3);
}

typedef struct gelu_job {
    float *x;
    size_t rows, c, per;
} gelu_job;

static void gelu_task(void *ctx, int task, int thread)
{
    (void)thread;
    const gelu_job *j = ctx;
    size_t r0 = (size_t)task * j->per, r1 = r0 + j->per < j->rows ? r0 + j->per : j->rows;
    if (r0 < r1)
        vt_gelu(j->x + r0 * j->c, (r1 - r0) * j->c);
}

/* The 3x3 case of sepconv.c's depthwise convolution (several pixels per
 * register pass on AVX-512; the same sum order on every path); GELU in
 * the same tasks for the residual form, else as a second pass over the
 * rows on the pool. */
void vt_dw3_tokens(vt_pool *p, float *out, const float *x, int h, int w,
                   int c, const float *wt9, const float *b, int flags)
{
    if ((flags & VT_DW3_RESIDUAL) && (flags & VT_DW3_GELU)) {
        vt_dwk_tokens_residual_gelu(p, out, x, c, h, w, c, wt9, b, 3);
        return;
    }
    if (flags & VT_DW3_RESIDUAL)
        vt_dwk_tokens_residual(p, out, x, c, h, w, c, wt9, b, 3);
    else
        vt_dwk_tokens(p, out, c, x, c, h, w, c, wt9, b, 3, 1);
    if ((flags & VT_DW3_GELU) && h > 0 && w > 0 && c > 0) {
        size_t rows = (size_t)h * w;
        int want = 4 * vt_pool_size(p);
        gelu_job j = {out, rows, (size_t)c, (rows + want - 1) / want};
        vt_pool_run_work(p, (int)((rows + j.per - 1) / j.per), gelu_task, &j,
                         30.0 * (double)rows * c);
    }
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

typedef struct patchify_job {
    float *cols;
    const float *x;
    int h, w, c, r, ntask, hwc;
} patchify_job;

/* Output rows [oy0, oy1) are the patchify of the band of input rows
 * [oy0 r, oy1 r): the same call on a shorter grid. */
static void patchify_task(void *ctx, int task, int thread)
{
    (void)thread;
    const patchify_job *j = ctx;
    int ho = j->h / j->r, per = (ho + j->ntask - 1) / j->ntask, oy0 = task * per;
    int oy1 = oy0 + per < ho ? oy0 + per : ho;
    if (oy0 >= oy1)
        return;
    size_t kk = (size_t)j->c * j->r * j->r;
    float *cols = j->cols + (size_t)oy0 * (j->w / j->r) * kk;
    const float *x = j->x + (size_t)oy0 * j->r * j->w * j->c;
    int rows = (oy1 - oy0) * j->r;
    if (j->hwc)     /* a stride-r r x r window, unpadded: the patch */
        vt_im2col_tokens(cols, x, rows, j->w, j->c, j->r, j->r, 0);
    else
        vt_patchify_tokens(cols, x, rows, j->w, j->c, j->r);
}

void vt_patchify_tokens_mt(vt_pool *p, float *cols, const float *x, int h, int w, int c,
                           int r, int hwc)
{
    int ho = h / r, T = vt_pool_size(p);
    patchify_job j = {cols, x, h, w, c, r, ho < 4 * T ? (ho > 0 ? ho : 1) : 4 * T, hwc};
    vt_pool_run_work(p, j.ntask, patchify_task, &j, (double)(ho * r) * (w / r * r) * c);
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

/* ---- vt_argsort_torch: the same comparisons and moves as the introsort
 * PyTorch's CPU sort runs (see grid.h), written over an index array whose
 * keys are v[idx[i]]. Only the comparison "sorts before" is used. */

static int before(const float *v, int a, int b)
{
    return after(v[b], v[a]);
}

static void swap_idx(int *p, int i, int j)
{
    int t = p[i];
    p[i] = p[j];
    p[j] = t;
}

/* Sift `val` down from hole over the heap p[0, len), then back up to top. */
static void heap_adjust(int *p, const float *v, int hole, int len, int val)
{
    int top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(v, p[child], p[child - 1]))
            child--;
        p[hole] = p[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        p[hole] = p[child - 1];
        hole = child - 1;
    }
    int parent = (hole - 1) / 2;
    while (hole > top && before(v, p[parent], val)) {
        p[hole] = p[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    p[hole] = val;
}

static void heap_sort(int *p, const float *v, int len)
{
    for (int parent = (len - 2) / 2; len >= 2 && parent >= 0; parent--)
        heap_adjust(p, v, parent, len, p[parent]);
    for (int last = len - 1; last > 0; last--) {
        int val = p[last];
        p[last] = p[0];
        heap_adjust(p, v, 0, last, val);
    }
}

/* Move the median of p[a], p[b], p[c] to p[first]. */
static void median_to_first(int *p, const float *v, int first, int a, int b, int c)
{
    int m;
    if (before(v, p[a], p[b]))
        m = before(v, p[b], p[c]) ? b : before(v, p[a], p[c]) ? c : a;
    else
        m = before(v, p[a], p[c]) ? a : before(v, p[b], p[c]) ? c : b;
    swap_idx(p, first, m);
}

/* Partition p[first+1, last) around the pivot p[first]; both scans stop on
 * equal keys, which is what makes the order of ties depend on the input. */
static int partition_around_first(int *p, const float *v, int first, int last)
{
    int i = first + 1, j = last, pivot = p[first];
    for (;;) {
        while (before(v, p[i], pivot))
            i++;
        j--;
        while (before(v, pivot, p[j]))
            j--;
        if (i >= j)
            return i;
        swap_idx(p, i, j);
        i++;
    }
}

enum { INTROSORT_RUN = 16 };

static void introsort_loop(int *p, const float *v, int first, int last, int depth)
{
    while (last - first > INTROSORT_RUN) {
        if (depth == 0) {
            heap_sort(p + first, v, last - first);
            return;
        }
        depth--;
        median_to_first(p, v, first, first + 1, first + (last - first) / 2, last - 1);
        int cut = partition_around_first(p, v, first, last);
        introsort_loop(p, v, cut, last, depth);
        last = cut;
    }
}

/* Insert p[i] into the sorted p[.., i); a smaller key is known to sit
 * somewhere before it, so no bound check. */
static void insert_unguarded(int *p, const float *v, int i)
{
    int val = p[i], j = i - 1;
    while (before(v, val, p[j])) {
        p[j + 1] = p[j];
        j--;
    }
    p[j + 1] = val;
}

static void insertion_sort(int *p, const float *v, int first, int last)
{
    for (int i = first + 1; i < last; i++) {
        if (before(v, p[i], p[first])) {
            int val = p[i];
            memmove(p + first + 1, p + first, (size_t)(i - first) * sizeof *p);
            p[first] = val;
        } else {
            insert_unguarded(p, v, i);
        }
    }
}

void vt_argsort_torch(int *idx, const float *v, int n)
{
    for (int i = 0; i < n; i++)
        idx[i] = i;
    if (n < 2)
        return;
    int lg = 0;
    while ((2 << lg) <= n)
        lg++;
    introsort_loop(idx, v, 0, n, 2 * lg);
    if (n > INTROSORT_RUN) {
        insertion_sort(idx, v, 0, INTROSORT_RUN);
        for (int i = INTROSORT_RUN; i < n; i++)
            insert_unguarded(idx, v, i);
    } else {
        insertion_sort(idx, v, 0, n);
    }
}
