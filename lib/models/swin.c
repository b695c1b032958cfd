/* swin.c - Swin Transformer (Liu et al., "Swin Transformer: Hierarchical
 * Vision Transformer using Shifted Windows", ICCV 2021), eval mode, as timm
 * names its variants; the plain baseline of STViT-R (../shared/specs/stvit.md).
 *
 *   x = LN(conv_pxp(img))                           stage 1: (S/4)^2 tokens
 *   per stage i: per block j:
 *       x += WindowAttn(LN1(x))   (windows shifted by ws/2 on odd j)
 *       x += MLP(LN2(x))
 *     then (i < 3) x = reduction(LN(gather2x2(x)))    merge: 2x2 -> 1, C -> 2C
 *   logits = head(mean over tokens of LN(x))
 *
 * A stage whose map is not larger than the window uses one window of the
 * whole map and never shifts (Swin's rule).
 *
 * State dict: config "layout" = "microsoft" (default: Microsoft's releases
 * and the conformance fixtures, {'model': ...}; merge after stage i in
 * layers.i.downsample, head.weight) or "timm" (timm/HF hub: merge in
 * layers.(i+1).downsample, head.fc.weight). relative_position_index and
 * attn_mask are buffers: optional, recomputed, checked when present.
 *
 * Config keys: img_size, patch_size, embed_dim, depths[4], num_heads[4],
 * window_size, mlp_ratio, qkv_bias, num_classes, ln_eps, layout, and the
 * preprocessing keys. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "models/stvit.h"
#include "ops.h"
#include "ops/window.h"
#include "tokens.h"
#include "util.h"

#define SW_MAGIC 0x5357494eu    /* "SWIN" */
#define SW_STAGES 4
#define SW_PASS 4      /* images per forward pass at most */
#define SW_MAX_DEPTH 64

static const char *const sw_archs[] = {
    "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
    "swin_base_patch4_window7_224", NULL};

/* ---- config ---------------------------------------------------------- */

typedef struct sw_stage {
    int dim;        /* C_i = embed_dim * 2^i */
    int depth, heads, hidden;
    int res;        /* H = W of the stage */
    int ws;         /* window, min(res, window_size) */
    int can_shift;  /* res > window_size */
} sw_stage;

typedef struct sw_config {
    int img_size, patch, classes, qkv_bias, timm_layout;
    float eps;
    sw_stage st[SW_STAGES];
} sw_config;

static int sw_config_defaults(const char *arch, cJSON *cfg)
{
    static const int dep_t[4] = {2, 2, 6, 2}, dep_sb[4] = {2, 2, 18, 2};
    static const int heads_ts[4] = {3, 6, 12, 24}, heads_b[4] = {4, 8, 16, 32};
    int C;
    const int *dep, *heads;
    if (strcmp(arch, sw_archs[0]) == 0)
        C = 96, dep = dep_t, heads = heads_ts;
    else if (strcmp(arch, sw_archs[1]) == 0)
        C = 96, dep = dep_sb, heads = heads_ts;
    else if (strcmp(arch, sw_archs[2]) == 0)
        C = 128, dep = dep_sb, heads = heads_b;
    else
        return vt_seterr("swin: unknown arch '%s'", arch);
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddNumberToObject(cfg, "img_size", 224);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    cJSON_AddNumberToObject(cfg, "patch_size", 4);
    cJSON_AddNumberToObject(cfg, "embed_dim", C);
    cJSON_AddItemToObject(cfg, "depths", cJSON_CreateIntArray(dep, 4));
    cJSON_AddItemToObject(cfg, "num_heads", cJSON_CreateIntArray(heads, 4));
    cJSON_AddNumberToObject(cfg, "window_size", 7);
    cJSON_AddNumberToObject(cfg, "mlp_ratio", 4.0);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    cJSON_AddNumberToObject(cfg, "ln_eps", 1e-5);
    cJSON_AddStringToObject(cfg, "layout", "microsoft");
    /* timm's pretrained cfg; Microsoft's own eval crops 0.875 */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.9);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(std, 3));
    return 0;
}

