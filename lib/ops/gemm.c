/* gemm.c - linear layers over weights packed once at load (vt_wpack), with
 * our own AVX-512 kernel and the bias, GELU and residual applied to the
 * register tile before it is stored.
 *
 * Why not OpenBLAS: it repacks the weight slice on every call (each column
 * slice of a thread, every layer, every image), and the epilogue (bias,
 * GELU, residual add, its own beta pass) takes separate passes over the
 * output; together about 15% of a DeiT forward. Packed once, the weights
 * are read by the kernel as they lie.
 *
 * Layout: panels of 32 output features. Panel p holds W[32p .. 32p+31, :]
 * k-major: element (kk, j) at data[(p * k + kk) * 32 + j] (zeros past n),
 * so one k step of a panel is two 64-byte vectors.
 *
 * Kernel: a 12 x 32 tile of y in 24 zmm registers; per k step two panel
 * vectors are loaded and 12 values of x are broadcast straight from its
 * rows (x is not packed; its rows stay in L1/L2 over a row block). The k
 * loop runs the whole depth, so the epilogue sees finished dot products.
 * Blocking: a task is a block of rows (sized so the block of x fits in L2)
 * times a range of panels; a panel (k x 32 floats) stays in L1/L2 while
 * the 12-row tiles of the block pass over it, and the tiles prefetch the
 * next panel meanwhile. (Blocking k as well, so a panel block stays in L1,
 * measured slower here: the prefetch already hides L2.) */
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "ops/cpu.h"
#include "ops/vecmath.h"
#include "util.h"

#define NR 32                   /* output features per panel */
#define MR 12                   /* rows per register tile */
#define XBLOCK_BYTES (768 << 10) /* x rows of one task, kept in L2 */

static int panels(int n) { return (n + NR - 1) / NR; }

int vt_wpack_init(vt_wpack *w, const float *wt, int n, int k)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = k;
    w->raw = wt;
    if (vt_cpu() < VT_CPU_AVX512)
        return 0;                       /* vt_linear on the raw weights */
    size_t count = (size_t)panels(n) * k * NR;
    float *d = NULL;
    if (posix_memalign((void **)&d, 64, count * sizeof *d) != 0)
        return vt_seterr("out of memory packing a %dx%d weight", n, k);
    for (int p = 0; p < panels(n); p++) {
        float *dst = d + (size_t)p * k * NR;
        int cols = n - p * NR < NR ? n - p * NR : NR;
        /* in k strips of 16 so the 32 source rows are read sequentially */
        for (int k0 = 0; k0 < k; k0 += 16) {
            int kn = k - k0 < 16 ? k - k0 : 16;
            for (int j = 0; j < NR; j++) {
                const float *src = wt + (size_t)(p * NR + j) * k + k0;
                for (int kk = 0; kk < kn; kk++)
                    dst[(size_t)(k0 + kk) * NR + j] = j < cols ? src[kk] : 0.0f;
            }
        }
    }
    w->data = d;
    return 0;
}

void vt_wpack_free(vt_wpack *w)
{
    if (w)
        free(w->data);
}

/* ---- AVX-512 kernel --------------------------------------------------- */

#ifdef VT_HAVE_X86_KERNELS

/* y[r, 0..32) = act(x[r, :] . panel + bias) for r < mr (<= MR), plus the
 * old y[r] after the activation when acc_y (a residual: y + act(xW^T + b)).
 * m0 and m1 mask the two output vectors (the last panel's columns past n);
 * pf .. pf_end: lines to prefetch, npf every eight k steps. */
VT_AVX512 static inline __attribute__((always_inline)) void
tile(int mr, const float *x, size_t ldx, const float *bp, int k, float *y, size_t ldy,
     const float *bias, int gelu, int acc_y, __mmask16 m0, __mmask16 m1, const char *pf,
     const char *pf_end, int npf)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr)
            c0[r] = c1[r] = _mm512_setzero_ps();
    /* rows r from base x, x + 4 ldx, x + 8 ldx at offsets 0..3 ldx: six
     * registers address twelve rows */
    const float *x4 = x + 4 * ldx, *x8 = x + 8 * ldx;
    size_t l1 = ldx, l2 = 2 * ldx, l3 = 3 * ldx;
#define KSTEP(kk) do { \
        __m512 b0 = _mm512_load_ps(bp + (kk) * NR), b1 = _mm512_load_ps(bp + (kk) * NR + 16); \
        _Pragma("GCC unroll 12") \
        for (int r = 0; r < MR; r++) \
            if (r < mr) { \
                const float *base = r < 4 ? x : r < 8 ? x4 : x8; \
                size_t off = r % 4 == 0 ? 0 : r % 4 == 1 ? l1 : r % 4 == 2 ? l2 : l3; \
                __m512 a = _mm512_set1_ps(base[off + (kk)]); \
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]); \
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]); \
            } \
    } while (0)
    /* every eight k steps npf lines of what comes next towards L2 (see
     * panel_rows) */
    int kk = 0;
    for (; kk + 8 <= k; kk += 8) {
        for (int i = 0; i < npf && pf < pf_end; i++, pf += 64)
            _mm_prefetch(pf, _MM_HINT_T1);
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++)
            KSTEP(kk + u);
    }
    for (; kk < k; kk++)
        KSTEP(kk);
