/* gemm.c - linear layers over weights packed once at load (vt_wpack), with
 * our own AVX-512 kernels and the bias, GELU and residual applied to the
 * register tile before it is stored.
 *
 * Why not OpenBLAS: it repacks the weight slice on every call (each column
 * slice of a thread, every layer, every image), and the epilogue (bias,
 * GELU, residual add, its own beta pass) takes separate passes over the
 * output; together about 15% of a DeiT forward. Packed once, the weights
 * are read by the kernel as they lie.
 *
 * Layouts: panels of 32 output features. F32: panel p holds
 * W[32p .. 32p+31, :] k-major, element (kk, j) at [(p * k + kk) * 32 + j]
 * (zeros past n), one k step = two 64-byte vectors. BF16: k in pairs,
 * element (kk, j) at [((p * k2 + kk / 2) * 32 + j) * 2 + kk % 2] with
 * k2 = ceil(k / 2) (a zero pads odd k): one pair step = two 64-byte
 * vectors, each 16 features x (kk, kk+1), which is the operand vdpbf16ps
 * takes and two shifts away from two f32 vectors.
 *
 * Kernel: a 12 x 32 tile of y in 24 zmm registers; per k step two panel
 * vectors are loaded and 12 values of x are broadcast straight from its
 * rows (x is not packed; its rows stay in L1/L2 over a row block). The k
 * loop runs the whole depth, so the epilogue sees finished dot products.
 * Blocking: a task is a block of rows (sized so the block of x fits in L2)
 * times a range of panels; a panel stays in L1/L2 while the 12-row tiles
 * of the block pass over it, and the tiles prefetch the next panel
 * meanwhile. (Blocking k as well, so a panel block stays in L1, measured
 * slower here: the prefetch already hides L2.)
 *
 * BF16 weights run one of three kernels, all accumulating in f32:
 *   dpbf16  vdpbf16ps (AVX512_BF16); x converted to bf16 per tile
 *   fma     the bf16 weights widened in registers (a shift), x stays f32,
 *           the f32 FMA tile; AVX-512F
 *   portable  a panel block widened to f32, then OpenBLAS
 * dpbf16 does twice the work per instruction, but not every CPU issues it
 * as fast as an FMA (on the Xeon this was measured on it takes 2 cycles a
 * vdpbf16ps against 0.5 an FMA, so half the f32 rate), so when both run the
 * faster one is picked by timing them once (bf16_kernel()); VT_BF16=dpbf16,
 * fma or portable overrides. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"
#include "ops/cpu.h"
#include "ops/gemm.h"
#include "ops/vecmath.h"
#include "util.h"

#define NR 32                   /* output features per panel */
#define MR 12                   /* rows per register tile */
#define XBLOCK_BYTES (960 << 10) /* x rows of one task, kept in L2 */

static int panels(int n) { return (n + NR - 1) / NR; }

/* bytes of one panel */
static size_t panel_bytes(const vt_wpack *w)
{
    return w->bf16 ? (size_t)(w->k + 1) / 2 * NR * 2 * sizeof(uint16_t)
                   : (size_t)w->k * NR * sizeof(float);
}