static int sw_config_read(const cJSON *cfg, sw_config *c)
{
    memset(c, 0, sizeof *c);
    int dep[5], heads[5];
    if (vt_cfg_ints(cfg, "depths", dep, 5) != SW_STAGES ||
        vt_cfg_ints(cfg, "num_heads", heads, 5) != SW_STAGES)
        return vt_seterr("swin: config \"depths\" and \"num_heads\" must be 4 integers");
    c->img_size = vt_cfg_int(cfg, "img_size", 224);
    c->patch = vt_cfg_int(cfg, "patch_size", 4);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    c->eps = (float)vt_cfg_num(cfg, "ln_eps", 1e-5);
    int C = vt_cfg_int(cfg, "embed_dim", 96), ws = vt_cfg_int(cfg, "window_size", 7);
    double ratio = vt_cfg_num(cfg, "mlp_ratio", 4.0);
    const cJSON *lay = cJSON_GetObjectItemCaseSensitive(cfg, "layout");
    if (cJSON_IsString(lay) && strcmp(lay->valuestring, "timm") == 0)
        c->timm_layout = 1;
    else if (cJSON_IsString(lay) && strcmp(lay->valuestring, "microsoft") != 0)
        return vt_seterr("swin: layout '%s': \"microsoft\" or \"timm\"", lay->valuestring);
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("swin: num_classes %d out of range", c->classes);
    if (!(c->eps > 0 && c->eps < 1))
        return vt_seterr("swin: ln_eps out of range");
    if (c->patch < 1 || c->patch > 64 || C < 1 || C > 8192 || ws < 1 || ws > 64)
        return vt_seterr("swin: patch_size, embed_dim or window_size out of range");
    if (!(ratio > 0 && ratio * C * 8 <= 1 << 20))
        return vt_seterr("swin: mlp_ratio out of range");
    if (c->img_size < c->patch || c->img_size > 4096 || c->img_size % c->patch)
        return vt_seterr("swin: img_size %d is not a multiple of the patch size %d",
                         c->img_size, c->patch);
    int res = c->img_size / c->patch;
    for (int i = 0; i < SW_STAGES; i++) {
        sw_stage *s = &c->st[i];
        s->dim = C << i, s->depth = dep[i], s->heads = heads[i];
        s->hidden = (int)(s->dim * ratio);
        s->res = res;
        s->can_shift = res > ws;
        s->ws = res > ws ? ws : res;
        if (s->depth < 1 || s->depth > SW_MAX_DEPTH)
            return vt_seterr("swin: stage %d: depth %d out of range", i + 1, s->depth);
        if (s->heads < 1 || s->dim % s->heads)
            return vt_seterr("swin: stage %d: %d channels not divisible into %d heads",
                             i + 1, s->dim, s->heads);
        if (res % s->ws)
            return vt_seterr("swin: img_size %d: the stage %d map %dx%d is not a multiple of "
                             "the %d-token window", c->img_size, i + 1, res, res, s->ws);
        if (i < SW_STAGES - 1 && res % 2)
            return vt_seterr("swin: img_size %d: the stage %d map %dx%d cannot be merged 2x2",
                             c->img_size, i + 1, res, res);
        res /= 2;
    }
    return 0;
}

/* ---- state dict ------------------------------------------------------ */

static void merge_prefix(const sw_config *c, int i, char *buf, size_t n)
{
    snprintf(buf, n, "layers.%d.downsample.", c->timm_layout ? i + 1 : i);
}

static int block_shift(const sw_stage *s, int j) { return j % 2 && s->can_shift ? s->ws / 2 : 0; }

