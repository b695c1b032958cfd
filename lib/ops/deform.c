/* deform.c - deformable point attention over a token grid. See deform.h. */
#include <math.h>
#include <string.h>

#include "ops/cpu.h"
#include "ops/deform.h"
#ifdef VT_HAVE_X86_KERNELS
#include <immintrin.h>
#endif

#define DEFORM_ROWS 64      /* query tokens per task */

#define CHUNK 64            /* channels summed in registers at a time */

/* s[c] (+)= cw * src[c] for c < n: the first corner sets, the others add */
VT_CLONES
static void corner_term(float *restrict s, const float *restrict src, float cw, int n, int first)
{
    if (first)
        for (int c = 0; c < n; c++)
            s[c] = cw * src[c];
    else
        for (int c = 0; c < n; c++)
            s[c] += cw * src[c];
}

VT_CLONES
static void add_scaled(float *restrict out, const float *restrict s, float wt, int n)
{
    for (int c = 0; c < n; c++)
        out[c] += wt * s[c];
}

/* Corners of the sample at (x, y) that lie inside the h x w map, in the
 * kernel's order: their rows of v (row stride ld) and bilinear weights.
 * Returns how many (0..4). */
static inline __attribute__((always_inline)) int
corners(const float **src, float *cw, const float *v, int ld, int h, int w, float x, float y)
{
    float x0f = floorf(x), y0f = floorf(y);
    float tx = x - x0f, ty = y - y0f;
    float all[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
    float fx[4] = {x0f, x0f + 1, x0f, x0f + 1}, fy[4] = {y0f, y0f, y0f + 1, y0f + 1};
    int n = 0;
    for (int k = 0; k < 4; k++)
        if (fx[k] >= 0 && fx[k] < w && fy[k] >= 0 && fy[k] < h) {
            src[n] = v + ((size_t)fy[k] * w + (size_t)fx[k]) * ld;
            cw[n++] = all[k];
        }
    return n;
}

#ifdef VT_HAVE_X86_KERNELS
/* One (token, head): o[0..d) = sum over the P points of wt[p] * sample,
 * 64 channels at a time in four registers (the same products and sums,
 * in the same order, as vt_bilinear_point on a zeroed o). */
VT_AVX512 static void head_avx512(float *o, const float *v, int ld, int h, int w, int d,
                                  float cx, float cy, const float *off, const float *wt, int P)
{
    for (int c0 = 0; c0 < d; c0 += CHUNK) {
        int m = d - c0 < CHUNK ? d - c0 : CHUNK;
        __mmask16 mk[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            int left = m - 16 * q;
            mk[q] = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        }
        __m512 acc[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
            acc[q] = _mm512_setzero_ps();
        for (int p = 0; p < P; p++) {
            const float *src[4];
            float cw[4];
            int n = corners(src, cw, v + c0, ld, h, w, cx + off[2 * p], cy + off[2 * p + 1]);
            if (!n)
                continue;
            __m512 s[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                s[q] = _mm512_mul_ps(_mm512_set1_ps(cw[0]),
                                     _mm512_maskz_loadu_ps(mk[q], src[0] + 16 * q));
            for (int k = 1; k < n; k++)
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++)
                    s[q] = _mm512_add_ps(s[q], _mm512_mul_ps(_mm512_set1_ps(cw[k]),
                                         _mm512_maskz_loadu_ps(mk[q], src[k] + 16 * q)));
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                acc[q] = _mm512_add_ps(acc[q], _mm512_mul_ps(_mm512_set1_ps(wt[p]), s[q]));
        }
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++)
            _mm512_mask_storeu_ps(o + c0 + 16 * q, mk[q], acc[q]);
    }
}
#endif

void vt_bilinear_point(float *out, const float *v, int ld, int h, int w, int d,
                       float x, float y, float wt)
{
    const float *src[4];
    float cw[4];
    int n = corners(src, cw, v, ld, h, w, x, y);
    if (!n)
        return;     /* the sample is 0: out += wt * 0 changes nothing */
    /* per channel: the sample summed over the corners in order, then
     * out += wt * sample; channel-wise loops (a branch per corner inside
     * the channel loop kept it scalar) */
    float s[CHUNK];
    for (int c0 = 0; c0 < d; c0 += CHUNK) {
        int m = d - c0 < CHUNK ? d - c0 : CHUNK;
        for (int k = 0; k < n; k++)
            corner_term(s, src[k] + c0, cw[k], m, k == 0);
        add_scaled(out + c0, s, wt, m);
    }
}

typedef struct deform_job {
    float *out;
    const float *v, *off, *wts;
    int ldo, ldv, h, w, heads, P, d;
    int simd;           /* AVX-512 kernel */
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
#ifdef VT_HAVE_X86_KERNELS
            if (j->simd) {
                head_avx512(o, j->v + (size_t)hd * j->d, j->ldv, j->h, j->w, j->d, c, r,
                            off + 2 * hd * j->P, wt + hd * j->P, j->P);
                continue;
            }
#endif
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
    deform_job j = {out, v, off, wts, ldo, ldv, h, w, heads, P, d, vt_cpu() >= VT_CPU_AVX512};
    int N = h * w;
    vt_pool_run(p, (N + DEFORM_ROWS - 1) / DEFORM_ROWS, deform_task, &j);
}
