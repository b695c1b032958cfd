/* test_sepconv.c - lib/ops/sepconv.h against plain double-precision
 * references, on both kernel levels (vt_cpu_cap), serial and on a pool:
 * every kernel size and stride the models use and odd ones, grids smaller
 * than the kernel, channel counts that are not a multiple of 16, channel
 * slices of wider rows; the residual form where the stride is 1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops/cpu.h"
#include "ops/sepconv.h"
#include "tap.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *randv(size_t n, unsigned seed)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand(&seed);
    return v;
}

/* out[ho*wo, c] of x[h*w, ldx] (channels 0..c-1) by PyTorch-layout
 * wt[c, 1, k, k], padding k/2, stride s */
static void ref_dwk(double *out, const float *x, int ldx, int h, int w, int c,
                    const float *wt, const float *b, int k, int s)
{
    int pad = k / 2, ho = (h + 2 * pad - k) / s + 1, wo = (w + 2 * pad - k) / s + 1;
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++)
            for (int ch = 0; ch < c; ch++) {
                double a = b ? b[ch] : 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int iy = oy * s - pad + ky, ix = ox * s - pad + kx;
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                            a += (double)x[((size_t)iy * w + ix) * ldx + ch] *
                                 wt[((size_t)ch * k + ky) * k + kx];
                    }
                out[((size_t)oy * wo + ox) * c + ch] = a;
            }
}

static void test_dwk(void)
{
    /* h, w, c, extra columns of x and out, k, s */
    static const int cases[][6] = {
        {56, 56, 16, 224, 3, 1}, {56, 56, 16, 0, 5, 1}, {56, 56, 16, 0, 7, 1},
        {28, 28, 40, 13, 7, 1}, {14, 14, 24, 0, 5, 1}, {7, 7, 48, 5, 7, 1},
        {56, 56, 80, 0, 3, 2}, {15, 9, 33, 3, 3, 2}, {5, 3, 17, 0, 7, 1},
        {1, 1, 5, 0, 3, 1}, {2, 13, 1, 2, 5, 2}, {1, 20, 16, 0, 9, 1},
        {11, 12, 8, 1, 1, 1}, {9, 30, 31, 0, 3, 3},
    };
    vt_pool *pools[2] = {NULL, vt_pool_create(2)};
    for (int level = 0; level < 2; level++)
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
            for (int pi = 0; pi < 2; pi++) {
                vt_cpu_cap(level ? -1 : VT_CPU_PORTABLE);
                int h = cases[ci][0], w = cases[ci][1], c = cases[ci][2], extra = cases[ci][3];
                int k = cases[ci][4], s = cases[ci][5], ld = c + extra;
                int ho = vt_dwk_out(h, k, s), wo = vt_dwk_out(w, k, s);
                size_t no = (size_t)ho * wo;
                float *x = randv((size_t)h * w * ld, 3 + (unsigned)ci);
                float *wt = randv((size_t)c * k * k, 5), *b = randv((size_t)c, 7);
                float *wtk = malloc(sizeof(float) * c * k * k);
                float *out = malloc(sizeof(float) * no * ld);
                double *want = malloc(sizeof(double) * no * c);
                vt_dwk_weights(wtk, wt, c, k);
                double err = 0;
                int kept = 1;
                for (int bias = 0; bias < 2; bias++) {
                    for (size_t i = 0; i < no * ld; i++)
                        out[i] = -7.0f;
                    ref_dwk(want, x, ld, h, w, c, wt, bias ? b : NULL, k, s);
                    vt_dwk_tokens(pools[pi], out, ld, x, ld, h, w, c, wtk, bias ? b : NULL, k, s);
                    for (size_t t = 0; t < no; t++) {
                        for (int ch = 0; ch < c; ch++) {
                            double d = fabs(out[t * ld + ch] - want[t * c + ch]);
                            err = d > err || isnan(d) ? d : err;
                        }
                        for (int ch = c; ch < ld; ch++)
                            kept &= out[t * ld + ch] == -7.0f;
                    }
                }
                if (s == 1) {
                    /* the residual form: x + conv(x) + b, rows of ld in and out */
                    double rerr = 0;
                    ref_dwk(want, x, ld, h, w, c, wt, b, k, s);
                    for (size_t i = 0; i < no * ld; i++)
                        out[i] = -7.0f;
                    vt_dwk_tokens_residual(pools[pi], out, x, ld, h, w, c, wtk, b, k);
                    for (size_t t = 0; t < no; t++) {
                        for (int ch = 0; ch < c; ch++) {
                            double d = fabs(out[t * ld + ch] - (want[t * c + ch] + x[t * ld + ch]));
                            rerr = d > rerr || isnan(d) ? d : rerr;
                        }
                        for (int ch = c; ch < ld; ch++)
                            kept &= out[t * ld + ch] == -7.0f;
                    }
                    err = rerr > err ? rerr : err;
                    /* with GELU: vt_gelu of the residual form's values, bit for bit */
                    float *g = malloc(sizeof(float) * no * ld);
                    for (size_t i = 0; i < no * ld; i++)
                        g[i] = -7.0f;
                    vt_dwk_tokens_residual_gelu(pools[pi], g, x, ld, h, w, c, wtk, b, k);
                    for (size_t t = 0; t < no; t++) {
                        vt_gelu(out + t * ld, (size_t)c);
                        kept &= memcmp(g + t * ld, out + t * ld, sizeof(float) * ld) == 0;
                    }
                    free(g);
                }
                ok(err < 1e-5 && kept,
                   "dwk %dx%d c %d (ld %d) k %d s %d, %d threads, %s: err %.2g%s", h, w, c, ld,
                   k, s, vt_pool_size(pools[pi]), level ? "best kernels" : "portable", err,
                   kept ? "" : ", wrote past c (or GELU form differs)");
                free(x), free(wt), free(b), free(wtk), free(out), free(want);
            }
    vt_cpu_cap(-1);
    vt_pool_free(pools[1]);
}

