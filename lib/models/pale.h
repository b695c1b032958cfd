/* pale.h - what a Pale Transformer net exposes beyond logits: the
 * attention one query token pays across the image inside its pale (for
 * vt-sigmap --method pale) and the stage outputs (for the conformance
 * tests).
 *
 * `net` is what vt_family_pale.create() returned (the `net` of a vt_model
 * whose family is &vt_family_pale); other pointers are refused by a magic
 * number check. Everything refers to the last forward pass; `image` is the
 * index inside that pass's batch.
 *
 * The recorded block is the config's "attn_map_block" [stage, block]
 * (0-based, as in the state dict's stages.{s}.blocks.{b}); default: the last
 * block of stage index 1 (the second stage), as the reference exports. */
#ifndef VT_MODELS_PALE_H
#define VT_MODELS_PALE_H

/* Which branch (vt_pale_attention). */
#define VT_PALE_ROW 0       /* channels [0, C/2): interlaced row pales */
#define VT_PALE_COL 1       /* channels [C/2, C): interlaced column pales */
#define VT_PALE_BOTH 2      /* (row + column) / 2, heads averaged: the whole
                               pale-shaped footprint, sums to 1 */

/* Change the block whose attention is recorded (before a forward pass).
 * 0 or -1 with vt_error(). */
int vt_pale_set_map_block(void *net, int stage, int block);

/* Recorded block's map side: *h, *w (tokens), heads per branch *nh. */
int vt_pale_map_shape(const void *net, int *h, int *w, int *nh);

/* Attention the query token (qy, qx) of image `image` pays to every token
 * of the recorded block's map: out[h * w] (raster y*w + x), zero outside
 * the query's pale. head: 0..nh-1 of the branch, or -1 for the mean over
 * the branch's heads (with VT_PALE_BOTH head must be -1). Rows of one
 * head sum to 1. 0, or -1 with vt_error(). */
int vt_pale_attention(const void *net, int image, int branch, int head,
                      int qy, int qx, float *out);

/* Output of stage 1..4 (last block, before the final LayerNorm) for the
 * LAST image of the last forward pass: [n, c] tokens, raster order. Stage 5
 * gives the pooled features [1, c]. *h, *w get the grid. NULL with
 * vt_error() on error. */
const float *vt_pale_stage(const void *net, int stage, int *h, int *w, int *c);

#endif
