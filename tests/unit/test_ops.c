/* test_ops.c - the inference core's ops against naive double-precision
 * references (and torch's F.interpolate outputs for resampling). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npy.h"
#include "ops.h"
#include "ops/grid.h"
#include "ops/attend.h"
#include "ops/sepconv.h"
#include "ops/deform.h"
#include "ops/cpu.h"
#include "ops/gemm.h"
#include "tap.h"
#include "util.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *randv(size_t n, unsigned seed)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand(&seed);
    return v;
}

static double maxdiff(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* y[m,n] = x[m,k] @ w[n,k]^T + b */
static void ref_linear(double *y, const float *x, const float *w, const float *b,
                       int m, int k, int n)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = b ? b[j] : 0;
            for (int l = 0; l < k; l++)
                s += (double)x[i * k + l] * w[j * k + l];
            y[i * n + j] = s;
        }
}

static double ref_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

static atomic_int hits[1000];
static void count_task(void *ctx, int task, int thread)
{
    (void)ctx;
    (void)thread;
    atomic_fetch_add(&hits[task], 1);
}

/* task 0 takes a few milliseconds: long enough for the caller to sleep */
static void slow_task(void *ctx, int task, int thread)
{
    if (task == 0)
        nanosleep(&(struct timespec){0, 3000000}, NULL);
    count_task(ctx, task, thread);
}