/* Panel p of an F32 weight wt[n, k] into dst (k * NR floats). */
static void pack_panel_f32(float *dst, const float *wt, int p, int n, int k)
{
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

/* Panel p of a BF16 weight wt[n, k] into dst (k2 * NR pairs). */
static void pack_panel_bf16(uint16_t *dst, const uint16_t *wt, int p, int n, int k)
{
    int k2 = (k + 1) / 2, cols = n - p * NR < NR ? n - p * NR : NR;
    for (int k0 = 0; k0 < k; k0 += 16) {
        int kn = k - k0 < 16 ? k - k0 : 16;
        for (int j = 0; j < NR; j++) {
            const uint16_t *src = wt + (size_t)(p * NR + j) * k + k0;
            for (int kk = 0; kk < kn; kk++) {
                int q = k0 + kk;
                dst[((size_t)(q / 2) * NR + j) * 2 + q % 2] = j < cols ? src[kk] : 0;
            }
        }
    }
    if (k % 2)
        for (int j = 0; j < NR; j++)
            dst[((size_t)(k2 - 1) * NR + j) * 2 + 1] = 0;
    for (int j = cols; j < NR; j++)     /* columns past n, all k */
        for (int q = 0; q < k2; q++)
            dst[((size_t)q * NR + j) * 2] = dst[((size_t)q * NR + j) * 2 + 1] = 0;
}

typedef struct pack_job { const vt_wpack *w; const void *src; } pack_job;

static void pack_task(void *ctx, int p, int thread)
{
    (void)thread;
    const pack_job *j = ctx;
    const vt_wpack *w = j->w;
    char *dst = (char *)w->data + (size_t)p * panel_bytes(w);
    if (w->bf16)
        pack_panel_bf16((uint16_t *)dst, j->src, p, w->n, w->k);
    else
        pack_panel_f32((float *)dst, j->src, p, w->n, w->k);
}

/* Fill w's panels from src, a panel per task on the pool: packing happens
 * at start-up, where it was most of the time before the first image, and
 * most of its cost (page faults of the new memory and of the file, the
 * transposition) divides over threads. Then the raw weight's pages go back
 * when they lie in a mapped model file: the products read the panels
 * only, so the weights need not stay resident twice. */
static int pack_all(vt_pool *p, vt_wpack *w, const void *src, size_t src_bytes)
{
    if (posix_memalign(&w->data, 64, (size_t)panels(w->n) * panel_bytes(w)) != 0) {
        w->data = NULL;
        return vt_seterr("out of memory packing a %dx%d weight", w->n, w->k);
    }
    pack_job j = {w, src};
    vt_pool_run_work(p, panels(w->n), pack_task, &j, (double)src_bytes);
    vt_map_release(src, src_bytes);
    return 0;
}

int vt_wpack_init_pool(vt_pool *p, vt_wpack *w, const float *wt, int n, int k)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = k;
    w->raw = wt;
    if (vt_cpu() < VT_CPU_AVX512)
        return 0;                       /* vt_linear on the raw weights */
    return pack_all(p, w, wt, (size_t)n * k * sizeof *wt);
}

int vt_wpack_init(vt_wpack *w, const float *wt, int n, int k)
{
    return vt_wpack_init_pool(NULL, w, wt, n, k);
}

int vt_wpack_init_bf16_pool(vt_pool *p, vt_wpack *w, const uint16_t *wt, int n, int k)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = k;
    w->bf16 = 1;
    return pack_all(p, w, wt, (size_t)n * k * sizeof *wt);
}

int vt_wpack_init_bf16(vt_wpack *w, const uint16_t *wt, int n, int k)
{
    return vt_wpack_init_bf16_pool(NULL, w, wt, n, k);
}

void vt_wpack_free(vt_wpack *w)
{
    if (w)
        free(w->data);
}

/* ---- AVX-512 kernels -------------------------------------------------- */

/* A tile kernel: y rows r < mr (<= MR), the panel's cols (<= 32) columns;
 * pf .. pf_end: lines to prefetch towards L2, npf every eight k steps. */
typedef void (*tile_fn)(int mr, const float *x, size_t ldx, const void *bp, int k, float *y,
                        size_t ldy, const float *bias, int gelu, int acc_y, int cols,
                        const char *pf, const char *pf_end, int npf);

#ifdef VT_HAVE_X86_KERNELS

/* masks of the two output vectors for a panel's first cols columns */
static inline __mmask16 mask_lo(int cols)
{
    return cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
}
static inline __mmask16 mask_hi(int cols)
{
    return cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
}

/* y[r] = act(c[r] + bias), plus the old y[r] after the activation when
 * acc_y (a residual: y + act(xW^T + b)) */
#define TILE_STORE() do { \
        __mmask16 m0 = mask_lo(cols), m1 = mask_hi(cols); \
        __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps(); \
        if (bias) { \
            bias0 = _mm512_maskz_loadu_ps(m0, bias); \
            bias1 = _mm512_maskz_loadu_ps(m1, bias + 16); \
        } \
        _Pragma("GCC unroll 12") \
        for (int r = 0; r < MR; r++) \
            if (r < mr) { \
                float *yr = y + r * ldy; \
                __m512 v0 = _mm512_add_ps(c0[r], bias0), v1 = _mm512_add_ps(c1[r], bias1); \
                if (gelu) { \
                    v0 = vt_gelu512(v0); \
                    v1 = vt_gelu512(v1); \
                } \
                if (acc_y) { \
                    v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yr), v0); \
                    v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yr + 16), v1); \
                } \
                _mm512_mask_storeu_ps(yr, m0, v0); \
                _mm512_mask_storeu_ps(yr + 16, m1, v1); \
            } \
    } while (0)

