/* tokens.h - split inference: a model's token set between two blocks, as
 * memory (vt_tokens) and as a "tokens" frame (vt-frames(5)).
 *
 * vt-classify --until L stops a forward pass after block L and writes the
 * tokens; vt-prune reduces them; vt-classify continues from block L+1. The
 * continuation sees exactly the floats the first half wrote, so an
 * unreduced split is bit-identical to the uninterrupted run.
 *
 * Families opt in through vt_family's split hooks (model.h); the model-level
 * calls below check support and name the families that have it. */
#ifndef VT_TOKENS_H
#define VT_TOKENS_H

#include <stdint.h>

#include "frame.h"
#include "model.h"

/* One image's tokens after a block. Buffers are owned (vt_tokens_reserve,
 * vt_tokens_free). Positions are boxes on the patch grid of the image, so
 * tokens that stand for several grid cells (pooled, fused, clustered) keep
 * their extent; the transformer blocks themselves do not read them. */
typedef struct vt_tokens {
    int n;              /* N: tokens */
    int dim;            /* C: channels */
    int extra;          /* E: extra tokens (CLS, distillation), kept apart */
    int grid_h, grid_w; /* the patch grid the boxes are measured on */
    int block;          /* last block applied (the family's numbering) */
    float *x;           /* [N, C] */
    int32_t *box;       /* [N, 4] x0, y0, x1, y1: half-open, grid cells */
    float *ex;          /* [E, C] */
    float *cls;         /* [N] CLS attention of `block` (mean over heads), or
                           NULL when not recorded */
    int cap_n, cap_e, cap_c;   /* allocated sizes */
} vt_tokens;

/* Size t for n tokens of dim channels and extra extra tokens (reusing its
 * buffers when large enough); with_cls allocates cls, else cls is NULL.
 * Contents are unspecified. */
void vt_tokens_reserve(vt_tokens *t, int n, int dim, int extra, int with_cls);
void vt_tokens_free(vt_tokens *t);
/* Exact copy of src into dst (dst's buffers reused). */
void vt_tokens_copy(vt_tokens *dst, const vt_tokens *src);
/* Boxes of the full grid: token i is cell (i / grid_w, i % grid_w). */
void vt_tokens_grid_boxes(vt_tokens *t);
/* 1 when the tokens are the grid's cells each exactly once (any order). */
int vt_tokens_is_full_grid(const vt_tokens *t);
/* The same test, allocating nothing: 1 with cell[c] = the token of grid
 * cell c, for the caller's cell[t->n]; 0 (cell then clobbered) otherwise. */
int vt_tokens_grid_cells(const vt_tokens *t, int *cell);

/* ---- frames ------------------------------------------------------------
 * Tensors: tokens F32 [N, C], boxes I32 [N, 4], extra F32 [E, C] (when
 * E > 0), cls_attn F32 [N] (when recorded). Metadata: everything in `meta`
 * (model identity, crop geometry, history), then vt/kind/name and block,
 * grid ("H,W"), tokens (N), extra_tokens (E). */

/* A tokens frame over t's data (borrowed: t must outlive out). */
void vt_tokens_to_frame(const vt_tokens *t, const vt_frame *meta, const char *name,
                        vt_frame *out);
/* Check a tokens frame and copy it into t. -1 with vt_error() naming what
 * is wrong (kind, tensors, shapes, boxes outside the grid). */
int vt_tokens_from_frame(const vt_frame *f, vt_tokens *t);

/* ---- model identity ----------------------------------------------------
 * A tokens frame carries arch, family and weights_sha256: the SHA-256 of the
 * model file's tensor data (every byte after the JSON header, as
 * `tail -c +$((9 + N)) model | sha256sum` gives), so the same weights
 * converted twice match and any other weights do not. */

/* Hex SHA-256 of m's tensor data (reads the whole mapping: ~0.4 s for
 * DeiT-S; compute it once). The pages it reads are given back as it goes
 * (vt_map_release), so it does not make a packed model's file resident
 * again. */
int vt_weights_sha256(const vt_model *m, char hex[65]);
/* The identity metadata of m into meta: arch, family, weights_sha256 (hex
 * from vt_weights_sha256), random. */
void vt_tokens_identity(const vt_model *m, const char *hex, vt_frame *meta);
/* 0 when tokens frame f was made by this model (same arch and weights); -1
 * with vt_error() saying which model made it otherwise. */
int vt_tokens_check_identity(const vt_frame *f, const vt_model *m, const char *hex);

/* ---- running -------------------------------------------------------- */

/* 0 when m's family can stop after `block`; -1 with vt_error() naming the
 * valid blocks, or, for a family without split inference, the families
 * that have it. */
int vt_model_split_point(const vt_model *m, int block);
/* Images x[batch, 3, S, S] through blocks 0..until; out[batch] get the
 * tokens (reserved here). */
int vt_model_run_until(vt_model *m, const float *x, int batch, int until, vt_tokens *out);
/* Tokens in[batch] (the same count and block in each) from block
 * in->block + 1: through block `until` into out[batch], or, with until < 0,
 * to the end: logits[batch, num_classes]. */
int vt_model_run_from(vt_model *m, const vt_tokens *in, int batch, int until,
                      vt_tokens *out, float *logits);

#endif
