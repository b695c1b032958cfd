/* sgformer.h - what an SG-Former net exposes beyond logits: the
 * significance maps its hybrid blocks compute, the token orders its
 * reallocation blocks use, and the stage outputs (for vt-sigmap, vt-prune
 * and the conformance tests).
 *
 * `net` is what vt_family_sgformer.create() returned (the `net` of a
 * vt_model whose family is &vt_family_sgformer); other pointers are refused
 * by a magic number check. Stages are numbered 1..4 and blocks 0..depth-1,
 * as in the state dict (block{stage}.{block}) and in the conformance
 * fixtures' names (sigmap_s1_b0). Everything refers to the last forward
 * pass; `image` is the index inside that pass's batch. */
#ifndef VT_MODELS_SGFORMER_H
#define VT_MODELS_SGFORMER_H

/* Block kinds (vt_sgformer_block_kind). */
#define VT_SG_NONE 0        /* no such block */
#define VT_SG_HYBRID 1      /* global + window attention; makes a map */
#define VT_SG_REALLOC 2     /* merges tokens by the previous block's map */
#define VT_SG_MHSA 3        /* plain attention (stage 4) */

/* Which map (vt_sgformer_sigmap). */
#define VT_SG_MAP 0         /* M = L + G: what the next block sorts by */
#define VT_SG_GLOBAL 1      /* G: mean attention each sr x sr cell received
                               from all queries over the global heads,
                               upsampled (nearest) to the stage grid */
#define VT_SG_LOCAL 2       /* L: mean attention each token received from
                               the queries of its 7x7 window */

int vt_sgformer_block_kind(const void *net, int stage, int block);
/* Depth of a stage (0 for a bad stage or net). */
int vt_sgformer_depth(const void *net, int stage);
/* Stage grid side (H = W) at the configured input size; 0 if invalid. */
int vt_sgformer_grid(const void *net, int stage);

/* Significance map of HYBRID block (stage, block) for image `image` of the
 * last forward pass: out[h, w] row-major at token resolution (h = w = the
 * stage grid: 56, 28, 14 at 224) when out is not NULL. Values are mean
 * attention, M in [0, 2] with mean 1/(h/r)^2 + 1/49 (2/49 at 224). 0, or
 * -1 with vt_error() (not an sgformer net, no forward pass yet, image out
 * of range, no map at that block). */
int vt_sgformer_sigmap(const void *net, int image, int stage, int block,
                       int which, float *out, int *h, int *w);

/* Token order REALLOC block (stage, block) merged in: which = 1 for the
 * ascending sort of the map read row-major, 2 for the map read
 * column-major; both as row-major token indices n = y*w + x, out[n]
 * (n = h*w tokens) when out is not NULL. 0 or -1. */
int vt_sgformer_order(const void *net, int image, int stage, int block,
                      int which, int *out, int *n);

/* Output of stage 1..4 (after its LayerNorm) for the LAST image of the
 * last forward pass: [n, c] tokens, row-major grid. Stage 5 gives the
 * pooled features [1, c]. NULL with vt_error() on error. */
const float *vt_sgformer_stage(const void *net, int stage, int *n, int *c);

/* Debugging hook (spec section 9, step 3): after each REALLOC block sorts
 * its map, fn may overwrite the orders (row-major token indices, n each)
 * before they are used, e.g. with a reference's orders; return nonzero to
 * make the forward pass fail. NULL removes the hook. */
typedef int (*vt_sgformer_order_hook)(void *ctx, int image, int stage,
                                      int block, int *order1, int *order2,
                                      int n);
int vt_sgformer_set_order_hook(void *net, vt_sgformer_order_hook fn, void *ctx);

#endif
