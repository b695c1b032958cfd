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
 * BF16 weights run one of four kernels, all summing in f32:
 *   fp16    (AVX512_FP16) weights packed as fp16, see below
 *   dpbf16  vdpbf16ps (AVX512_BF16); x converted to bf16 per tile
 *   fma     the bf16 weights widened in registers (a shift), x stays f32,
 *           the f32 FMA tile; AVX-512F
 *   portable  a panel block widened to f32, then OpenBLAS
 * dpbf16 does twice the work per instruction, but not every CPU issues it
 * as fast as an FMA (on the Xeon this was measured on it takes 2 cycles a
 * vdpbf16ps against 0.5 an FMA, so half the f32 rate), so when both run the
 * faster one is picked by timing them once (calibrate()); VT_BF16=fp16,
 * dpbf16, fma or portable overrides.
 *
 * FP16: vfmadd231ph does 32 multiply-adds an instruction at the FMA's
 * rate, four times vdpbf16ps here, so on a CPU that has it BF16 weights are
 * packed as fp16 at load, in the BF16 pair layout after a 64-byte header
 * (the panel's scale). Exact: a panel's weights are scaled by a power of
 * two that puts its largest |w| in [2^7, 2^8), and every bf16 down to
 * 2^-17 of that is an fp16. The tile is 12 rows x 32 features in 24
 * registers, a lane holding one feature at even or odd k (so x is
 * broadcast as a 32-bit pair, a plain load; a 16-bit broadcast costs a
 * shuffle). The tile's x rows are scaled by a power of two s (one per
 * call) and rounded to fp16 XH k steps at a time into a buffer, once for
 * a group of panels; every KP pairs the accumulators are widened and
 * added into f32 sums (in L1) times the header's scale / s. So only sums
 * of 128 products per lane are ever fp16, and range is guaranteed rather
 * than hoped for: s puts max |x| below 2^XLOG = 1, the weights are below
 * 2^8, so a partial sum is below 128 * 2^8 = 2^15, short of fp16's 65504
 * for any finite input (the range guard: a max over x per call, never a
 * fallback; rows far below the call's largest lose bits to fp16
 * subnormals, not range). Precision: x keeps 11 bits (dpbf16 keeps 8);
 * DeiT logits stay within 1% of f32 (tests/bats/bf16.bats). */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"
#include "ops/cpu.h"
#include "ops/gemm.h"
#include "ops/half.h"
#include "ops/vecmath.h"
#include "util.h"

#define NR 32                   /* output features per panel */
#define MR 12                   /* rows per register tile */
#define XBLOCK_BYTES (960 << 10) /* x rows of one task, kept in L2 */
#define KP 128                  /* k pairs an FP16 tile sums in fp16 */
#define WLOG 8                  /* FP16 panel weights lie below 2^WLOG */
#define XLOG 0                  /* and x below 2^XLOG: KP * 2^(WLOG + XLOG) = 2^15 */
#define XH 256                  /* k steps of x rounded to fp16 at a time */
#define GMAX 8                  /* FP16 panels per group */
#define GROUP_BYTES (1 << 20)   /* at most, so the group stays in L2 */

static int panels(const vt_wpack *w) { return (w->n + NR - 1) / NR; }

/* bytes of one panel */
static size_t panel_bytes(const vt_wpack *w)
{
    return w->bf16 ? (w->fp16 ? 64 : 0) + (size_t)(w->k + 1) / 2 * NR * 2 * sizeof(uint16_t)
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

#ifdef VT_HAVE_X86_KERNELS
/* Panel p of a BF16 weight wt[n, k] as FP16 (see the top): the header
 * holds 2^-e as a float, the pairs w * 2^e, e putting the panel's largest
 * finite |w| in [2^(WLOG-1), 2^WLOG). BF16 magnitudes order as integers. */
VT_AVX512FP16 static void pack_panel_fp16(char *dst, const uint16_t *wt, int p, int n, int k)
{
    int cols = n - p * NR < NR ? n - p * NR : NR, top = 0;
    for (int j = 0; j < cols; j++)
        for (int kk = 0; kk < k; kk++) {
            int a = wt[(size_t)(p * NR + j) * k + kk] & 0x7fff;
            top = a < 0x7f80 && a > top ? a : top;
        }
    int e = top >= 0x80 ? WLOG - 1 - ((top >> 7) - 127) : 0;  /* 0: zeros, subnormals */
    e = e < -100 ? -100 : e > 100 ? 100 : e;
    float inv = ldexpf(1.0f, -e);
    memset(dst, 0, 64);
    memcpy(dst, &inv, sizeof inv);
    uint16_t *h = (uint16_t *)(dst + 64);
    pack_panel_bf16(h, wt, p, n, k);
    __m512 scale = _mm512_set1_ps(ldexpf(1.0f, e));
    for (size_t i = 0; i < (size_t)(k + 1) / 2 * NR * 2; i += 16) {
        __m512i b = _mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)(h + i)));
        __m512 f = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), scale);
        _mm256_store_si256((__m256i *)(h + i),
                           _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}
