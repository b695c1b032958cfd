/* attention.c - fused attention: out = softmax(scale q k^T) v for one head,
 * blocked like flash attention, and ViT's multi-head attention on it.
 *
 * Queries go in blocks of QB rows. Keys go in blocks of up to KB_MAX: the
 * QB x kb score block lives in L1/L2 scratch, never the whole [nq, nk]
 * matrix, and the softmax is online across key blocks (a running row max
 * m and sum l; when the max grows, what was accumulated so far is rescaled
 * by exp(m_old - m_new)). The output is divided by l once at the end.
 *
 * The AVX-512 path (chosen at run time, see cpu.h) packs the key block
 * transposed, kt[c][j] for 32 keys at a time (gathers), so the score tile
 * is an outer-product update like a matrix product: 8 queries x 32 keys in
 * 16 registers, query values broadcast. The probabilities then multiply v
 * the same way (8 queries x 32 channels in 16 registers, v copied to
 * contiguous rows first unless they are already: in place its rows are
 * 3*heads*dh floats apart and fight over a few cache sets). The portable
 * path does both products with OpenBLAS. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops.h"
#include "ops/attend.h"
#include "ops/cpu.h"

#include "ops/vecmath.h"

#define QB 32           /* queries per block */
#define KB_MAX 512      /* keys per block */

static int pad32(int n) { return (n + 31) & ~31; }

/* keys per block for nk keys: all of them when they fit one block */
static int key_block(int nk) { return nk < KB_MAX ? nk : KB_MAX; }

/* scratch of one call with key blocks of kb keys:
 *   kt [pad32(kb), d]  key block transposed (AVX-512 path)
 *   vp [kb, d]         value block with contiguous rows (AVX-512 path)
 *   s  [QB, pad32(kb)] scores, then probabilities
 *   o  [QB, d]         output rows so far
 *   m, l [QB]          running row max and sum */
static size_t scratch_for(int kb, int d)
{
    return (size_t)pad32(kb) * d * 2 + (size_t)QB * pad32(kb) + (size_t)QB * d + 2 * QB;
}

size_t vt_attn_head_scratch(int nk, int d)
{
    return scratch_for(key_block(nk), d);
}

typedef struct attn_args {
    float *o;
    const float *q, *k, *v;
    int ldo, ldq, ldk, ldv, nq, nk, d, kb;
    float scale;
    float *p0;          /* optional: probabilities of query 0 (kb == nk) */
    float *pall;        /* optional: probabilities of every query, rows ldp
                           apart (kb == nk) */
    int ldp;
    const float *bias, *mask;   /* optional [nq, nk] additions to the scores */
} attn_args;

/* s[r, 0..kb) += add[r, 0..kb) (row stride lda) for rows r < rows */
static void add_rows(float *s, int lds, const float *add, size_t lda, int rows, int kb)
{
    for (int r = 0; r < rows; r++)
        vt_add(s + (size_t)r * lds, add + r * lda, (size_t)kb);
}

/* ---- portable kernels ------------------------------------------------- */

/* s[rows, kb] = scale * q k^T for one block */
static void scores_blas(const attn_args *a, float *s, int lds, const float *q,
                        int rows, const float *k, int kb)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, kb, a->d, a->scale, q,
                a->ldq, k, a->ldk, 0.0f, s, lds);
}

/* o[rows, d] += p[rows, kb] v[kb, d] */
static void pv_blas(const attn_args *a, float *o, const float *p, int lds, int rows,
                    const float *v, int kb)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, a->d, kb, 1.0f, p, lds,
                v, a->ldv, 1.0f, o, a->d);
}

/* Online softmax step over one score row x[n]: x = exp(x - m'), returns
 * the factor exp(m - m') for what came before, updates m and l. */
