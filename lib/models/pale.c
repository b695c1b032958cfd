/* pale.c - Pale Transformer (Wu, Wu, Tan, Guo, "Pale Transformer: A
 * General Vision Transformer Backbone with Pale-Shaped Attention", AAAI
 * 2022), eval mode. The authors never released code: the reference is
 * ../shared/conformance/families/pale.py (written from the paper), whose
 * state dict names and choices this file follows; ../shared/specs/pale.md
 * describes it in words.
 *
 *   per stage s:  x = LN(conv(s == 0 ? image : x))   7x7/4 pad 2, then 3x3/2 pad 1
 *     per block:  x = x + cpe(x)                      depthwise 3x3 with bias
 *                 x = x + proj(PSAttn(norm1(x)))
 *                 x = x + fc2(GELU(fc1(norm2(x))))
 *   logits = head(mean over tokens of norm(x))
 *
 * PSAttn(u): q, k, v = Linear(BN(dwconv3x3(u))) each (CvT's separable
 * projections; BN is folded into the depthwise conv at load time). Channels
 * [0, C/2) attend inside interlaced row groups (N = ceil(H/s) groups, group
 * i = rows i, i+N, ... < H), channels [C/2, C) inside interlaced column
 * groups; heads/2 heads of C/heads channels per branch, scale d^-0.5.
 * Sizes that do not divide by s give ragged groups (the reference pads and
 * masks; nothing of the padding reaches a real token), so every input size
 * whose convolutions give a non-empty map runs.
 *
 * Config keys (as refgen's meta.json "config"): img_size, num_classes,
 * in_chans (3), embed_dims, depths, num_heads, pale_size, mlp_ratio,
 * stem_kernel/stride/padding, merge_kernel/stride/padding, cpe_kernel (3),
 * qkv_dw_kernel (3), qkv_bias, ln_eps, bn_eps, attn_map_block, crop_pct,
 * interpolation, mean, std; descriptive keys are ignored. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "models/pale.h"
#include "ops.h"
#include "ops/grid.h"
#include "ops/pale.h"
#include "util.h"

#define PL_MAGIC 0x504c4531u    /* "PLE1" */
#define PL_STAGES 4
#define PL_MAX_DEPTH 256

extern const vt_family vt_family_pale;

static const char *const pl_archs[] = {"pale_tiny", "pale_small", "pale_base", NULL};

/* ---- config ---------------------------------------------------------- */

typedef struct pl_stage_cfg {
    int cin;            /* channels in (3 for the stem) */
    int dim;            /* C */
    int depth;
    int heads;          /* h: h/2 per branch */
    int pale;           /* s */
    int hidden;         /* F = C * mlp_ratio */
    int k, stride, pad; /* merge conv */
    int in_grid;        /* side of the map the merge conv reads */
    int grid;           /* H = W of the stage */
    int n;              /* N = H*W tokens */
} pl_stage_cfg;

typedef struct pl_config {
    int img_size;       /* S */
    int classes;
    int qkv_bias;
    float ln_eps, bn_eps;
    int map_stage, map_block;   /* block whose attention is recorded */
    pl_stage_cfg st[PL_STAGES];
} pl_config;

static int pl_config_defaults(const char *arch, cJSON *cfg)
{
    static const int dims_t[4] = {64, 128, 256, 512}, dims_s[4] = {96, 192, 384, 768};
    static const int dims_b[4] = {128, 256, 512, 1024};
    static const int heads_t[4] = {2, 4, 8, 16}, heads_sb[4] = {4, 8, 16, 32};
    static const int depths[4] = {2, 2, 16, 2}, pale[4] = {7, 7, 7, 7};
    const int *dims, *heads;
    if (strcmp(arch, "pale_tiny") == 0)
        dims = dims_t, heads = heads_t;
    else if (strcmp(arch, "pale_small") == 0)
        dims = dims_s, heads = heads_sb;
    else if (strcmp(arch, "pale_base") == 0)
        dims = dims_b, heads = heads_sb;
    else
        return vt_seterr("pale: unknown arch '%s'", arch);
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddNumberToObject(cfg, "img_size", 224);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    cJSON_AddNumberToObject(cfg, "in_chans", 3);
    cJSON_AddItemToObject(cfg, "embed_dims", cJSON_CreateIntArray(dims, 4));
    cJSON_AddItemToObject(cfg, "depths", cJSON_CreateIntArray(depths, 4));
    cJSON_AddItemToObject(cfg, "num_heads", cJSON_CreateIntArray(heads, 4));
    cJSON_AddItemToObject(cfg, "pale_size", cJSON_CreateIntArray(pale, 4));
    cJSON_AddNumberToObject(cfg, "mlp_ratio", 4.0);
    cJSON_AddNumberToObject(cfg, "stem_kernel", 7);
    cJSON_AddNumberToObject(cfg, "stem_stride", 4);
    cJSON_AddNumberToObject(cfg, "stem_padding", 2);
    cJSON_AddNumberToObject(cfg, "merge_kernel", 3);
    cJSON_AddNumberToObject(cfg, "merge_stride", 2);
    cJSON_AddNumberToObject(cfg, "merge_padding", 1);
    cJSON_AddNumberToObject(cfg, "cpe_kernel", 3);
    cJSON_AddNumberToObject(cfg, "qkv_dw_kernel", 3);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    cJSON_AddNumberToObject(cfg, "ln_eps", 1e-5);
    cJSON_AddNumberToObject(cfg, "bn_eps", 1e-5);
    const int map_block[2] = {1, depths[1] - 1};
    cJSON_AddItemToObject(cfg, "attn_map_block", cJSON_CreateIntArray(map_block, 2));
    /* the reference's eval settings (CSWin's and PaddleViT's) */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.9);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(std, 3));
    return 0;
}