static void test_pool(void)
{
    vt_pool *p = vt_pool_create(3);
    ok(p && vt_pool_size(p) == 3, "pool of 3 threads");
    int good = 1;
    for (int round = 0; round < 200; round++) {
        int n = 1 + round * 5 % 997;
        for (int i = 0; i < n; i++)
            atomic_store(&hits[i], 0);
        vt_pool_run(p, n, count_task, NULL);
        for (int i = 0; i < n; i++)
            good &= atomic_load(&hits[i]) == 1;
    }
    ok(good, "every task runs exactly once over 200 jobs");
    /* slow tasks (a worker preempted mid-task) send the caller to sleep
     * while it waits; idle gaps send the workers to sleep between jobs */
    good = 1;
    for (int round = 0; round < 40; round++) {
        int n = 1 + round % 7;
        for (int i = 0; i < n; i++)
            atomic_store(&hits[i], 0);
        vt_pool_run(p, n, round % 2 ? slow_task : count_task, NULL);
        for (int i = 0; i < n; i++)
            good &= atomic_load(&hits[i]) == 1;
        if (round % 5 == 0)
            nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    ok(good, "slow tasks and sleeping workers: every task once");
    for (int i = 0; i < 4; i++)
        atomic_store(&hits[i], 0);
    vt_pool_run_work(p, 4, count_task, NULL, 10);
    ok(atomic_load(&hits[0]) + atomic_load(&hits[1]) + atomic_load(&hits[2]) +
       atomic_load(&hits[3]) == 4, "small job inline: every task once");
    vt_pool_free(p);
    atomic_store(&hits[0], 0);
    vt_pool_run(NULL, 1, count_task, NULL);
    ok(atomic_load(&hits[0]) == 1, "NULL pool runs serially");
}

static void test_elementwise(void)
{
    double e = 0, g = 0, er = 0;
    for (float x = -20; x <= 20; x += 0.001f) {
        double want = exp(x);
        double d = fabs(vt_expf(x) - want) / want;
        e = d > e ? d : e;
        float v = x;
        vt_gelu(&v, 1);
        d = fabs(v - ref_gelu(x));
        g = d > g ? d : g;
        d = fabs(vt_erff(x) - erf(x));
        er = d > er ? d : er;
    }
    ok(e < 5e-7, "expf relative error %.3g", e);
    ok(er < 5e-7, "erf absolute error %.3g", er);
    ok(g < 5e-6, "gelu absolute error %.3g on [-20,20]", g);
    float big[3] = {-100, 0, 100};
    vt_gelu(big, 3);
    ok(big[0] == 0 && big[1] == 0 && big[2] == 100, "gelu saturates exactly");

    int m = 5, n = 37;
    float *x = randv((size_t)m * n, 1);
    double *want = malloc(sizeof(double) * m * n);
    for (int i = 0; i < m; i++) {
        double mx = -1e30, s = 0;
        for (int j = 0; j < n; j++) {
            x[i * n + j] *= 30;
            mx = fmax(mx, x[i * n + j]);
        }
        for (int j = 0; j < n; j++)
            s += exp(x[i * n + j] - mx);
        for (int j = 0; j < n; j++)
            want[i * n + j] = exp(x[i * n + j] - mx) / s;
    }
    vt_softmax(x, m, n);
    ok(maxdiff(x, want, (size_t)m * n) < 1e-6, "softmax rows");

    /* layer-scaled residual, serial and over a pool (rows split) */
    int rm = 301, rn = 45;
    float *y0 = randv((size_t)rm * rn, 2), *xs = randv((size_t)rm * rn, 3), *gs = randv(rn, 4);
    float *y1 = malloc(sizeof(float) * rm * rn);
    memcpy(y1, y0, sizeof(float) * rm * rn);
    double *wr = malloc(sizeof(double) * rm * rn);
    for (int i = 0; i < rm * rn; i++)
        wr[i] = (double)y0[i] + (double)gs[i % rn] * xs[i];
    vt_pool *pool = vt_pool_create(2);
    vt_add_scaled_rows(NULL, y0, xs, gs, rm, rn);
    vt_add_scaled_rows(pool, y1, xs, gs, rm, rn);
    ok(maxdiff(y0, wr, (size_t)rm * rn) < 1e-6, "layer-scaled residual");
    ok(memcmp(y0, y1, sizeof(float) * rm * rn) == 0, "layer-scaled residual on a pool: the same");
    /* copy over a pool: lengths around the chunking */
    int copied = 1;
    for (size_t len = 0; len < 300; len += 37) {
        float *dst = calloc(len + 1, sizeof *dst);
        vt_copy(pool, dst, xs, len);
        copied &= memcmp(dst, xs, len * sizeof *dst) == 0 && dst[len] == 0;
        free(dst);
    }
    size_t nbig = 300001;   /* above the pool's minimum work */
    float *src = randv(nbig, 5), *cbuf = malloc(sizeof(float) * (nbig + 1));
    cbuf[nbig] = -1;
    vt_copy(pool, cbuf, src, nbig);
    copied &= memcmp(cbuf, src, sizeof(float) * nbig) == 0 && cbuf[nbig] == -1;
    free(src);
    free(cbuf);
    ok(copied, "copy on a pool");
    vt_pool_free(pool);
    free(y0); free(y1); free(xs); free(gs); free(wr);

    free(x);
    free(want);
}

/* LayerNorm on both kernels (AVX-512 rows with a masked tail, portable)
 * against a double-precision reference, widths around the vector size. */
static void test_layernorm_widths(void)
{
    int widths[] = {1, 7, 16, 17, 37, 64, 80, 100, 320, 384, 513};
    for (int level = 0; level < 2; level++) {
        vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
        for (size_t t = 0; t < sizeof widths / sizeof *widths; t++) {
            int m = 5, n = widths[t];
            float *x = randv((size_t)m * n, 40 + (int)t), *w = randv(n, 50), *b = randv(n, 51);
            float *y = malloc(sizeof(float) * m * n);
            double *want = malloc(sizeof(double) * m * n);
            for (int i = 0; i < m * n; i++)
                x[i] += 2;
            for (int i = 0; i < m; i++) {
                double mu = 0, v = 0;
                for (int j = 0; j < n; j++)
                    mu += x[i * n + j];
                mu /= n;
                for (int j = 0; j < n; j++)
                    v += (x[i * n + j] - mu) * (x[i * n + j] - mu);
                v /= n;
                for (int j = 0; j < n; j++)
                    want[i * n + j] = (x[i * n + j] - mu) / sqrt(v + 1e-5) * w[j] + b[j];
            }
            vt_layernorm(y, x, w, b, m, n, 1e-5f);
            int good = maxdiff(y, want, (size_t)m * n) < 1e-5;
            vt_layernorm(x, x, w, b, m, n, 1e-5f);
            good = good && maxdiff(x, want, (size_t)m * n) < 1e-5;
            ok(good, "layernorm width %d (%s), also in place", n, level ? "best" : "portable");
            free(x); free(y); free(w); free(b); free(want);
        }
    }
    vt_cpu_cap(-1);
}

/* One bilinear sample of channel c of v[h*w, ld] at (x, y) in double,
 * corners outside the map 0 (grid_sample, zero padding). */
static double bilinear_ref(const float *v, int ld, int h, int w, int c, double x, double y)
{
    double x0 = floor(x), y0 = floor(y), tx = x - x0, ty = y - y0, s = 0;
    double cw[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
    double fx[4] = {x0, x0 + 1, x0, x0 + 1}, fy[4] = {y0, y0, y0 + 1, y0 + 1};
    for (int k = 0; k < 4; k++)
        if (fx[k] >= 0 && fx[k] < w && fy[k] >= 0 && fy[k] < h)
            s += cw[k] * v[((size_t)fy[k] * w + (size_t)fx[k]) * ld + c];
    return s;
}

/* vt_deform_attend (and so vt_bilinear_point) against a plain reference:
 * offsets reaching past every edge, head widths around the channel chunk,
 * pool sizes 1 and 2, on both kernels. */
static void test_deform(void)
{
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    int shapes[][4] = {{5, 7, 1, 3}, {9, 9, 2, 64}, {4, 6, 3, 65}, {12, 11, 1, 130}};
    for (int level = 0; level < 2; level++) {
        vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
        for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
            int h = shapes[t][0], w = shapes[t][1], heads = shapes[t][2], d = shapes[t][3];
            int P = 4, N = h * w, C = heads * d, ldv = C + 3, ldo = C + 1;
            float *v = randv((size_t)N * ldv, 60 + (int)t);
            float *off = randv((size_t)N * heads * P * 2, 61), *wts = randv((size_t)N * heads * P, 62);
            for (int i = 0; i < N * heads * P * 2; i++)
                off[i] *= 3.0f;     /* up to 3 tokens away: past the edges */
            double *want = calloc((size_t)N * C, sizeof *want);
            for (int n = 0; n < N; n++)
                for (int j = 0; j < heads; j++)
                    for (int p = 0; p < P; p++) {
                        int k = (n * heads + j) * P + p;
                        double x = n % w + off[2 * k], y = n / w + off[2 * k + 1];
                        for (int c = 0; c < d; c++)
                            want[(size_t)n * C + j * d + c] +=
                                wts[k] * bilinear_ref(v + j * d, ldv, h, w, c, x, y);
                    }
            for (int pi = 0; pi < 2; pi++) {
                float *out = malloc(sizeof(float) * N * ldo);
                vt_deform_attend(pools[pi], out, ldo, v, ldv, off, wts, h, w, heads, P, d);
                double err = 0;
                for (int n = 0; n < N; n++)
                    for (int c = 0; c < C; c++) {
                        double e = fabs(out[(size_t)n * ldo + c] - want[(size_t)n * C + c]);
                        err = e > err ? e : err;
                    }
                ok(err < 1e-5, "deform attend %dx%d, %d heads of %d, %d threads (%s): err %.2g",
                   h, w, heads, d, pi + 1, level ? "best" : "portable", err);
                free(out);
            }
            free(v); free(off); free(wts); free(want);
        }
    }
    vt_cpu_cap(-1);
    vt_pool_free(pools[1]);
}

/* vt_patchify_tokens against the convolution's input read directly, and
 * its pooled form (bands of output rows) equal to it, sizes that leave
 * trailing rows and columns out, more threads than bands. */
static void test_patchify(void)
{
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    int shapes[][4] = {{8, 8, 3, 2}, {9, 7, 5, 2}, {64, 64, 4, 8}, {3, 5, 2, 3}, {2, 2, 1, 4}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        int h = shapes[t][0], w = shapes[t][1], c = shapes[t][2], r = shapes[t][3];
        int ho = h / r, wo = w / r;
        size_t kk = (size_t)c * r * r, len = (size_t)(ho * wo) * kk;
        float *x = randv((size_t)h * w * c, 70 + (int)t);
        float *want = malloc(sizeof(float) * (len ? len : 1));
        float *got = malloc(sizeof(float) * (len ? len : 1));
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
                for (int ch = 0; ch < c; ch++)
                    for (int ky = 0; ky < r; ky++)
                        for (int kx = 0; kx < r; kx++)
                            want[((size_t)oy * wo + ox) * kk + ((size_t)ch * r + ky) * r + kx] =
                                x[((size_t)(oy * r + ky) * w + ox * r + kx) * c + ch];
        vt_patchify_tokens(got, x, h, w, c, r);
        int good = memcmp(got, want, len * sizeof *got) == 0;
        for (int pi = 0; pi < 2; pi++) {
            memset(got, 0, len * sizeof *got);
            vt_patchify_tokens_mt(pools[pi], got, x, h, w, c, r, 0);
            good = good && memcmp(got, want, len * sizeof *got) == 0;
        }
        ok(good, "patchify %dx%d, %d channels, patch %d (serial, pooled on 1 and 2 threads)", h, w,
           c, r);
        /* (ky, kx, c) rows times the reordered weight: the same products */
        int o = 3;
        float *wt = randv((size_t)o * kk, 80), *wh = malloc(sizeof(float) * o * kk);
        float *hwc = malloc(sizeof(float) * (len ? len : 1));
        vt_conv_weight_hwc(wh, wt, o, c, r);
        vt_im2col_tokens(hwc, x, h, w, c, r, r, 0);
        double err = 0;
        for (int i = 0; i < ho * wo; i++)
            for (int oc = 0; oc < o; oc++) {
                double a = 0, b = 0;
                for (size_t k = 0; k < kk; k++) {
                    a += (double)want[i * kk + k] * wt[oc * kk + k];
                    b += (double)hwc[i * kk + k] * wh[oc * kk + k];
                }
                err = fabs(a - b) > err ? fabs(a - b) : err;
            }
        good = err < 1e-9;
        for (int pi = 0; pi < 2; pi++) {
            memset(got, 0, len * sizeof *got);
            vt_patchify_tokens_mt(pools[pi], got, x, h, w, c, r, 1);
            good = good && memcmp(got, hwc, len * sizeof *got) == 0;
        }
        ok(good, "patchify (ky, kx, c) rows %dx%d, %d channels, patch %d: the same products by "
           "the reordered weight (err %.2g), pooled equal", h, w, c, r, err);
        free(wt); free(wh); free(hwc);
        free(x); free(want); free(got);
    }
    vt_pool_free(pools[1]);
}

static void test_linear(void)
{
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    int shapes[][3] = {{197, 64, 192}, {3, 48, 1000}, {300, 40, 10}, {1, 7, 5}, {33, 17, 129}};
    for (int pi = 0; pi < 2; pi++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            int m = shapes[si][0], k = shapes[si][1], n = shapes[si][2];
            float *x = randv((size_t)m * k, 10), *w = randv((size_t)n * k, 11);
            float *b = randv(n, 12), *y = randv((size_t)m * n, 13);
            double *want = malloc(sizeof(double) * m * n);
            ref_linear(want, x, w, b, m, k, n);
            for (size_t i = 0; i < (size_t)m * n; i++)
                want[i] += y[i];
            vt_linear(pools[pi], y, x, w, b, m, k, n, 1.0f, 0);
            ok(maxdiff(y, want, (size_t)m * n) < 1e-4, "linear %dx%dx%d accumulate, %d threads",
               m, k, n, vt_pool_size(pools[pi]));
            ref_linear(want, x, w, b, m, k, n);
            for (size_t i = 0; i < (size_t)m * n; i++)
                want[i] = ref_gelu(want[i]);
            vt_linear(pools[pi], y, x, w, b, m, k, n, 0.0f, 1);
            ok(maxdiff(y, want, (size_t)m * n) < 1e-4, "linear %dx%dx%d + gelu, %d threads",
               m, k, n, vt_pool_size(pools[pi]));
            free(x); free(w); free(b); free(y); free(want);
        }
    vt_pool_free(pools[1]);
}

/* packed linear layers on both kernel levels: tails in every dimension,
 * bias or not, GELU, accumulate; packed from the weight or from a copy
 * the pack takes over (vt_wpack_init_take) */
static void test_linear_packed(void)
{
    int shapes[][3] = {{197, 64, 192}, {3, 48, 1000}, {300, 40, 10}, {1, 7, 5},
                       {33, 17, 129}, {25, 384, 48}, {13, 1, 33}};
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    for (int level = 0; level < 2; level++)
        for (int pi = 0; pi < 2; pi++)
            for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
                vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
                int m = shapes[si][0], k = shapes[si][1], n = shapes[si][2];
                float *x = randv((size_t)m * k, 14), *w = randv((size_t)n * k, 15);
                float *b = randv(n, 16), *y0 = randv((size_t)m * n, 17);
                float *y = malloc(sizeof(float) * m * n);
                double *want = malloc(sizeof(double) * m * n), err[3] = {0};
                vt_wpack pk;
                if (si % 2) {
                    /* a copy handed over: freed at once, or kept as raw */
                    float *copy = vt_xmalloc(sizeof(float) * n * k);
                    memcpy(copy, w, sizeof(float) * n * k);
                    ok(vt_wpack_init_take(&pk, copy, n, k) == 0, "pack %dx%d, taken", n, k);
                } else {
                    ok(vt_wpack_init(&pk, w, n, k) == 0, "pack %dx%d", n, k);
                }
                for (int mode = 0; mode < 3; mode++) {
                    /* 0: bias, 1: bias + GELU, 2: no bias, accumulate */
                    ref_linear(want, x, w, mode < 2 ? b : NULL, m, k, n);
                    memcpy(y, y0, sizeof(float) * m * n);
                    for (size_t i = 0; i < (size_t)m * n; i++)
                        want[i] = mode == 1 ? ref_gelu(want[i]) : mode == 2 ? want[i] + y0[i] : want[i];
                    vt_linear_packed(pools[pi], y, x, &pk, mode < 2 ? b : NULL, m,
                                     mode == 2 ? 1.0f : 0.0f, mode == 1);
                    err[mode] = maxdiff(y, want, (size_t)m * n);
                }
                ok(err[0] < 1e-4 && err[1] < 1e-4 && err[2] < 1e-4,
                   "packed linear %dx%dx%d, %d threads, %s (err %.2g %.2g %.2g)", m, k, n,
                   vt_pool_size(pools[pi]), level ? "best kernels" : "portable", err[0], err[1],
                   err[2]);
                vt_wpack_free(&pk);
                free(x); free(w); free(b); free(y0); free(y); free(want);
            }
    vt_cpu_cap(-1);
    vt_pool_free(pools[1]);
}