/* rows r from base x, x + 4 ldx, x + 8 ldx at offsets 0..3 ldx: six
 * registers address twelve rows */
#define ROW_BASES() \
    const float *x4 = x + 4 * ldx, *x8 = x + 8 * ldx; \
    size_t l1 = ldx, l2 = 2 * ldx, l3 = 3 * ldx
#define XROW(r) ((r) < 4 ? x : (r) < 8 ? x4 : x8) + \
    ((r) % 4 == 0 ? 0 : (r) % 4 == 1 ? l1 : (r) % 4 == 2 ? l2 : l3)

VT_AVX512 static inline __attribute__((always_inline)) void
tile_f32(int mr, const float *x, size_t ldx, const float *bp, int k, float *y, size_t ldy,
         const float *bias, int gelu, int acc_y, int cols, const char *pf,
         const char *pf_end, int npf)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr)
            c0[r] = c1[r] = _mm512_setzero_ps();
    ROW_BASES();
#define KSTEP(kk) do { \
        __m512 b0 = _mm512_load_ps(bp + (kk) * NR), b1 = _mm512_load_ps(bp + (kk) * NR + 16); \
        _Pragma("GCC unroll 12") \
        for (int r = 0; r < MR; r++) \
            if (r < mr) { \
                __m512 a = _mm512_set1_ps((XROW(r))[kk]); \
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]); \
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]); \
            } \
    } while (0)
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
    TILE_STORE();
}

/* bf16 pairs widened in registers: the low half of each 32-bit lane is
 * feature j at k, the high half feature j at k+1 */
VT_AVX512 static inline __attribute__((always_inline)) void
tile_bf16fma(int mr, const float *x, size_t ldx, const uint16_t *bp, int k, float *y,
             size_t ldy, const float *bias, int gelu, int acc_y, int cols, const char *pf,
             const char *pf_end, int npf)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr)
            c0[r] = c1[r] = _mm512_setzero_ps();
    ROW_BASES();
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
#define PSTEP(q, odd) do { \
        __m512i A = _mm512_load_si512(bp + (size_t)(q) * 2 * NR); \
        __m512i B = _mm512_load_si512(bp + (size_t)(q) * 2 * NR + NR); \
        __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(A, 16)); \
        __m512 e1 = _mm512_castsi512_ps(_mm512_slli_epi32(B, 16)); \
        __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(A, hi)); \
        __m512 o1 = _mm512_castsi512_ps(_mm512_and_si512(B, hi)); \
        _Pragma("GCC unroll 12") \
        for (int r = 0; r < MR; r++) \
            if (r < mr) { \
                const float *xr = XROW(r); \
                __m512 a = _mm512_set1_ps(xr[2 * (q)]); \
                c0[r] = _mm512_fmadd_ps(a, e0, c0[r]); \
                c1[r] = _mm512_fmadd_ps(a, e1, c1[r]); \
                if (odd) { \
                    __m512 a1 = _mm512_set1_ps(xr[2 * (q) + 1]); \
                    c0[r] = _mm512_fmadd_ps(a1, o0, c0[r]); \
                    c1[r] = _mm512_fmadd_ps(a1, o1, c1[r]); \
                } \
            } \
    } while (0)
    int q = 0, k2 = k / 2;
    for (; q + 4 <= k2; q += 4) {
        for (int i = 0; i < npf && pf < pf_end; i++, pf += 64)
            _mm_prefetch(pf, _MM_HINT_T1);
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++)
            PSTEP(q + u, 1);
    }
    for (; q < k2; q++)
        PSTEP(q, 1);
    if (k % 2)
        PSTEP(k2, 0);
#undef PSTEP
    TILE_STORE();
}