#endif

typedef struct pack_job { const vt_wpack *w; const void *src; } pack_job;

static void pack_task(void *ctx, int p, int thread)
{
    (void)thread;
    const pack_job *j = ctx;
    const vt_wpack *w = j->w;
    char *dst = (char *)w->data + (size_t)p * panel_bytes(w);
#ifdef VT_HAVE_X86_KERNELS
    if (w->fp16) {
        pack_panel_fp16(dst, j->src, p, w->n, w->k);
        return;
    }
#endif
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
    if (posix_memalign(&w->data, 64, (size_t)panels(w) * panel_bytes(w)) != 0) {
        w->data = NULL;
        return vt_seterr("out of memory packing a %dx%d weight", w->n, w->k);
    }
    pack_job j = {w, src};
    vt_pool_run_work(p, panels(w), pack_task, &j, (double)src_bytes);
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

int vt_wpack_init_take(vt_wpack *w, float *raw, int n, int k)
{
    int rc = vt_wpack_init(w, raw, n, k);
    if (rc == 0 && !w->data) {
        w->owned = raw;             /* multiplied as it is: keep it */
    } else {
        free(raw);
        w->raw = NULL;              /* the panels only */
    }
    return rc;
}

int vt_wpack_init_bf16_pool(vt_pool *p, vt_wpack *w, const uint16_t *wt, int n, int k)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = k;
    w->bf16 = 1;
    w->fp16 = vt_gemm_bf16_kernel() == VT_BF16_FP16;
    return pack_all(p, w, wt, (size_t)n * k * sizeof *wt);
}

int vt_wpack_init_bf16(vt_wpack *w, const uint16_t *wt, int n, int k)
{
    return vt_wpack_init_bf16_pool(NULL, w, wt, n, k);
}

void vt_wpack_free(vt_wpack *w)
{
    if (w) {
        free(w->data);
        free(w->owned);
    }
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

/* TILE_STORE for tiles whose registers are arrays already */
VT_AVX512 static void tile_store(int mr, const __m512 *c0, const __m512 *c1, float *y,
                                 size_t ldy, const float *bias, int gelu, int acc_y, int cols)
{
    TILE_STORE();
}

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

/* ---- AVX512-FP16 ------------------------------------------------------ */

/* sum[r] += (x rows xh[r] . the panel bp over nq k pairs) * inv, in fp16
 * KP pairs at a time: an mr x 32 tile in 24 registers, each lane of a
 * register one feature at even or odd k (the weights' pair layout), x
 * broadcast as a pair from the buffer (one base register: the rows lie XH
 * halves apart; a 32-bit broadcast is a plain load, a 16-bit one is not).
 * sum[r] keeps features and parities interleaved; see tile_fp16. */
/* c0 += pair * b0, c1 += pair * b1, the x pair *xp broadcast. In asm
 * because GCC 12, given the intrinsics, keeps several broadcasts live,
 * runs out of registers and copies and spills accumulators; here one
 * scratch register serves (fewer copies; 0-5% faster, measured). */
#define ROW_PH(c0, c1, xp, b0, b1) \
    __asm__("vpbroadcastd %2, %%zmm31\n\tvfmadd231ph %%zmm31, %3, %0\n\t" \
            "vfmadd231ph %%zmm31, %4, %1" \
            : "+v"(c0), "+v"(c1) : "m"(*(xp)), "v"(b0), "v"(b1) : "xmm31")

VT_AVX512FP16 static inline __attribute__((always_inline)) void
sums_fp16(int mr, uint32_t (*xh)[XH / 2], const uint16_t *bp, int nq, float (*sum)[2 * NR],
          float inv)
{
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int q0 = 0; q0 < nq; q0 += KP) {
        int ql = nq - q0 < KP ? nq - q0 : KP;
        const float *b = (const float *)(bp + (size_t)q0 * 2 * NR);   /* pairs as 32-bit lanes */
        __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++)
            if (r < mr)
                c0[r] = c1[r] = _mm512_setzero_ps();
#define QSTEP(q) do { \
        __m512 b0 = _mm512_load_ps(b + (q) * NR), b1 = _mm512_load_ps(b + (q) * NR + 16); \
        _Pragma("GCC unroll 12") \
        for (int r = 0; r < MR; r++) \
            if (r < mr) \
                ROW_PH(c0[r], c1[r], &xh[r][q0 + (q)], b0, b1); \
    } while (0)
        int q = 0;
        for (; q + 8 <= ql; q += 8) {
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                QSTEP(q + u);
        }
        for (; q < ql; q++)
            QSTEP(q);