/* weights in a range declared read-only: vt_linear packs them once */
static void test_linear_readonly(void)
{
    int m = 50, k = 70, n = 90;
    vt_pool *p = vt_pool_create(2);
    float *w = randv((size_t)n * k + 10, 50), *x = randv((size_t)m * k, 51), *b = randv(n, 52);
    float *y = malloc(sizeof(float) * m * n);
    double *want = malloc(sizeof(double) * m * n);
    ok(vt_pool_wpack(p, w, n, k) == NULL, "no packing outside read-only ranges");
    vt_pool_readonly(p, w, sizeof(float) * ((size_t)n * k + 10));
    const vt_wpack *pk = vt_pool_wpack(p, w, n, k);
    ok(pk && vt_pool_wpack(p, w, n, k) == pk && vt_pool_wpack(p, w + 20, n, k) == NULL,
       "packed once, found again; a weight running past the range is not");
    ref_linear(want, x, w, b, m, k, n);
    for (int rep = 0; rep < 2; rep++) {
        vt_linear(p, y, x, w, b, m, k, n, 0.0f, 0);
        ok(maxdiff(y, want, (size_t)m * n) < 1e-4, "vt_linear over read-only weights, call %d",
           rep + 1);
    }
    free(w); free(x); free(b); free(y); free(want);
    vt_pool_free(p);
}

/* f32 to bf16 bits, round to nearest even (as vt-convert and vdpbf16ps) */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* BF16-packed linear layers, each kernel against a scalar reference over
 * the same bf16 weights (and, for vdpbf16ps, bf16-rounded inputs; for the
 * fp16 kernel, inputs on a grid, x in quarters and w in eighths, where its
 * fp16 products and sums of 64 are exact, so any error is the kernel's
 * indexing, not its precision: test_linear_fp16 checks that) */
