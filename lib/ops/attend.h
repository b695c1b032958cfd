/* attend.h - attention cores that lib/ops.h's vt_attention (same token set
 * for queries and keys, packed qkv) does not cover: queries attending to a
 * different, smaller key set (spatial reduction, merged tokens), and
 * attention inside non-overlapping windows; both can report how much
 * attention every key received (column sums of the softmax), which is what
 * significance maps are made of.
 *
 * Both split work into tasks whose boundaries do not depend on the number
 * of threads, and sum per-task partial results in task order, so results
 * are bitwise the same for any pool size. */
#ifndef VT_OPS_ATTEND_H
#define VT_OPS_ATTEND_H

#include "ops.h"

#define VT_ATTEND_ROWS 128  /* queries per task */

/* One head, fused (softmax made block by block in cache, never the whole
 * [nq, nk] matrix): o[nq, d] = softmax(scale * q k^T) v, with q[nq, d],
 * k and v [nk, d], o[nq, d] at row strides ldq, ldk, ldv, ldo. Serial; a
 * task of a pool job calls it with its thread's scratch of
 * vt_attn_head_scratch(nk, d) floats. */
size_t vt_attn_head_scratch(int nk, int d);
void vt_attn_head(float *o, int ldo, const float *q, int ldq, const float *k, int ldk,
                  const float *v, int ldv, int nq, int nk, int d, float scale,
                  float *scratch);
/* The same with additions to the scores before the softmax, as Swin's
 * relative position bias and shift mask: softmax(scale q k^T + bias + mask),
 * bias and mask [nq, nk] row-major, either may be NULL. */
void vt_attn_head_biased(float *o, int ldo, const float *q, int ldq, const float *k, int ldk,
                         const float *v, int ldv, int nq, int nk, int d, float scale,
                         const float *bias, const float *mask, float *scratch);

/* A head's rows of tokens idx[0..n) gathered: dst[i, 0:d] = src[idx[i] *
 * ld + 0:d] * scale (scale 1: a copy), and scattered back: dst[idx[i] * ld
 * + 0:d] = src[i, 0:d]. For attention over token subsets (Pale's groups):
 * rows of a head are a few dozen floats, a memcpy call each costs more
 * than the copy. */
void vt_rows_gather(float *dst, const float *src, size_t ld, const int *idx, int n, int d,
                    float scale);
void vt_rows_scatter(float *dst, size_t ld, const float *src, const int *idx, int n, int d);

/* One head: q[nq, d] (row stride ldq), k and v [nk, d] (strides ldk, ldv),
 * out[nq, d] (stride ldo). Pointers are to the head's first channel. */
typedef struct vt_attend_head {
    const float *q, *k, *v;
    float *o;
} vt_attend_head;

/* Floats of scratch vt_attend needs for d channels per head: one
 * [VT_ATTEND_ROWS, nk] score block (or the fused head's scratch) per pool
 * thread, then the per-task column sums for up to `heads` heads and nq
 * queries. */
size_t vt_attend_scratch(const vt_pool *p, int heads, int nq, int nk, int d);

/* For every head: out = softmax(q k^T * scale) v, softmax over the nk
 * keys. colsum (optional, [nk]): the attention each key received, summed
 * over all heads and queries (divide by heads*nq for the mean); without
 * it the heads run fused (vt_attn_head). */
void vt_attend(vt_pool *p, const vt_attend_head *heads, int nheads, int ldq,
               int ldk, int ldv, int ldo, int nq, int nk, int d, float scale,
               float *scratch, float *colsum);

/* Floats of scratch vt_window_attend needs. */
size_t vt_window_scratch(const vt_pool *p, int ws, int d);

/* Attention inside ws x ws windows of an h x w token grid (h, w multiples
 * of ws; no shift, no bias), as Swin's window_partition: window (wy, wx)
 * row-major, token (y, x) inside it row-major. For each of `heads` heads
 * (head j reads channels j*d .. j*d+d-1 of each array):
 *   q[h*w, .] (row stride ldq), k and v (stride ldkv), out (stride ldo).
 * colsum (optional, [heads, (h/ws)*(w/ws), ws*ws]): per head and window,
 * the attention each key position received, summed over the window's
 * ws*ws queries; without it each window runs fused (vt_attn_head). */
void vt_window_attend(vt_pool *p, int heads, const float *q, int ldq,
                      const float *k, const float *v, int ldkv, float *out,
                      int ldo, int h, int w, int ws, int d, float scale,
                      float *scratch, float *colsum);

#endif