#undef QSTEP
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++)
            if (r < mr) {
                __m512i h0 = _mm512_castps_si512(c0[r]), h1 = _mm512_castps_si512(c1[r]);
                __m512 w[4] = {_mm512_cvtph_ps(_mm512_castsi512_si256(h0)),
                               _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h0, 1)),
                               _mm512_cvtph_ps(_mm512_castsi512_si256(h1)),
                               _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h1, 1))};
                for (int v = 0; v < 4; v++)
                    _mm512_store_ps(sum[r] + 16 * v,
                                    _mm512_fmadd_ps(w[v], vinv, _mm512_load_ps(sum[r] + 16 * v)));
            }
    }
}

/* x rows [0, mr) at k steps [k0, k0 + kn) times s, rounded to fp16 pairs
 * into xh (zeros past k pair with the pad) */
VT_AVX512FP16 static void round_x(int mr, const float *x, size_t ldx, int k0, int kn, float s,
                                  uint32_t (*xh)[XH / 2])
{
    const __m512 vs = _mm512_set1_ps(s);
    for (int r = 0; r < mr; r++)
        for (int f = 0; f < kn; f += 16) {
            int left = kn - f;
            __mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + r * ldx + k0 + f), vs);
            _mm256_store_si256((__m256i *)&xh[r][f / 2],
                               _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
}

/* An mr-row tile x gn FP16 panels (bp, psize bytes apart; cols features
 * from the first): x scaled by s and rounded to fp16 XH k steps at a time,
 * each chunk run over every panel of the group; then per feature the even
 * and odd k sums are added and the TILE_STORE epilogue applied. xr: the
 * tile's x rounded already (chunk c at xr[c][r]), or NULL: round it here.
 * pf .. pf_end: lines to prefetch, npf per chunk and panel. */
VT_AVX512FP16 static void tile_fp16(int mr, const float *x, size_t ldx, const uint32_t *xr,
                                    const char *bp, size_t psize, int gn, int k, float s,
                                    float *y, size_t ldy, const float *bias, int gelu,
                                    int acc_y, int cols, const char *pf, const char *pf_end,
                                    int npf)
{
    uint32_t xbuf[MR][XH / 2] __attribute__((aligned(64)));
    float sum[GMAX][MR][2 * NR] __attribute__((aligned(64)));
    float inv[GMAX];
    for (int g = 0; g < gn; g++) {
        memcpy(&inv[g], bp + g * psize, sizeof *inv);
        inv[g] /= s;                    /* powers of two: exact */
        memset(sum[g], 0, (size_t)mr * sizeof *sum[g]);
    }
    for (int k0 = 0; k0 < k; k0 += XH) {
        int kn = k - k0 < XH ? k - k0 : XH;
        uint32_t (*xh)[XH / 2] = xbuf;
        if (xr)
            xh = (uint32_t (*)[XH / 2])(xr + (size_t)k0 / XH * MR * (XH / 2));
        else
            round_x(mr, x, ldx, k0, kn, s, xbuf);
        for (int g = 0; g < gn; g++) {
            for (int i = 0; i < npf && pf < pf_end; i++, pf += 64)
                _mm_prefetch(pf, _MM_HINT_T1);
            const uint16_t *b = (const uint16_t *)(bp + g * psize + 64) + (size_t)k0 * NR;
            int nq = (kn + 1) / 2;
            switch (mr) {
#define CASE(M) case M: sums_fp16(M, xh, b, nq, sum[g], inv[g]); break;
            CASE(12) CASE(11) CASE(10) CASE(9) CASE(8) CASE(7)
            CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) CASE(1)
#undef CASE
            }
        }
    }
    /* lane 2i of a sum vector: feature i at even k, lane 2i + 1: odd k */
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int g = 0; g < gn; g++, y += NR, cols -= NR) {
        const float *bg = bias ? bias + g * NR : NULL;
        __m512 c0[MR], c1[MR];
        for (int r = 0; r < mr; r++) {
            const float *sr = sum[g][r];
            __m512 s0 = _mm512_load_ps(sr), s1 = _mm512_load_ps(sr + 16);
            __m512 s2 = _mm512_load_ps(sr + 32), s3 = _mm512_load_ps(sr + 48);
            c0[r] = _mm512_add_ps(_mm512_permutex2var_ps(s0, even, s1),
                                  _mm512_permutex2var_ps(s0, odd, s1));
            c1[r] = _mm512_add_ps(_mm512_permutex2var_ps(s2, even, s3),
                                  _mm512_permutex2var_ps(s2, odd, s3));
        }
        tile_store(mr, c0, c1, y, ldy, bg, gelu, acc_y, cols);
    }
}