static void test_linear_bf16(void)
{
    int shapes[][3] = {{197, 64, 192}, {3, 48, 1000}, {30, 41, 10}, {1, 7, 5},
                       {33, 17, 129}, {25, 384, 48}, {13, 1, 33}, {14, 600, 40},
                       {29, 771, 300}, {12, 257, 70}};
    static const char *const names[] = {"portable", "fma", "dpbf16", "fp16"};
    vt_pool *pool = vt_pool_create(2);
    int have = vt_cpu() >= VT_CPU_AVX512FP16 ? 4 : vt_cpu() >= VT_CPU_AVX512BF16 ? 3
             : vt_cpu() >= VT_CPU_AVX512 ? 2 : 1;
    for (int kern = 0; kern < 4; kern++) {
        if (kern >= have) {
            skip(names[kern], "this CPU lacks the instructions");
            continue;
        }
        vt_gemm_bf16_force(kern);
        ok(vt_gemm_bf16_kernel() == kern, "bf16 kernel %s chosen", names[kern]);
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            int m = shapes[si][0], k = shapes[si][1], n = shapes[si][2];
            float *x = randv((size_t)m * k, 24), *wf = randv((size_t)n * k, 25);
            float *b = randv(n, 26), *y0 = randv((size_t)m * n, 27);
            float *y = malloc(sizeof(float) * m * n), *xr = malloc(sizeof(float) * m * k);
            uint16_t *w16 = malloc(sizeof(uint16_t) * n * k);
            double *want = malloc(sizeof(double) * m * n), err[3] = {0};
            for (size_t i = 0; i < (size_t)n * k; i++) {
                w16[i] = to_bf16(kern == 3 ? roundf(wf[i] * 8) / 8 : wf[i]);
                wf[i] = from_bf16(w16[i]);
            }
            for (size_t i = 0; i < (size_t)m * k; i++) {
                x[i] = kern == 3 ? roundf(x[i] * 4) / 4 : x[i];
                xr[i] = kern == 2 ? from_bf16(to_bf16(x[i])) : x[i];
            }
            vt_wpack pk;
            ok(vt_wpack_init_bf16(&pk, w16, n, k) == 0 && pk.bf16 && pk.fp16 == (kern == 3),
               "pack bf16 %dx%d%s", n, k, kern == 3 ? " as fp16" : "");
            for (int mode = 0; mode < 3; mode++) {
                ref_linear(want, xr, wf, mode < 2 ? b : NULL, m, k, n);
                memcpy(y, y0, sizeof(float) * m * n);
                for (size_t i = 0; i < (size_t)m * n; i++)
                    want[i] = mode == 1 ? ref_gelu(want[i]) : mode == 2 ? want[i] + y0[i] : want[i];
                vt_linear_packed(si % 2 ? pool : NULL, y, x, &pk, mode < 2 ? b : NULL, m,
                                 mode == 2 ? 1.0f : 0.0f, mode == 1);
                err[mode] = maxdiff(y, want, (size_t)m * n);
            }
            ok(err[0] < 1e-4 && err[1] < 1e-4 && err[2] < 1e-4,
               "bf16 linear %dx%dx%d, %s kernel (err %.2g %.2g %.2g)", m, k, n, names[kern],
               err[0], err[1], err[2]);
            vt_wpack_free(&pk);
            free(x); free(wf); free(b); free(y0); free(y); free(xr); free(w16); free(want);
        }
    }
    vt_gemm_bf16_force(-1);
    vt_pool_free(pool);
}

/* The fp16 kernel on inputs off the grid, against f64 over the same bf16
 * weights: its error is x rounded to fp16 (2^-12 relative) and fp16 sums
 * of 64 products, so bounded by a small multiple of 2^-11 times the
 * products' magnitude sum_k |x w|; and its range: x far above fp16's
 * 65504 (and rows far apart in size) is scaled into range, never inf. */
static void test_linear_fp16(void)
{
    if (vt_cpu() < VT_CPU_AVX512FP16) {
        skip("fp16 kernel accuracy and range", "this CPU lacks AVX512-FP16");
        return;
    }
    vt_gemm_bf16_force(VT_BF16_FP16);
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    int m = 37, k = 771, n = 100;
    float *x = randv((size_t)m * k, 60), *wf = randv((size_t)n * k, 61), *b = randv(n, 62);
    float *y = malloc(sizeof(float) * m * n);
    uint16_t *w16 = malloc(sizeof(uint16_t) * n * k);
    double *want = malloc(sizeof(double) * m * n), *mag = malloc(sizeof(double) * m * n);
    for (size_t i = 0; i < (size_t)n * k; i++) {
        w16[i] = to_bf16(wf[i] * (i % 7 == 0 ? 1e-3f : 1.0f));   /* some small weights */
        wf[i] = from_bf16(w16[i]);
    }
    vt_wpack pk;
    ok(vt_wpack_init_bf16(&pk, w16, n, k) == 0 && pk.fp16, "pack %dx%d as fp16", n, k);
    /* scale 1: plain; 1e6 and 1e30: far past fp16 (x * w overflows it
     * unscaled); per row 0.1 .. 100: rows of different size in one call
     * (one scale serves the call: a row 2^14 below its largest has its x
     * in fp16 subnormals and loses bits, though never range) */
    static const char *const what[] = {"x in [-1, 1]", "x * 1e6", "x * 1e30", "rows 0.1 .. 100",
                                       "|x| * 1e4, all products one sign"};
    for (int c = 0; c < 5; c++) {
        float *xs = malloc(sizeof(float) * m * k);
        for (int i = 0; i < m; i++)
            for (int l = 0; l < k; l++) {
                float f = c == 1 ? 1e6f : c == 2 ? 1e30f : c == 3 ? powf(10.0f, (float)(i % 4) - 1) : 1;
                xs[i * k + l] = c == 4 ? fabsf(x[i * k + l]) * copysignf(1e4f, wf[l]) : x[i * k + l] * f;
            }
        ref_linear(want, xs, wf, NULL, m, k, n);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int l = 0; l < k; l++)
                    s += fabs((double)xs[i * k + l] * wf[j * k + l]);
                mag[i * n + j] = s;
            }
        /* no pool: each tile rounds its x; a pool: x rounded once per call */
        for (int pi = 0; pi < 2; pi++) {
            vt_linear_packed(pools[pi], y, xs, &pk, NULL, m, 0.0f, 0);
            double worst = 0;
            int finite = 1;
            for (size_t i = 0; i < (size_t)m * n; i++) {
                finite &= isfinite(y[i]);
                double e = fabs(y[i] - want[i]) / mag[i];
                worst = e > worst ? e : worst;
            }
            ok(finite && worst < 0x1p-9, "fp16 linear %dx%dx%d, %s, %s: finite, error %.2g of "
               "sum |x w| (bound 2^-9)", m, k, n, what[c], pi ? "2 threads" : "no pool", worst);
        }
        free(xs);
    }
    vt_wpack_free(&pk);
    vt_pool_free(pools[1]);
    vt_gemm_bf16_force(-1);
    free(x); free(wf); free(b); free(y); free(w16); free(want); free(mag);
}

