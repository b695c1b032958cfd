/* window.h - the pieces of a Swin Transformer (Liu et al., ICCV 2021) that
 * lib/ops.h and lib/ops/attend.h lack: cyclic shift + window partition and
 * its inverse, the relative position index and bias, the shifted-window
 * mask, patch merging's 2x2 gather, and multi-head attention with an
 * additive bias/mask that keeps its probabilities (for significance and
 * assignment maps).
 *
 * Tokens are rows of x[H*W, C] in raster order (p = y*W + x). A window
 * partition of an H x W map with window ws (H, W multiples of ws) lists
 * nW = (H/ws)(W/ws) windows in raster order over (a, b); window (a, b)
 * holds map position (a*ws + r, b*ws + c) at token r*ws + c.
 *
 * Like lib/ops.h: row-major float32, caller-owned outputs, no allocation. */
#ifndef VT_OPS_WINDOW_H
#define VT_OPS_WINDOW_H

#include "ops.h"

/* xw[nW * ws*ws, C] = partition(roll(x, -s)): with the cyclic shift,
 * window token (a, b, r, c) reads x[((a*ws + r + s) mod H) * W +
 * (b*ws + c + s) mod W]. s = 0: plain partition. */
void vt_window_partition(float *xw, const float *x, int H, int W, int C,
                         int ws, int s);

/* The inverse (un-partition, roll by +s): y[p] = xw[token at p], or
 * y[p] += xw[...] when accumulate != 0 (a fused residual). */
void vt_window_reverse(float *y, const float *xw, int H, int W, int C,
                       int ws, int s, int accumulate);

/* Swin's relative_position_index: idx[i * N + j] for tokens i = (ri, ci),
 * j = (rj, cj) of a ws x ws window (N = ws*ws) is
 * (ri - rj + ws - 1) * (2ws - 1) + (ci - cj + ws - 1). idx: [N, N]. */
void vt_window_rel_index(int *idx, int ws);

/* Dense bias[h, i, j] = table[idx(i, j), h] for table[(2ws-1)^2, nh]:
 * bias [nh, N, N]. */
void vt_window_rel_bias(float *bias, const float *table, int ws, int nh);

/* The shifted-window mask of a shift-s block on an H x W map:
 * mask[w, i, j] = 0 where tokens i and j of window w come from the same
 * region of the shifted map, else `value` (-100 in Swin). Regions: rows
 * [0, H-ws), [H-ws, H-s), [H-s, H), the same for columns. mask
 * [nW, N, N]. */
void vt_window_shift_mask(float *mask, int H, int W, int ws, int s, float value);

/* Patch merging's gather: out[(H/2)*(W/2), 4C] concatenates, per output
 * cell (y, x), x[2y, 2x], x[2y+1, 2x], x[2y, 2x+1], x[2y+1, 2x+1] (the
 * sub-grids [0::2, 0::2], [1::2, 0::2], [0::2, 1::2], [1::2, 1::2]). H and
 * W even. For batch images one after another in x and in out, rows split
 * over the pool p (may be NULL). */
void vt_patch_merge_gather(vt_pool *p, float *out, const float *x, int batch, int H,
                           int W, int C);

/* Multi-head attention of one query set over one key set, keeping the
 * probabilities, heads split over the pool p (may be NULL). For head h (channels h*d .. h*d+d-1 of q, k, v, out):
 *   P[h] = softmax(scale * q_h k_h^T + bias[h] + mask)   [nq, nk]
 *   out_h = P[h] v_h
 * q [nq, .] row stride ldq, k and v [nk, .] strides ldk and ldv, out stride
 * ldo; bias [heads, nq, nk] and mask [nq, nk] may be NULL; probs
 * [heads, nq, nk] receives P (it is also the work area). */
void vt_mha_probs(vt_pool *p, float *out, int ldo, const float *q, int ldq,
                  const float *k, int ldk, const float *v, int ldv, int nq, int nk,
                  int heads, int d, float scale, const float *bias,
                  const float *mask, float *probs);

/* Swin window attention over nW windows of N tokens each:
 *   qkv[nW*N, 3C] (q | k | v, heads inside each), out[nW*N, C] (heads
 *   concatenated), bias [heads, N, N] (may be NULL), mask [mask_nw, N, N]
 *   (may be NULL), window w taking mask w % mask_nw: the windows of
 *   several images of mask_nw windows each run in one job. (Window, head) pairs are split over the pool and run fused
 *   (vt_attn_head_biased, no probabilities kept); scratch has
 *   vt_swin_attn_scratch floats for d = C / heads channels per head. */
size_t vt_swin_attn_scratch(const vt_pool *p, int heads, int N, int d);
void vt_swin_attn(vt_pool *p, float *out, const float *qkv, int nW, int mask_nw,
                  int N, int heads, int d, float scale, const float *bias,
                  const float *mask, float *scratch);

/* ---- one Swin block --------------------------------------------------- */

/* Weights of a Swin block (borrowed), with shapes for C channels, F hidden,
 * nh heads, N = ws*ws tokens per window, nW windows. */
typedef struct vt_swin_block_w {
    const float *n1w, *n1b;     /* norm1 [C] */
    const float *qkvw, *qkvb;   /* attn.qkv [3C, C], [3C] (bias may be NULL) */
    const float *bias;          /* dense relative bias [nh, N, N] (vt_window_rel_bias) */
    const float *mask;          /* shift mask [nW, N, N], NULL when unshifted */
    const float *projw, *projb; /* attn.proj [C, C], [C] */
    const float *n2w, *n2b;     /* norm2 [C] */
    const float *fc1w, *fc1b;   /* mlp.fc1 [F, C], [F] */
    const float *fc2w, *fc2b;   /* mlp.fc2 [C, F], [C] */
    int heads, ws, shift, hidden;
} vt_swin_block_w;

/* Pack the block's four linear weights (C channels) into p's weight cache
 * (vt_pool_wpack) now, in parallel on p, unless they are there already
 * (vt_weight_linear packs a half-precision file's): vt_swin_block
 * multiplies by them through vt_linear. 0 or -1. */
int vt_swin_block_pack(vt_pool *p, const vt_swin_block_w *b, int C);

/* Floats of scratch vt_swin_block needs for batch H x W maps of C
 * channels. */
size_t vt_swin_block_scratch(const vt_pool *p, const vt_swin_block_w *b, int batch, int H,
                             int W, int C);

/* x[batch, H*W, C] in place, each image:
 *   x += reverse(proj(WindowAttn(partition(roll(LN1(x), -shift)))), +shift)
 *   x += fc2(GELU(fc1(LN2(x))))
 * WindowAttn: per window and head softmax((q d^-0.5) k^T + bias + mask) v. */
void vt_swin_block(vt_pool *p, float *x, int batch, int H, int W, int C,
                   const vt_swin_block_w *b, float eps, float *scratch);

#endif