#define TILE_SWITCH(TILE, BT) \
    switch (mr) { \
    case 12: TILE(12, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 11: TILE(11, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 10: TILE(10, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 9: TILE(9, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 8: TILE(8, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 7: TILE(7, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 6: TILE(6, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 5: TILE(5, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 4: TILE(4, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 3: TILE(3, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 2: TILE(2, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    case 1: TILE(1, x, ldx, (const BT *)bp, k, y, ldy, bias, gelu, acc_y, cols, pf, pe, npf); break; \
    }

VT_AVX512 static void tiles_f32(int mr, const float *x, size_t ldx, const void *bp, int k,
                                float *y, size_t ldy, const float *bias, int gelu, int acc_y,
                                int cols, const char *pf, const char *pe, int npf)
{
    TILE_SWITCH(tile_f32, float)
}

VT_AVX512 static void tiles_bf16fma(int mr, const float *x, size_t ldx, const void *bp, int k,
                                   float *y, size_t ldy, const float *bias, int gelu, int acc_y,
                                   int cols, const char *pf, const char *pe, int npf)
{
    TILE_SWITCH(tile_bf16fma, uint16_t)
}

/* vdpbf16ps: acc[j] += x[k] w[j][k] + x[k+1] w[j][k+1] per 32-bit lane, x
 * as a bf16 pair broadcast. The tile's x rows are converted to bf16 pairs
 * (round to nearest even) in chunks of XC pairs on the stack. */
#define XC 256

VT_AVX512BF16 static inline __attribute__((always_inline)) void
tile_bf16dp(int mr, const float *x, size_t ldx, const uint16_t *bp, int k, float *y,
            size_t ldy, const float *bias, int gelu, int acc_y, int cols, const char *pf,
            const char *pf_end, int npf)
{
    __m512 c0[MR], c1[MR];
    uint32_t xb[MR][XC] __attribute__((aligned(64)));
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
        if (r < mr)
            c0[r] = c1[r] = _mm512_setzero_ps();
    int k2 = (k + 1) / 2;
    for (int q0 = 0; q0 < k2; q0 += XC) {
        int nq = k2 - q0 < XC ? k2 - q0 : XC;
        /* x[r, 2 q0 .. 2 (q0 + nq)) as pairs; zeros past k */
        for (int r = 0; r < mr; r++) {
            const float *xr = x + r * ldx + 2 * q0;
            int nf = k - 2 * q0 < 2 * nq ? k - 2 * q0 : 2 * nq;
            for (int f = 0; f < 2 * nq; f += 32) {
                int left = nf - f;
                __mmask16 ml = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
                __mmask16 mh = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
                __m512 lo = _mm512_maskz_loadu_ps(ml, xr + f), hi = _mm512_maskz_loadu_ps(mh, xr + f + 16);
                _mm512_store_si512(&xb[r][f / 2], (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            }
        }
        const uint16_t *bq = bp + (size_t)q0 * 2 * NR;
        int q = 0;
        for (; q < nq; q++, bq += 2 * NR) {
            if ((q & 3) == 0)
                for (int i = 0; i < npf && pf < pf_end; i++, pf += 64)
                    _mm_prefetch(pf, _MM_HINT_T1);
            __m512bh B0 = (__m512bh)_mm512_load_si512(bq);
            __m512bh B1 = (__m512bh)_mm512_load_si512(bq + NR);
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++)
                if (r < mr) {
                    __m512bh a = (__m512bh)_mm512_set1_epi32((int)xb[r][q]);
                    c0[r] = _mm512_dpbf16_ps(c0[r], a, B0);
                    c1[r] = _mm512_dpbf16_ps(c1[r], a, B1);
                }
        }
    }
    TILE_STORE();
}

VT_AVX512BF16 static void tiles_bf16dp(int mr, const float *x, size_t ldx, const void *bp,
                                       int k, float *y, size_t ldy, const float *bias, int gelu,
                                       int acc_y, int cols, const char *pf, const char *pe,
                                       int npf)
{
    TILE_SWITCH(tile_bf16dp, uint16_t)
}

#undef TILE_SWITCH
#endif /* VT_HAVE_X86_KERNELS */

/* Rows [0, rows) of x against one panel. next (may be NULL): the next
 * panel, nbytes long; the tiles prefetch it to L2 in even slices spread
 * over their k loops, so the first tile over it does not wait on L3
 * (10-20% of the time of a large product otherwise). */
static void panel_rows(tile_fn tile, const float *x, size_t ldx, int rows, const void *bp,
                       int k, float *y, size_t ldy, const float *bias, int gelu, int acc_y,
                       int cols, const void *next, size_t nbytes)
{
    int tiles = (rows + MR - 1) / MR;
    size_t slice = next ? (nbytes / tiles + 63) & ~(size_t)63 : 0;
    int groups = k / 8 > 0 ? k / 8 : 1;
    int npf = (int)((slice / 64 + groups - 1) / groups);
    const char *pf = next, *end = pf + (next ? nbytes : 0);
    for (int r = 0; r < rows; r += MR, pf += slice)
        tile(rows - r < MR ? rows - r : MR, x + r * ldx, ldx, bp, k, y + r * ldy, ldy, bias,
             gelu, acc_y, cols, pf, pf + slice < end ? pf + slice : end, npf);
}

/* ---- portable bf16 ---------------------------------------------------- */

#define PR 64       /* rows per block */
#define PK 128      /* depth per widened panel block */

/* y rows [0, rows) x one bf16 panel: widen PK x 32 weights, OpenBLAS into
 * a row block of sums, then the same epilogue as the tiles. */
static void panel_rows_portable(const float *x, size_t ldx, int rows, const uint16_t *bp,
                                int k, float *y, size_t ldy, const float *bias, int gelu,
                                int acc_y, int cols)
{
    float wf[PK * NR], acc[PR * NR];
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int rn = rows - r0 < PR ? rows - r0 : PR;
        for (int k0 = 0; k0 < k; k0 += PK) {
            int kn = k - k0 < PK ? k - k0 : PK;
            for (int kk = 0; kk < kn; kk++)
                for (int j = 0; j < NR; j++) {
                    int q = k0 + kk;
                    uint32_t u = (uint32_t)bp[((size_t)(q / 2) * NR + j) * 2 + q % 2] << 16;
                    memcpy(&wf[kk * NR + j], &u, sizeof u);
                }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rn, NR, kn, 1.0f,
                        x + (size_t)r0 * ldx + k0, (int)ldx, wf, NR, k0 ? 1.0f : 0.0f, acc, NR);
        }
        for (int r = 0; r < rn; r++) {
            float *a = acc + r * NR, *yr = y + (size_t)(r0 + r) * ldy;
            if (bias)
                for (int j = 0; j < cols; j++)
                    a[j] += bias[j];
            if (gelu)
                vt_gelu(a, (size_t)cols);
            for (int j = 0; j < cols; j++)
                yr[j] = acc_y ? yr[j] + a[j] : a[j];
        }
    }
}

/* ---- which bf16 kernel ------------------------------------------------ */

static int bf16_forced = -1;

void vt_gemm_bf16_force(int kernel)
{
    bf16_forced = kernel;
}

#ifdef VT_HAVE_X86_KERNELS
static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* seconds of the best of 5 runs of a 12 x 512 x 32 tile, 16 times */
static double time_tile(tile_fn tile, const float *x, const void *bp, float *y)
{
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        double t = thread_seconds();
        for (int i = 0; i < 16; i++)
            tile(MR, x, 512, bp, 512, y, NR, NULL, 0, 0, NR, NULL, NULL, 0);
        t = thread_seconds() - t;
        best = t < best ? t : best;
    }
    return best;
}
#endif

static int calibrated = VT_BF16_PORTABLE;
static pthread_once_t calibrate_once = PTHREAD_ONCE_INIT;

/* dpbf16 against fma on this CPU, in L1 (about a millisecond, once) */
static void calibrate(void)
{
    const char *env = getenv("VT_BF16");
    int level = vt_cpu();
    calibrated = level >= VT_CPU_AVX512BF16 ? VT_BF16_DPBF16
               : level >= VT_CPU_AVX512 ? VT_BF16_FMA : VT_BF16_PORTABLE;
    if (env && strcmp(env, "portable") == 0)
        calibrated = VT_BF16_PORTABLE;
    else if (env && strcmp(env, "fma") == 0 && level >= VT_CPU_AVX512)
        calibrated = VT_BF16_FMA;
    else if (env && strcmp(env, "dpbf16") == 0 && level >= VT_CPU_AVX512BF16)
        calibrated = VT_BF16_DPBF16;
    else if (calibrated == VT_BF16_DPBF16) {
#ifdef VT_HAVE_X86_KERNELS
        float *x = NULL, *y = NULL;
        uint16_t *b = NULL;
        if (posix_memalign((void **)&x, 64, MR * 512 * sizeof *x) == 0 &&
            posix_memalign((void **)&b, 64, 512 * NR * sizeof *b) == 0 &&
            posix_memalign((void **)&y, 64, MR * NR * sizeof *y) == 0) {
            for (int i = 0; i < MR * 512; i++)
                x[i] = (float)(i % 17) * 0.01f;
            for (int i = 0; i < 512 * NR; i++)
                b[i] = 0x3c00 + (uint16_t)(i % 13);
            double fma = 1e30, dp = 1e30;
            for (int round = 0; round < 2; round++) {   /* interleaved, best of each */
                double f = time_tile(tiles_bf16fma, x, b, y), d = time_tile(tiles_bf16dp, x, b, y);
                fma = f < fma ? f : fma;
                dp = d < dp ? d : dp;
            }
            calibrated = dp < fma ? VT_BF16_DPBF16 : VT_BF16_FMA;
        }
        free(x);
        free(b);
        free(y);
#endif
    }
}

int vt_gemm_bf16_kernel(void)
{
    pthread_once(&calibrate_once, calibrate);
    int level = vt_cpu(), k = bf16_forced >= 0 ? bf16_forced : calibrated;
    if (k == VT_BF16_DPBF16 && level < VT_CPU_AVX512BF16)
        k = VT_BF16_FMA;
    if (k == VT_BF16_FMA && level < VT_CPU_AVX512)
        k = VT_BF16_PORTABLE;
    return k;
}

/* ---- driver ----------------------------------------------------------- */

typedef struct gemm_job {
    float *y;
    const float *x, *b;
    const vt_wpack *w;
    tile_fn tile;       /* NULL: portable bf16 */
    int m, gelu, acc_y;
    int rows;           /* rows per task (a multiple of MR) */
    int pan;            /* panels per task */
    int ncol;           /* column tasks */
} gemm_job;

static void gemm_task(void *ctx, int task, int thread)
{
    (void)thread;
    const gemm_job *j = ctx;
    const vt_wpack *w = j->w;
    int r0 = task / j->ncol * j->rows, p0 = task % j->ncol * j->pan, k = w->k;
    int rows = j->m - r0 < j->rows ? j->m - r0 : j->rows;
    /* the last panel of a task prefetches the next task's first, like any
     * other: with few rows (36, 49) a task's tiles are short and its first
     * panel otherwise waits on memory (the same thread often takes the
     * next task; else the line is one core's L2 away from the other) */
    int np = panels(w->n), p1 = p0 + j->pan < np ? p0 + j->pan : np;
    size_t psize = panel_bytes(w);
    for (int p = p0; p < p1; p++) {
        int cols = w->n - p * NR < NR ? w->n - p * NR : NR;
        const char *bp = (const char *)w->data + p * psize;
        const float *x = j->x + (size_t)r0 * k, *b = j->b ? j->b + p * NR : NULL;
        float *y = j->y + (size_t)r0 * w->n + p * NR;
        if (!j->tile)
            panel_rows_portable(x, (size_t)k, rows, (const uint16_t *)bp, k, y, (size_t)w->n,
                                b, j->gelu, j->acc_y, cols);
        else
            panel_rows(j->tile, x, (size_t)k, rows, bp, k, y, (size_t)w->n, b, j->gelu,
                       j->acc_y, cols, p + 1 < np ? bp + psize : NULL, psize);
    }
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
    tile_fn tile = NULL;
#ifdef VT_HAVE_X86_KERNELS
    if (!w->bf16)
        tile = tiles_f32;
    else if (vt_gemm_bf16_kernel() == VT_BF16_DPBF16)
        tile = tiles_bf16dp;
    else if (vt_gemm_bf16_kernel() == VT_BF16_FMA)
        tile = tiles_bf16fma;
#endif
    int T = vt_pool_size(p), np = panels(w->n);
    /* rows per task: the x block fits L2; then enough column tasks that
     * every thread has a few (the pool balances them) */
    size_t fit = XBLOCK_BYTES / ((size_t)w->k * sizeof(float));
    int rows = fit < MR ? MR : (int)(fit / MR * MR);
    if (rows > m)
        rows = (m + MR - 1) / MR * MR;
    /* as many row blocks as that takes, even ones: every block streams the
     * whole weight, so a short last block (49 rows as 48 + 1, 196 as
     * 96 + 96 + 4) costs a pass over the weight for next to no work */
    int nrow = (m + rows - 1) / rows;
    rows = ((m + nrow - 1) / nrow + MR - 1) / MR * MR;
    nrow = (m + rows - 1) / rows;
    int want = 4 * T > nrow ? (4 * T + nrow - 1) / nrow : 1;
    int pan = (np + want - 1) / want;
    gemm_job j = {y, x, b, w, tile, m, gelu, beta != 0.0f, rows, pan, (np + pan - 1) / pan};
    vt_pool_run_work(p, nrow * j.ncol, gemm_task, &j, 2.0 * m * w->k * w->n);
}