static int read_stage_ints(const cJSON *cfg, const char *key, int *out)
{
    if (vt_cfg_ints(cfg, key, out, PL_STAGES) != PL_STAGES)
        return vt_seterr("pale: config \"%s\" must be %d integers", key, PL_STAGES);
    return 0;
}

static int conv_out(int n, int k, int s, int p) { return (n + 2 * p - k) / s + 1; }

static int pl_config_read(const cJSON *cfg, pl_config *c)
{
    memset(c, 0, sizeof *c);
    int dims[4], depths[4], heads[4], pale[4];
    if (read_stage_ints(cfg, "embed_dims", dims) < 0 || read_stage_ints(cfg, "depths", depths) < 0 ||
        read_stage_ints(cfg, "num_heads", heads) < 0 || read_stage_ints(cfg, "pale_size", pale) < 0)
        return -1;
    c->img_size = vt_cfg_int(cfg, "img_size", 224);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    c->ln_eps = (float)vt_cfg_num(cfg, "ln_eps", 1e-5);
    c->bn_eps = (float)vt_cfg_num(cfg, "bn_eps", 1e-5);
    double ratio = vt_cfg_num(cfg, "mlp_ratio", 4.0);
    if (vt_cfg_int(cfg, "in_chans", 3) != 3)
        return vt_seterr("pale: in_chans must be 3");
    if (vt_cfg_int(cfg, "cpe_kernel", 3) != 3 || vt_cfg_int(cfg, "qkv_dw_kernel", 3) != 3)
        return vt_seterr("pale: cpe_kernel and qkv_dw_kernel must be 3");
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("pale: num_classes %d out of range", c->classes);
    if (!(c->ln_eps > 0 && c->ln_eps < 1) || !(c->bn_eps > 0 && c->bn_eps < 1))
        return vt_seterr("pale: norm eps out of range");
    if (c->img_size < 1 || c->img_size > 4096)
        return vt_seterr("pale: img_size %d out of range (1..4096)", c->img_size);
    int n = c->img_size, cin = 3;
    for (int i = 0; i < PL_STAGES; i++) {
        pl_stage_cfg *s = &c->st[i];
        const char *kk = i ? "merge_kernel" : "stem_kernel";
        const char *ks = i ? "merge_stride" : "stem_stride";
        const char *kp = i ? "merge_padding" : "stem_padding";
        s->k = vt_cfg_int(cfg, kk, i ? 3 : 7);
        s->stride = vt_cfg_int(cfg, ks, i ? 2 : 4);
        s->pad = vt_cfg_int(cfg, kp, i ? 1 : 2);
        if (s->k < 1 || s->k > 15 || s->stride < 1 || s->stride > 16 || s->pad < 0 || s->pad >= s->k)
            return vt_seterr("pale: stage %d: merge conv kernel %d stride %d padding %d out of range",
                             i + 1, s->k, s->stride, s->pad);
        s->cin = cin, s->dim = dims[i], s->depth = depths[i], s->heads = heads[i];
        s->pale = pale[i];
        s->in_grid = n;
        if (n + 2 * s->pad < s->k)
            return vt_seterr("pale: img_size %d is too small: stage %d gets a %dx%d map, smaller "
                             "than its %dx%d merge conv", c->img_size, i + 1, n, n, s->k, s->k);
        s->grid = n = conv_out(n, s->k, s->stride, s->pad);
        s->n = n * n;
        if (s->dim < 2 || s->dim > 65536 || s->heads < 2 || s->heads % 2 || s->dim % s->heads)
            return vt_seterr("pale: stage %d: embed_dim %d must split into an even number of "
                             "heads (got %d): two branches of heads/2", i + 1, s->dim, s->heads);
        if (s->depth < 0 || s->depth > PL_MAX_DEPTH)
            return vt_seterr("pale: stage %d: depth %d out of range", i + 1, s->depth);
        if (s->pale < 1 || s->pale > 4096)
            return vt_seterr("pale: stage %d: pale_size %d out of range", i + 1, s->pale);
        if (!(ratio > 0 && ratio * s->dim <= 1 << 20))
            return vt_seterr("pale: mlp_ratio out of range");
        s->hidden = (int)(s->dim * ratio);
        cin = s->dim;
    }
    int mb[2] = {1, depths[1] - 1};
    int nmb = vt_cfg_ints(cfg, "attn_map_block", mb, 2);
    if (nmb != 0 && nmb != 2)
        return vt_seterr("pale: config \"attn_map_block\" must be [stage, block]");
    c->map_stage = mb[0], c->map_block = mb[1];
    if (c->map_stage < 0 || c->map_stage >= PL_STAGES || c->map_block < 0 ||
        c->map_block >= c->st[c->map_stage].depth)
        c->map_stage = c->map_block = -1;   /* nothing recorded */
    return 0;
}