static float softmax_step(float *x, int n, float *m, float *l)
{
    float mx = *m;
    for (int j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    float alpha = vt_expf(*m - mx), sum = 0;
    for (int j = 0; j < n; j++)
        sum += x[j] = vt_expf(x[j] - mx);
    *l = *l * alpha + sum;
    *m = mx;
    return alpha;
}

/* ---- AVX-512 kernels ---------------------------------------------------- */

#ifdef VT_HAVE_X86_KERNELS

/* kt[c][jj] = k[j0 + jj][c] for 32-key chunks of kb keys (zero past kb) */
VT_AVX512 static void pack_kt(float *kt, const float *k, int ldk, int kb, int d)
{
    __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(ldk));
    for (int j0 = 0; j0 < kb; j0 += 16) {
        __mmask16 mask = kb - j0 >= 16 ? 0xffff : (__mmask16)((1u << (kb - j0)) - 1);
        float *dst = kt + (size_t)(j0 / 32) * 32 * d + j0 % 32;
        const float *src = k + (size_t)j0 * ldk;
        for (int c = 0; c < d; c++)
            _mm512_storeu_ps(dst + (size_t)c * 32,
                            _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, idx, src + c, 4));
    }
    if (kb % 32 && kb % 32 <= 16)       /* the last chunk's upper half */
        for (int c = 0; c < d; c++)
            _mm512_storeu_ps(kt + (size_t)(kb / 32) * 32 * d + (size_t)c * 32 + 16,
                            _mm512_setzero_ps());
}

/* s[r][0..31] = scale * sum_c q[r][c] kt[c][0..31] for mr <= 8 rows */
VT_AVX512 static inline __attribute__((always_inline)) void
score_tile(int mr, float *s, int lds, const float *q, int ldq, const float *kt, int d,
           float scale)
{
    __m512 c0[8], c1[8];
    const float *q4 = q + (size_t)4 * ldq;
    size_t l1 = (size_t)ldq, l2 = 2 * l1, l3 = 3 * l1;
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        if (r < mr)
            c0[r] = c1[r] = _mm512_setzero_ps();
    for (int c = 0; c < d; c++, kt += 32) {
        __m512 b0 = _mm512_loadu_ps(kt), b1 = _mm512_loadu_ps(kt + 16);
        /* rows r < 4 from q, the others from q4: 5 registers address all */
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            if (r < mr) {
                const float *base = r < 4 ? q : q4;
                size_t off = r % 4 == 0 ? 0 : r % 4 == 1 ? l1 : r % 4 == 2 ? l2 : l3;
                __m512 a = _mm512_set1_ps(base[off + c]);
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
            }
    }
    __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        if (r < mr) {
            _mm512_storeu_ps(s + (size_t)r * lds, _mm512_mul_ps(c0[r], sc));
            _mm512_storeu_ps(s + (size_t)r * lds + 16, _mm512_mul_ps(c1[r], sc));
        }
}

VT_AVX512 static void scores_avx512(const attn_args *a, float *s, int lds, const float *q,
                                    int rows, const float *kt, int kb)
{
    for (int j0 = 0; j0 < kb; j0 += 32) {
        const float *b = kt + (size_t)j0 * a->d;
        int r = 0;
        for (; r + 8 <= rows; r += 8)
            score_tile(8, s + (size_t)r * lds + j0, lds, q + (size_t)r * a->ldq, a->ldq, b,
                       a->d, a->scale);
        switch (rows - r) {
#define TAIL(n) case n: score_tile(n, s + (size_t)r * lds + j0, lds, q + (size_t)r * a->ldq, \
                                   a->ldq, b, a->d, a->scale); break;
            TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7)
#undef TAIL
        }
    }
}

/* One tile of o += p v: rows r < mr (<= 8) of the query block, channels
 * c0 .. c0+16nv (nv <= 2, the last vector masked by `last`), over kb keys
 * of vp[kb, d]. Starts from zero on the first key block (else from o),
 * and on the final one stores o / l, scaled by inv[r], to out. */