static void test_attention(void)
{
    int cases[][4] = {{1, 197, 6, 8}, {2, 10, 3, 5}, {3, 17, 2, 12}, {1, 5, 1, 4}, {1, 197, 3, 64}};
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    for (int pi = 0; pi < 4; pi++)
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
            vt_cpu_cap(pi < 2 ? -1 : VT_CPU_PORTABLE);
            int B = cases[ci][0], t = cases[ci][1], H = cases[ci][2], dh = cases[ci][3];
            int d = H * dh;
            float *qkv = randv((size_t)B * t * 3 * d, 20);
            float *out = malloc(sizeof(float) * B * t * d);
            float *cls = malloc(sizeof(float) * B * H * t);
            float *scratch = malloc(sizeof(float) * vt_attention_scratch(pools[pi % 2], t, dh));
            double *want = malloc(sizeof(double) * B * t * d);
            double *wcls = malloc(sizeof(double) * B * H * t);
            float *maps = malloc(sizeof(float) * B * H * t * t);
            double *wmaps = malloc(sizeof(double) * B * H * t * t);
            double *s = malloc(sizeof(double) * t);
            double scale = 1 / sqrt(dh);
            for (int b = 0; b < B; b++)
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < t; i++) {
                        const float *q = qkv + ((size_t)b * t + i) * 3 * d + h * dh;
                        double mx = -1e30, sum = 0;
                        for (int j = 0; j < t; j++) {
                            const float *k = qkv + ((size_t)b * t + j) * 3 * d + d + h * dh;
                            double v = 0;
                            for (int l = 0; l < dh; l++)
                                v += (double)q[l] * k[l];
                            s[j] = v * scale * 8;     /* sharpen (q scaled below) */
                            mx = fmax(mx, s[j]);
                        }
                        for (int j = 0; j < t; j++)
                            sum += s[j] = exp(s[j] - mx);
                        for (int l = 0; l < dh; l++) {
                            double o = 0;
                            for (int j = 0; j < t; j++)
                                o += s[j] / sum * qkv[((size_t)b * t + j) * 3 * d + 2 * d + h * dh + l];
                            want[((size_t)b * t + i) * d + h * dh + l] = o;
                        }
                        if (i == 0)
                            for (int j = 0; j < t; j++)
                                wcls[((size_t)b * H + h) * t + j] = s[j] / sum;
                        for (int j = 0; j < t; j++)
                            wmaps[(((size_t)b * H + h) * t + i) * t + j] = s[j] / sum;
                    }
            vt_attention(pools[pi % 2], out, qkv, B, t, H, dh, (float)scale * 8, scratch, cls, NULL);
            ok(maxdiff(out, want, (size_t)B * t * d) < 1e-5,
               "attention B=%d t=%d heads=%d dh=%d, %d threads%s", B, t, H, dh,
               vt_pool_size(pools[pi % 2]), pi < 2 ? "" : ", portable");
            ok(maxdiff(cls, wcls, (size_t)B * H * t) < 1e-6, "attention CLS rows");
            /* again keeping every head's whole matrix: same output, bitwise */
            float *out2 = malloc(sizeof(float) * B * t * d);
            vt_attention(pools[pi % 2], out2, qkv, B, t, H, dh, (float)scale * 8, scratch, NULL, maps);
            ok(memcmp(out, out2, sizeof(float) * B * t * d) == 0 &&
               maxdiff(maps, wmaps, (size_t)B * H * t * t) < 1e-6, "attention whole maps");
            free(out2); free(maps); free(wmaps);
            free(qkv); free(out); free(cls); free(scratch); free(want); free(wcls); free(s);
        }
    vt_cpu_cap(-1);
    vt_pool_free(pools[1]);
}

/* o = softmax(scale q k^T + bias + mask) v for one head, in double; bias
 * and mask [nq, nk] may be NULL */
static void ref_attn_biased(double *o, const float *q, int ldq, const float *k, int ldk,
                            const float *v, int ldv, int nq, int nk, int d, double scale,
                            const float *bias, const float *mask)
{
    double *s = malloc(sizeof(double) * nk);
    for (int i = 0; i < nq; i++) {
        double mx = -1e300, sum = 0;
        for (int j = 0; j < nk; j++) {
            double a = 0;
            for (int c = 0; c < d; c++)
                a += (double)q[(size_t)i * ldq + c] * k[(size_t)j * ldk + c];
            s[j] = a * scale + (bias ? bias[(size_t)i * nk + j] : 0) +
                   (mask ? mask[(size_t)i * nk + j] : 0);
            mx = fmax(mx, s[j]);
        }
        for (int j = 0; j < nk; j++)
            sum += s[j] = exp(s[j] - mx);
        for (int c = 0; c < d; c++) {
            double a = 0;
            for (int j = 0; j < nk; j++)
                a += s[j] * v[(size_t)j * ldv + c];
            o[(size_t)i * d + c] = a / sum;
        }
    }
    free(s);
}

static void ref_attn(double *o, const float *q, int ldq, const float *k, int ldk,
                     const float *v, int ldv, int nq, int nk, int d, double scale)
{
    ref_attn_biased(o, q, ldq, k, ldk, v, ldv, nq, nk, d, scale, NULL, NULL);
}

/* the fused head on both kernel levels, with several key blocks (online
 * softmax), channel counts off the vector width, and strided rows */
/* A head's rows gathered by index (scaled) and scattered back, both paths,
 * widths around the vector size. */
static void test_rows_gather(void)
{
    int n = 7, ld = 70, idx[7] = {5, 0, 3, 9, 1, 8, 2};
    float *src = randv(10 * (size_t)ld, 50);
    for (int level = 0; level < 2; level++) {
        vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
        int good = 1;
        for (int d = 1; d <= 40; d += 13) {
            float g[7 * 40], back[10 * 70];
            vt_rows_gather(g, src + 3, (size_t)ld, idx, n, d, 0.5f);
            for (int i = 0; i < n; i++)
                for (int c = 0; c < d; c++)
                    good &= g[i * d + c] == src[idx[i] * ld + 3 + c] * 0.5f;
            vt_rows_gather(g, src + 3, (size_t)ld, idx, n, d, 1.0f);
            memset(back, 0, sizeof back);
            vt_rows_scatter(back + 3, (size_t)ld, g, idx, n, d);
            for (int i = 0; i < n; i++)
                for (int c = 0; c < ld - 3; c++)
                    good &= back[idx[i] * ld + 3 + c] == (c < d ? src[idx[i] * ld + 3 + c] : 0);
        }
        ok(good, "rows gather and scatter (%s)", level ? "avx512 if present" : "portable");
    }
    vt_cpu_cap(-1);
    free(src);
}