/* ---- state dict ------------------------------------------------------ */

static int pl_params(const cJSON *cfg, vt_params *ps)
{
    pl_config c;
    if (pl_config_read(cfg, &c) < 0)
        return -1;
    char name[160];
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
#define P(nd, ...) vt_params_add(ps, 0, name, nd, __VA_ARGS__)
    for (int i = 0; i < PL_STAGES; i++) {
        const pl_stage_cfg *s = &c.st[i];
        int64_t C = s->dim, F = s->hidden, k = s->k, one = 1, three = 3;
        NAME("stages.%d.merge.conv.weight", i), P(4, C, (int64_t)s->cin, k, k);
        NAME("stages.%d.merge.conv.bias", i), P(1, C);
        NAME("stages.%d.merge.norm.weight", i), P(1, C);
        NAME("stages.%d.merge.norm.bias", i), P(1, C);
        for (int b = 0; b < s->depth; b++) {
#define B(...) snprintf(name + NAME("stages.%d.blocks.%d.", i, b), \
                      sizeof name - (size_t)NAME("stages.%d.blocks.%d.", i, b), __VA_ARGS__)
            B("cpe.weight"), P(4, C, one, three, three);
            B("cpe.bias"), P(1, C);
            B("norm1.weight"), P(1, C);
            B("norm1.bias"), P(1, C);
            for (int j = 0; j < 3; j++) {
                char x = "qkv"[j];
                B("attn.conv_proj_%c.conv.weight", x), P(4, C, one, three, three);
                B("attn.conv_proj_%c.bn.weight", x), P(1, C);
                B("attn.conv_proj_%c.bn.bias", x), P(1, C);
                B("attn.conv_proj_%c.bn.running_mean", x), P(1, C);
                B("attn.conv_proj_%c.bn.running_var", x), P(1, C);
                B("attn.conv_proj_%c.bn.num_batches_tracked", x);
                vt_params_add(ps, 1, name, 0);
                B("attn.proj_%c.weight", x), P(2, C, C);
                if (c.qkv_bias)
                    B("attn.proj_%c.bias", x), P(1, C);
            }
            B("attn.proj.weight"), P(2, C, C);
            B("attn.proj.bias"), P(1, C);
            B("norm2.weight"), P(1, C);
            B("norm2.bias"), P(1, C);
            B("mlp.fc1.weight"), P(2, F, C);
            B("mlp.fc1.bias"), P(1, F);
            B("mlp.fc2.weight"), P(2, C, F);
            B("mlp.fc2.bias"), P(1, C);
#undef B
        }
    }
    int64_t C3 = c.st[3].dim, K = c.classes;
    NAME("norm.weight"), P(1, C3);
    NAME("norm.bias"), P(1, C3);
    NAME("head.weight"), P(2, K, C3);
    NAME("head.bias"), P(1, K);
#undef P
#undef NAME
    return 0;
}

/* ---- cost ------------------------------------------------------------ */

/* Query-key pairs of one branch: real tokens attend to the real tokens of
 * their group only; a group of r rows (columns) holds r*w (r*h) tokens. */
static double pale_pairs(int h, int w, int s, int axis)
{
    int along = axis == VT_PALE_ROWS ? h : w, across = axis == VT_PALE_ROWS ? w : h;
    int N = vt_pale_groups(along, s);
    double pairs = 0;
    for (int g = 0; g < N; g++) {
        double t = (double)((along - g + N - 1) / N) * across;
        pairs += t * t;
    }
    return pairs;
}