VT_AVX512 static inline __attribute__((always_inline)) void
pv_tile(int mr, int nv, __mmask16 last, int first, const float *inv, float *out, int ldo,
        float *o, int d, const float *p, int lds, const float *vp, int kb)
{
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 2
        for (int x = 0; x < 2; x++)
            if (r < mr && x < nv)
                acc[r][x] = first ? _mm512_setzero_ps()
                                  : _mm512_maskz_loadu_ps(x == nv - 1 ? last : 0xffff,
                                                          o + (size_t)r * d + 16 * x);
    for (int j = 0; j < kb; j++, vp += d) {
        __m512 b[2];
#pragma GCC unroll 2
        for (int x = 0; x < 2; x++)
            if (x < nv)
                b[x] = _mm512_maskz_loadu_ps(x == nv - 1 ? last : 0xffff, vp + 16 * x);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            if (r < mr) {
                __m512 a = _mm512_set1_ps(p[(size_t)r * lds + j]);
#pragma GCC unroll 2
                for (int x = 0; x < 2; x++)
                    if (x < nv)
                        acc[r][x] = _mm512_fmadd_ps(a, b[x], acc[r][x]);
            }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 2
        for (int x = 0; x < 2; x++)
            if (r < mr && x < nv) {
                __mmask16 k = x == nv - 1 ? last : 0xffff;
                if (inv)
                    _mm512_mask_storeu_ps(out + (size_t)r * ldo + 16 * x, k,
                                          _mm512_mul_ps(acc[r][x], _mm512_set1_ps(inv[r])));
                else
                    _mm512_mask_storeu_ps(o + (size_t)r * d + 16 * x, k, acc[r][x]);
            }
}

VT_AVX512 static void pv_avx512(int rows, int d, int first, const float *inv, float *out,
                                int ldo, float *o, const float *p, int lds, const float *vp,
                                int kb)
{
    for (int c0 = 0; c0 < d; c0 += 32) {
        int w = d - c0 < 32 ? d - c0 : 32, nv = (w + 15) / 16;
        __mmask16 last = w % 16 ? (__mmask16)((1u << (w % 16)) - 1) : 0xffff;
        for (int r = 0; r < rows; r += 8) {
            int mr = rows - r < 8 ? rows - r : 8;
            float *od = out + (size_t)r * ldo + c0, *os = o + (size_t)r * d + c0;
            const float *pr = p + (size_t)r * lds, *in = inv ? inv + r : NULL;
            /* constant (mr, nv) pairs so each tile is fully unrolled */
            switch (mr * 4 + nv) {
#define T(m_, n_) case m_ * 4 + n_: \
                pv_tile(m_, n_, last, first, in, od, ldo, os, d, pr, lds, vp + c0, kb); break;
                T(8, 2) T(8, 1) T(7, 2) T(7, 1) T(6, 2) T(6, 1) T(5, 2) T(5, 1)
                T(4, 2) T(4, 1) T(3, 2) T(3, 1) T(2, 2) T(2, 1) T(1, 2) T(1, 1)
#undef T
            }
        }
    }
}

/* vp[kb, d] = v rows, contiguous (rows of a head are short: Swin's 32
 * floats, for which a memcpy call per row cost more than the copy) */
VT_AVX512 static void pack_v(float *vp, const float *v, int ldv, int kb, int d)
{
    __mmask16 tail = d % 16 ? (__mmask16)((1u << (d % 16)) - 1) : 0;
    for (int j = 0; j < kb; j++, vp += d, v += ldv) {
        int c = 0;
        for (; c + 16 <= d; c += 16)
            _mm512_storeu_ps(vp + c, _mm512_loadu_ps(v + c));
        if (tail)
            _mm512_mask_storeu_ps(vp + c, tail, _mm512_maskz_loadu_ps(tail, v + c));
    }
}

/* x[n] *= f */
VT_AVX512 static void scale_avx512(float *x, int n, float f)
{
    __m512 vf = _mm512_set1_ps(f);
    int j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), vf));
    __mmask16 t = (__mmask16)((1u << (n - j)) - 1);
    _mm512_mask_storeu_ps(x + j, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + j), vf));
}

VT_AVX512 static float softmax_step_avx512(float *x, int n, float *m, float *l)
{
    __m512 vm = _mm512_set1_ps(*m);
    int j = 0;
    for (; j + 16 <= n; j += 16)
        vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + j));
    __mmask16 tail = (__mmask16)((1u << (n - j)) - 1);
    if (n > j)
        vm = _mm512_mask_max_ps(vm, tail, vm, _mm512_maskz_loadu_ps(tail, x + j));
    float mx = _mm512_reduce_max_ps(vm);
    __m512 vmx = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        __m512 e = vt_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vmx));
        _mm512_storeu_ps(x + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (n > j) {
        __m512 e = vt_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + j), vmx));
        _mm512_mask_storeu_ps(x + j, tail, e);
        sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    float alpha = vt_expf(*m - mx);
    *l = *l * alpha + _mm512_reduce_add_ps(sum);
    *m = mx;
    return alpha;
}

