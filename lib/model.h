/* model.h - model families, model files, and running a model.
 *
 * A model file is a .safetensors file whose __metadata__ holds "vt_model":"1",
 * "arch", "family", "config" (JSON), "preprocess" (JSON), "labels" (label set
 * name), "source" and "source_sha256". Its tensors are the family's state
 * dict, F32 (or F16/BF16), and are used in place from the mapping.
 *
 * A family is one file in lib/models/ that fills a vt_family and is listed
 * in the registry in lib/model.c. */
#ifndef VT_MODEL_H
#define VT_MODEL_H

#include <cjson/cJSON.h>
#include "frame.h"
#include "image.h"

/* One expected state-dict tensor. */
typedef struct vt_param {
    char *name;
    int ndim;
    int64_t shape[VT_MAX_DIM];
    int optional;       /* recomputed buffers that may be absent */
} vt_param;

typedef struct vt_params {
    vt_param *p;
    int n, cap;
} vt_params;

/* Append "name" with ndim dims given as int64_t varargs. */
void vt_params_add(vt_params *ps, int optional, const char *name, int ndim, ...);
void vt_params_free(vt_params *ps);

/* Config access with defaults (cfg is the model's config object). */
int vt_cfg_int(const cJSON *cfg, const char *key, int def);
double vt_cfg_num(const cJSON *cfg, const char *key, double def);
int vt_cfg_bool(const cJSON *cfg, const char *key, int def);
/* Array of ints: fills at most max values of out and returns the array's
 * length (which may be more than max: callers compare it with what they
 * need), 0 when absent, -1 when an element is not an int. */
int vt_cfg_ints(const cJSON *cfg, const char *key, int *out, int max);

/* Buffers a network owns beside its mapped weights: copies of misaligned
 * tensors, folded or re-laid-out weights, resampled embeddings. */
typedef struct vt_store {
    float **buf;
    int n;
} vt_store;

float *vt_store_alloc(vt_store *s, size_t count);   /* zeroed, freed with s */
void vt_store_free(vt_store *s);

/* The tensor `name` of exactly count elements as F32: used in place from
 * the mapping when it is F32 and aligned, else copied into s (F16 and BF16
 * widened). NULL after vt_seterr("<family>: ...") when it is missing, of
 * another dtype or mis-sized. */
const float *vt_weight_f32(vt_store *s, const vt_frame *w, const char *family,
                           const char *name, size_t count);

/* A linear layer's weight `name` [nout, nin] as vt_linear(p, ...) takes
 * it (p the pool the network multiplies on, already created): F32 that
 * the file aligns is its data in place, packed on first use (vt_pool_wpack).
 * Any other (BF16, F16, unaligned F32) is packed now into p's cache, from
 * the BF16 bits as they are (then multiplied in bf16 or fp16, see vt_wpack)
 * or through a transient F32 copy, and the pointer returned is a handle
 * only: vt_linear and vt_pool_wpack may use it, nothing may read it.
 * No F32 copy of a half-precision file's weight stays in memory. NULL
 * after vt_seterr("<family>: ...") as vt_weight_f32. */
struct vt_pool;
const float *vt_weight_linear(struct vt_pool *p, const vt_frame *w, const char *family,
                              const char *name, int nout, int nin);
/* vt_weight_linear packed now, for a family that multiplies inside its own
 * pool tasks with vt_linear_packed (where the pool's cache may not be
 * searched): the pack, which p owns (its address stable while p lives). */
struct vt_wpack;
const struct vt_wpack *vt_weight_packed(struct vt_pool *p, const vt_frame *w,
                                        const char *family, const char *name, int nout,
                                        int nin);
/* Run options shared by every family. */
typedef struct vt_run_opts {
    int threads;        /* our own worker threads (OpenBLAS runs 1 thread) */
    int batch;          /* max images per forward pass */
} vt_run_opts;

/* Analytic cost of one image, in the papers' convention: multiply-accumulates
 * of linear layers, convolutions and the attention matmuls (norms,
 * activations and softmax not counted). parts break it down for --explain. */
#define VT_COST_PARTS 32
typedef struct vt_cost {
    double macs;
    int nparts;
    struct { char name[40]; double macs; } part[VT_COST_PARTS];
} vt_cost;

/* Add macs to the part called name (created on first use) and the total. */
void vt_cost_add(vt_cost *c, const char *name, double macs);

struct vt_tokens;   /* tokens.h */