static void test_attn_head(void)
{
    int cases[][3] = {{40, 600, 64}, {7, 1030, 33}, {100, 50, 80}, {1, 1, 1},
                      {33, 513, 16}, {65, 197, 64}, {3, 20, 130}};
    for (int level = 0; level < 2; level++) {
        vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
            int nq = cases[ci][0], nk = cases[ci][1], d = cases[ci][2], ld = d + 3;
            float *q = randv((size_t)nq * ld, 40), *k = randv((size_t)nk * ld, 41);
            float *v = randv((size_t)nk * ld, 42), *o = malloc(sizeof(float) * nq * ld);
            float *sc = malloc(sizeof(float) * vt_attn_head_scratch(nk, d));
            double *want = malloc(sizeof(double) * nq * d), err = 0;
            double scale = 4 / sqrt(d);     /* sharp enough to need the max */
            ref_attn(want, q, ld, k, ld, v, ld, nq, nk, d, scale);
            vt_attn_head(o, ld, q, ld, k, ld, v, ld, nq, nk, d, (float)scale, sc);
            for (int i = 0; i < nq; i++)
                for (int c = 0; c < d; c++)
                    err = fmax(err, fabs(o[(size_t)i * ld + c] - want[(size_t)i * d + c]));
            ok(err < 2e-6, "fused attention nq=%d nk=%d d=%d, %s (err %.2g)", nq, nk, d,
               level ? "best kernels" : "portable", err);
            /* with Swin's additions: a bias and a -100 / 0 mask */
            float *bias = randv((size_t)nq * nk, 43), *mask = randv((size_t)nq * nk, 44);
            for (size_t i = 0; i < (size_t)nq * nk; i++)
                mask[i] = mask[i] > 0.5f ? -100.0f : 0.0f;
            ref_attn_biased(want, q, ld, k, ld, v, ld, nq, nk, d, scale, bias, mask);
            vt_attn_head_biased(o, ld, q, ld, k, ld, v, ld, nq, nk, d, (float)scale, bias, mask, sc);
            err = 0;
            for (int i = 0; i < nq; i++)
                for (int c = 0; c < d; c++)
                    err = fmax(err, fabs(o[(size_t)i * ld + c] - want[(size_t)i * d + c]));
            ok(err < 2e-6, "fused attention + bias + mask nq=%d nk=%d d=%d, %s (err %.2g)", nq, nk,
               d, level ? "best kernels" : "portable", err);
            free(bias); free(mask);
            free(q); free(k); free(v); free(o); free(sc); free(want);
        }
    }
    vt_cpu_cap(-1);
}

static void test_conv(void)
{
    int c = 3, h = 11, w = 9, o = 5;
    int cases[][3] = {{4, 4, 0}, {3, 2, 1}, {7, 4, 3}, {1, 1, 0}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int k = cases[ci][0], s = cases[ci][1], pad = cases[ci][2];
        int ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
        float *x = randv((size_t)c * h * w, 30), *wt = randv((size_t)o * c * k * k, 31);
        float *b = randv(o, 32);
        float *cols = malloc(sizeof(float) * ho * wo * c * k * k);
        float *tok = malloc(sizeof(float) * ho * wo * o), *nchw = malloc(sizeof(float) * ho * wo * o);
        double *want = malloc(sizeof(double) * ho * wo * o);
        for (int oc = 0; oc < o; oc++)
            for (int y = 0; y < ho; y++)
                for (int xx = 0; xx < wo; xx++) {
                    double acc = b[oc];
                    for (int ic = 0; ic < c; ic++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = y * s - pad + ky, ix = xx * s - pad + kx;
                                if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                    acc += (double)x[(ic * h + iy) * w + ix] *
                                           wt[((oc * c + ic) * k + ky) * k + kx];
                            }
                    want[(oc * ho + y) * wo + xx] = acc;
                }
        vt_conv2d(NULL, nchw, x, c, h, w, wt, b, o, k, s, pad, cols);
        ok(maxdiff(nchw, want, (size_t)ho * wo * o) < 1e-5, "conv2d k=%d s=%d pad=%d", k, s, pad);
        vt_conv2d_tokens(NULL, tok, x, c, h, w, wt, b, o, k, s, pad, cols);
        double e = 0;
        for (int oc = 0; oc < o; oc++)
            for (int i = 0; i < ho * wo; i++)
                e = fmax(e, fabs(tok[i * o + oc] - want[oc * ho * wo + i]));
        ok(e < 1e-5, "conv2d to tokens k=%d s=%d pad=%d", k, s, pad);
        /* the same from tokens: im2col in (ky, kx, c) order */
        float *xt = malloc(sizeof(float) * h * w * c);
        float *cols2 = malloc(sizeof(float) * ho * wo * c * k * k);
        for (int ic = 0; ic < c; ic++)
            for (int i = 0; i < h * w; i++)
                xt[i * c + ic] = x[ic * h * w + i];
        vt_im2col(cols, x, c, h, w, k, s, pad);
        vt_im2col_tokens(cols2, xt, h, w, c, k, s, pad);
        int same = 1;
        for (int i = 0; i < ho * wo; i++)
            for (int ic = 0; ic < c; ic++)
                for (int t = 0; t < k * k; t++)
                    same &= cols2[((size_t)i * k * k + t) * c + ic] ==
                            cols[((size_t)i * c + ic) * k * k + t];
        ok(same, "im2col from tokens k=%d s=%d pad=%d: the columns of im2col, permuted", k, s, pad);
        /* the pool versions: the same columns, and in the weight's order
         * straight from tokens */
        float *cols3 = malloc(sizeof(float) * ho * wo * c * k * k);
        size_t nc = (size_t)ho * wo * c * k * k;
        vt_pool *pool = vt_pool_create(2);
        vt_im2col_mt(pool, cols3, x, c, h, w, k, s, pad);
        ok(memcmp(cols3, cols, nc * sizeof *cols) == 0, "im2col on the pool k=%d s=%d pad=%d",
           k, s, pad);
        vt_im2col_tokens_mt(pool, cols3, xt, h, w, c, k, s, pad);
        ok(memcmp(cols3, cols2, nc * sizeof *cols) == 0,
           "im2col from tokens on the pool k=%d s=%d pad=%d", k, s, pad);
        vt_im2col_tokens_chw_mt(pool, cols3, xt, h, w, c, k, s, pad);
        ok(memcmp(cols3, cols, nc * sizeof *cols) == 0,
           "im2col from tokens in the weight's order k=%d s=%d pad=%d", k, s, pad);
        vt_pool_free(pool);
        free(cols3);
        free(xt); free(cols2);
        free(x); free(wt); free(b); free(cols); free(tok); free(nchw); free(want);
    }
    /* depthwise on tokens [h*w, c] */
    int C = 6, k = 3, s = 2, pad = 1, ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
    float *x = randv((size_t)h * w * C, 40), *wt = randv((size_t)C * k * k, 41), *b = randv(C, 42);
    float *out = malloc(sizeof(float) * ho * wo * C);
    double *want = malloc(sizeof(double) * ho * wo * C);
    for (int y = 0; y < ho; y++)
        for (int xx = 0; xx < wo; xx++)
            for (int ch = 0; ch < C; ch++) {
                double acc = b[ch];
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int iy = y * s - pad + ky, ix = xx * s - pad + kx;
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                            acc += (double)x[(iy * w + ix) * C + ch] * wt[(ch * k + ky) * k + kx];
                    }
                want[(y * wo + xx) * C + ch] = acc;
            }
    float *wtk = malloc(sizeof(float) * C * k * k);
    vt_dwk_weights(wtk, wt, C, k);
    vt_dwk_tokens(NULL, out, C, x, C, h, w, C, wtk, b, k, s);
    ok(maxdiff(out, want, (size_t)ho * wo * C) < 1e-5, "depthwise conv2d on tokens (stride 2)");
    free(x); free(wt); free(wtk); free(b); free(out); free(want);
}