/* A power of two s that puts the largest finite |x| over rows [0, rows)
 * of x below 2^XLOG (1 when that is zero or subnormal); inf and nan stay
 * what they are, so their rows come out as in f32. */
VT_AVX512 static float x_scale(const float *x, size_t ldx, int rows, int k)
{
    __m512 top = _mm512_setzero_ps(), inf = _mm512_set1_ps(INFINITY);
    for (int r = 0; r < rows; r++)
        for (int f = 0; f < k; f += 16) {
            int left = k - f;
            __mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + r * ldx + f));
            top = _mm512_mask_max_ps(top, _mm512_cmp_ps_mask(a, inf, _CMP_LT_OQ), top, a);
        }
    float a = _mm512_reduce_max_ps(top);
    uint32_t u;
    memcpy(&u, &a, sizeof u);
    int e = (int)(u >> 23);             /* a < 2^(e - 126) */
    if (e == 0 || e == 255)
        return 1.0f;
    e = XLOG - (e - 126);
    return ldexpf(1.0f, e < -100 ? -100 : e > 100 ? 100 : e);
}
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

/* k steps [k0, k0 + kn) of a BF16 or FP16 panel as f32, wf[kk * NR + j] */
static void widen(const vt_wpack *w, const char *bp, int k0, int kn, float *wf)
{
    float inv = 1.0f;
    if (w->fp16)
        memcpy(&inv, bp, sizeof inv);
    const uint16_t *b = (const uint16_t *)(bp + (w->fp16 ? 64 : 0));
    for (int kk = 0; kk < kn; kk++)
        for (int j = 0; j < NR; j++) {
            int q = k0 + kk;
            uint16_t h = b[((size_t)(q / 2) * NR + j) * 2 + q % 2];
            wf[kk * NR + j] = w->fp16 ? vt_f16_to_f32(h) * inv : vt_bf16_to_f32(h);
        }
}

/* y rows [0, rows) x one bf16 or fp16 panel: widen PK x 32 weights,
 * OpenBLAS into a row block of sums, then the same epilogue as the tiles. */