typedef struct vt_family {
    const char *name;               /* "vit" */
    const char *const *archs;       /* NULL-terminated variant names */
    /* Write the arch's default hyperparameters (including "img_size",
     * "num_classes", and preprocessing keys "crop_pct", "interpolation",
     * "mean", "std") into cfg, an empty object. 0 or -1. */
    int (*config)(const char *arch, cJSON *cfg);
    /* Check cfg for sense (vt_seterr on nonsense); fill the expected tensors. */
    int (*params)(const cJSON *cfg, vt_params *out);
    /* Build a network over weights (borrowed, outlive the net). */
    void *(*create)(const cJSON *cfg, const vt_frame *weights,
                    const vt_run_opts *o);
    /* x: [batch,3,S,S] normalized; logits: [batch,num_classes]. */
    int (*forward)(void *net, const float *x, int batch, float *logits);
    void (*destroy)(void *net);
    /* Optional: the cost of one image at cfg's img_size. For a family whose
     * work depends on the input (dge's gates) this is the dense cost: every
     * token computed, as the baseline without the dynamic part. */
    int (*cost)(const cJSON *cfg, vt_cost *out);
    /* Optional: what image `image` (0-based) of the net's last forward pass
     * actually cost, in cost()'s convention and part names, for families
     * whose work depends on the input (dge: the gates pick how many queries
     * each region gets). 0, or -1 with vt_error() (no forward pass yet,
     * image out of range). NULL when the work never depends on the input. */
    int (*spent)(const void *net, int image, vt_cost *out);
    /* Optional: split inference (tokens.h; all three or none). split_point:
     * 0 when the forward can stop after `block`, else vt_seterr() naming
     * the blocks it can stop after. run_until: images through blocks
     * 0..until into out[batch]. run_from: tokens in[batch] (same count and
     * block) on from in->block + 1, through `until` into out[batch], or to
     * logits[batch, classes] when until < 0. */
    int (*split_point)(const void *net, int block);
    int (*run_until)(void *net, const float *x, int batch, int until,
                     struct vt_tokens *out);
    int (*run_from)(void *net, const struct vt_tokens *in, int batch, int until,
                    struct vt_tokens *out, float *logits);
    /* Optional: the cost of one image whose token set is cut to `tokens`
     * (not counting extra tokens) after block `after` (vt-bench --keep). */
    int (*cost_pruned)(const cJSON *cfg, int after, int tokens, vt_cost *out);
    /* 1 when run_from continues any token set (pruned by vt-prune), not
     * only the full grid: what vt-bench --all --keep benches. */
    int split_subsets;
} vt_family;

const vt_family *vt_family_find(const char *name_or_arch);  /* family or arch */
const vt_family *const *vt_families(void);                  /* NULL-terminated */

/* Config for arch: family defaults, then `over` (an object, or refgen's
 * meta.json whose "config" object is used), then "arch"/"family" set. */
cJSON *vt_config_make(const char *arch, const cJSON *over);
/* Preprocessing from a config's crop_pct/interpolation/mean/std/img_size. */
void vt_config_preproc(const cJSON *cfg, vt_preproc *p);

/* Strict validation like load_state_dict(strict=True): one message listing
 * missing, unexpected and mis-shaped keys (20 of each, then counts). */
int vt_check_weights(const vt_params *ps, const vt_frame *w);

typedef struct vt_model {
    const vt_family *family;
    char *arch;
    cJSON *config;
    vt_frame weights;       /* mapped model file */
    vt_preproc pre;
    int num_classes;
    int img_size;
    char **labels;          /* num_classes names, or NULL */
    char *sha256;           /* hex of the weights' source (model identity) */
    void *net;
    vt_run_opts opts;
    int ran;                /* a forward pass has run (file pages given back after it) */
} vt_model;

int vt_model_open(const char *path, const vt_run_opts *o, vt_model *m);
/* vt_model_open, run at input side `size` instead of the model's own
 * img_size (0: its own); see vt_config_set_size. */
int vt_model_open_sized(const char *path, const vt_run_opts *o, int size, vt_model *m);
/* Set a config's input side: img_size = size, and pos_embed_size keeps the
 * side the position embedding was trained at. Families that can resample
 * it (vit) do; the others refuse sizes they cannot run in params(). */
void vt_config_set_size(cJSON *cfg, int size);
int vt_model_forward(vt_model *m, const float *x, int batch, float *logits);
void vt_model_close(vt_model *m);
/* 1 when m's weights are random (vt-convert --random): outputs mean nothing. */
int vt_model_random(const vt_model *m);

/* Labels shipped in share/ (imagenet1k); NULL-terminated, or NULL. */
char **vt_labels_load(const char *set, int *n);

/* A weight `name` of count elements read once at load as F32, for a
 * family that reorders or folds it into a pack of its own: the data in
 * place when it is aligned F32 in memory that is no mapped file
 * (*tmp = NULL), else a copy (widened exactly from F16/BF16) in *tmp,
 * which the caller frees when done, and the tensor's pages in the file
 * given back. *bf16 (may be NULL) tells
 * whether the file holds it in BF16 (for vt_wpack_take_as). NULL after
 * vt_seterr as vt_weight_f32. No copy stays in memory: unlike
 * vt_weight_f32, which keeps widened copies for the net's lifetime. */
const float *vt_weight_read(const vt_frame *w, const char *family, const char *name,
                            size_t count, float **tmp, int *bf16);
/* Pack raw[n, k] (from vt_xmalloc, freed here) into pk: with bf16 set
 * (a reordering of a BF16 weight: its values are BF16 already) rounded to
 * BF16 and packed as a BF16 weight on p (may be NULL), as the file's
 * other linears are; else vt_wpack_init_take. 0, or -1 with vt_error(). */
struct vt_wpack;
int vt_wpack_take_as(struct vt_pool *p, struct vt_wpack *pk, float *raw, int n, int k,
                     int bf16);

#endif