/* vt_conv_tokens (bands of output rows on the pool) against a double
 * reference over NHWC input; the same bits for any pool and band split */
static void test_conv_tokens(void)
{
    int cases[][7] = {{3, 11, 9, 3, 2, 1, 5}, {64, 30, 28, 3, 1, 1, 40},
                      {64, 29, 29, 3, 2, 1, 33}, {5, 8, 8, 4, 4, 0, 7}};
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    for (int level = 0; level < 2; level++)
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
            vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
            int c = cases[ci][0], h = cases[ci][1], w = cases[ci][2], k = cases[ci][3];
            int s = cases[ci][4], pad = cases[ci][5], o = cases[ci][6];
            int ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
            size_t kk = (size_t)k * k * c, nout = (size_t)ho * wo * o;
            float *x = randv((size_t)h * w * c, 50), *wt = randv((size_t)o * kk, 51);
            float *b = randv(o, 52), *hwc = malloc(sizeof(float) * o * kk);
            float *out[2] = {malloc(sizeof(float) * nout), malloc(sizeof(float) * nout)};
            double *want = malloc(sizeof(double) * nout);
            for (int y = 0; y < ho; y++)
                for (int xx = 0; xx < wo; xx++)
                    for (int oc = 0; oc < o; oc++) {
                        double acc = b[oc];
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = y * s - pad + ky, ix = xx * s - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                for (int ic = 0; ic < c; ic++)
                                    acc += (double)x[((size_t)iy * w + ix) * c + ic] *
                                           wt[(size_t)oc * kk + ((size_t)ic * k + ky) * k + kx];
                            }
                        want[((size_t)y * wo + xx) * o + oc] = acc;
                    }
            vt_conv_weight_hwc(hwc, wt, o, c, k);
            vt_wpack pk;
            ok(vt_wpack_init(&pk, hwc, o, (int)kk) == 0, "pack conv weight %dx%zu", o, kk);
            for (int pi = 0; pi < 2; pi++) {
                float *cols = malloc(sizeof(float) * vt_conv_tokens_scratch(pools[pi], w, c, k, s, pad));
                vt_conv_tokens(pools[pi], out[pi], x, h, w, c, &pk, b, k, s, pad, cols);
                free(cols);
            }
            double err = maxdiff(out[1], want, nout);
            ok(err < 1e-4 && memcmp(out[0], out[1], sizeof(float) * nout) == 0,
               "conv on tokens c=%d %dx%d k=%d s=%d pad=%d -> %d, %s: err %.2g, 1 and 2 threads "
               "the same", c, h, w, k, s, pad, o, level ? "best kernels" : "portable", err);
            vt_wpack_free(&pk);
            free(x); free(wt); free(b); free(hwc); free(out[0]); free(out[1]); free(want);
        }
    vt_cpu_cap(-1);
    vt_pool_free(pools[1]);
}

/* GroupNorm(1, c) with and without GELU: a double reference, and the pool
 * version the same bits as the serial one */