#endif /* VT_HAVE_X86_KERNELS */

/* ---- the blocked loop ------------------------------------------------- */

typedef struct blocks {
    float *kt, *vp, *s, *o, *m, *l;
    int lds;
} blocks;

static blocks carve(const attn_args *a, float *sc)
{
    blocks b;
    int d = a->d;
    b.lds = pad32(a->kb);
    b.kt = sc;
    b.vp = b.kt + (size_t)b.lds * d;
    b.s = b.vp + (size_t)b.lds * d;
    b.o = b.s + (size_t)QB * b.lds;
    b.m = b.o + (size_t)QB * d;
    b.l = b.m + QB;
    return b;
}

static void pack_keys(const attn_args *a, int simd, const blocks *b, int k0, int kb)
{
    (void)a; (void)simd; (void)b; (void)k0; (void)kb;
#ifdef VT_HAVE_X86_KERNELS
    if (simd) {
        pack_kt(b->kt, a->k + (size_t)k0 * a->ldk, a->ldk, kb, a->d);
        if (a->ldv != a->d)     /* else v's rows are contiguous already */
            pack_v(b->vp, a->v + (size_t)k0 * a->ldv, a->ldv, kb, a->d);
    }
#endif
}

/* Query block [q0, q0+rows) against key block [k0, k0+kb) (packed in b
 * on the AVX-512 path): scores, online softmax, o += p v; after the last
 * key block, out = o / l. */
static void block_step(const attn_args *a, int simd, const blocks *b, int q0, int rows,
                       int k0, int kb)
{
    int d = a->d, lds = b->lds, first = k0 == 0, final = k0 + kb == a->nk;
    const float *q = a->q + (size_t)q0 * a->ldq;
    float *out = a->o + (size_t)q0 * a->ldo;
    (void)simd;
#ifdef VT_HAVE_X86_KERNELS
    if (simd) {
        scores_avx512(a, b->s, lds, q, rows, b->kt, kb);
        if (a->bias)
            add_rows(b->s, lds, a->bias + (size_t)q0 * a->nk + k0, (size_t)a->nk, rows, kb);
        if (a->mask)
            add_rows(b->s, lds, a->mask + (size_t)q0 * a->nk + k0, (size_t)a->nk, rows, kb);
        for (int r = 0; r < rows; r++) {
            float alpha = softmax_step_avx512(b->s + (size_t)r * lds, kb, b->m + r, b->l + r);
            if (!first && alpha != 1.0f)
                scale_avx512(b->o + (size_t)r * d, d, alpha);
        }
        if (final)
            for (int r = 0; r < rows; r++)
                b->l[r] = 1.0f / b->l[r];
        if (final && a->p0 && q0 == 0)
            for (int j = 0; j < kb; j++)
                a->p0[j] = b->s[j] * b->l[0];
        if (final && a->pall)
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < kb; j++)
                    a->pall[(size_t)(q0 + r) * a->ldp + j] = b->s[(size_t)r * lds + j] * b->l[r];
        const float *vp = a->ldv == d ? a->v + (size_t)k0 * d : b->vp;
        pv_avx512(rows, d, first, final ? b->l : NULL, out, a->ldo, b->o, b->s, lds, vp, kb);
        return;
    }
