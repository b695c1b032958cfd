/* dge.h - what a dge-family net (lib/models/dge.c: DeiT-DGE, PVT-DGE and
 * their DeiT / PVT / deformable-PVT baselines) exposes beyond logits: the
 * gates' decisions (vt-sigmap --method granularity), how many queries each
 * layer computed, and, for the conformance tests, recorded intermediates.
 *
 * Layers are the transformer blocks in execution order over all stages,
 * 0 .. vt_dge_layers()-1. A token grid is [n, C] row-major: the E extra
 * tokens (CLS) first, then the h x w grid, token E + y*w + x. Everything
 * refers to image `image` (0-based) of the net's last forward pass. */
#ifndef VT_MODELS_DGE_H
#define VT_MODELS_DGE_H

#include <stdint.h>

typedef struct vt_dge_layer {
    int stage;      /* 1-based (DeiT: 1) */
    int block;      /* 0-based within the stage, as in the state dict */
    int gated;      /* 1: a DGE layer (router + sparse queries) */
    int h, w;       /* token grid */
    int extra;      /* E: extra tokens (CLS) before the grid */
    int dim;        /* C */
    int region;     /* R: region side in tokens (gated layers) */
    int hr, wr;     /* regions: h/R x w/R (gated layers) */
    int nsplits;    /* gate outputs: len(split_sizes) */
} vt_dge_layer;

/* Layers (blocks) of the net; -1 with vt_error() for a foreign pointer. */
int vt_dge_layers(const void *net);
/* Shape of layer l. 0 or -1. */
int vt_dge_layer_info(const void *net, int layer, vt_dge_layer *out);
/* The layer of block `block` of stage `stage` (1-based), or -1. */
int vt_dge_layer_index(const void *net, int stage, int block);
/* Images in the last forward pass (0: none yet). */
int vt_dge_batch(const void *net);

/* A gated layer's decision per region, [hr*wr] row-major: s, the queries
 * per region side (4, 2 or 1: patches of R/s tokens a side), and the gate
 * logits behind it, [hr*wr, nsplits] in split_sizes order. NULL with
 * vt_error() for an ungated layer or no such image. */
const int8_t *vt_dge_decisions(const void *net, int image, int layer);
const float *vt_dge_gate_logits(const void *net, int image, int layer);
/* Queries layer l computed for the image: E + sum of s^2 over its regions
 * (n, every token, for ungated layers). -1 with vt_error(). */
int vt_dge_queries(const void *net, int image, int layer);

/* The final-norm features the head reads, [C]: the CLS token, or the mean
 * over tokens for deformable PVT. */
const float *vt_dge_features(const void *net, int image, int *dim);

/* Keep every layer's output and layer 0's raw queries for each image of a
 * forward pass (costs sum of n*C floats per image). 0 or -1. */
int vt_dge_record(void *net, int on);
/* After vt_dge_record(net, 1): the output of layer l, [n, C] (n = E +
 * h*w), and the raw queries q0 of layer 0 ([nq, C], in the official
 * kernel's row order: extra tokens, then regions row-major, patches
 * row-major inside each). NULL with vt_error() when not recorded. */
const float *vt_dge_layer_out(const void *net, int image, int layer, int *n, int *dim);
const float *vt_dge_queries0(const void *net, int image, int *nq, int *dim);
/* Layer l's query rows as grained_sample_index_to_patch writes them:
 * rows[nq, 4] = (image, y0, x0, side), extra token e as (image, -1-e, 0,
 * 1). Returns nq, or -1 with vt_error(); rows may be NULL to count. */
int vt_dge_patches(const void *net, int image, int layer, int64_t *rows);

#endif