static double ref_hswish(double v)
{
    double t = v + 3;
    t = t < 0 ? 0 : t > 6 ? 6 : t;
    return v * t / 6;
}

/* hard-swish rows: with and without the affine map, strided, in place,
 * widths with and without a 16-lane tail */
static void test_hswish_rows(void)
{
    static const int shapes[][4] = {{50, 16, 240, 64}, {7, 37, 40, 37}, {3, 5, 5, 9}, {1, 1, 1, 1},
                                    {3136, 48, 240, 64}};
    vt_pool *pool = vt_pool_create(2);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int m = shapes[si][0], n = shapes[si][1], ldx = shapes[si][2], ldy = shapes[si][3];
        float *x = randv((size_t)m * ldx, 11), *g = randv(n, 12), *b = randv(n, 13);
        float *y = malloc(sizeof(float) * m * ldy);
        for (size_t i = 0; i < (size_t)m * ldx; i++)
            x[i] *= 5;
        for (int affine = 0; affine < 2; affine++) {
            for (size_t i = 0; i < (size_t)m * ldy; i++)
                y[i] = -7.0f;
            vt_hswish_rows(pool, y, ldy, x, ldx, m, n, affine ? g : NULL, affine ? b : NULL);
            double err = 0;
            int kept = 1;
            for (int r = 0; r < m; r++) {
                for (int c = 0; c < n; c++) {
                    double v = x[(size_t)r * ldx + c];
                    if (affine)
                        v = (double)(float)(v * g[c]) + b[c];
                    double d = fabs(y[(size_t)r * ldy + c] - ref_hswish(v));
                    err = d > err || isnan(d) ? d : err;
                }
                for (int c = n; c < ldy; c++)
                    kept &= y[(size_t)r * ldy + c] == -7.0f;
            }
            ok(err < 1e-5 && kept, "hswish rows %dx%d (ld %d -> %d)%s: err %.2g%s", m, n, ldx,
               ldy, affine ? " with affine" : "", err, kept ? "" : ", wrote past n");
        }
        /* in place over the whole row: vt_hswish's values */
        float *z = malloc(sizeof(float) * m * ldx);
        memcpy(z, x, sizeof(float) * m * ldx);
        vt_hswish(z, (size_t)m * ldx);
        vt_hswish_rows(pool, x, ldx, x, ldx, m, ldx, NULL, NULL);
        ok(memcmp(x, z, sizeof(float) * m * ldx) == 0, "hswish rows in place = vt_hswish");
        free(x), free(g), free(b), free(y), free(z);
    }
    vt_pool_free(pool);
}

int main(void)
{
    test_dwk();
    test_hswish_rows();
    return tap_done();
}