#endif
    scores_blas(a, b->s, lds, q, rows, a->k + (size_t)k0 * a->ldk, kb);
    if (a->bias)
        add_rows(b->s, lds, a->bias + (size_t)q0 * a->nk + k0, (size_t)a->nk, rows, kb);
    if (a->mask)
        add_rows(b->s, lds, a->mask + (size_t)q0 * a->nk + k0, (size_t)a->nk, rows, kb);
    if (first)
        memset(b->o, 0, (size_t)rows * d * sizeof *b->o);
    for (int r = 0; r < rows; r++) {
        float alpha = softmax_step(b->s + (size_t)r * lds, kb, b->m + r, b->l + r);
        if (!first && alpha != 1.0f)
            for (int c = 0; c < d; c++)
                b->o[(size_t)r * d + c] *= alpha;
    }
    pv_blas(a, b->o, b->s, lds, rows, a->v + (size_t)k0 * a->ldv, kb);
    if (!final)
        return;
    if (a->p0 && q0 == 0)
        for (int j = 0; j < kb; j++)
            a->p0[j] = b->s[j] / b->l[0];
    if (a->pall)
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < kb; j++)
                a->pall[(size_t)(q0 + r) * a->ldp + j] = b->s[(size_t)r * lds + j] / b->l[r];
    for (int r = 0; r < rows; r++) {
        float inv = 1.0f / b->l[r];
        for (int c = 0; c < d; c++)
            out[(size_t)r * a->ldo + c] = b->o[(size_t)r * d + c] * inv;
    }
}

/* Denormals flushed to zero (FTZ and DAZ in MXCSR) while a head runs,
 * the previous mode restored after. Why: a score that a mask pushed ~100
 * below its row's max (Swin's shifted windows) gives a probability of
 * ~1e-38, and its products with v are denormal; while a row's first keys
 * are masked, its accumulators start from such values, and each FMA with
 * a denormal input or result takes a microcode assist of ~100 cycles:
 * window attention with a shift mask ran 3-4x slower than without one.
 * What the flush drops is below 1e-38, far under the last bit of any
 * output. */
static unsigned flush_denormals(void)
{
#ifdef VT_HAVE_X86_KERNELS
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);   /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
#else
    return 0;
#endif
}