static int sw_params(const cJSON *cfg, vt_params *ps)
{
    sw_config c;
    if (sw_config_read(cfg, &c) < 0)
        return -1;
    char name[160], pre[64];
    int64_t C = c.st[0].dim, p = c.patch, K = c.classes;
#define P(nd, ...) vt_params_add(ps, 0, name, nd, __VA_ARGS__)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    vt_params_add(ps, 0, "patch_embed.proj.weight", 4, C, (int64_t)3, p, p);
    vt_params_add(ps, 0, "patch_embed.proj.bias", 1, C);
    vt_params_add(ps, 0, "patch_embed.norm.weight", 1, C);
    vt_params_add(ps, 0, "patch_embed.norm.bias", 1, C);
    for (int i = 0; i < SW_STAGES; i++) {
        const sw_stage *s = &c.st[i];
        int64_t Ci = s->dim, F = s->hidden, N = (int64_t)s->ws * s->ws;
        int64_t nW = (int64_t)(s->res / s->ws) * (s->res / s->ws), T = (2 * s->ws - 1) * (2 * s->ws - 1);
        if (i > 0 && c.timm_layout) {
            merge_prefix(&c, i - 1, pre, sizeof pre);
            NAME("%sreduction.weight", pre), P(2, Ci, 2 * Ci);
            NAME("%snorm.weight", pre), P(1, 2 * Ci);
            NAME("%snorm.bias", pre), P(1, 2 * Ci);
        }
        for (int j = 0; j < s->depth; j++) {
#define B(sfx) NAME("layers.%d.blocks.%d.%s", i, j, sfx)
            if (block_shift(s, j))
                B("attn_mask"), vt_params_add(ps, 1, name, 3, nW, N, N);
            B("norm1.weight"), P(1, Ci);
            B("norm1.bias"), P(1, Ci);
            B("attn.relative_position_bias_table"), P(2, T, (int64_t)s->heads);
            B("attn.relative_position_index"), vt_params_add(ps, 1, name, 2, N, N);
            B("attn.qkv.weight"), P(2, 3 * Ci, Ci);
            if (c.qkv_bias)
                B("attn.qkv.bias"), P(1, 3 * Ci);
            B("attn.proj.weight"), P(2, Ci, Ci);
            B("attn.proj.bias"), P(1, Ci);
            B("norm2.weight"), P(1, Ci);
            B("norm2.bias"), P(1, Ci);
            B("mlp.fc1.weight"), P(2, F, Ci);
            B("mlp.fc1.bias"), P(1, F);
            B("mlp.fc2.weight"), P(2, Ci, F);
            B("mlp.fc2.bias"), P(1, Ci);
#undef B
        }
        if (i < SW_STAGES - 1 && !c.timm_layout) {
            merge_prefix(&c, i, pre, sizeof pre);
            NAME("%sreduction.weight", pre), P(2, 2 * Ci, 4 * Ci);
            NAME("%snorm.weight", pre), P(1, 4 * Ci);
            NAME("%snorm.bias", pre), P(1, 4 * Ci);
        }
    }
    int64_t Cl = c.st[3].dim;
    vt_params_add(ps, 0, "norm.weight", 1, Cl);
    vt_params_add(ps, 0, "norm.bias", 1, Cl);
    vt_params_add(ps, 0, c.timm_layout ? "head.fc.weight" : "head.weight", 2, K, Cl);
    vt_params_add(ps, 0, c.timm_layout ? "head.fc.bias" : "head.bias", 1, K);
#undef NAME
#undef P
    return 0;
}

/* ---- weights and run state ------------------------------------------- */

typedef struct sw_net {
    uint32_t magic;
    sw_config c;
    vt_pool *pool;
    /* weights */
    const float *pew, *peb, *penw, *penb;           /* [C,3,p,p], [C], LN [C] */
    vt_swin_block_w *blk[SW_STAGES];                /* [depth] */
    const float *mrw[SW_STAGES], *mnw[SW_STAGES], *mnb[SW_STAGES];  /* [2C,4C], LN [4C] */
    const float *nw, *nb, *hw, *hb;                 /* LN [C4], head [K,C4], [K] */
    vt_store store;
    /* run state for up to cap images: each stage's tokens of all images
     * run through a block together (run_grow) */
    int cap;
    float *x;           /* [cap, L, C] residual streams, compact per stage */
    float *g;           /* [cap, L0/4, 4C0] merge gather, head norm */
    float *feat;        /* [cap, C3] pooled features */
    float *scratch;     /* vt_swin_block_scratch of the largest group */
    float *cols;        /* patch embed im2col [L0, 3 p p] */
    /* intermediates of the last image */
    float *pe, *out[SW_STAGES], *merged[SW_STAGES];
    int last_batch;
} sw_net;

static float *own(sw_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

static const float *weight(sw_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "swin", name, count);
}

/* A linear weight [nout, nin] for vt_linear (a handle when the file holds
 * it in half precision: vt_weight_linear). */
static const float *lweight(sw_net *n, const vt_frame *w, const char *name, int nout, int nin)
{
    return vt_weight_linear(n->pool, w, "swin", name, nout, nin);
}

