/* sgformer.c - SG-Former (Ren et al., "SG-Former: Self-guided Transformer
 * with Evolving Token Reallocation", ICCV 2023) with the official code's
 * names and state dict (OliverRensu/SG-Former sgformer.py), eval mode.
 *
 *   x = stem(img) + pos_embed                       stage 1: 56x56 tokens
 *   per stage i (i > 1: x = PatchMerging(previous stage output)):
 *     per block j:  x += proj(Attn(norm1(x)) + LePE(norm1(x)))
 *                   x += fc2(gelu(t + dwconv(t))),  t = fc1(norm2(x))
 *     stage output = norm_i(x)
 *   logits = head(mean over tokens of stage 4's output)
 *
 * Attn alternates inside stages 1-3: an even block is HYBRID (half the heads
 * attend to an sr x sr strided-conv reduction, half inside 7x7 windows) and
 * leaves a significance map M (mean attention each token received, global
 * part + local part); the odd block after it is REALLOC: it sorts the
 * tokens by M and merges runs of the sorted order into a few key/value
 * tokens (coarse where M is low, fine where it is high) that all queries
 * attend to. Stage 4 is plain MHSA. Details: ../shared/specs/sgformer.md.
 *
 * Ties in the sort: the official code uses torch.sort (not stable, and the
 * nearest-upsampled map is full of exact ties); vt_argsort_torch leaves
 * equal values in the order PyTorch's CPU sort does.
 *
 * Config keys (as refgen's meta.json "config"): arch, img_size,
 * num_classes, embed_dims, depths, num_heads, mlp_ratios, sr_ratios,
 * qkv_bias, patch_stride (4), window_size (7), norm_eps, stem_norm_eps,
 * sr_norm_eps, groupnorm_eps, pos_embed_tokens ((img_size/4)^2),
 * pos_embed_size (img_size; another value is refused: see below),
 * crop_pct, interpolation, mean, std, checkpoint_default_key; descriptive
 * keys of meta.json (stages, init, tiny, checkpoint_layout) are ignored.
 *
 * Input sizes: the official model fixes its input size at construction
 * (pos_embed length) and its merge sizes and window to 224-grids, so only
 * sizes where every reshape of the official code works are accepted (224
 * and its multiples); others are refused by params()/create(). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "models/sgformer.h"
#include "ops.h"
#include "ops/attend.h"
#include "ops/grid.h"
#include "ops/sepconv.h"
#include "util.h"

#define SG_MAGIC 0x53474631u    /* "SGF1" */
#define SG_STAGES 4
#define SG_MAX_DEPTH 256
#define SG_WINDOW 7

extern const vt_family vt_family_sgformer;

static const char *const sg_archs[] = {"sgformer_s", "sgformer_m", "sgformer_b", NULL};

/* ---- config ---------------------------------------------------------- */

typedef struct sg_stage_cfg {
    int dim;            /* C */
    int depth;
    int heads;          /* h; h' = h/2 per branch in HYBRID/REALLOC */
    int hidden;         /* F = C * mlp_ratio */
    int sr;             /* r */
    int grid;           /* H = W of the stage */
    int n;              /* N = H*W tokens */
    int nk;             /* HYBRID: global tokens (H/r)^2 */
    int nparts;         /* REALLOC: parts of the sorted order (3, or 2 at r 2) */
    int part_len[3];    /* tokens of the order in each part */
    int s[3];           /* merge run length per part (f1, f2, f3 inputs) */
    int m[3];           /* merged tokens per part */
    int nmerged;        /* m[0] + m[1] + m[2] */
    int has_realloc;
    int kinds[SG_MAX_DEPTH];
} sg_stage_cfg;

typedef struct sg_config {
    int img_size;       /* S */
    int stem_grid;      /* grid after the first stride-2 conv (112 at 224) */
    int classes;
    int qkv_bias;
    float eps;          /* block and stage LayerNorms */
    float stem_eps;     /* LayerNorm after the stem */
    float sr_eps;       /* LayerNorm after the sr conv */
    float gn_eps;       /* GroupNorm(1, C) in stem and PatchMerging */
    sg_stage_cfg st[SG_STAGES];
} sg_config;

static void add_ints(cJSON *cfg, const char *key, const int *v)
{
    cJSON_AddItemToObject(cfg, key, cJSON_CreateIntArray(v, SG_STAGES));
}

static int sg_config_defaults(const char *arch, cJSON *cfg)
{
    static const int dims_sm[4] = {64, 128, 256, 512}, heads_sm[4] = {2, 4, 8, 16};
    static const int dims_b[4] = {96, 192, 384, 768}, heads_b[4] = {4, 6, 12, 24};
    static const int dep_s[4] = {2, 4, 16, 1}, dep_m[4] = {2, 6, 28, 2}, dep_b[4] = {4, 6, 24, 2};
    static const int sr[4] = {8, 4, 2, 1};
    const int *dims, *heads, *depths;
    if (strcmp(arch, "sgformer_s") == 0)
        dims = dims_sm, heads = heads_sm, depths = dep_s;
    else if (strcmp(arch, "sgformer_m") == 0)
        dims = dims_sm, heads = heads_sm, depths = dep_m;
    else if (strcmp(arch, "sgformer_b") == 0)
        dims = dims_b, heads = heads_b, depths = dep_b;
    else
        return vt_seterr("sgformer: unknown arch '%s'", arch);
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddNumberToObject(cfg, "img_size", 224);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    add_ints(cfg, "embed_dims", dims);
    add_ints(cfg, "depths", depths);
    add_ints(cfg, "num_heads", heads);
    const double ratios[4] = {4, 4, 4, 4};
    cJSON_AddItemToObject(cfg, "mlp_ratios", cJSON_CreateDoubleArray(ratios, 4));
    add_ints(cfg, "sr_ratios", sr);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    cJSON_AddNumberToObject(cfg, "patch_stride", 4);
    cJSON_AddNumberToObject(cfg, "window_size", SG_WINDOW);
    cJSON_AddNumberToObject(cfg, "norm_eps", 1e-6);
    cJSON_AddNumberToObject(cfg, "stem_norm_eps", 1e-5);
    cJSON_AddNumberToObject(cfg, "sr_norm_eps", 1e-5);
    cJSON_AddNumberToObject(cfg, "groupnorm_eps", 1e-5);
    /* What the authors' main.py resolved with their pinned timm 0.3.4
     * (vision_transformer._cfg): crop 0.9, bicubic, ImageNet mean/std.
     * A current timm's _cfg would say 0.5/0.5; the authors did not use it. */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.9);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(std, 3));
    cJSON_AddStringToObject(cfg, "checkpoint_default_key", "state_dict_ema");
    return 0;
}

static int read_stage_ints(const cJSON *cfg, const char *key, int *out)
{
    int n = vt_cfg_ints(cfg, key, out, SG_STAGES);
    if (n != SG_STAGES)
        return vt_seterr("sgformer: config \"%s\" must be %d integers", key, SG_STAGES);
    return 0;
}

static int conv_out(int in) { return (in - 1) / 2 + 1; }   /* k3 s2 p1 */

/* The merge plan of a REALLOC block, with the official code's counts:
 * parts of the order [0, N/4), [N/4, 3N/4), [3N/4, N) at r 8 and 4, halves
 * at r 2; each part must hold exactly its count times its run length. */
static int plan_realloc(sg_stage_cfg *s, int stage)
{
    int N = s->n;
    if (s->sr == 8 || s->sr == 4) {
        static const int run8[3] = {196, 56, 28}, run4[3] = {49, 14, 7};
        const int *run = s->sr == 8 ? run8 : run4;
        s->nparts = 3;
        s->part_len[0] = N / 4;
        s->part_len[1] = N / 4 * 3 - N / 4;
        s->part_len[2] = N - N / 4 * 3;
        s->m[0] = N / run[0] / 4;
        s->m[1] = N / run[1] / 2;
        s->m[2] = N / run[2] / 4;
        memcpy(s->s, run, sizeof s->s);
    } else if (s->sr == 2) {
        s->nparts = 2;
        s->part_len[0] = N / 2;
        s->part_len[1] = N - N / 2;
        s->m[0] = N / 2 / 2;
        s->m[1] = N / 2;
        s->s[0] = 2, s->s[1] = 1;
    } else {
        return vt_seterr("sgformer: stage %d: token reallocation is defined only for "
                         "sr_ratio 8, 4 or 2 (got %d)", stage, s->sr);
    }
    s->nmerged = 0;
    for (int p = 0; p < s->nparts; p++) {
        if (s->m[p] < 1 || s->m[p] * s->s[p] != s->part_len[p])
            return vt_seterr("sgformer: stage %d: a %dx%d grid cannot be merged as the "
                             "official code does (part %d: %d tokens, %d runs of %d); "
                             "img_size must be a multiple of 224",
                             stage, s->grid, s->grid, p + 1, s->part_len[p], s->m[p], s->s[p]);
        s->nmerged += s->m[p];
    }
    return 0;
}