/* Multiply-accumulates per image, as the paper counts them. */
static int pl_cost(const cJSON *cfg, vt_cost *out)
{
    pl_config c;
    if (pl_config_read(cfg, &c) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    char name[40];
    for (int i = 0; i < PL_STAGES; i++) {
        const pl_stage_cfg *s = &c.st[i];
        double t = s->n, C = s->dim, F = s->hidden, d = s->depth;
        int H = s->grid;
        snprintf(name, sizeof name, "stage%d merge conv", i + 1);
        vt_cost_add(out, name, t * C * s->cin * s->k * s->k);
        snprintf(name, sizeof name, "stage%d cpe + q/k/v dwconv", i + 1);
        vt_cost_add(out, name, d * 4 * t * C * 9);
        snprintf(name, sizeof name, "stage%d q/k/v/out proj", i + 1);
        vt_cost_add(out, name, d * 4 * t * C * C);
        /* per branch and pair: C/2 MACs for q k^T and C/2 for attn v */
        snprintf(name, sizeof name, "stage%d pale attention", i + 1);
        vt_cost_add(out, name, d * C * (pale_pairs(H, H, s->pale, VT_PALE_ROWS) +
                                         pale_pairs(H, H, s->pale, VT_PALE_COLS)));
        snprintf(name, sizeof name, "stage%d mlp", i + 1);
        vt_cost_add(out, name, d * 2 * t * C * F);
    }
    vt_cost_add(out, "head", (double)c.st[3].dim * c.classes);
    return 0;
}

/* ---- weights --------------------------------------------------------- */

/* The weights vt_linear multiplies by (proj_q/k/v, proj, fc, the merge
 * convs, head) are vt_weight_linear's: in a half-precision file handles
 * of packs, never read as floats. */
typedef struct pl_block {
    const float *cpe9, *cpeb;               /* [9, C] tap-major (owned), [C] */
    const float *n1w, *n1b, *n2w, *n2b;     /* [C] */
    const float *dw9[3], *dwb[3];           /* q, k, v: depthwise with BN folded in,
                                               [9, C] and [C] (owned) */
    const float *pw[3], *pb[3];             /* proj_q/k/v [C, C], [C] (or NULL) */
    const float *projw, *projb;             /* [C, C], [C] */
    const float *fc1w, *fc1b;               /* [F, C], [F] */
    const float *fc2w, *fc2b;               /* [C, F], [C] */
} pl_block;

typedef struct pl_weights {
    const float *mw[PL_STAGES], *mb[PL_STAGES];     /* merge conv [C, Cin, k, k], [C] */
    const float *mnw[PL_STAGES], *mnb[PL_STAGES];   /* merge LayerNorm [C] */
    pl_block *blocks[PL_STAGES];                    /* [depth] */
    const float *normw, *normb;                     /* [C4] */
    const float *headw, *headb;                     /* [classes, C4], [classes] */
} pl_weights;

/* ---- run state ------------------------------------------------------- */

/* Buffers for one image (images run one after another), sized for the
 * largest stage; the recorded block's q and k for every image of a batch. */
typedef struct pl_run {
    int batch;
    float *x;           /* [N, C] residual stream */
    float *xn;          /* [N, C] normed input / swap buffer */
    float *t;           /* [N, C] depthwise output */
    float *q, *k, *v;   /* [N, C] */
    float *a;           /* [N, C] attention output, [row | column] */
    float *h;           /* [N, F] MLP hidden */
    float *cols;        /* im2col scratch */
    float *scr;         /* vt_pale_scratch */
    float *stage[PL_STAGES];   /* [N_i, C_i] stage outputs, last image */
    float *feat;        /* [C4] pooled features, last image */
    float *rec_q, *rec_k;      /* [batch, N, C] of the recorded block */
} pl_run;

typedef struct pl_net {
    uint32_t magic;
    pl_config c;
    pl_weights w;
    pl_run r;
    vt_pool *pool;
    vt_store store;
    int last_batch;
    int rec_batch;      /* images with recorded q, k (0: none) */
} pl_net;

static float *own(pl_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

static const float *weight(pl_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "pale", name, count);
}

/* A linear weight [nout, nin] for vt_linear (a handle when the file holds
 * it in half precision: vt_weight_linear). The merge convs are linears
 * over im2col columns in the weight's own (c, ky, kx) order. */
static const float *lweight(pl_net *n, const vt_frame *w, const char *name, size_t nout,
                            size_t nin)
{
    return vt_weight_linear(n->pool, w, "pale", name, (int)nout, (int)nin);
}

/* A small tensor (count floats) for the caller to reorder or fold: see
 * vt_weight_read; *tmp to be freed after. */
static const float *transient(const vt_frame *w, const char *name, size_t count, float **tmp)
{
    return vt_weight_read(w, "pale", name, count, tmp, NULL);
}

/* Depthwise conv (no bias) + eval BatchNorm folded into one depthwise
 * conv with bias: w' = w g / sqrt(var + eps), b' = beta - mean g / sqrt(var + eps). */
static int fold_dw_bn(pl_net *n, const vt_frame *w, const char *prefix, size_t C,
                      const float **dw9, const float **dwb)
{
    char name[200];
    const float *cw, *g, *beta, *mean, *var;
#define GETP(dst, suffix, cnt) do { snprintf(name, sizeof name, "%s%s", prefix, suffix); \
        if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
    GETP(g, "bn.weight", C);
    GETP(beta, "bn.bias", C);
    GETP(mean, "bn.running_mean", C);
    GETP(var, "bn.running_var", C);
#undef GETP
    float *tmp;
    snprintf(name, sizeof name, "%sconv.weight", prefix);
    if (!(cw = transient(w, name, C * 9, &tmp)))
        return -1;
    float *raw = vt_xmalloc(C * 9 * sizeof *raw), *w9 = own(n, C * 9), *b = own(n, C);
    for (size_t ch = 0; ch < C; ch++) {
        double sc = g[ch] / sqrt((double)var[ch] + n->c.bn_eps);
        for (int tap = 0; tap < 9; tap++)
            raw[ch * 9 + tap] = (float)(cw[ch * 9 + tap] * sc);
        b[ch] = (float)(beta[ch] - mean[ch] * sc);
    }
    vt_dw3_weights(w9, raw, (int)C);
    free(raw);
    free(tmp);
    *dw9 = w9, *dwb = b;
    return 0;
}

static int pl_bind(pl_net *n, const vt_frame *w)
{
    const pl_config *c = &n->c;
    pl_weights *W = &n->w;
    char name[200];
#define GET(dst, cnt) do { if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
#define GETL(dst, no, ni) do { if (!((dst) = lweight(n, w, name, (no), (ni)))) return -1; } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    for (int i = 0; i < PL_STAGES; i++) {
        const pl_stage_cfg *s = &c->st[i];
        size_t C = s->dim, F = s->hidden;
        NAME("stages.%d.merge.conv.weight", i); GETL(W->mw[i], C, (size_t)s->cin * s->k * s->k);
        NAME("stages.%d.merge.conv.bias", i); GET(W->mb[i], C);
        NAME("stages.%d.merge.norm.weight", i); GET(W->mnw[i], C);
        NAME("stages.%d.merge.norm.bias", i); GET(W->mnb[i], C);
        W->blocks[i] = vt_xcalloc((size_t)(s->depth ? s->depth : 1), sizeof(pl_block));
        for (int b = 0; b < s->depth; b++) {
            pl_block *B = &W->blocks[i][b];
            char pre[96];
            snprintf(pre, sizeof pre, "stages.%d.blocks.%d.", i, b);
#define BG(dst, suffix, cnt) do { NAME("%s%s", pre, suffix); GET(dst, cnt); } while (0)
#define BL(dst, suffix, no, ni) do { NAME("%s%s", pre, suffix); GETL(dst, no, ni); } while (0)
            float *tmp;
            NAME("%scpe.weight", pre);
            const float *cpe = transient(w, name, C * 9, &tmp);
            if (!cpe)
                return -1;
            float *cpe9 = own(n, C * 9);
            vt_dw3_weights(cpe9, cpe, (int)C);
            free(tmp);
            B->cpe9 = cpe9;
            BG(B->cpeb, "cpe.bias", C);
            BG(B->n1w, "norm1.weight", C);
            BG(B->n1b, "norm1.bias", C);
            for (int j = 0; j < 3; j++) {
                char x = "qkv"[j], pfx[160], suf[32];
                snprintf(pfx, sizeof pfx, "%sattn.conv_proj_%c.", pre, x);
                if (fold_dw_bn(n, w, pfx, C, &B->dw9[j], &B->dwb[j]) < 0)
                    return -1;
                snprintf(suf, sizeof suf, "attn.proj_%c.weight", x);
                BL(B->pw[j], suf, C, C);
                B->pb[j] = NULL;
                if (c->qkv_bias) {
                    snprintf(suf, sizeof suf, "attn.proj_%c.bias", x);
                    BG(B->pb[j], suf, C);
                }
            }
            BL(B->projw, "attn.proj.weight", C, C);
            BG(B->projb, "attn.proj.bias", C);
            BG(B->n2w, "norm2.weight", C);
            BG(B->n2b, "norm2.bias", C);
            BL(B->fc1w, "mlp.fc1.weight", F, C);
            BG(B->fc1b, "mlp.fc1.bias", F);
            BL(B->fc2w, "mlp.fc2.weight", C, F);
            BG(B->fc2b, "mlp.fc2.bias", C);
#undef BL
#undef BG
        }
    }
    size_t C3 = c->st[3].dim;
    NAME("norm.weight"); GET(W->normw, C3);
    NAME("norm.bias"); GET(W->normb, C3);
    NAME("head.weight"); GETL(W->headw, (size_t)c->classes, C3);
    NAME("head.bias"); GET(W->headb, (size_t)c->classes);
#undef NAME
#undef GETL
#undef GET
    return 0;
}