static void restore_denormals(unsigned old)
{
#ifdef VT_HAVE_X86_KERNELS
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

static void attn_head(const attn_args *a, float *sc)
{
    int simd = vt_cpu() >= VT_CPU_AVX512, one_block = a->kb >= a->nk;
    unsigned csr = flush_denormals();
    blocks b = carve(a, sc);
    if (one_block)
        pack_keys(a, simd, &b, 0, a->nk);
    for (int q0 = 0; q0 < a->nq; q0 += QB) {
        int rows = a->nq - q0 < QB ? a->nq - q0 : QB;
        for (int r = 0; r < rows; r++)
            b.m[r] = -INFINITY, b.l[r] = 0;
        for (int k0 = 0; k0 < a->nk; k0 += a->kb) {
            int kb = a->nk - k0 < a->kb ? a->nk - k0 : a->kb;
            if (!one_block)
                pack_keys(a, simd, &b, k0, kb);
            block_step(a, simd, &b, q0, rows, k0, kb);
        }
    }
    restore_denormals(csr);
}

void vt_attn_head(float *o, int ldo, const float *q, int ldq, const float *k, int ldk,
                  const float *v, int ldv, int nq, int nk, int d, float scale,
                  float *scratch)
{
    if (nq < 1 || nk < 1 || d < 1)
        return;
    attn_args a = {o, q, k, v, ldo, ldq, ldk, ldv, nq, nk, d, key_block(nk), scale, NULL,
                   NULL, 0, NULL, NULL};
    attn_head(&a, scratch);
}

void vt_attn_head_biased(float *o, int ldo, const float *q, int ldq, const float *k, int ldk,
                         const float *v, int ldv, int nq, int nk, int d, float scale,
                         const float *bias, const float *mask, float *scratch)
{
    if (nq < 1 || nk < 1 || d < 1)
        return;
    attn_args a = {o, q, k, v, ldo, ldq, ldk, ldv, nq, nk, d, key_block(nk), scale, NULL,
                   NULL, 0, bias, mask};
    attn_head(&a, scratch);
}

/* ---- gathering a head's rows ------------------------------------------ */

#ifdef VT_HAVE_X86_KERNELS
/* dst[d] = src[d] * f (f == 1: a plain copy), a masked vector for the tail */
VT_AVX512 static inline __attribute__((always_inline)) void
row_avx512(float *dst, const float *src, int d, float f)
{
    __m512 vf = _mm512_set1_ps(f);
    int c = 0;
    for (; c + 16 <= d; c += 16) {
        __m512 v = _mm512_loadu_ps(src + c);
        _mm512_storeu_ps(dst + c, f == 1.0f ? v : _mm512_mul_ps(v, vf));
    }
    if (c < d) {
        __mmask16 t = (__mmask16)((1u << (d - c)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(t, src + c);
        _mm512_mask_storeu_ps(dst + c, t, f == 1.0f ? v : _mm512_mul_ps(v, vf));
    }
}

VT_AVX512 static void gather_avx512(float *dst, const float *src, size_t ld, const int *idx,
                                    int n, int d, float f)
{
    for (int i = 0; i < n; i++)
        row_avx512(dst + (size_t)i * d, src + (size_t)idx[i] * ld, d, f);
}

VT_AVX512 static void scatter_avx512(float *dst, size_t ld, const float *src, const int *idx,
                                     int n, int d)
{
    for (int i = 0; i < n; i++)
        row_avx512(dst + (size_t)idx[i] * ld, src + (size_t)i * d, d, 1.0f);
}
#endif

void vt_rows_gather(float *dst, const float *src, size_t ld, const int *idx, int n, int d,
                    float scale)
{
#ifdef VT_HAVE_X86_KERNELS
    if (vt_cpu() >= VT_CPU_AVX512) {
        gather_avx512(dst, src, ld, idx, n, d, scale);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d; c++)
            dst[(size_t)i * d + c] = src[(size_t)idx[i] * ld + c] * scale;
}

void vt_rows_scatter(float *dst, size_t ld, const float *src, const int *idx, int n, int d)
{
#ifdef VT_HAVE_X86_KERNELS
    if (vt_cpu() >= VT_CPU_AVX512) {
        scatter_avx512(dst, ld, src, idx, n, d);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)idx[i] * ld, src + (size_t)i * d, (size_t)d * sizeof *dst);
}

/* ---- ViT multi-head attention ----------------------------------------- */

typedef struct attn_job {
    float *out, *scratch, *cls, *maps;
    const float *qkv;
    int batch, t, heads, dh, nq, rows;
    size_t per_thread;
    float scale;
} attn_job;

size_t vt_attention_scratch(const vt_pool *p, int t, int dh)
{
    /* one key block of all t keys, so query 0's probabilities are whole */
    return (size_t)vt_pool_size(p) * scratch_for(t, dh);
}

/* One (image, head, query chunk). */
static void attn_task(void *ctx, int task, int thread)
{
    const attn_job *j = ctx;
    int t = j->t, d = j->heads * j->dh, ld = 3 * d;
    int qc = task % j->nq, h = (task / j->nq) % j->heads;
    int b = task / (j->nq * j->heads);
    int r0 = qc * j->rows, r1 = r0 + j->rows < t ? r0 + j->rows : t;
    if (r0 >= r1)
        return;
    const float *base = j->qkv + (size_t)b * t * ld + h * j->dh;
    attn_args a = {j->out + ((size_t)b * t + r0) * d + h * j->dh,
                   base + (size_t)r0 * ld, base + d, base + 2 * d,
                   d, ld, ld, ld, r1 - r0, t, j->dh, t, j->scale,
                   j->cls && r0 == 0 ? j->cls + ((size_t)b * j->heads + h) * t : NULL,
                   j->maps ? j->maps + (((size_t)b * j->heads + h) * t + r0) * t : NULL, t,
                   NULL, NULL};
    attn_head(&a, j->scratch + (size_t)thread * j->per_thread);
}

void vt_attention(vt_pool *p, float *out, const float *qkv, int batch, int t,
                  int heads, int dh, float scale, float *scratch, float *cls, float *maps)
{
    int T = vt_pool_size(p), pairs = batch * heads;
    /* Whole (image, head) pairs when they spread evenly over the threads;
     * otherwise split the queries too (in whole blocks) so no thread idles. */
    int nq = 1;
    if (T > 1 && (pairs < 4 * T && pairs % T != 0))
        nq = (4 * T + pairs - 1) / pairs;
    int rows = (t + nq - 1) / nq;
    rows = (rows + QB - 1) / QB * QB;
    nq = (t + rows - 1) / rows;
    attn_job j = {out, scratch, cls, maps, qkv, batch, t, heads, dh, nq, rows,
                  scratch_for(t, dh), scale};
    vt_pool_run_work(p, pairs * nq, attn_task, &j, 4.0 * pairs * t * t * dh);
}