static int sg_config_read(const cJSON *cfg, sg_config *c)
{
    memset(c, 0, sizeof *c);
    int dims[4], depths[4], heads[4], sr[4];
    if (read_stage_ints(cfg, "embed_dims", dims) < 0 || read_stage_ints(cfg, "depths", depths) < 0 ||
        read_stage_ints(cfg, "num_heads", heads) < 0 || read_stage_ints(cfg, "sr_ratios", sr) < 0)
        return -1;
    double ratio[4] = {4, 4, 4, 4};
    const cJSON *mr = cJSON_GetObjectItemCaseSensitive(cfg, "mlp_ratios");
    if (mr) {
        if (cJSON_GetArraySize(mr) != SG_STAGES)
            return vt_seterr("sgformer: config \"mlp_ratios\" must be %d numbers", SG_STAGES);
        for (int i = 0; i < SG_STAGES; i++) {
            const cJSON *e = cJSON_GetArrayItem(mr, i);
            if (!cJSON_IsNumber(e))
                return vt_seterr("sgformer: config \"mlp_ratios\" must be %d numbers", SG_STAGES);
            ratio[i] = e->valuedouble;
        }
    }
    c->img_size = vt_cfg_int(cfg, "img_size", 224);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    c->eps = (float)vt_cfg_num(cfg, "norm_eps", 1e-6);
    c->stem_eps = (float)vt_cfg_num(cfg, "stem_norm_eps", 1e-5);
    c->sr_eps = (float)vt_cfg_num(cfg, "sr_norm_eps", 1e-5);
    c->gn_eps = (float)vt_cfg_num(cfg, "groupnorm_eps", 1e-5);
    if (vt_cfg_int(cfg, "patch_stride", 4) != 4)
        return vt_seterr("sgformer: patch_stride must be 4 (the stem is two stride-2 convs)");
    if (vt_cfg_int(cfg, "window_size", SG_WINDOW) != SG_WINDOW)
        return vt_seterr("sgformer: window_size must be 7 (fixed in the official code)");
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("sgformer: num_classes %d out of range", c->classes);
    float eps[4] = {c->eps, c->stem_eps, c->sr_eps, c->gn_eps};
    for (int i = 0; i < 4; i++)
        if (!(eps[i] > 0 && eps[i] < 1))
            return vt_seterr("sgformer: norm eps out of range");
    if (c->img_size < 16 || c->img_size > 4480)
        return vt_seterr("sgformer: img_size %d out of range", c->img_size);

    /* Grids as the convolutions make them; the official pos_embed has
     * (img_size // 4)^2 tokens and is added without interpolation. */
    c->stem_grid = conv_out(c->img_size);
    int g = conv_out(c->stem_grid);
    if (g != c->img_size / 4)
        return vt_seterr("sgformer: img_size %d gives a %dx%d stem grid but the official "
                         "pos_embed has (%d/4)^2 tokens; use 224", c->img_size, g, g, c->img_size);
    int trained = vt_cfg_int(cfg, "pos_embed_size", c->img_size);
    if (trained != c->img_size)
        return vt_seterr("sgformer: img_size %d: this model's pos_embed is for %d and the "
                         "official code cannot resize it; it runs at %d only",
                         c->img_size, trained, trained);
    int pos = vt_cfg_int(cfg, "pos_embed_tokens", g * g);
    if (pos != g * g)
        return vt_seterr("sgformer: pos_embed_tokens %d does not fit img_size %d (%d tokens); "
                         "the official code cannot resize pos_embed", pos, c->img_size, g * g);
    int mask_set = 0;   /* a map is waiting for the next block (as the official forward carries it) */
    for (int i = 0; i < SG_STAGES; i++) {
        sg_stage_cfg *s = &c->st[i];
        s->dim = dims[i], s->depth = depths[i], s->heads = heads[i], s->sr = sr[i];
        s->grid = i == 0 ? g : conv_out(c->st[i - 1].grid);
        s->n = s->grid * s->grid;
        if (s->dim < 1 || s->dim > 65536 || s->heads < 1 || s->dim % s->heads)
            return vt_seterr("sgformer: stage %d: embed_dim %d not divisible into %d heads",
                             i + 1, s->dim, s->heads);
        if (s->depth < 1 || s->depth > SG_MAX_DEPTH)
            return vt_seterr("sgformer: stage %d: depth %d out of range", i + 1, s->depth);
        if (!(ratio[i] > 0 && ratio[i] * s->dim <= 1 << 20))
            return vt_seterr("sgformer: stage %d: mlp_ratio out of range", i + 1);
        s->hidden = (int)(s->dim * ratio[i]);
        if (s->sr < 1 || s->sr > s->grid)
            return vt_seterr("sgformer: stage %d: sr_ratio %d out of range", i + 1, s->sr);
        /* the official Block: mask module for odd j in stages 1-3 */
        for (int j = 0; j < s->depth; j++) {
            int kind = s->sr == 1 ? VT_SG_MHSA
                     : (j % 2 == 1 && i < SG_STAGES - 1) ? VT_SG_REALLOC : VT_SG_HYBRID;
            s->kinds[j] = kind;
            if (kind == VT_SG_HYBRID) {
                if (mask_set)
                    return vt_seterr("sgformer: stage %d block %d: a hybrid block would receive "
                                     "the previous block's map (odd depth before it); the "
                                     "official code fails there", i + 1, j);
                mask_set = 1;
            } else if (kind == VT_SG_REALLOC) {
                s->has_realloc = 1;
                mask_set = 0;
            } else {
                mask_set = 0;
            }
        }
        if (s->sr > 1) {
            if (s->heads % 2)
                return vt_seterr("sgformer: stage %d: num_heads must be even (two branches)", i + 1);
            if (s->grid % SG_WINDOW)
                return vt_seterr("sgformer: img_size %d: the stage %d grid %dx%d is not a multiple "
                                 "of the 7x7 window (official code: 224 or multiples)",
                                 c->img_size, i + 1, s->grid, s->grid);
            s->nk = (s->grid / s->sr) * (s->grid / s->sr);
            if (s->has_realloc && plan_realloc(s, i + 1) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---- state dict ------------------------------------------------------ */

static int sg_params(const cJSON *cfg, vt_params *ps)
{
    sg_config c;
    if (sg_config_read(cfg, &c) < 0)
        return -1;
    char name[128];
    int64_t C1 = c.st[0].dim;
#define P(nd, ...) vt_params_add(ps, 0, name, nd, __VA_ARGS__)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    vt_params_add(ps, 0, "pos_embed", 3, (int64_t)1, (int64_t)c.st[0].n, C1);
    for (int k = 0; k <= 4; k += 2) {
        NAME("patch_embed1.conv.%d.c.weight", k);
        P(4, C1, (int64_t)(k ? C1 : 3), (int64_t)3, (int64_t)3);
        NAME("patch_embed1.conv.%d.bn.weight", k), P(1, C1);
        NAME("patch_embed1.conv.%d.bn.bias", k), P(1, C1);
    }
    vt_params_add(ps, 0, "patch_embed1.norm.weight", 1, C1);
    vt_params_add(ps, 0, "patch_embed1.norm.bias", 1, C1);
    for (int i = 0; i < SG_STAGES; i++) {
        const sg_stage_cfg *s = &c.st[i];
        int64_t C = s->dim, F = s->hidden, r = s->sr;
        if (i > 0) {
            int64_t Cp = c.st[i - 1].dim;
            int64_t in[3] = {Cp, 1, C};
            for (int k = 1; k <= 3; k++) {
                NAME("patch_embed%d.conv%d.c.weight", i + 1, k);
                P(4, C, in[k - 1], (int64_t)(k == 2 ? 3 : 1), (int64_t)(k == 2 ? 3 : 1));
                NAME("patch_embed%d.conv%d.bn.weight", i + 1, k), P(1, C);
                NAME("patch_embed%d.conv%d.bn.bias", i + 1, k), P(1, C);
            }
        }
        for (int j = 0; j < s->depth; j++) {
#define B(suffix) NAME("block%d.%d.%s", i + 1, j, suffix)
#define LIN(nm, o, in, bias) do { \
        B(nm ".weight"), P(2, (int64_t)(o), (int64_t)(in)); \
        if (bias) B(nm ".bias"), P(1, (int64_t)(o)); } while (0)
            B("norm1.weight"), P(1, C);
            B("norm1.bias"), P(1, C);
            switch (s->kinds[j]) {
            case VT_SG_HYBRID:
                B("attn.sr.weight"), P(4, C, C, r, r);
                B("attn.sr.bias"), P(1, C);
                B("attn.norm.weight"), P(1, C);
                B("attn.norm.bias"), P(1, C);
                LIN("attn.q1", C / 2, C, c.qkv_bias);
                LIN("attn.kv1", C, C, c.qkv_bias);
                LIN("attn.q2", C / 2, C, c.qkv_bias);
                LIN("attn.kv2", C, C, c.qkv_bias);
                break;
            case VT_SG_REALLOC:
                LIN("attn.q", C, C, c.qkv_bias);
                LIN("attn.kv1", C, C, c.qkv_bias);
                LIN("attn.kv2", C, C, c.qkv_bias);
                for (int p = 0; p < s->nparts; p++) {
                    NAME("block%d.%d.attn.f%d.weight", i + 1, j, p + 1);
                    P(2, (int64_t)1, (int64_t)s->s[p]);
                    NAME("block%d.%d.attn.f%d.bias", i + 1, j, p + 1);
                    P(1, (int64_t)1);
                }
                break;
            default:
                LIN("attn.q", C, C, c.qkv_bias);
                LIN("attn.kv", 2 * C, C, c.qkv_bias);
            }
            LIN("attn.lepe_linear", C, C, 1);
            B("attn.lepe_conv.weight"), P(4, C, (int64_t)1, (int64_t)3, (int64_t)3);
            B("attn.lepe_conv.bias"), P(1, C);
            LIN("attn.proj", C, C, 1);
            B("norm2.weight"), P(1, C);
            B("norm2.bias"), P(1, C);
            LIN("mlp.fc1", F, C, 1);
            B("mlp.dwconv.dwconv.weight"), P(4, F, (int64_t)1, (int64_t)3, (int64_t)3);
            B("mlp.dwconv.dwconv.bias"), P(1, F);
            LIN("mlp.fc2", C, F, 1);
#undef LIN
#undef B
        }
        NAME("norm%d.weight", i + 1), P(1, C);
        NAME("norm%d.bias", i + 1), P(1, C);
    }
    vt_params_add(ps, 0, "head.weight", 2, (int64_t)c.classes, (int64_t)c.st[3].dim);
    vt_params_add(ps, 0, "head.bias", 1, (int64_t)c.classes);
#undef NAME
#undef P
    return 0;
}

/* ---- weights --------------------------------------------------------- */

/* The weights vt_linear multiplies by (q, kv, proj, fc, the 1x1 and sr
 * convs, head) are vt_weight_linear's: in a half-precision file handles
 * of packs, never read as floats. */
typedef struct sg_block {
    int kind;
    const float *n1w, *n1b, *n2w, *n2b;     /* [C] */
    /* HYBRID */
    const float *srw, *srb;                 /* [C, C, r, r], [C] */
    const float *srnw, *srnb;               /* [C] LayerNorm after sr */
    const float *q1w, *q1b, *q2w, *q2b;     /* [C/2, C], [C/2] */
    /* HYBRID and REALLOC */
    const float *kv1w, *kv1b, *kv2w, *kv2b; /* [C, C], [C]: K | V of C/2 each */
    /* REALLOC and MHSA */
    const float *qw, *qb;                   /* [C, C], [C] */
    const float *fw[3], *fb[3];             /* REALLOC merges: [s_p], [1] */
    const float *kvw, *kvb;                 /* MHSA: [2C, C], [2C] */
    /* all */
    const float *lepew, *lepeb;             /* [C, C], [C] */
    const float *lepec, *lepecb;            /* [9, C] tap-major (owned), [C] */
    const float *projw, *projb;             /* [C, C], [C] */
    const float *fc1w, *fc1b;               /* [F, C], [F] */
    const float *dww, *dwb;                 /* [9, F] tap-major (owned), [F] */
    const float *fc2w, *fc2b;               /* [C, F], [C] */
} sg_block;

typedef struct sg_weights {
    const float *pos;                       /* [N1, C1] */
    vt_wpack stem_pk[3];                    /* [C1,3,3,3], [C1,C1,3,3] x2 as
                                               [C1, 3*3*Cin] (ky, kx, c) */
    const float *stem_gw[3], *stem_gb[3];   /* GroupNorm affine [C1] */
    const float *stem_nw, *stem_nb;         /* LayerNorm [C1] */
    /* PatchMerging of stages 2..4 (index 1..3) */
    const float *pm_w1[4], *pm_w2[4], *pm_w3[4];    /* [C, Cp], [9, C] tap-major (owned), [C, C] */
    const float *pm_gw[4][3], *pm_gb[4][3];
    sg_block *blocks[SG_STAGES];            /* [depth] */
    const float *normw[SG_STAGES], *normb[SG_STAGES];
    const float *headw, *headb;             /* [classes, C4], [classes] */
} sg_weights;

/* ---- run state ------------------------------------------------------- */

/* Images run in groups: a stage's blocks take G_i images at once (their
 * token rows stacked, so every linear layer is one product over G_i N_i
 * rows and the attentions are one pool job over all their heads), with
 * G_i chosen so that no work buffer is larger than one image of the
 * largest stage needs (stage 1 takes 1 image, stage 4 about 8). A pass
 * takes up to `pass` images (the largest G_i) through all four stages,
 * so the stage outputs carried between stages hold `pass` images, not the
 * batch. Every image gets the same operations on the same values as
 * alone: results do not depend on the batch or the grouping. */
typedef struct sg_run {
    int batch;          /* records are sized for this many images */
    int group[SG_STAGES];   /* G_i */
    int pass;           /* images per pass through the stages */
    float *x;           /* [G N, C] residual stream */
    float *xn;          /* [G N, C] normed block input */
    float *a;           /* [G N, C] attention output, heads merged */
    float *t;           /* [G N, C] lepe_linear(xn) */
    float *q;           /* [G N, C] queries (q1/q2: [G N, C/2]) */
    float *kv;          /* [G N, 2C] keys|values */
    float *h1, *h2;     /* [G N, F] MLP hidden; h1 also sr patches [G nk, C r r] */
    float *pm;          /* [G N_prev, C] PatchMerging conv1 output */
    float *carry[2];    /* [pass N_i, C_i] stage outputs: even stages in 0, odd in 1 */
    float *stage[SG_STAGES];   /* [N_i, C_i] stage outputs of the batch's last image */
    float *feat;        /* [pass, C4] pooled */
    const float *feat_last;    /* the batch's last image's row of feat */
    float *red, *kvr;   /* [G nk, C] sr-reduced tokens, their keys|values */
    float *z1, *z2;     /* [G n_merged, C] merged tokens of order 1 / 2 */
    float *kvz1, *kvz2; /* [G n_merged, C] their keys|values */
    float *att_scr;     /* vt_attend_scratch */
    float *win_scr;     /* vt_window_scratch */
    float *lsum;        /* [h', G nwin, 49] window column sums */
    float *gsum;        /* [G, nk] global column sums */
    vt_attend_head *heads;  /* [G h] the heads of one attention job */
    float *mcol;        /* [G, N] maps read column-major */
    int *o2c;           /* [G, N] orders of the maps read column-major */
    /* stem, one image at a time */
    float *s_img;       /* [S*S, 3] the image as tokens */
    float *s_tok, *s_tok2;  /* [H0*H0, C1]: h1 and h2 (the stem runs before the blocks) */
    float *cols;        /* vt_conv_tokens_scratch */
    /* records, per image of the last batch */
    float *maps;        /* [batch, map_total] M, G, L of each HYBRID block */
    int *orders;        /* [batch, ord_total] order1, order2 of each REALLOC block */
} sg_run;

typedef struct sg_net {
    uint32_t magic;
    sg_config c;
    sg_weights w;
    sg_run r;
    vt_pool *pool;
    int *map_off[SG_STAGES];    /* [depth]: offset of the block's maps, -1 */
    int *ord_off[SG_STAGES];    /* [depth]: offset of the block's orders, -1 */
    size_t map_total, ord_total;
    vt_store store;
    int last_batch;
    vt_sgformer_order_hook hook;
    void *hook_ctx;
} sg_net;

static float *own(sg_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

static const float *weight(sg_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "sgformer", name, count);
}

/* A linear weight [nout, nin] for vt_linear (a handle when the file holds
 * it in half precision: vt_weight_linear). */
static const float *lweight(sg_net *n, const vt_frame *w, const char *name, size_t nout,
                            size_t nin)
{
    return vt_weight_linear(n->pool, w, "sgformer", name, (int)nout, (int)nin);
}

/* depthwise [c,1,3,3] -> owned tap-major [9, c] */
static const float *dw_weight(sg_net *n, const vt_frame *w, const char *name, size_t c)
{
    float *tmp;
    const float *src = vt_weight_read(w, "sgformer", name, c * 9, &tmp, NULL);
    if (!src)
        return NULL;
    float *dst = own(n, c * 9);
    vt_dw3_weights(dst, src, (int)c);
    free(tmp);
    return dst;
}

/* The stem's convolutions run on tokens (vt_conv_tokens): the weight
 * [C1, cin, 3, 3] reordered to (ky, kx, c) columns and packed; the
 * reordered copy (and a widened one of a half-precision file) is freed. */
static int stem_weight(sg_net *n, const vt_frame *w, const char *name, int cin, vt_wpack *pk)
{
    int C1 = n->c.st[0].dim;
    size_t count = (size_t)C1 * cin * 9;
    float *tmp;
    const float *src = vt_weight_read(w, "sgformer", name, count, &tmp, NULL);
    if (!src)
        return -1;
    float *hwc = vt_xmalloc(count * sizeof *hwc);
    vt_conv_weight_hwc(hwc, src, C1, cin, 3);
    free(tmp);
    return vt_wpack_init_take(pk, hwc, C1, cin * 9);
}

static int sg_bind(sg_net *n, const vt_frame *w)
{
    const sg_config *c = &n->c;
    sg_weights *W = &n->w;
    char name[128];
    size_t C1 = c->st[0].dim;
#define GET(dst, cnt) do { if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
#define GETL(dst, no, ni) do { if (!((dst) = lweight(n, w, name, (no), (ni)))) return -1; } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    NAME("pos_embed"); GET(W->pos, (size_t)c->st[0].n * C1);
    for (int k = 0; k < 3; k++) {
        NAME("patch_embed1.conv.%d.c.weight", 2 * k);
        if (stem_weight(n, w, name, k ? (int)C1 : 3, &W->stem_pk[k]) < 0)
            return -1;
        NAME("patch_embed1.conv.%d.bn.weight", 2 * k); GET(W->stem_gw[k], C1);
        NAME("patch_embed1.conv.%d.bn.bias", 2 * k); GET(W->stem_gb[k], C1);
    }
    NAME("patch_embed1.norm.weight"); GET(W->stem_nw, C1);
    NAME("patch_embed1.norm.bias"); GET(W->stem_nb, C1);
    for (int i = 0; i < SG_STAGES; i++) {
        const sg_stage_cfg *s = &c->st[i];
        size_t C = s->dim, F = s->hidden, r = s->sr;
        if (i > 0) {
            size_t Cp = c->st[i - 1].dim;
            NAME("patch_embed%d.conv1.c.weight", i + 1); GETL(W->pm_w1[i], C, Cp);
            NAME("patch_embed%d.conv2.c.weight", i + 1);
            if (!(W->pm_w2[i] = dw_weight(n, w, name, C)))
                return -1;
            NAME("patch_embed%d.conv3.c.weight", i + 1); GETL(W->pm_w3[i], C, C);
            for (int k = 0; k < 3; k++) {
                NAME("patch_embed%d.conv%d.bn.weight", i + 1, k + 1); GET(W->pm_gw[i][k], C);
                NAME("patch_embed%d.conv%d.bn.bias", i + 1, k + 1); GET(W->pm_gb[i][k], C);
            }
        }
        W->blocks[i] = vt_xcalloc((size_t)s->depth, sizeof(sg_block));
        for (int j = 0; j < s->depth; j++) {
            sg_block *B = &W->blocks[i][j];
            B->kind = s->kinds[j];
#define BG(dst, suffix, cnt) do { NAME("block%d.%d.%s", i + 1, j, suffix); GET(dst, cnt); } while (0)
#define BQ(dst, suffix, cnt) do { if (c->qkv_bias) BG(dst, suffix, cnt); } while (0)
#define BL(dst, suffix, no, ni) do { NAME("block%d.%d.%s", i + 1, j, suffix); GETL(dst, no, ni); } while (0)
            BG(B->n1w, "norm1.weight", C);
            BG(B->n1b, "norm1.bias", C);
            BG(B->n2w, "norm2.weight", C);
            BG(B->n2b, "norm2.bias", C);
            if (B->kind == VT_SG_HYBRID) {
                BL(B->srw, "attn.sr.weight", C, C * r * r);
                BG(B->srb, "attn.sr.bias", C);
                BG(B->srnw, "attn.norm.weight", C);
                BG(B->srnb, "attn.norm.bias", C);
                BL(B->q1w, "attn.q1.weight", C / 2, C);
                BQ(B->q1b, "attn.q1.bias", C / 2);
                BL(B->q2w, "attn.q2.weight", C / 2, C);
                BQ(B->q2b, "attn.q2.bias", C / 2);
            }
            if (B->kind != VT_SG_MHSA) {
                BL(B->kv1w, "attn.kv1.weight", C, C);
                BQ(B->kv1b, "attn.kv1.bias", C);
                BL(B->kv2w, "attn.kv2.weight", C, C);
                BQ(B->kv2b, "attn.kv2.bias", C);
            }
            if (B->kind != VT_SG_HYBRID) {
                BL(B->qw, "attn.q.weight", C, C);
                BQ(B->qb, "attn.q.bias", C);
            }
            if (B->kind == VT_SG_REALLOC)
                for (int p = 0; p < s->nparts; p++) {
                    NAME("block%d.%d.attn.f%d.weight", i + 1, j, p + 1); GET(B->fw[p], (size_t)s->s[p]);
                    NAME("block%d.%d.attn.f%d.bias", i + 1, j, p + 1); GET(B->fb[p], 1);
                }
            if (B->kind == VT_SG_MHSA) {
                BL(B->kvw, "attn.kv.weight", 2 * C, C);
                BQ(B->kvb, "attn.kv.bias", 2 * C);
            }
            BL(B->lepew, "attn.lepe_linear.weight", C, C);
            BG(B->lepeb, "attn.lepe_linear.bias", C);
            NAME("block%d.%d.attn.lepe_conv.weight", i + 1, j);
            if (!(B->lepec = dw_weight(n, w, name, C)))
                return -1;
            BG(B->lepecb, "attn.lepe_conv.bias", C);
            BL(B->projw, "attn.proj.weight", C, C);
            BG(B->projb, "attn.proj.bias", C);
            BL(B->fc1w, "mlp.fc1.weight", F, C);
            BG(B->fc1b, "mlp.fc1.bias", F);
            NAME("block%d.%d.mlp.dwconv.dwconv.weight", i + 1, j);
            if (!(B->dww = dw_weight(n, w, name, F)))
                return -1;
            BG(B->dwb, "mlp.dwconv.dwconv.bias", F);
            BL(B->fc2w, "mlp.fc2.weight", C, F);
            BG(B->fc2b, "mlp.fc2.bias", C);
#undef BL
#undef BQ
#undef BG
        }
        NAME("norm%d.weight", i + 1); GET(W->normw[i], C);
        NAME("norm%d.bias", i + 1); GET(W->normb[i], C);
    }
    NAME("head.weight"); GETL(W->headw, (size_t)c->classes, (size_t)c->st[3].dim);
    NAME("head.bias"); GET(W->headb, (size_t)c->classes);
#undef NAME
#undef GETL
#undef GET
    return 0;
}

/* Offsets of the recorded maps and orders inside one image's record. */
static void plan_records(sg_net *n)
{
    n->map_total = n->ord_total = 0;
    for (int i = 0; i < SG_STAGES; i++) {
        const sg_stage_cfg *s = &n->c.st[i];
        n->map_off[i] = vt_xmalloc((size_t)s->depth * sizeof(int));
        n->ord_off[i] = vt_xmalloc((size_t)s->depth * sizeof(int));
        for (int j = 0; j < s->depth; j++) {
            n->map_off[i][j] = n->ord_off[i][j] = -1;
            if (s->kinds[j] == VT_SG_HYBRID) {
                n->map_off[i][j] = (int)n->map_total;
                n->map_total += 3 * (size_t)s->n;
            } else if (s->kinds[j] == VT_SG_REALLOC) {
                n->ord_off[i][j] = (int)n->ord_total;
                n->ord_total += 2 * (size_t)s->n;
            }
        }
    }
}

static void run_free(sg_run *r)
{
    float *f[] = {r->x, r->xn, r->a, r->t, r->q, r->kv, r->h1, r->h2, r->pm, r->feat,
                  r->carry[0], r->carry[1], r->red, r->kvr, r->z1, r->z2, r->kvz1, r->kvz2,
                  r->att_scr, r->win_scr, r->lsum, r->gsum, r->mcol, r->s_img, r->cols, r->maps};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        free(f[i]);
    for (int i = 0; i < SG_STAGES; i++)
        free(r->stage[i]);
    free(r->heads);
    free(r->o2c);
    free(r->orders);
    memset(r, 0, sizeof *r);
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static float *falloc(size_t n) { return vt_xmalloc((n ? n : 1) * sizeof(float)); }

/* Floats of stage i's largest work buffer for one image: the MLP hidden
 * [N, F], or PatchMerging's [N_prev, C], MHSA's keys|values, sr patches. */
static size_t stage_unit(const sg_config *c, int i)
{
    const sg_stage_cfg *s = &c->st[i];
    size_t u = zmax((size_t)s->n * s->hidden, (size_t)s->n * s->dim * 2);
    if (i > 0)
        u = zmax(u, (size_t)c->st[i - 1].n * s->dim);
    if (s->sr > 1)
        u = zmax(u, (size_t)s->nk * s->dim * s->sr * s->sr);
    return u;
}

/* G_i: as many images as fit the largest stage's buffer for one image,
 * at most the batch and SG_MAX_PASS (past 4 images the last stages' products
 * gain little, and the carried stage outputs grow: a bf16 sgformer_b at
 * batch 8 peaked 10 MiB over its memory bound with passes of 8). */
#define SG_MAX_PASS 4
static void plan_groups(const sg_config *c, sg_run *r, int batch)
{
    if (batch > SG_MAX_PASS)
        batch = SG_MAX_PASS;
    size_t budget = 0;
    for (int i = 0; i < SG_STAGES; i++)
        budget = zmax(budget, stage_unit(c, i));
    r->pass = 1;
    for (int i = 0; i < SG_STAGES; i++) {
        size_t g = budget / stage_unit(c, i);
        r->group[i] = g < 1 ? 1 : g > (size_t)batch ? batch : (int)g;
        r->pass = r->group[i] > r->pass ? r->group[i] : r->pass;
    }
}

static int run_alloc(sg_net *n, int batch)
{
    const sg_config *c = &n->c;
    sg_run *r = &n->r;
    if (batch > 1 << 16 || (n->map_total && (size_t)batch > ((size_t)1 << 34) / n->map_total))
        return vt_seterr("sgformer: batch %d is too large", batch);
    run_free(r);
    r->batch = batch;
    plan_groups(c, r, batch);
    size_t nc = 0, nkv = 0, nf = 0, npm = 0, nred = 0, nz = 0, att = 0, win = 0;
    size_t lsum = 0, nmax = 0, nk = 0, carry[2] = {0, 0}, heads = 0;
    for (int i = 0; i < SG_STAGES; i++) {
        const sg_stage_cfg *s = &c->st[i];
        size_t G = (size_t)r->group[i], N = s->n, C = s->dim;
        int d = s->dim / s->heads;
        nc = zmax(nc, G * N * C);
        nkv = zmax(nkv, G * N * C * (s->sr == 1 ? 2 : 1));
        nf = zmax(nf, G * N * s->hidden);
        nmax = zmax(nmax, G * N);
        heads = zmax(heads, G * s->heads);
        carry[i % 2] = zmax(carry[i % 2], (size_t)r->pass * N * C);
        if (i > 0)
            npm = zmax(npm, G * c->st[i - 1].n * C);
        r->stage[i] = falloc(N * C);
        if (s->sr == 1) {
            att = zmax(att, vt_attend_scratch(n->pool, (int)G * s->heads, s->n, s->n, d));
            continue;
        }
        nred = zmax(nred, G * s->nk * C);
        nk = zmax(nk, G * s->nk);
        att = zmax(att, vt_attend_scratch(n->pool, s->heads / 2, s->n, s->nk, d));
        win = zmax(win, vt_window_scratch(n->pool, SG_WINDOW, d));
        lsum = zmax(lsum, G * s->heads / 2 * N);
        /* sr patches go to h1: nk * C r^2 <= N * C <= N * F */
        nf = zmax(nf, G * s->nk * C * s->sr * s->sr);
        if (s->has_realloc) {
            nz = zmax(nz, G * s->nmerged * C);
            att = zmax(att, vt_attend_scratch(n->pool, (int)G * s->heads, s->n, s->nmerged, d));
        }
    }
    size_t C1 = c->st[0].dim, n0 = (size_t)c->stem_grid * c->stem_grid;
    nf = zmax(nf, n0 * C1);
    size_t ncols = zmax(vt_conv_tokens_scratch(n->pool, c->img_size, 3, 3, 2, 1),
                        vt_conv_tokens_scratch(n->pool, c->stem_grid, (int)C1, 3, 1, 1));
    ncols = zmax(ncols, vt_conv_tokens_scratch(n->pool, c->stem_grid, (int)C1, 3, 2, 1));
    r->x = falloc(nc), r->xn = falloc(nc), r->a = falloc(nc), r->t = falloc(nc);
    r->q = falloc(nc), r->kv = falloc(nkv);
    r->h1 = falloc(nf), r->h2 = falloc(nf), r->pm = falloc(npm);
    r->carry[0] = falloc(carry[0]), r->carry[1] = falloc(carry[1]);
    r->feat = falloc((size_t)r->pass * c->st[3].dim);
    r->red = falloc(nred), r->kvr = falloc(nred);
    r->z1 = falloc(nz), r->z2 = falloc(nz), r->kvz1 = falloc(nz), r->kvz2 = falloc(nz);
    r->att_scr = falloc(att), r->win_scr = falloc(win);
    r->lsum = falloc(lsum), r->gsum = falloc(nk), r->mcol = falloc(nmax);
    r->o2c = vt_xmalloc(nmax * sizeof(int));
    r->heads = vt_xmalloc(heads * sizeof *r->heads);
    r->s_img = falloc((size_t)c->img_size * c->img_size * 3);
    r->s_tok = r->h1, r->s_tok2 = r->h2, r->cols = falloc(ncols);
    r->maps = falloc((size_t)batch * n->map_total);
    r->orders = vt_xmalloc(((size_t)batch * n->ord_total + 1) * sizeof(int));
    return 0;
}

/* The records of image `image` of the batch for block bj of stage si. */
static float *maps_of(sg_net *n, int image, int si, int bj)
{
    return n->r.maps + (size_t)image * n->map_total + n->map_off[si][bj];
}

static int *orders_of(sg_net *n, int image, int si, int bj)
{
    return n->r.orders + (size_t)image * n->ord_total + n->ord_off[si][bj];
}

/* ---- forward: stem and PatchMerging ---------------------------------- */

/* out[N1, C1] = LN(GN(conv(GELU(GN(conv(GELU(GN(conv(img))))))))) + pos */
static void stem(sg_net *n, const float *img, float *out)
{
    const sg_config *c = &n->c;
    const sg_weights *W = &n->w;
    sg_run *r = &n->r;
    int S = c->img_size, H0 = c->stem_grid, C1 = c->st[0].dim, N0 = H0 * H0, N1 = c->st[0].n;
    vt_tokens_to_planes(r->s_img, img, 3, S * S);     /* planes [3, S*S] -> tokens */
    vt_conv_tokens(n->pool, r->s_tok, r->s_img, S, S, 3, &W->stem_pk[0], NULL, 3, 2, 1, r->cols);
    vt_groupnorm1_tokens_mt(n->pool, r->s_tok, N0, C1, W->stem_gw[0], W->stem_gb[0], c->gn_eps, 1);
    vt_conv_tokens(n->pool, r->s_tok2, r->s_tok, H0, H0, C1, &W->stem_pk[1], NULL, 3, 1, 1, r->cols);
    vt_groupnorm1_tokens_mt(n->pool, r->s_tok2, N0, C1, W->stem_gw[1], W->stem_gb[1], c->gn_eps, 1);
    vt_conv_tokens(n->pool, out, r->s_tok2, H0, H0, C1, &W->stem_pk[2], NULL, 3, 2, 1, r->cols);
    vt_groupnorm1_tokens_mt(n->pool, out, N1, C1, W->stem_gw[2], W->stem_gb[2], c->gn_eps, 0);
    vt_layernorm_mt(n->pool, out, out, W->stem_nw, W->stem_nb, N1, C1, c->stem_eps);
    vt_add(out, W->pos, (size_t)N1 * C1);
}

/* Stage i > 0, ng images: x = GN(1x1(GELU(GN(dw3x3/2(GELU(GN(1x1(in))))))))
 * with in the previous stage's outputs [ng N_prev, C_prev]; GroupNorm and
 * the depthwise conv per image, the 1x1 convs over all rows. */
static void patch_merging(sg_net *n, int i, const float *in, int ng)
{
    const sg_config *c = &n->c;
    const sg_weights *W = &n->w;
    sg_run *r = &n->r;
    const sg_stage_cfg *p = &c->st[i - 1], *s = &c->st[i];
    int C = s->dim;
    size_t one_p = (size_t)p->n * C, one = (size_t)s->n * C;
    vt_linear(n->pool, r->pm, in, W->pm_w1[i], NULL, ng * p->n, p->dim, C, 0, 0);
    for (int k = 0; k < ng; k++) {
        float *pm = r->pm + k * one_p, *xn = r->xn + k * one;
        vt_groupnorm1_tokens_mt(n->pool, pm, p->n, C, W->pm_gw[i][0], W->pm_gb[i][0], c->gn_eps, 1);
        vt_dwk_tokens(n->pool, xn, C, pm, C, p->grid, p->grid, C, W->pm_w2[i], NULL, 3, 2);
        vt_groupnorm1_tokens_mt(n->pool, xn, s->n, C, W->pm_gw[i][1], W->pm_gb[i][1], c->gn_eps, 1);
    }
    vt_linear(n->pool, r->x, r->xn, W->pm_w3[i], NULL, ng * s->n, C, C, 0, 0);
    for (int k = 0; k < ng; k++)
        vt_groupnorm1_tokens_mt(n->pool, r->x + k * one, s->n, C, W->pm_gw[i][2],
                                W->pm_gb[i][2], c->gn_eps, 0);
}

/* ---- forward: the three attentions ----------------------------------- */

/* The maps of image k of a group of ng: G = mean over global heads and all
 * queries of gsum, upsampled (nearest, floor); L = mean over window heads
 * and the window's queries (lsum holds the group's ng*nwin windows per
 * head); M = L + G. maps[3N] = M, G, L. */
static void make_maps(const sg_stage_cfg *s, float *maps, const float *gsum, const float *lsum,
                      int k, int ng)
{
    int N = s->n, H = s->grid, hp = s->heads / 2, g = H / s->sr;
    float *M = maps, *G = maps + N, *L = maps + 2 * N;
    float sc = (float)g / H;
    int wc = H / SG_WINDOW, t = SG_WINDOW * SG_WINDOW, nwin = wc * wc;
    for (int y = 0; y < H; y++) {
        int gy = (int)floorf(y * sc);
        gy = gy < g - 1 ? gy : g - 1;
        for (int x = 0; x < H; x++) {
            int gx = (int)floorf(x * sc);
            gx = gx < g - 1 ? gx : g - 1;
            G[y * H + x] = gsum[gy * g + gx] / (float)hp / (float)N;
            int win = k * nwin + (y / SG_WINDOW) * wc + x / SG_WINDOW;
            int pos = (y % SG_WINDOW) * SG_WINDOW + x % SG_WINDOW;
            float l = 0;
            for (int h = 0; h < hp; h++)
                l += lsum[((size_t)h * ng * nwin + win) * t + pos];
            L[y * H + x] = l / (float)hp / (float)t;
            M[y * H + x] = L[y * H + x] + G[y * H + x];
        }
    }
}

/* HYBRID over images b0..b0+ng-1: a[:, :C/2] = global heads over
 * GELU(LN(sr(xn))), a[:, C/2:] = 7x7 window heads; records each image's
 * map M = L + G and its halves. The window attention runs over the
 * group's grids stacked (windows never cross an image's edge). */
static void attn_hybrid(sg_net *n, int si, int bj, const sg_block *B, int b0, int ng)
{
    const sg_stage_cfg *s = &n->c.st[si];
    sg_run *r = &n->r;
    int N = s->n, C = s->dim, H = s->grid, hp = s->heads / 2, d = C / s->heads;
    int rr = s->sr, nk = s->nk, rows = ng * N;
    float scale = 1.0f / sqrtf((float)d);
    /* global half: queries q1 [rows, C/2], keys/values from the reduced grids */
    vt_linear(n->pool, r->q, r->xn, B->q1w, B->q1b, rows, C, C / 2, 0, 0);
    for (int k = 0; k < ng; k++)
        vt_patchify_tokens_mt(n->pool, r->h1 + (size_t)k * nk * C * rr * rr,
                              r->xn + (size_t)k * N * C, H, H, C, rr, 0);
    vt_linear(n->pool, r->red, r->h1, B->srw, B->srb, ng * nk, C * rr * rr, C, 0, 0);
    vt_layernorm_mt(n->pool, r->red, r->red, B->srnw, B->srnb, ng * nk, C, n->c.sr_eps);
    vt_gelu(r->red, (size_t)ng * nk * C);
    vt_linear(n->pool, r->kvr, r->red, B->kv1w, B->kv1b, ng * nk, C, C, 0, 0);
    for (int k = 0; k < ng; k++) {
        const float *q = r->q + (size_t)k * N * (C / 2), *kv = r->kvr + (size_t)k * nk * C;
        float *a = r->a + (size_t)k * N * C;
        for (int h = 0; h < hp; h++)
            r->heads[h] = (vt_attend_head){q + h * d, kv + h * d, kv + C / 2 + h * d, a + h * d};
        vt_attend(n->pool, r->heads, hp, C / 2, C, C, C, N, nk, d, scale, r->att_scr,
                  r->gsum + (size_t)k * nk);
    }
    /* local half: q2 [rows, C/2], kv2 [rows, C] inside 7x7 windows */
    vt_linear(n->pool, r->q, r->xn, B->q2w, B->q2b, rows, C, C / 2, 0, 0);
    vt_linear(n->pool, r->kv, r->xn, B->kv2w, B->kv2b, rows, C, C, 0, 0);
    vt_window_attend(n->pool, hp, r->q, C / 2, r->kv, r->kv + C / 2, C, r->a + C / 2, C,
                     ng * H, H, SG_WINDOW, d, scale, r->win_scr, r->lsum);
    for (int k = 0; k < ng; k++)
        make_maps(s, maps_of(n, b0 + k, si, bj), r->gsum + (size_t)k * nk, r->lsum, k, ng);
}

/* z[g] = f.bias + sum_u f.weight[u] * xn[order[start + g*s + u]] for each
 * part of the order: the merged tokens [n_merged, C]. */
static void merge_tokens(const sg_stage_cfg *s, const sg_block *B, float *z,
                         const float *xn, const int *order)
{
    int C = s->dim, start = 0;
    for (int p = 0; p < s->nparts; p++) {
        int run = s->s[p];
        const float *fw = B->fw[p];
        for (int gi = 0; gi < s->m[p]; gi++, z += C) {
            for (int ch = 0; ch < C; ch++)
                z[ch] = B->fb[p][0];
            for (int u = 0; u < run; u++) {
                const float *src = xn + (size_t)order[start + gi * run + u] * C;
                float wu = fw[u];
                for (int ch = 0; ch < C; ch++)
                    z[ch] += wu * src[ch];
            }
        }
        start += s->part_len[p];
    }
}

/* The per-image steps of REALLOC as pool tasks, two per image (order 1,
 * order 2): sorting the map, then merging by the order. */
typedef struct realloc_job {
    sg_net *n;
    const sg_block *B;
    int si, bj, mj, b0;
} realloc_job;

/* order1: ascending sort of M row-major; order2: of M column-major
 * (sequence index k = x*H + y), mapped back to tokens y*W + x */
static void sort_task(void *ctx, int task, int thread)
{
    (void)thread;
    const realloc_job *j = ctx;
    sg_run *r = &j->n->r;
    const sg_stage_cfg *s = &j->n->c.st[j->si];
    int N = s->n, H = s->grid, k = task / 2;
    const float *M = maps_of(j->n, j->b0 + k, j->si, j->mj);
    int *order = orders_of(j->n, j->b0 + k, j->si, j->bj);
    if (task % 2 == 0) {
        vt_argsort_torch(order, M, N);
        return;
    }
    float *mcol = r->mcol + (size_t)k * N;
    int *o2c = r->o2c + (size_t)k * N;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < H; x++)
            mcol[x * H + y] = M[y * H + x];
    vt_argsort_torch(o2c, mcol, N);
    for (int i = 0; i < N; i++)
        order[N + i] = (o2c[i] % H) * H + o2c[i] / H;
}

static void merge_task(void *ctx, int task, int thread)
{
    (void)thread;
    const realloc_job *j = ctx;
    sg_run *r = &j->n->r;
    const sg_stage_cfg *s = &j->n->c.st[j->si];
    int k = task / 2, which = task % 2;
    const int *order = orders_of(j->n, j->b0 + k, j->si, j->bj) + which * s->n;
    float *z = (which ? r->z2 : r->z1) + (size_t)k * s->nmerged * s->dim;
    merge_tokens(s, j->B, z, r->xn + (size_t)k * s->n * s->dim, order);
}

/* REALLOC over images b0..b0+ng-1, with the maps of block mj: sort tokens
 * by the map, merge, attend with all queries; heads 0..h'-1 see kv1(Z1),
 * heads h'..h-1 see kv2(Z2); one attention job over all images' heads. */
static int attn_realloc(sg_net *n, int si, int bj, const sg_block *B, int b0, int ng, int mj)
{
    const sg_stage_cfg *s = &n->c.st[si];
    sg_run *r = &n->r;
    int N = s->n, C = s->dim, hp = s->heads / 2, d = C / s->heads, nm = s->nmerged;
    float scale = 1.0f / sqrtf((float)d);
    realloc_job j = {n, B, si, bj, mj, b0};
    vt_linear(n->pool, r->q, r->xn, B->qw, B->qb, ng * N, C, C, 0, 0);
    vt_pool_run_work(n->pool, 2 * ng, sort_task, &j, 60.0 * ng * N * log2(N + 1.0));
    for (int k = 0; n->hook && k < ng; k++) {
        int *ord = orders_of(n, b0 + k, si, bj);
        if (n->hook(n->hook_ctx, b0 + k, si + 1, bj, ord, ord + N, N))
            return vt_seterr("sgformer: order hook failed at stage %d block %d", si + 1, bj);
    }
    vt_pool_run_work(n->pool, 2 * ng, merge_task, &j, 4.0 * ng * N * C);
    vt_linear(n->pool, r->kvz1, r->z1, B->kv1w, B->kv1b, ng * nm, C, C, 0, 0);
    vt_linear(n->pool, r->kvz2, r->z2, B->kv2w, B->kv2b, ng * nm, C, C, 0, 0);
    for (int k = 0; k < ng; k++)
        for (int h = 0; h < s->heads; h++) {
            size_t z = (size_t)k * nm * C, x = (size_t)k * N * C;
            const float *kv = h < hp ? r->kvz1 + z + h * d : r->kvz2 + z + (h - hp) * d;
            r->heads[k * s->heads + h] =
                (vt_attend_head){r->q + x + h * d, kv, kv + C / 2, r->a + x + h * d};
        }
    vt_attend(n->pool, r->heads, ng * s->heads, C, C, C, C, N, nm, d, scale, r->att_scr, NULL);
    return 0;
}

/* MHSA over ng images: q [rows, C], kv [rows, 2C] = K | V, h heads over
 * each image's tokens, one attention job. */
static void attn_mhsa(sg_net *n, const sg_stage_cfg *s, const sg_block *B, int ng)
{
    sg_run *r = &n->r;
    int N = s->n, C = s->dim, d = C / s->heads;
    vt_linear(n->pool, r->q, r->xn, B->qw, B->qb, ng * N, C, C, 0, 0);
    vt_linear(n->pool, r->kv, r->xn, B->kvw, B->kvb, ng * N, C, 2 * C, 0, 0);
    for (int k = 0; k < ng; k++)
        for (int h = 0; h < s->heads; h++) {
            size_t x = (size_t)k * N * C;
            r->heads[k * s->heads + h] = (vt_attend_head){r->q + x + h * d, r->kv + 2 * x + h * d,
                                                          r->kv + 2 * x + C + h * d,
                                                          r->a + x + h * d};
        }
    vt_attend(n->pool, r->heads, ng * s->heads, C, 2 * C, 2 * C, C, N, N, d,
              1.0f / sqrtf((float)d), r->att_scr, NULL);
}

/* ---- forward: blocks, stages, head ----------------------------------- */

/* Over images b0..b0+ng-1 (rows stacked in the run buffers):
 * x += proj(Attn(xn) + LePE(xn)), xn = norm1(x);
 * x += fc2(GELU(t + dwconv(t))), t = fc1(norm2(x)). *map_block: the
 * HYBRID block whose maps the next REALLOC uses (-1: none). */
static int block(sg_net *n, int b0, int ng, int si, int bj, int *map_block)
{
    const sg_stage_cfg *s = &n->c.st[si];
    const sg_block *B = &n->w.blocks[si][bj];
    sg_run *r = &n->r;
    int N = s->n, C = s->dim, H = s->grid, F = s->hidden, rows = ng * N;
    float eps = n->c.eps;
    vt_layernorm_mt(n->pool, r->xn, r->x, B->n1w, B->n1b, rows, C, eps);
    if (B->kind == VT_SG_HYBRID) {
        attn_hybrid(n, si, bj, B, b0, ng);
        *map_block = bj;
    } else if (B->kind == VT_SG_REALLOC) {
        if (*map_block < 0)
            return vt_seterr("sgformer: stage %d block %d has no map", si + 1, bj);
        if (attn_realloc(n, si, bj, B, b0, ng, *map_block) < 0)
            return -1;
        *map_block = -1;
    } else {
        attn_mhsa(n, s, B, ng);
        *map_block = -1;
    }
    /* LePE: depthwise 3x3 of lepe_linear(xn), added before proj */
    vt_linear(n->pool, r->t, r->xn, B->lepew, B->lepeb, rows, C, C, 0, 0);
    for (int k = 0; k < ng; k++)
        vt_dw3_tokens(n->pool, r->h2 + (size_t)k * N * C, r->t + (size_t)k * N * C, H, H, C,
                      B->lepec, B->lepecb, 0);
    vt_add(r->a, r->h2, (size_t)rows * C);
    vt_linear(n->pool, r->x, r->a, B->projw, B->projb, rows, C, C, 1, 0);
    /* MLP with the depthwise conv residual inside, before GELU */
    vt_layernorm_mt(n->pool, r->xn, r->x, B->n2w, B->n2b, rows, C, eps);
    vt_linear(n->pool, r->h1, r->xn, B->fc1w, B->fc1b, rows, C, F, 0, 0);
    for (int k = 0; k < ng; k++)
        vt_dw3_tokens(n->pool, r->h2 + (size_t)k * N * F, r->h1 + (size_t)k * N * F, H, H, F,
                      B->dww, B->dwb, VT_DW3_RESIDUAL | VT_DW3_GELU);
    vt_linear(n->pool, r->x, r->h2, B->fc2w, B->fc2b, rows, F, C, 1, 0);
    return 0;
}

/* Stage si over images b0..b0+ng-1 of the batch: from the images
 * (stage 1) or the previous stage's outputs `in`, to the normed stage
 * outputs `out` [ng N, C]. */
static int run_stage(sg_net *n, int si, int b0, int ng, const float *img, const float *in,
                     float *out)
{
    const sg_config *c = &n->c;
    const sg_stage_cfg *s = &c->st[si];
    sg_run *r = &n->r;
    size_t one = (size_t)s->n * s->dim;
    if (si == 0)
        for (int k = 0; k < ng; k++)
            stem(n, img + (size_t)k * 3 * c->img_size * c->img_size, r->x + k * one);
    else
        patch_merging(n, si, in, ng);
    int map_block = -1;     /* validated: no map crosses a stage it could reach */
    for (int j = 0; j < s->depth; j++)
        if (block(n, b0, ng, si, j, &map_block) < 0)
            return -1;
    vt_layernorm_mt(n->pool, out, r->x, n->w.normw[si], n->w.normb[si], ng * s->n, s->dim,
                    c->eps);
    if (b0 + ng == n->last_batch)
        memcpy(r->stage[si], out + (ng - 1) * one, one * sizeof *out);
    return 0;
}

/* One pass: images b0..b0+np-1 (np <= pass) through the four stages, each
 * in groups of G_i, then the head. */
static int forward_pass(sg_net *n, int b0, int np, const float *img, float *logits)
{
    const sg_config *c = &n->c;
    sg_run *r = &n->r;
    size_t img_floats = (size_t)3 * c->img_size * c->img_size;
    for (int i = 0; i < SG_STAGES; i++) {
        const sg_stage_cfg *s = &c->st[i];
        size_t prev = i ? (size_t)c->st[i - 1].n * c->st[i - 1].dim : 0;
        for (int g0 = 0; g0 < np; g0 += r->group[i]) {
            int ng = np - g0 < r->group[i] ? np - g0 : r->group[i];
            const float *in = i ? r->carry[(i - 1) % 2] + g0 * prev : NULL;
            float *out = r->carry[i % 2] + (size_t)g0 * s->n * s->dim;
            if (run_stage(n, i, b0 + g0, ng, img + g0 * img_floats, in, out) < 0)
                return -1;
        }
    }
    const sg_stage_cfg *s4 = &c->st[3];
    for (int k = 0; k < np; k++)
        vt_mean_rows(r->feat + (size_t)k * s4->dim,
                     r->carry[3 % 2] + (size_t)k * s4->n * s4->dim, s4->n, s4->dim);
    vt_linear(n->pool, logits, r->feat, n->w.headw, n->w.headb, np, s4->dim, c->classes, 0, 0);
    if (b0 + np == n->last_batch)
        r->feat_last = r->feat + (size_t)(np - 1) * s4->dim;
    return 0;
}

static int sg_forward(void *net, const float *x, int batch, float *logits)
{
    sg_net *n = net;
    if (!n || n->magic != SG_MAGIC)
        return vt_seterr("sgformer: not an sgformer net");
    if (batch < 1)
        return vt_seterr("sgformer: batch %d", batch);
    if (batch > n->r.batch && run_alloc(n, batch) < 0)
        return -1;
    size_t img = (size_t)3 * n->c.img_size * n->c.img_size;
    int pass = n->r.pass;
    /* last_batch: the batch being run (its last image's outputs are kept),
     * 0 again if it fails, so the records are never read half made */
    n->last_batch = batch;
    for (int b = 0; b < batch; b += pass) {
        int np = batch - b < pass ? batch - b : pass;
        if (forward_pass(n, b, np, x + b * img, logits + (size_t)b * n->c.classes) < 0) {
            n->last_batch = 0;
            return -1;
        }
    }
    return 0;
}

/* ---- lifetime -------------------------------------------------------- */

static void sg_destroy(void *net)
{
    sg_net *n = net;
    if (!n)
        return;
    run_free(&n->r);
    for (int k = 0; k < 3; k++)
        vt_wpack_free(&n->w.stem_pk[k]);
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    for (int i = 0; i < SG_STAGES; i++) {
        free(n->w.blocks[i]);
        free(n->map_off[i]);
        free(n->ord_off[i]);
    }
    n->magic = 0;
    free(n);
}

static void *sg_create(const cJSON *cfg, const vt_frame *weights, const vt_run_opts *o)
{
    sg_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = SG_MAGIC;
    if (sg_config_read(cfg, &n->c) < 0) {
        sg_destroy(n);
        return NULL;
    }
    /* the pool first: half-precision linear weights are packed into its
     * cache as they are bound; and the mapped model file never changes,
     * so vt_linear packs its F32 weights once */
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    if (n->pool)
        vt_pool_readonly(n->pool, weights->map, weights->map_len);
    if (!n->pool || sg_bind(n, weights) < 0) {
        sg_destroy(n);
        return NULL;
    }
    for (int i = 0; i < SG_STAGES; i++)
        if (n->c.st[i].heads > 512) {
            vt_seterr("sgformer: more than 512 heads");
            sg_destroy(n);
            return NULL;
        }
    plan_records(n);
    if (run_alloc(n, o && o->batch > 0 ? o->batch : 1) < 0) {
        sg_destroy(n);
        return NULL;
    }
    return n;
}

/* ---- cost ------------------------------------------------------------ */

/* Multiply-accumulates per image in the papers' convention (convs, linears
 * and the two attention products; norms, activations, softmax, the sort
 * and additions not counted), with the token counts the official code runs
 * at cfg's size. An attention of nq queries over nk keys of width w costs
 * nq*nk*w for q k^T and as much for P v. */

/* Two stride-2 3x3 convs around a stride-1 one, 3 -> C1 -> C1 -> C1. */
static double stem_macs(const sg_config *c)
{
    double h0 = (double)c->stem_grid * c->stem_grid, n1 = c->st[0].n, C1 = c->st[0].dim;
    return h0 * 27 * C1 + h0 * 9 * C1 * C1 + n1 * 9 * C1 * C1;
}

/* 1x1 conv on the previous grid, depthwise 3x3 stride 2, 1x1 conv. */
static double merging_macs(const sg_stage_cfg *prev, const sg_stage_cfg *s)
{
    double N = s->n, C = s->dim;
    return (double)prev->n * prev->dim * C + N * 9 * C + N * C * C;
}

/* HYBRID, global half: q1, the r x r stride-r sr conv and kv1 on its nk
 * tokens, h' heads of width C/h attending to nk keys. */
static double hybrid_global_macs(const sg_stage_cfg *s)
{
    double N = s->n, C = s->dim, nk = s->nk, rr = (double)s->sr * s->sr;
    return N * C * C / 2 + nk * C * rr * C + nk * C * C + 2 * N * nk * C / 2;
}

/* HYBRID, local half: q2 and kv2 on every token, 7x7 windows. */
static double hybrid_window_macs(const sg_stage_cfg *s)
{
    double N = s->n, C = s->dim, t = SG_WINDOW * SG_WINDOW;
    return N * C * C / 2 + N * C * C + 2 * N * t * C / 2;
}

/* REALLOC: q on every token; the merge f* read each token once per order
 * (two orders); kv1, kv2 on the nmerged tokens of each order; all h heads
 * attend to nmerged keys (h' to kv1's, h' to kv2's). */
static double realloc_macs(const sg_stage_cfg *s)
{
    double N = s->n, C = s->dim, nm = s->nmerged;
    return N * C * C + 2 * N * C + 2 * nm * C * C + 2 * N * nm * C;
}

/* MHSA: q and kv on every token, attention over all of them. */
static double mhsa_macs(const sg_stage_cfg *s)
{
    double N = s->n, C = s->dim;
    return N * C * 3 * C + 2 * N * N * C;
}

static void add_stage_cost(vt_cost *out, int stage, const char *what, double macs)
{
    char name[40];
    snprintf(name, sizeof name, "stage%d %s", stage, what);
    vt_cost_add(out, name, macs);
}

static int sg_cost(const cJSON *cfg, vt_cost *out)
{
    sg_config c;
    if (sg_config_read(cfg, &c) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    vt_cost_add(out, "stem", stem_macs(&c));
    for (int i = 0; i < SG_STAGES; i++) {
        const sg_stage_cfg *s = &c.st[i];
        double N = s->n, C = s->dim, F = s->hidden;
        if (i > 0)
            add_stage_cost(out, i + 1, "patch merging", merging_macs(&c.st[i - 1], s));
        int kinds[4] = {0};    /* blocks of each kind */
        for (int j = 0; j < s->depth; j++)
            kinds[s->kinds[j]]++;
        if (kinds[VT_SG_HYBRID]) {
            add_stage_cost(out, i + 1, "hybrid global attn", kinds[VT_SG_HYBRID] * hybrid_global_macs(s));
            add_stage_cost(out, i + 1, "hybrid window attn", kinds[VT_SG_HYBRID] * hybrid_window_macs(s));
        }
        if (kinds[VT_SG_REALLOC])
            add_stage_cost(out, i + 1, "realloc attn", kinds[VT_SG_REALLOC] * realloc_macs(s));
        if (kinds[VT_SG_MHSA])
            add_stage_cost(out, i + 1, "mhsa", kinds[VT_SG_MHSA] * mhsa_macs(s));
        /* every block: lepe_linear, its depthwise 3x3 and proj; fc1, the
         * depthwise 3x3 on the hidden features, fc2 */
        add_stage_cost(out, i + 1, "lepe+proj", s->depth * (2 * N * C * C + N * 9 * C));
        add_stage_cost(out, i + 1, "mlp", s->depth * (2 * N * C * F + N * 9 * F));
    }
    vt_cost_add(out, "head", (double)c.st[3].dim * c.classes);
    return 0;
}

/* ---- extras (models/sgformer.h) -------------------------------------- */

static const sg_net *as_net(const void *net)
{
    const sg_net *n = net;
    if (!n || n->magic != SG_MAGIC)
        return vt_seterr("not an sgformer net"), NULL;
    return n;
}

static const sg_stage_cfg *stage_of(const sg_net *n, int stage)
{
    if (stage < 1 || stage > SG_STAGES)
        return vt_seterr("sgformer: stage %d: stages are 1..4", stage), NULL;
    return &n->c.st[stage - 1];
}

int vt_sgformer_block_kind(const void *net, int stage, int block)
{
    const sg_net *n = as_net(net);
    const sg_stage_cfg *s = n ? stage_of(n, stage) : NULL;
    return s && block >= 0 && block < s->depth ? s->kinds[block] : VT_SG_NONE;
}

int vt_sgformer_depth(const void *net, int stage)
{
    const sg_net *n = as_net(net);
    const sg_stage_cfg *s = n ? stage_of(n, stage) : NULL;
    return s ? s->depth : 0;
}

int vt_sgformer_grid(const void *net, int stage)
{
    const sg_net *n = as_net(net);
    const sg_stage_cfg *s = n ? stage_of(n, stage) : NULL;
    return s ? s->grid : 0;
}

static int check_record(const sg_net *n, int image, int stage, int block, int kind)
{
    const sg_stage_cfg *s = stage_of(n, stage);
    if (!s)
        return -1;
    if (!n->last_batch)
        return vt_seterr("sgformer: no forward pass yet");
    if (image < 0 || image >= n->last_batch)
        return vt_seterr("sgformer: image %d not in the last batch of %d", image, n->last_batch);
    if (block < 0 || block >= s->depth || s->kinds[block] != kind)
        return vt_seterr("sgformer: stage %d block %d %s", stage, block,
                         kind == VT_SG_HYBRID ? "makes no significance map (hybrid blocks are "
                                                "the even ones of stages 1-3)"
                                              : "is not a token-reallocation block");
    return 0;
}

int vt_sgformer_sigmap(const void *net, int image, int stage, int block, int which,
                       float *out, int *h, int *w)
{
    const sg_net *n = as_net(net);
    if (!n || check_record(n, image, stage, block, VT_SG_HYBRID) < 0)
        return -1;
    if (which < VT_SG_MAP || which > VT_SG_LOCAL)
        return vt_seterr("sgformer: unknown map kind %d", which);
    const sg_stage_cfg *s = &n->c.st[stage - 1];
    if (h) *h = s->grid;
    if (w) *w = s->grid;
    if (out)
        memcpy(out, n->r.maps + (size_t)image * n->map_total + n->map_off[stage - 1][block] +
                        (size_t)which * s->n, (size_t)s->n * sizeof *out);
    return 0;
}

int vt_sgformer_order(const void *net, int image, int stage, int block, int which,
                      int *out, int *count)
{
    const sg_net *n = as_net(net);
    if (!n || check_record(n, image, stage, block, VT_SG_REALLOC) < 0)
        return -1;
    if (which != 1 && which != 2)
        return vt_seterr("sgformer: order %d: 1 or 2", which);
    const sg_stage_cfg *s = &n->c.st[stage - 1];
    if (count) *count = s->n;
    if (out)
        memcpy(out, n->r.orders + (size_t)image * n->ord_total + n->ord_off[stage - 1][block] +
                        (size_t)(which - 1) * s->n, (size_t)s->n * sizeof *out);
    return 0;
}

const float *vt_sgformer_stage(const void *net, int stage, int *count, int *c)
{
    const sg_net *n = as_net(net);
    if (!n)
        return NULL;
    if (!n->last_batch)
        return vt_seterr("sgformer: no forward pass yet"), NULL;
    if (stage == SG_STAGES + 1) {
        if (count) *count = 1;
        if (c) *c = n->c.st[3].dim;
        return n->r.feat_last;
    }
    const sg_stage_cfg *s = stage_of(n, stage);
    if (!s)
        return NULL;
    if (count) *count = s->n;
    if (c) *c = s->dim;
    return n->r.stage[stage - 1];
}

int vt_sgformer_set_order_hook(void *net, vt_sgformer_order_hook fn, void *ctx)
{
    sg_net *n = (sg_net *)as_net(net);
    if (!n)
        return -1;
    n->hook = fn;
    n->hook_ctx = ctx;
    return 0;
}

const vt_family vt_family_sgformer = {
    .name = "sgformer",
    .archs = sg_archs,
    .config = sg_config_defaults,
    .params = sg_params,
    .create = sg_create,
    .forward = sg_forward,
    .destroy = sg_destroy,
    .cost = sg_cost,
};