/* A stored buffer (relative_position_index, attn_mask) must equal ours. */
static int check_buffer(const vt_frame *w, const char *name, const float *f, const int *iv,
                        size_t count)
{
    const vt_tensor *t = vt_frame_get(w, name);
    if (!t)
        return 0;
    if ((size_t)vt_tensor_numel(t) != count)
        return vt_seterr("swin: buffer %s has %lld elements, expected %zu", name,
                         (long long)vt_tensor_numel(t), count);
    for (size_t i = 0; i < count; i++) {
        double want = f ? f[i] : iv[i];
        if (vt_tensor_get(t, i) != want)
            return vt_seterr("swin: stored %s differs from the recomputed one at %zu "
                             "(window or shift not as configured?)", name, i);
    }
    return 0;
}

static int sw_bind(sw_net *n, const vt_frame *w)
{
    const sw_config *c = &n->c;
    char name[160], pre[64];
    size_t C = c->st[0].dim, p = c->patch;
#define GET(dst, cnt) do { if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    NAME("patch_embed.proj.weight"); GET(n->pew, C * 3 * p * p);
    NAME("patch_embed.proj.bias"); GET(n->peb, C);
    NAME("patch_embed.norm.weight"); GET(n->penw, C);
    NAME("patch_embed.norm.bias"); GET(n->penb, C);
    for (int i = 0; i < SW_STAGES; i++) {
        const sw_stage *s = &c->st[i];
        size_t Ci = s->dim, F = s->hidden, N = (size_t)s->ws * s->ws, nW = (size_t)(s->res / s->ws) * (s->res / s->ws);
        size_t T = (size_t)(2 * s->ws - 1) * (2 * s->ws - 1);
        int *idx = vt_xmalloc(N * N * sizeof *idx);
        vt_window_rel_index(idx, s->ws);
        n->blk[i] = vt_xcalloc((size_t)s->depth, sizeof(vt_swin_block_w));
        for (int j = 0; j < s->depth; j++) {
            vt_swin_block_w *b = &n->blk[i][j];
            const float *table;
            b->heads = s->heads, b->ws = s->ws, b->hidden = s->hidden, b->shift = block_shift(s, j);
#define BG(dst, sfx, cnt) do { NAME("layers.%d.blocks.%d.%s", i, j, sfx); \
        if (!((dst) = weight(n, w, name, (cnt)))) { free(idx); return -1; } } while (0)
#define BL(dst, sfx, no, ni) do { NAME("layers.%d.blocks.%d.%s", i, j, sfx); \
        if (!((dst) = lweight(n, w, name, (int)(no), (int)(ni)))) { free(idx); return -1; } } while (0)
            BG(b->n1w, "norm1.weight", Ci);
            BG(b->n1b, "norm1.bias", Ci);
            BG(table, "attn.relative_position_bias_table", T * s->heads);
            BL(b->qkvw, "attn.qkv.weight", 3 * Ci, Ci);
            if (c->qkv_bias)
                BG(b->qkvb, "attn.qkv.bias", 3 * Ci);
            BL(b->projw, "attn.proj.weight", Ci, Ci);
            BG(b->projb, "attn.proj.bias", Ci);
            BG(b->n2w, "norm2.weight", Ci);
            BG(b->n2b, "norm2.bias", Ci);
            BL(b->fc1w, "mlp.fc1.weight", F, Ci);
            BG(b->fc1b, "mlp.fc1.bias", F);
            BL(b->fc2w, "mlp.fc2.weight", Ci, F);
            BG(b->fc2b, "mlp.fc2.bias", Ci);
#undef BG
#undef BL
            float *bias = own(n, (size_t)s->heads * N * N);
            vt_window_rel_bias(bias, table, s->ws, s->heads);
            b->bias = bias;
            NAME("layers.%d.blocks.%d.attn.relative_position_index", i, j);
            if (check_buffer(w, name, NULL, idx, N * N) < 0) {
                free(idx);
                return -1;
            }
            if (b->shift) {
                /* every shifted block of a stage has the same mask: share it */
                float *mask = j > 1 ? (float *)n->blk[i][1].mask : own(n, nW * N * N);
                if (j <= 1)
                    vt_window_shift_mask(mask, s->res, s->res, s->ws, b->shift, -100.0f);
                b->mask = mask;
                NAME("layers.%d.blocks.%d.attn_mask", i, j);
                if (check_buffer(w, name, mask, NULL, nW * N * N) < 0) {
                    free(idx);
                    return -1;
                }
            }
        }
        free(idx);
        if (i < SW_STAGES - 1) {
            merge_prefix(c, i, pre, sizeof pre);
            NAME("%sreduction.weight", pre);
            if (!(n->mrw[i] = lweight(n, w, name, 2 * Ci, 4 * Ci)))
                return -1;
            NAME("%snorm.weight", pre); GET(n->mnw[i], 4 * Ci);
            NAME("%snorm.bias", pre); GET(n->mnb[i], 4 * Ci);
        }
    }
    size_t Cl = c->st[3].dim, K = c->classes;
    NAME("norm.weight"); GET(n->nw, Cl);
    NAME("norm.bias"); GET(n->nb, Cl);
    NAME(c->timm_layout ? "head.fc.weight" : "head.weight");
    if (!(n->hw = lweight(n, w, name, K, Cl)))
        return -1;
    NAME(c->timm_layout ? "head.fc.bias" : "head.bias"); GET(n->hb, K);