static void test_groupnorm(void)
{
    vt_pool *pool = vt_pool_create(2);
    int shapes[][2] = {{3136, 64}, {49, 16}, {5, 3}, {1, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int gelu = 0; gelu < 2; gelu++) {
            int n = shapes[si][0], c = shapes[si][1];
            size_t total = (size_t)n * c;
            float *x = randv(total, 60), *w = randv(c, 61), *b = randv(c, 62);
            float *a = malloc(sizeof(float) * total), *bb = malloc(sizeof(float) * total);
            double *want = malloc(sizeof(double) * total), mean = 0, var = 0;
            for (size_t i = 0; i < total; i++)
                x[i] = 3 * x[i] + 0.5f;     /* a mean away from 0 */
            for (size_t i = 0; i < total; i++)
                mean += x[i];
            mean /= (double)total;
            for (size_t i = 0; i < total; i++)
                var += (x[i] - mean) * (x[i] - mean);
            var /= (double)total;
            for (size_t i = 0; i < total; i++) {
                double v = (x[i] - mean) / sqrt(var + 1e-5) * w[i % c] + b[i % c];
                want[i] = gelu ? ref_gelu(v) : v;
            }
            memcpy(a, x, sizeof(float) * total);
            memcpy(bb, x, sizeof(float) * total);
            vt_groupnorm1_tokens_mt(NULL, a, n, c, w, b, 1e-5f, gelu);
            vt_groupnorm1_tokens_mt(pool, bb, n, c, w, b, 1e-5f, gelu);
            double err = maxdiff(a, want, total);
            ok(err < 1e-5 && memcmp(a, bb, sizeof(float) * total) == 0,
               "groupnorm1 %dx%d%s: err %.2g, pool the same bits", n, c, gelu ? " + GELU" : "", err);
            free(x); free(w); free(b); free(a); free(bb); free(want);
        }
    vt_pool_free(pool);
}

static void test_pooling(void)
{
    float x[2 * 4 * 6], out[2 * 2 * 3], m[6];
    for (int i = 0; i < 48; i++)
        x[i] = (float)i;
    vt_avgpool2d(out, x, 2, 4, 6, 2, 2);
    ok(out[0] == 3.5f && out[5] == 19.5f && out[6] == 27.5f, "avgpool2d 2x2");
    vt_mean_rows(m, x, 8, 6);
    ok(m[0] == 21.0f && m[5] == 26.0f, "mean over rows");
}

static void test_interp(void)
{
    const char *root = getenv("VT_ROOT");
    char path[512];
    vt_tensor src = {0};
    snprintf(path, sizeof path, "%s/tests/fixtures/vit/interp-src.npy", root ? root : ".");
    if (vt_npy_load(path, &src) < 0) {
        ok(0, "load %s: %s", path, vt_error());
        return;
    }
    int c = (int)src.shape[0], h = (int)src.shape[1], w = (int)src.shape[2];
    struct { const char *tag; int mode, ac, aa, oh, ow; } cases[] = {
        {"nearest-7x4", 0, 0, 0, 7, 4}, {"bilinear-9x11", 1, 0, 0, 9, 11},
        {"bilinear-ac-9x11", 1, 1, 0, 9, 11}, {"bicubic-9x11", 2, 0, 0, 9, 11},
        {"bicubic-ac-3x4", 2, 1, 0, 3, 4}, {"bicubic-aa-9x11", 2, 0, 1, 9, 11},
        {"bicubic-aa-3x2", 2, 0, 1, 3, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        vt_tensor want = {0};
        snprintf(path, sizeof path, "%s/tests/fixtures/vit/interp-%s.npy", root ? root : ".",
                 cases[i].tag);
        if (vt_npy_load(path, &want) < 0) {
            ok(0, "load %s: %s", path, vt_error());
            continue;
        }
        int oh = cases[i].oh, ow = cases[i].ow;
        float *got = malloc(sizeof(float) * c * oh * ow);
        if (cases[i].mode == 0)
            vt_interp_nearest(got, src.data, c, h, w, oh, ow);
        else if (cases[i].mode == 1)
            vt_interp_bilinear(got, src.data, c, h, w, oh, ow, cases[i].ac);
        else
            vt_interp_bicubic(got, src.data, c, h, w, oh, ow, cases[i].ac, cases[i].aa);
        double e = 0;
        for (int j = 0; j < c * oh * ow; j++)
            e = fmax(e, fabs(got[j] - ((float *)want.data)[j]));
        ok(vt_tensor_numel(&want) == (int64_t)c * oh * ow && e < 1e-5,
           "interpolate %s like torch (max err %.2g)", cases[i].tag, e);
        free(got);
        vt_tensor_free(&want);
    }
    vt_tensor_free(&src);
}

/* vt_argsort_torch puts ties where torch.sort does (orders recorded from
 * torch by tests/make-sort-fixtures.py); vt_argsort_stable keeps them in
 * index order. Both sort. */
static void test_argsort(void)
{
    const char *root = getenv("VT_ROOT");
    char kp[1024], op[1024];
    snprintf(kp, sizeof kp, "%s/tests/fixtures/sort/keys.npy", root ? root : ".");
    snprintf(op, sizeof op, "%s/tests/fixtures/sort/order.npy", root ? root : ".");
    vt_tensor keys, order;
    if (vt_npy_load(kp, &keys) < 0 || vt_npy_load(op, &order) < 0) {
        ok(0, "load sort fixtures: %s", vt_error());
        return;
    }
    int rows = (int)keys.shape[0], n = (int)keys.shape[1];
    int *idx = malloc(n * sizeof *idx), *tmp = malloc(n * sizeof *tmp);
    int torch_rows = 0, stable_sorted = 0, unstable_seen = 0;
    for (int r = 0; r < rows; r++) {
        const float *v = (const float *)keys.data + (size_t)r * n;
        const int32_t *want = (const int32_t *)order.data + (size_t)r * n;
        vt_argsort_torch(idx, v, n);
        int same = 1;
        for (int i = 0; i < n; i++)
            same &= idx[i] == want[i];
        torch_rows += same;
        vt_argsort_stable(idx, v, n, tmp);
        int sorted = 1, differs = 0;
        for (int i = 1; i < n; i++) {
            float a = v[idx[i - 1]], b = v[idx[i]];
            sorted &= isnan(b) || (!isnan(a) && (a < b || (a == b && idx[i - 1] < idx[i])));
        }
        for (int i = 0; i < n; i++)
            differs |= idx[i] != want[i];
        stable_sorted += sorted;
        unstable_seen += differs;
    }
    ok(torch_rows == rows, "argsort_torch: %d of %d tie-heavy rows of %d in torch.sort's order",
       torch_rows, rows, n);
    ok(stable_sorted == rows, "argsort_stable: %d of %d rows sorted, ties in index order",
       stable_sorted, rows);
    ok(unstable_seen > 0, "the fixtures hold rows where torch's order is not the stable one (%d)",
       unstable_seen);
    free(idx);
    free(tmp);
    vt_tensor_free(&keys);
    vt_tensor_free(&order);
}

/* softmax over the rows of each column of a slice of a wider matrix: block
 * and tail columns, long columns (the chunked sums), one row */
static void test_softmax_cols(void)
{
    static const int shapes[][3] = {{3136, 64, 80}, {49, 37, 40}, {1, 16, 16}, {300, 5, 9}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int m = shapes[si][0], n = shapes[si][1], ld = shapes[si][2];
        float *x = randv((size_t)m * ld, 21 + (unsigned)si);
        float *x0 = malloc(sizeof(float) * m * ld);
        for (size_t i = 0; i < (size_t)m * ld; i++)
            x[i] *= 20;
        memcpy(x0, x, sizeof(float) * m * ld);
        vt_softmax_cols(x, m, n, ld);
        double err = 0;
        for (int j = 0; j < n; j++) {
            double mx = -1e30, s = 0;
            for (int i = 0; i < m; i++)
                mx = fmax(mx, x0[(size_t)i * ld + j]);
            for (int i = 0; i < m; i++)
                s += exp(x0[(size_t)i * ld + j] - mx);
            for (int i = 0; i < m; i++) {
                double want = exp(x0[(size_t)i * ld + j] - mx) / s;
                double d = fabs(x[(size_t)i * ld + j] - want) / (want + 1e-30);
                err = d > err || isnan(d) ? d : err;
            }
        }
        int kept = 1;
        for (int i = 0; i < m; i++)
            for (int j = n; j < ld; j++)
                kept &= x[(size_t)i * ld + j] == x0[(size_t)i * ld + j];
        ok(err < 2e-6 && kept, "softmax over columns %dx%d of %d: relative err %.2g%s", m, n, ld,
           err, kept ? "" : ", touched other columns");
        free(x), free(x0);
    }
    /* a column's result does not depend on where it lies: the 40 + 8
     * columns of a 3136 x 48 block as one call, as 40 (two blocks and a
     * tail) then 8 (a tail), and as 8 + 40, bit for bit */
    int m = 3136, ld = 48;
    float *a = randv((size_t)m * ld, 31), *b = malloc(sizeof(float) * m * ld),
          *c = malloc(sizeof(float) * m * ld);
    for (size_t i = 0; i < (size_t)m * ld; i++)
        a[i] *= 20;
    memcpy(b, a, sizeof(float) * m * ld);
    memcpy(c, a, sizeof(float) * m * ld);
    vt_softmax_cols(a, m, 48, ld);
    vt_softmax_cols(b, m, 40, ld);
    vt_softmax_cols(b + 40, m, 8, ld);
    vt_softmax_cols(c, m, 8, ld);
    vt_softmax_cols(c + 8, m, 40, ld);
    ok(memcmp(a, b, sizeof(float) * m * ld) == 0 && memcmp(a, c, sizeof(float) * m * ld) == 0,
       "softmax over columns: a tail column gets the bits a block column gets");
    free(a), free(b), free(c);
}

int main(void)
{
    test_argsort();
    test_pool();
    test_elementwise();
    test_layernorm_widths();
    test_deform();
    test_patchify();
    test_softmax_cols();
    test_linear();
    test_attention();
    test_conv();
    test_conv_tokens();
    test_groupnorm();
    test_pooling();
    test_rows_gather();
    test_attn_head();
    test_linear_packed();
    test_linear_bf16();
    test_linear_fp16();
    test_linear_readonly();
    test_interp();
    return tap_done();
}