static void run_free(pl_run *r)
{
    float *f[] = {r->x, r->xn, r->t, r->q, r->k, r->v, r->a, r->h, r->cols,
                  r->scr, r->feat, r->rec_q, r->rec_k};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        free(f[i]);
    for (int i = 0; i < PL_STAGES; i++)
        free(r->stage[i]);
    memset(r, 0, sizeof *r);
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static float *falloc(size_t n) { return vt_xmalloc((n ? n : 1) * sizeof(float)); }

static int run_alloc(pl_net *n, int batch)
{
    const pl_config *c = &n->c;
    pl_run *r = &n->r;
    if (batch > 1 << 16)
        return vt_seterr("pale: batch %d is too large", batch);
    run_free(r);
    r->batch = batch;
    size_t nc = 0, nf = 0, ncols = 0, scr = 0;
    for (int i = 0; i < PL_STAGES; i++) {
        const pl_stage_cfg *s = &c->st[i];
        size_t N = s->n, C = s->dim, d = C / s->heads;
        nc = zmax(nc, N * C);
        nf = zmax(nf, N * s->hidden);
        ncols = zmax(ncols, N * s->cin * s->k * s->k);
        for (int axis = 0; axis < 2; axis++)
            scr = zmax(scr, vt_pale_scratch(n->pool, s->grid, s->grid, s->pale, axis, (int)d));
        r->stage[i] = falloc(N * C);
    }
    r->x = falloc(nc), r->xn = falloc(nc), r->t = falloc(nc);
    r->q = falloc(nc), r->k = falloc(nc), r->v = falloc(nc), r->a = falloc(nc);
    r->h = falloc(nf), r->cols = falloc(ncols), r->scr = falloc(scr);
    r->feat = falloc(c->st[3].dim);
    size_t rec = c->map_stage >= 0 ? (size_t)c->st[c->map_stage].n * c->st[c->map_stage].dim : 0;
    r->rec_q = falloc((size_t)batch * rec), r->rec_k = falloc((size_t)batch * rec);
    return 0;
}

/* ---- forward --------------------------------------------------------- */

/* x[N, C] = LN(conv(in)): the stem on the image, patch merging after. */
static void merge(pl_net *n, int i, const float *img)
{
    const pl_stage_cfg *s = &n->c.st[i];
    pl_run *r = &n->r;
    int g = s->in_grid;
    if (i > 0) {    /* the previous stage's tokens: their columns straight from tokens */
        vt_im2col_tokens_chw_mt(n->pool, r->cols, r->x, g, g, s->cin, s->k, s->stride, s->pad);
        vt_linear(n->pool, r->xn, r->cols, n->w.mw[i], n->w.mb[i], s->n, s->cin * s->k * s->k,
                  s->dim, 0, 0);
    } else {
        vt_conv2d_tokens(n->pool, r->xn, img, s->cin, g, g, n->w.mw[i], n->w.mb[i], s->dim,
                         s->k, s->stride, s->pad, r->cols);
    }
    vt_layernorm_mt(n->pool, r->x, r->xn, n->w.mnw[i], n->w.mnb[i], s->n, s->dim, n->c.ln_eps);
}

/* a = [rows | columns] pale attention of u = norm1(x) (in r->xn). */
static void ps_attention(pl_net *n, int image, int i, int b, const pl_block *B)
{
    const pl_stage_cfg *s = &n->c.st[i];
    pl_run *r = &n->r;
    int N = s->n, C = s->dim, H = s->grid, nh = s->heads / 2, d = C / s->heads;
    float *qkv[3] = {r->q, r->k, r->v};
    for (int j = 0; j < 3; j++) {
        vt_dw3_tokens(n->pool, r->t, r->xn, H, H, C, B->dw9[j], B->dwb[j], 0);
        vt_linear(n->pool, qkv[j], r->t, B->pw[j], B->pb[j], N, C, C, 0, 0);
    }
    if (i == n->c.map_stage && b == n->c.map_block) {
        memcpy(r->rec_q + (size_t)image * N * C, r->q, (size_t)N * C * sizeof(float));
        memcpy(r->rec_k + (size_t)image * N * C, r->k, (size_t)N * C * sizeof(float));
    }
    float scale = 1.0f / sqrtf((float)d);
    vt_pale_attend(n->pool, nh, r->q, r->k, r->v, C, r->a, C, H, H, s->pale, VT_PALE_ROWS, d,
                   scale, r->scr);
    vt_pale_attend(n->pool, nh, r->q + C / 2, r->k + C / 2, r->v + C / 2, C, r->a + C / 2, C,
                   H, H, s->pale, VT_PALE_COLS, d, scale, r->scr);
}

static void block(pl_net *n, int image, int i, int b)
{
    const pl_stage_cfg *s = &n->c.st[i];
    const pl_block *B = &n->w.blocks[i][b];
    pl_run *r = &n->r;
    int N = s->n, C = s->dim, H = s->grid, F = s->hidden;
    float eps = n->c.ln_eps;
    /* x = x + cpe(x) */
    vt_dw3_tokens(n->pool, r->xn, r->x, H, H, C, B->cpe9, B->cpeb, VT_DW3_RESIDUAL);
    float *tmp = r->x;
    r->x = r->xn, r->xn = tmp;
    /* x = x + proj(PSAttn(norm1(x))) */
    vt_layernorm_mt(n->pool, r->xn, r->x, B->n1w, B->n1b, N, C, eps);
    ps_attention(n, image, i, b, B);
    vt_linear(n->pool, r->x, r->a, B->projw, B->projb, N, C, C, 1, 0);
    /* x = x + fc2(GELU(fc1(norm2(x)))) */
    vt_layernorm_mt(n->pool, r->xn, r->x, B->n2w, B->n2b, N, C, eps);
    vt_linear(n->pool, r->h, r->xn, B->fc1w, B->fc1b, N, C, F, 0, 1);
    vt_linear(n->pool, r->x, r->h, B->fc2w, B->fc2b, N, F, C, 1, 0);
}

static void forward_image(pl_net *n, int image, const float *img, float *logits)
{
    const pl_config *c = &n->c;
    pl_run *r = &n->r;
    for (int i = 0; i < PL_STAGES; i++) {
        const pl_stage_cfg *s = &c->st[i];
        merge(n, i, img);
        for (int b = 0; b < s->depth; b++)
            block(n, image, i, b);
        memcpy(r->stage[i], r->x, (size_t)s->n * s->dim * sizeof(float));
    }
    const pl_stage_cfg *s4 = &c->st[3];
    vt_layernorm_mt(n->pool, r->xn, r->x, n->w.normw, n->w.normb, s4->n, s4->dim, c->ln_eps);
    vt_mean_rows(r->feat, r->xn, s4->n, s4->dim);
    vt_linear(n->pool, logits, r->feat, n->w.headw, n->w.headb, 1, s4->dim, c->classes, 0, 0);
}

static int pl_forward(void *net, const float *x, int batch, float *logits)
{
    pl_net *n = net;
    if (!n || n->magic != PL_MAGIC)
        return vt_seterr("pale: not a pale net");
    if (batch < 1)
        return vt_seterr("pale: batch %d", batch);
    if (batch > n->r.batch && run_alloc(n, batch) < 0)
        return -1;
    size_t img = (size_t)3 * n->c.img_size * n->c.img_size;
    n->last_batch = n->rec_batch = 0;
    for (int b = 0; b < batch; b++)
        forward_image(n, b, x + b * img, logits + (size_t)b * n->c.classes);
    n->last_batch = batch;
    n->rec_batch = n->c.map_stage >= 0 ? batch : 0;
    return 0;
}

/* ---- lifetime -------------------------------------------------------- */

static void pl_destroy(void *net)
{
    pl_net *n = net;
    if (!n)
        return;
    run_free(&n->r);
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    for (int i = 0; i < PL_STAGES; i++)
        free(n->w.blocks[i]);
    n->magic = 0;
    free(n);
}

static void *pl_create(const cJSON *cfg, const vt_frame *weights, const vt_run_opts *o)
{
    pl_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = PL_MAGIC;
    if (pl_config_read(cfg, &n->c) < 0) {
        pl_destroy(n);
        return NULL;
    }
    /* the pool first: half-precision linear weights are packed into its
     * cache as they are bound; and the mapped model file never changes,
     * so vt_linear packs its F32 weights once */
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    if (n->pool)
        vt_pool_readonly(n->pool, weights->map, weights->map_len);
    if (!n->pool || pl_bind(n, weights) < 0 ||
        run_alloc(n, o && o->batch > 0 ? o->batch : 1) < 0) {
        pl_destroy(n);
        return NULL;
    }
    return n;
}

/* ---- extras (models/pale.h) ------------------------------------------ */

static pl_net *as_net(const void *net)
{
    pl_net *n = (pl_net *)net;
    if (!n || n->magic != PL_MAGIC)
        return vt_seterr("not a pale net"), NULL;
    return n;
}

int vt_pale_set_map_block(void *net, int stage, int block)
{
    pl_net *n = as_net(net);
    if (!n)
        return -1;
    if (stage < 0 || stage >= PL_STAGES || block < 0 || block >= n->c.st[stage].depth)
        return vt_seterr("pale: no block %d in stage %d (stages 0..3, as stages.{s}.blocks.{b})",
                         block, stage);
    n->c.map_stage = stage, n->c.map_block = block;
    n->rec_batch = 0;
    return run_alloc(n, n->r.batch);
}

int vt_pale_map_shape(const void *net, int *h, int *w, int *nh)
{
    const pl_net *n = as_net(net);
    if (!n)
        return -1;
    if (n->c.map_stage < 0)
        return vt_seterr("pale: no block is recorded");
    const pl_stage_cfg *s = &n->c.st[n->c.map_stage];
    if (h) *h = s->grid;
    if (w) *w = s->grid;
    if (nh) *nh = s->heads / 2;
    return 0;
}

/* out += wt * softmax over the query's group of one head (zeros elsewhere) */
static void head_row(const pl_net *n, const float *q, const float *k, int axis, int ch0,
                     int qy, int qx, float wt, float *out, int *idx, float *sc)
{
    const pl_stage_cfg *s = &n->c.st[n->c.map_stage];
    int H = s->grid, C = s->dim, d = C / s->heads;
    int g = axis == VT_PALE_ROWS ? qy % vt_pale_groups(H, s->pale) : qx % vt_pale_groups(H, s->pale);
    int t = vt_pale_group_tokens(idx, H, H, s->pale, axis, g);
    const float *qp = q + (size_t)(qy * H + qx) * C + ch0;
    float scale = 1.0f / sqrtf((float)d), mx = -INFINITY;
    for (int i = 0; i < t; i++) {
        const float *kp = k + (size_t)idx[i] * C + ch0;
        float acc = 0;
        for (int c = 0; c < d; c++)
            acc += (qp[c] * scale) * kp[c];
        sc[i] = acc;
        mx = fmaxf(mx, acc);
    }
    double sum = 0;
    for (int i = 0; i < t; i++)
        sum += sc[i] = expf(sc[i] - mx);
    for (int i = 0; i < t; i++)
        out[idx[i]] += wt * (float)(sc[i] / sum);
}

int vt_pale_attention(const void *net, int image, int branch, int head, int qy, int qx,
                      float *out)
{
    const pl_net *n = as_net(net);
    if (!n)
        return -1;
    if (!n->rec_batch)
        return vt_seterr("pale: no forward pass with a recorded block yet");
    if (image < 0 || image >= n->rec_batch)
        return vt_seterr("pale: image %d not in the last batch of %d", image, n->rec_batch);
    const pl_stage_cfg *s = &n->c.st[n->c.map_stage];
    int H = s->grid, C = s->dim, nh = s->heads / 2, d = C / s->heads;
    if (qy < 0 || qy >= H || qx < 0 || qx >= H)
        return vt_seterr("pale: query %d,%d outside the %dx%d map", qy, qx, H, H);
    if (branch < VT_PALE_ROW || branch > VT_PALE_BOTH)
        return vt_seterr("pale: unknown branch %d", branch);
    if (head < -1 || head >= nh || (branch == VT_PALE_BOTH && head != -1))
        return vt_seterr("pale: head %d: 0..%d, or -1 for the mean", head, nh - 1);
    const float *q = n->r.rec_q + (size_t)image * s->n * C;
    const float *k = n->r.rec_k + (size_t)image * s->n * C;
    int *idx = vt_xmalloc((size_t)s->n * sizeof *idx);
    float *sc = falloc((size_t)s->n);
    memset(out, 0, (size_t)s->n * sizeof *out);
    for (int br = 0; br < 2; br++) {
        if (branch != VT_PALE_BOTH && branch != br)
            continue;
        float wt = (head < 0 ? 1.0f / nh : 1.0f) * (branch == VT_PALE_BOTH ? 0.5f : 1.0f);
        for (int j = 0; j < nh; j++)
            if (head < 0 || head == j)
                head_row(n, q, k, br == VT_PALE_ROW ? VT_PALE_ROWS : VT_PALE_COLS,
                         br * (C / 2) + j * d, qy, qx, wt, out, idx, sc);
    }
    free(idx);
    free(sc);
    return 0;
}

const float *vt_pale_stage(const void *net, int stage, int *h, int *w, int *c)
{
    const pl_net *n = as_net(net);
    if (!n)
        return NULL;
    if (!n->last_batch)
        return vt_seterr("pale: no forward pass yet"), NULL;
    if (stage == PL_STAGES + 1) {
        if (h) *h = 1;
        if (w) *w = 1;
        if (c) *c = n->c.st[3].dim;
        return n->r.feat;
    }
    if (stage < 1 || stage > PL_STAGES)
        return vt_seterr("pale: stage %d: stages are 1..4 (5: features)", stage), NULL;
    const pl_stage_cfg *s = &n->c.st[stage - 1];
    if (h) *h = s->grid;
    if (w) *w = s->grid;
    if (c) *c = s->dim;
    return n->r.stage[stage - 1];
}

const vt_family vt_family_pale = {
    .name = "pale",
    .archs = pl_archs,
    .config = pl_config_defaults,
    .params = pl_params,
    .create = pl_create,
    .forward = pl_forward,
    .destroy = pl_destroy,
    .cost = pl_cost,
};