static void panel_rows_portable(const vt_wpack *w, const float *x, size_t ldx, int rows,
                                const char *bp, int k, float *y, size_t ldy, const float *bias,
                                int gelu, int acc_y, int cols)
{
    float wf[PK * NR], acc[PR * NR];
    for (int r0 = 0; r0 < rows; r0 += PR) {
        int rn = rows - r0 < PR ? rows - r0 : PR;
        for (int k0 = 0; k0 < k; k0 += PK) {
            int kn = k - k0 < PK ? k - k0 : PK;
            widen(w, bp, k0, kn, wf);
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

#ifdef VT_HAVE_X86_KERNELS
/* the same on the fp16 tile (b: a header, then the pairs) */
static double time_fp16(const float *x, const void *b, float *y)
{
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        double t = thread_seconds();
        for (int i = 0; i < 16; i++)
            tile_fp16(MR, x, 512, NULL, b, 0, 1, 512, 1.0f, y, NR, NULL, 0, 0, NR, NULL, NULL, 0);
        t = thread_seconds() - t;
        best = t < best ? t : best;
    }
    return best;
}

/* The fastest of fma, dpbf16 and (when level has it) fp16, timed in L1,
 * interleaved, best of each (about a millisecond, once) */
static int fastest(int level)
{
    float *x = NULL, *y = NULL;
    uint16_t *b = NULL;
    int best = VT_BF16_DPBF16;
    if (posix_memalign((void **)&x, 64, MR * 512 * sizeof *x) == 0 &&
        posix_memalign((void **)&b, 64, 64 + 512 * NR * sizeof *b) == 0 &&
        posix_memalign((void **)&y, 64, MR * NR * sizeof *y) == 0) {
        for (int i = 0; i < MR * 512; i++)
            x[i] = (float)(i % 17) * 0.01f;
        for (int i = 0; i < 32 + 512 * NR; i++)
            b[i] = 0x3c00 + (uint16_t)(i % 13);     /* a header of 1.0f..: fine */
        double t[3] = {1e30, 1e30, 1e30};
        for (int round = 0; round < 2; round++) {
            double f = time_tile(tiles_bf16fma, x, b, y), d = time_tile(tiles_bf16dp, x, b, y);
            double h = level >= VT_CPU_AVX512FP16 ? time_fp16(x, b, y) : 1e30;
            t[0] = f < t[0] ? f : t[0];
            t[1] = d < t[1] ? d : t[1];
            t[2] = h < t[2] ? h : t[2];
        }
        best = t[0] < t[1] && t[0] < t[2] ? VT_BF16_FMA : t[1] < t[2] ? VT_BF16_DPBF16
                                                                     : VT_BF16_FP16;
    }
    free(x);
    free(b);
    free(y);
    return best;
}
#endif

/* VT_BF16, else the fastest kernel this CPU has */
static void calibrate(void)
{
    const char *env = getenv("VT_BF16");
    int level = vt_cpu();
    calibrated = level >= VT_CPU_AVX512FP16 ? VT_BF16_FP16
               : level >= VT_CPU_AVX512BF16 ? VT_BF16_DPBF16
               : level >= VT_CPU_AVX512 ? VT_BF16_FMA : VT_BF16_PORTABLE;
    if (env && strcmp(env, "portable") == 0)
        calibrated = VT_BF16_PORTABLE;
    else if (env && strcmp(env, "fma") == 0 && level >= VT_CPU_AVX512)
        calibrated = VT_BF16_FMA;
    else if (env && strcmp(env, "dpbf16") == 0 && level >= VT_CPU_AVX512BF16)
        calibrated = VT_BF16_DPBF16;
    else if (env && strcmp(env, "fp16") == 0 && level >= VT_CPU_AVX512FP16)
        calibrated = VT_BF16_FP16;
#ifdef VT_HAVE_X86_KERNELS
    else if (level >= VT_CPU_AVX512BF16)
        calibrated = fastest(level);
#endif
}

int vt_gemm_bf16_kernel(void)
{
    pthread_once(&calibrate_once, calibrate);
    int level = vt_cpu(), k = bf16_forced >= 0 ? bf16_forced : calibrated;
    if (k == VT_BF16_FP16 && level < VT_CPU_AVX512FP16)
        k = VT_BF16_DPBF16;
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
    tile_fn tile;       /* NULL: portable bf16, or fp16 when group */
    int m, gelu, acc_y;
    int group;          /* FP16 panels per group (0: not the fp16 kernel) */
    float xs;           /* FP16: x's scale (x_scale) */
    uint32_t *xh;       /* FP16: x rounded per tile (round_task), or NULL */
    int rows;           /* rows per task (a multiple of MR) */
    int pan;            /* panels per task */
    int ncol;           /* column tasks */
} gemm_job;

#ifdef VT_HAVE_X86_KERNELS
/* words of one tile's rounded x: its chunks of MR x XH / 2 pairs */
static size_t xtile_words(int k)
{
    return (size_t)(k + XH - 1) / XH * MR * (XH / 2);
}

/* x's row tile `task` rounded into j->xh, chunk after chunk */
static void round_task(void *ctx, int task, int thread)
{
    (void)thread;
    const gemm_job *j = ctx;
    int k = j->w->k, r0 = task * MR, mr = j->m - r0 < MR ? j->m - r0 : MR;
    uint32_t *xr = j->xh + (size_t)task * xtile_words(k);
    for (int k0 = 0; k0 < k; k0 += XH, xr += MR * (XH / 2))
        round_x(mr, j->x + (size_t)r0 * k, (size_t)k, k0, k - k0 < XH ? k - k0 : XH, j->xs,
                (uint32_t (*)[XH / 2])xr);
}

/* Rows [r0, r0 + rows) x FP16 panels [p0, p1), a group of panels at a
 * time (each tile's x rounding serves the group); the tiles over a group
 * prefetch the next to L2 as panel_rows does. */
static void gemm_task_fp16(const gemm_job *j, int r0, int rows, int p0, int p1)
{
    const vt_wpack *w = j->w;
    int k = w->k, n = w->n, tiles = (rows + MR - 1) / MR;
    size_t psize = panel_bytes(w);
    const float *x = j->x + (size_t)r0 * k;
    float s = j->xs;
    int ng = (p1 - p0 + j->group - 1) / j->group, G = (p1 - p0 + ng - 1) / ng;   /* even groups */
    for (int g = p0; g < p1; g += G) {
        int gn = p1 - g < G ? p1 - g : G;
        int next = p1 - g - gn < G ? p1 - g - gn : G;
        const char *bp = (const char *)w->data + g * psize, *pf = bp + gn * psize;
        size_t slice = (next * psize / tiles + 63) & ~(size_t)63;
        int calls = (k + XH - 1) / XH * gn, npf = (int)((slice / 64 + calls - 1) / calls);
        const char *end = pf + next * psize;
        for (int r = 0; r < rows; r += MR, pf += slice)
            tile_fp16(rows - r < MR ? rows - r : MR, x + (size_t)r * k, (size_t)k,
                      j->xh ? j->xh + (size_t)(r0 + r) / MR * xtile_words(k) : NULL, bp, psize,
                      gn, k, s, j->y + (size_t)(r0 + r) * n + g * NR, (size_t)n,
                      j->b ? j->b + g * NR : NULL, j->gelu, j->acc_y, n - g * NR,
                      pf, pf + slice < end ? pf + slice : end, npf);
    }
}
#endif

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
    int np = panels(w), p1 = p0 + j->pan < np ? p0 + j->pan : np;
    size_t psize = panel_bytes(w);
#ifdef VT_HAVE_X86_KERNELS
    if (j->group) {
        gemm_task_fp16(j, r0, rows, p0, p1);
        return;
    }
#endif
    for (int p = p0; p < p1; p++) {
        int cols = w->n - p * NR < NR ? w->n - p * NR : NR;
        const char *bp = (const char *)w->data + p * psize;
        const float *x = j->x + (size_t)r0 * k, *b = j->b ? j->b + p * NR : NULL;
        float *y = j->y + (size_t)r0 * w->n + p * NR;
        if (!j->tile)
            panel_rows_portable(w, x, (size_t)k, rows, bp, k, y, (size_t)w->n, b, j->gelu,
                                j->acc_y, cols);
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
    int group = 0, kern = vt_gemm_bf16_kernel();
    (void)kern;                                 /* portable builds */
#ifdef VT_HAVE_X86_KERNELS
    if (w->fp16 && vt_cpu() >= VT_CPU_AVX512FP16) {
        group = GROUP_BYTES / (int)panel_bytes(w);
        group = group < 1 ? 1 : group > GMAX ? GMAX : group;
    } else if (w->fp16)
        ;                                       /* portable */
    else if (!w->bf16)
        tile = tiles_f32;
    else if (kern == VT_BF16_DPBF16 || kern == VT_BF16_FP16)
        tile = tiles_bf16dp;
    else if (kern == VT_BF16_FMA)
        tile = tiles_bf16fma;
#endif
    int T = vt_pool_size(p), np = panels(w);
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
    /* (fp16 without scratch: 2 per thread, as each task rounds its x once
     * per group) */
    uint32_t *xh = NULL;
#ifdef VT_HAVE_X86_KERNELS
    if (group) {
        size_t words = (size_t)(m + MR - 1) / MR * xtile_words(w->k);
        xh = vt_pool_scratch(p, words * sizeof *xh);
    }
#endif
    int tasks = group && !xh ? 2 * T : 4 * T, want = tasks > nrow ? (tasks + nrow - 1) / nrow : 1;
    int pan = (np + want - 1) / want;
    gemm_job j = {y, x, b, w, tile, m, gelu, beta != 0.0f, group, 1.0f, xh, rows, pan,
                  (np + pan - 1) / pan};
#ifdef VT_HAVE_X86_KERNELS
    if (group) {
        j.xs = x_scale(x, (size_t)w->k, m, w->k);       /* a pass over x: ~1% of the product */
        /* x rounded once, not once per tile and group of panels */
        if (xh)
            vt_pool_run_work(p, (m + MR - 1) / MR, round_task, &j, (double)m * w->k);
    }
#endif
    vt_pool_run_work(p, nrow * j.ncol, gemm_task, &j, 2.0 * m * w->k * w->n);
}