#undef NAME
#undef GET
    return 0;
}

/* The matrix products' weights packed once, at load (vt_pool_wpack). */
static int sw_pack(sw_net *n)
{
    for (int i = 0; i < SW_STAGES; i++) {
        const sw_stage *s = &n->c.st[i];
        for (int j = 0; j < s->depth; j++)
            if (vt_swin_block_pack(n->pool, &n->blk[i][j], s->dim) < 0)
                return -1;
        if (i < SW_STAGES - 1 && vt_pool_wpack_load(n->pool, n->mrw[i], 2 * s->dim, 4 * s->dim) < 0)
            return -1;
    }
    return 0;
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* Images of stage i that run through a block together (of batch): as many
 * as make the first stage's token count, so the block scratch stays that
 * of one image at 224 while the later stages, whose products have a few
 * hundred rows or less per image and whose attention has few windows, get
 * the rows and tasks of several. */
static int stage_group(const sw_config *c, int i, int batch)
{
    int L0 = c->st[0].res * c->st[0].res, L = c->st[i].res * c->st[i].res;
    int g = L0 / L;
    return g < 1 ? 1 : g > batch ? batch : g;
}

static void run_alloc(sw_net *n)
{
    const sw_config *c = &n->c;
    size_t L0 = (size_t)c->st[0].res * c->st[0].res, C0 = c->st[0].dim;
    for (int i = 0; i < SW_STAGES; i++) {
        const sw_stage *s = &c->st[i];
        size_t L = (size_t)s->res * s->res;
        n->out[i] = own(n, L * s->dim);
        if (i < SW_STAGES - 1)
            n->merged[i] = own(n, L / 4 * 2 * s->dim);
    }
    n->cols = own(n, L0 * 3 * c->patch * c->patch);
    n->pe = own(n, L0 * C0);
}

/* The batch-sized state for `batch` images (once per larger batch). */
static void run_grow(sw_net *n, int batch)
{
    if (batch <= n->cap)
        return;
    const sw_config *c = &n->c;
    size_t L0 = (size_t)c->st[0].res * c->st[0].res, C0 = c->st[0].dim, scr = 0;
    for (int i = 0; i < SW_STAGES; i++) {
        const sw_stage *s = &c->st[i];
        scr = zmax(scr, vt_swin_block_scratch(n->pool, &n->blk[i][0], stage_group(c, i, batch),
                                              s->res, s->res, s->dim));
    }
    free(n->x);
    free(n->g);
    free(n->feat);
    free(n->scratch);
    n->x = vt_xmalloc((size_t)batch * L0 * C0 * sizeof *n->x);
    n->g = vt_xmalloc((size_t)batch * L0 * C0 * sizeof *n->g);
    n->feat = vt_xmalloc((size_t)batch * c->st[3].dim * sizeof *n->feat);
    n->scratch = vt_xmalloc(scr * sizeof *n->scratch);
    n->cap = batch;
}

/* ---- forward --------------------------------------------------------- *
 * One image: embed, blocks [0, total) numbered across the stages (a stage's
 * patch merging runs before its successor's first block), head. A split
 * runs the same calls over [0, L+1) and [L+1, total). */

static int total_blocks(const sw_config *c)
{
    int t = 0;
    for (int i = 0; i < SW_STAGES; i++) t += c->st[i].depth;
    return t;
}

/* Global block b -> stage *i, block *j within it. */
static void locate(const sw_config *c, int b, int *i, int *j)
{
    *i = 0;
    while (*i < SW_STAGES - 1 && b >= c->st[*i].depth) b -= c->st[(*i)++].depth;
    *j = b;
}

/* Tokens of stage i per image: the stride of x between images. */
static size_t stage_floats(const sw_config *c, int i)
{
    return (size_t)c->st[i].res * c->st[i].res * c->st[i].dim;
}

/* Images x[batch, 3, S, S] to the first stage's tokens in x. */
static void sw_embed(sw_net *n, const float *x, int batch)
{
    const sw_config *c = &n->c;
    int S = c->img_size, p = c->patch;
    const sw_stage *s0 = &c->st[0];
    int L = s0->res * s0->res;
    size_t img = (size_t)3 * S * S, one = stage_floats(c, 0);
    for (int b = 0; b < batch; b++)
        vt_conv2d_tokens(n->pool, n->x + b * one, x + b * img, 3, S, S, n->pew, n->peb, s0->dim,
                         p, p, 0, n->cols);
    vt_layernorm_mt(n->pool, n->x, n->x, n->penw, n->penb, batch * L, s0->dim, c->eps);
    vt_copy(n->pool, n->pe, n->x + (batch - 1) * one, one);
}

/* Patch merging after stage i - 1, every image's rows in one product. */
static void sw_merge(sw_net *n, int i, int batch)
{
    const sw_config *c = &n->c;
    const sw_stage *p = &c->st[i - 1];
    int H = p->res, C = p->dim, L = H * H;
    size_t one = stage_floats(c, i - 1);
    vt_patch_merge_gather(n->pool, n->g, n->x, batch, H, H, C);
    vt_layernorm_mt(n->pool, n->g, n->g, n->mnw[i - 1], n->mnb[i - 1], batch * L / 4, 4 * C,
                    c->eps);
    vt_linear(n->pool, n->x, n->g, n->mrw[i - 1], NULL, batch * L / 4, 4 * c->st[i - 1].dim,
              2 * c->st[i - 1].dim, 0, 0);
    vt_copy(n->pool, n->merged[i - 1], n->x + (batch - 1) * (one / 2), one / 2);
}

/* Blocks [first, last) on the residual streams x of batch images. */
static void sw_blocks(sw_net *n, int batch, int first, int last)
{
    const sw_config *c = &n->c;
    for (int b = first; b < last; b++) {
        int i, j;
        locate(c, b, &i, &j);
        if (j == 0 && i > 0)    /* merge the previous stage's output */
            sw_merge(n, i, batch);
        const sw_stage *s = &c->st[i];
        size_t one = stage_floats(c, i);
        int group = stage_group(c, i, batch);
        for (int g0 = 0; g0 < batch; g0 += group)
            vt_swin_block(n->pool, n->x + g0 * one, batch - g0 < group ? batch - g0 : group,
                          s->res, s->res, s->dim, &n->blk[i][j], c->eps, n->scratch);
        if (j == s->depth - 1)
            vt_copy(n->pool, n->out[i], n->x + (batch - 1) * one, one);
    }
}

static void sw_head(sw_net *n, int batch, float *logits)
{
    const sw_config *c = &n->c;
    int C = c->st[3].dim, L = c->st[3].res * c->st[3].res;
    vt_layernorm_mt(n->pool, n->g, n->x, n->nw, n->nb, batch * L, C, c->eps);
    for (int b = 0; b < batch; b++)
        vt_mean_rows(n->feat + (size_t)b * C, n->g + (size_t)b * L * C, L, C);
    vt_linear(n->pool, logits, n->feat, n->hw, n->hb, batch, C, c->classes, 0, 0);
}

static int sw_forward(void *net, const float *x, int batch, float *logits)
{
    sw_net *n = net;
    if (!n || n->magic != SW_MAGIC)
        return vt_seterr("swin: not a swin net");
    if (batch < 1)
        return vt_seterr("swin: batch %d", batch);
    /* Passes of SW_PASS images: past that a batch gains little speed
     * (every product has >= 196 rows) but its streams grow by 2.4 MB per
     * image (Swin-T), which a bf16 file's memory bound does not have. */
    size_t img = (size_t)3 * n->c.img_size * n->c.img_size;
    run_grow(n, batch < SW_PASS ? batch : SW_PASS);
    for (int b0 = 0; b0 < batch; b0 += SW_PASS) {
        int np = batch - b0 < SW_PASS ? batch - b0 : SW_PASS;
        sw_embed(n, x + b0 * img, np);
        sw_blocks(n, np, 0, total_blocks(&n->c));
        sw_head(n, np, logits + (size_t)b0 * n->c.classes);
        n->last_batch = np;     /* the last image's intermediates are kept */
    }
    return 0;
}

static void sw_destroy(void *net)
{
    sw_net *n = net;
    if (!n)
        return;
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    free(n->x);
    free(n->g);
    free(n->feat);
    free(n->scratch);
    for (int i = 0; i < SW_STAGES; i++) {
        free(n->blk[i]);
    }
    n->magic = 0;
    free(n);
}

static void *sw_create(const cJSON *cfg, const vt_frame *weights, const vt_run_opts *o)
{
    sw_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = SW_MAGIC;
    if (sw_config_read(cfg, &n->c) < 0) {
        sw_destroy(n);
        return NULL;
    }
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    /* the mapped model file never changes: vt_linear packs its weights once */
    if (n->pool)
        vt_pool_readonly(n->pool, weights->map, weights->map_len);
    if (!n->pool || sw_bind(n, weights) < 0 || sw_pack(n) < 0) {
        sw_destroy(n);
        return NULL;
    }
    run_alloc(n);
    run_grow(n, o && o->batch > 0 ? o->batch : 1);
    return n;
}

/* ---- split inference (tokens.h) -------------------------------------- *
 * After any block the state is the stage's token grid x[res*res, C] (a
 * stage's last block hands on its output before the patch merging). The
 * windows read that grid, so a continuation takes only the full grid in
 * row-major order: Swin splits exactly, it does not prune. */

static int sw_split_point(const void *net, int block)
{
    const sw_net *n = net;
    int total = total_blocks(&n->c);
    if (block < 0 || block >= total)
        return vt_seterr("the model has blocks 0 to %d, not %d", total - 1, block);
    return 0;
}

/* Image b's tokens after `block`. */
static void sw_export(const sw_net *n, int b, int block, vt_tokens *out)
{
    int i, j;
    locate(&n->c, block, &i, &j);
    const sw_stage *s = &n->c.st[i];
    size_t one = stage_floats(&n->c, i);
    vt_tokens_reserve(out, s->res * s->res, s->dim, 0, 0);
    out->grid_h = out->grid_w = s->res;
    out->block = block;
    memcpy(out->x, n->x + b * one, one * sizeof *out->x);
    vt_tokens_grid_boxes(out);
}

static int sw_run_until(void *net, const float *x, int batch, int until, vt_tokens *out)
{
    sw_net *n = net;
    if (sw_split_point(n, until) < 0)
        return -1;
    run_grow(n, batch);
    sw_embed(n, x, batch);
    sw_blocks(n, batch, 0, until + 1);
    for (int b = 0; b < batch; b++)
        sw_export(n, b, until, &out[b]);
    n->last_batch = 0;      /* the intermediates are not a whole pass's */
    return 0;
}

/* The tokens must be the grid the model has after their block, row-major. */
static int sw_check_tokens(const sw_net *n, const vt_tokens *t)
{
    if (sw_split_point(n, t->block) < 0)
        return -1;
    int i, j;
    locate(&n->c, t->block, &i, &j);
    const sw_stage *s = &n->c.st[i];
    if (t->dim != s->dim || t->extra != 0)
        return vt_seterr("tokens have %d channels and %d extra; stage %d has %d and none",
                         t->dim, t->extra, i + 1, s->dim);
    if (t->grid_h != s->res || t->grid_w != s->res || t->n != s->res * s->res)
        return vt_seterr("swin continues the full %dx%d grid of stage %d, not %d tokens on "
                         "%dx%d (its windows read the grid: a pruned set cannot go on)",
                         s->res, s->res, i + 1, t->n, t->grid_h, t->grid_w);
    for (int k = 0; k < t->n; k++) {
        const int32_t *b = t->box + (size_t)k * 4;
        if (b[0] != k % s->res || b[1] != k / s->res || b[2] != b[0] + 1 || b[3] != b[1] + 1)
            return vt_seterr("swin continues the full grid of stage %d in row-major order; "
                             "token %d is not cell %d", i + 1, k, k);
    }
    return 0;
}

static int sw_run_from(void *net, const vt_tokens *in, int batch, int until,
                       vt_tokens *out, float *logits)
{
    sw_net *n = net;
    int total = total_blocks(&n->c);
    if (until >= 0 && sw_split_point(n, until) < 0)
        return -1;
    for (int b = 0; b < batch; b++) {
        if (sw_check_tokens(n, &in[b]) < 0)
            return -1;
        if (in[b].block != in->block)   /* they run through the blocks together */
            return vt_seterr("tokens of one batch are after blocks %d and %d", in->block,
                             in[b].block);
        if (until >= 0 && until <= in[b].block)
            return vt_seterr("tokens are already after block %d; cannot stop after block %d",
                             in[b].block, until);
    }
    run_grow(n, batch);
    for (int b = 0; b < batch; b++)
        memcpy(n->x + (size_t)b * in->n * in->dim, in[b].x,
               (size_t)in->n * in->dim * sizeof *n->x);
    sw_blocks(n, batch, in->block + 1, until < 0 ? total : until + 1);
    if (until < 0)
        sw_head(n, batch, logits);
    for (int b = 0; until >= 0 && b < batch; b++)
        sw_export(n, b, until, &out[b]);
    n->last_batch = 0;
    return 0;
}

/* ---- cost ------------------------------------------------------------ */

static int sw_cost(const cJSON *cfg, vt_cost *out)
{
    sw_config c;
    if (sw_config_read(cfg, &c) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    double L = (double)c.st[0].res * c.st[0].res;
    vt_cost_add(out, "patch_embed", L * c.st[0].dim * 3 * c.patch * c.patch);
    char name[40];
    for (int i = 0; i < SW_STAGES; i++) {
        const sw_stage *s = &c.st[i];
        double C = s->dim, N = (double)s->ws * s->ws;
        L = (double)s->res * s->res;
        /* qkv + q k^T + P v + proj + mlp, per block */
        double blk = L * C * 3 * C + 2 * L * N * C + L * C * C + 2 * L * C * s->hidden;
        snprintf(name, sizeof name, "stage%d", i + 1);
        vt_cost_add(out, name, blk * s->depth);
        if (i < SW_STAGES - 1) {
            snprintf(name, sizeof name, "merge%d", i + 1);
            vt_cost_add(out, name, L / 4 * 4 * C * 2 * C);
        }
    }
    vt_cost_add(out, "head", (double)c.st[3].dim * c.classes);
    return 0;
}

/* ---- intermediates (models/stvit.h) ---------------------------------- */

const float *vt_swin_extra(const void *net, const char *name, size_t *count)
{
    const sw_net *n = net;
    if (!n || n->magic != SW_MAGIC)
        return vt_seterr("not a swin net"), NULL;
    if (!n->last_batch)
        return vt_seterr("swin: no forward pass yet"), NULL;
    const sw_config *c = &n->c;
    int i;
    char tail[16];
    size_t L0 = (size_t)c->st[0].res * c->st[0].res;
    if (strcmp(name, "patch_embed") == 0)
        return *count = L0 * c->st[0].dim, n->pe;
    if (strcmp(name, "features") == 0)
        return *count = c->st[3].dim, n->feat + (size_t)(n->last_batch - 1) * c->st[3].dim;
    if (sscanf(name, "stage%d_%15s", &i, tail) == 2 && i >= 0 && i < SW_STAGES) {
        size_t L = (size_t)c->st[i].res * c->st[i].res;
        if (strcmp(tail, "out") == 0)
            return *count = L * c->st[i].dim, n->out[i];
        if (strcmp(tail, "merged") == 0 && i < SW_STAGES - 1)
            return *count = L / 2 * c->st[i].dim, n->merged[i];
    }
    return vt_seterr("swin: no intermediate '%s'", name), NULL;
}

const vt_family vt_family_swin = {
    .name = "swin",
    .archs = sw_archs,
    .config = sw_config_defaults,
    .params = sw_params,
    .create = sw_create,
    .forward = sw_forward,
    .destroy = sw_destroy,
    .cost = sw_cost,
    .split_point = sw_split_point,
    .run_until = sw_run_until,
    .run_from = sw_run_from,
};