#undef KSTEP
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr) {
            float *yr = y + r * ldy;
            __m512 v0 = _mm512_add_ps(c0[r], bias0), v1 = _mm512_add_ps(c1[r], bias1);
            if (gelu) {
                v0 = vt_gelu512(v0);
                v1 = vt_gelu512(v1);
            }
            if (acc_y) {
                v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yr), v0);
                v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yr + 16), v1);
            }
            _mm512_mask_storeu_ps(yr, m0, v0);
            _mm512_mask_storeu_ps(yr + 16, m1, v1);
        }
}

/* Rows [0, rows) of x against one panel. next (may be NULL): the next
 * panel, nbytes long; the tiles prefetch it to L2 in
 * even slices spread over their k loops, so the first tile over it does
 * not wait on L3 (10-20% of the time of a large product otherwise). */
VT_AVX512 static void panel_rows(const float *x, size_t ldx, int rows, const float *bp, int k,
                                 float *y, size_t ldy, const float *bias, int gelu, int acc_y,
                                 int cols, const float *next, size_t nbytes)
{
    __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    int tiles = (rows + MR - 1) / MR;
    size_t slice = next ? (nbytes / tiles + 63) & ~(size_t)63 : 0;
    int groups = k / 8 > 0 ? k / 8 : 1;
    int npf = (int)((slice / 64 + groups - 1) / groups);
    const char *pf = (const char *)next, *end = pf + (next ? nbytes : 0);
    int r = 0;
    for (; r + MR <= rows; r += MR, pf += slice)
        tile(MR, x + r * ldx, ldx, bp, k, y + r * ldy, ldy, bias, gelu, acc_y, m0, m1, pf,
             pf + slice < end ? pf + slice : end, npf);
    x += r * ldx;
    y += r * ldy;
    const char *pe = pf + slice < end ? pf + slice : end;
    switch (rows - r) {
#define T(n) case n: tile(n, x, ldx, bp, k, y, ldy, bias, gelu, acc_y, m0, m1, pf, pe, npf); break;
        T(1) T(2) T(3) T(4) T(5) T(6) T(7) T(8) T(9) T(10) T(11)
#undef T
    }
}

#endif /* VT_HAVE_X86_KERNELS */

/* ---- driver ----------------------------------------------------------- */

typedef struct gemm_job {
    float *y;
    const float *x, *b;
    const vt_wpack *w;
    int m, gelu, acc_y;
    int rows;           /* rows per task (a multiple of MR) */
    int pan;            /* panels per task */
    int ncol;           /* column tasks */
} gemm_job;

static void gemm_task(void *ctx, int task, int thread)
{
    (void)thread;
#ifdef VT_HAVE_X86_KERNELS
    const gemm_job *j = ctx;
    const vt_wpack *w = j->w;
    int r0 = task / j->ncol * j->rows, p0 = task % j->ncol * j->pan, k = w->k;
    int rows = j->m - r0 < j->rows ? j->m - r0 : j->rows;
    int p1 = p0 + j->pan < panels(w->n) ? p0 + j->pan : panels(w->n);
    size_t psize = (size_t)k * NR;
    for (int p = p0; p < p1; p++) {
        int cols = w->n - p * NR < NR ? w->n - p * NR : NR;
        const float *bp = w->data + p * psize;
        panel_rows(j->x + (size_t)r0 * k, (size_t)k, rows, bp, k,
                   j->y + (size_t)r0 * w->n + p * NR, (size_t)w->n,
                   j->b ? j->b + p * NR : NULL, j->gelu, j->acc_y, cols,
                   p + 1 < p1 ? bp + psize : NULL, psize * sizeof(float));
    }
#else
    (void)ctx; (void)task;
#endif
}

void vt_linear_packed(vt_pool *p, float *y, const float *x, const vt_wpack *w,
                      const float *b, int m, float beta, int gelu)
{
    if (!w->data) {
        vt_linear(p, y, x, w->raw, b, m, w->k, w->n, beta, gelu);
        return;
    }
    if (m < 1)
        return;
    int T = vt_pool_size(p), np = panels(w->n);
    /* rows per task: the x block fits L2; then enough column tasks that
     * every thread has a few (the pool balances them) */
    size_t fit = XBLOCK_BYTES / ((size_t)w->k * sizeof(float));
    int rows = fit < MR ? MR : (int)(fit / MR * MR);
    if (rows > m)
        rows = (m + MR - 1) / MR * MR;
    int nrow = (m + rows - 1) / rows;
    int want = 4 * T > nrow ? (4 * T + nrow - 1) / nrow : 1;
    int pan = (np + want - 1) / want;
    gemm_job j = {y, x, b, w, m, gelu, beta != 0.0f, rows, pan, (np + pan - 1) / pan};
    vt_pool_run_work(p, nrow * j.ncol, gemm_task, &j, 2.0 * m * w->k * w->n);
}
