/* groupmix.c - GroupMixFormer (Ge et al., "Advancing Vision Transformers
 * with Group-Mix Attention", arXiv 2311.15157) with the official code's
 * names and state dict (AILab-CVC/GroupMixFormer models/groupmixformer.py),
 * eval mode. Details and traps: ../shared/specs/groupmix.md.
 *
 *   x = hswish(BN(conv3x3/2(hswish(BN(conv3x3/2(img))))))   stem, 4x down
 *   per stage i: x = hswish(BN(pw(dw3x3/s(x))))              s = 1, 2, 2, 2
 *     per block: x = x + dw3x3(x)                            CPE
 *                x += proj(GMA(LN1(x)))
 *                x += fc2(gelu(fc1(LN2(x))))
 *   logits = head(mean(BN(x)))
 *
 * GMA (the released code, not the paper's figure): qkv = Linear(u) gives
 * Q, K, V of C channels, each cut into 5 segments of s = C/5. Segments 0-3
 * go through the aggregators (0: BN+hswish; 1-3: separable conv 3/5/7 +
 * BN + hswish, weights shared by Q, K, V) and form 8 heads of d = s/2
 * lanes (2 heads per aggregator). Per head, factorized attention:
 *   O = scale * Q^ (softmax_tokens(K^)^T V^) + Q^ * dwconv(V^)    (CRPE)
 * with scale = (C/8)^-0.5 (the full C). Segment 4 of Q, K and V, stacked,
 * is the non-attention branch: hswish(LN(pw(dw3x3([Qs4|Ks4|Vs4])))).
 * Output = proj([O heads | local]).
 *
 * BatchNorms are folded into the convolution before them where that is
 * exact (stem convs, patch embeddings, aggregator pointwise convs); the
 * seg-0 BN is applied as a per-channel affine; norm4 is applied to the
 * pooled vector (an affine map commutes with the mean).
 *
 * Config keys (as refgen's meta.json "config"): arch, img_size,
 * num_classes, embedding_dims, serial_depths, mlp_ratios (or mlp_hidden),
 * num_heads (8), num_stages (4), num_segments (5), qkv_bias, attn_scale
 * (optional: per-stage scale, default (C/8)^-0.5), block_norm_eps,
 * local_norm_eps, bn_eps, crop_pct, interpolation, mean, std; other keys
 * of meta.json are descriptive and ignored.
 *
 * Input sizes: any S whose stage-1 grid ceil(ceil(S/2)/2) is a multiple of
 * 8 (S a multiple of 32): the official code takes each later grid as
 * floor(h/2) while its stride-2 conv makes ceil(h/2), and stops when they
 * differ. Other sizes are refused by params()/create(). */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "models/groupmix.h"
#include "ops.h"
#include "ops/cpu.h"
#include "ops/grid.h"
#include "ops/sepconv.h"
#include "util.h"

#define GM_MAGIC 0x474d4631u    /* "GMF1" */
#define GM_STAGES 4
#define GM_HEADS 8
#define GM_SEGS 5
#define GM_MAX_DEPTH 256

extern const vt_family vt_family_groupmix;

static const char *const gm_archs[] = {"groupmixformer_m", "groupmixformer_t", "groupmixformer_s",
                                       "groupmixformer_b", "groupmixformer_l", NULL};

/* aggregator kernel per segment (0: no conv); CRPE kernel and heads per group */
static const int agg_k[4] = {0, 3, 5, 7};
static const int crpe_k[3] = {3, 5, 7}, crpe_heads[3] = {2, 3, 3};

/* ---- config ---------------------------------------------------------- */

typedef struct gm_stage_cfg {
    int dim;            /* C */
    int depth;
    int hidden;         /* F = int(C * mlp_ratio) */
    int seg;            /* s = C/5 */
    int ca;             /* attending width 4s = 8d */
    int d;              /* per-head width s/2 */
    int stride;         /* patch embedding: 1 (stage 1) or 2 */
    int group;          /* segments per qkv product: 1 or 5 (gm_groups) */
    int h, w, n;        /* token grid, N = h*w */
    float scale;        /* (C // 8)^-0.5 */
} gm_stage_cfg;

typedef struct gm_config {
    int img_size;       /* S */
    int classes;
    int qkv_bias;
    int mid;            /* stem width m = C1/2 */
    int hm, wm;         /* grid after the first stem conv, ceil(S/2) */
    int h0, w0;         /* stem output grid, ceil(hm/2) */
    float ln_eps;       /* block LayerNorms */
    float local_eps;    /* LayerNorm of the non-attention branch */
    float bn_eps;       /* every BatchNorm */
    gm_stage_cfg st[GM_STAGES];
} gm_config;

static int gm_config_defaults(const char *arch, cJSON *cfg)
{
    static const struct {
        const char *arch;
        int dims[4], depths[4], ratios[4];
    } v[] = {
        {"groupmixformer_m", {40, 80, 160, 160}, {3, 3, 12, 4}, {4, 4, 4, 4}},
        {"groupmixformer_t", {80, 160, 200, 240}, {4, 4, 12, 4}, {4, 4, 4, 4}},
        {"groupmixformer_s", {80, 160, 320, 320}, {2, 4, 12, 4}, {4, 4, 4, 4}},
        {"groupmixformer_b", {200, 240, 320, 480}, {8, 8, 12, 8}, {2, 2, 4, 4}},
        {"groupmixformer_l", {240, 320, 360, 480}, {8, 10, 30, 10}, {4, 4, 2, 2}},
    };
    int i = 0;
    while (i < 5 && strcmp(v[i].arch, arch) != 0)
        i++;
    if (i == 5)
        return vt_seterr("groupmix: unknown arch '%s'", arch);
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddNumberToObject(cfg, "img_size", 224);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    cJSON_AddItemToObject(cfg, "embedding_dims", cJSON_CreateIntArray(v[i].dims, 4));
    cJSON_AddItemToObject(cfg, "serial_depths", cJSON_CreateIntArray(v[i].depths, 4));
    cJSON_AddItemToObject(cfg, "mlp_ratios", cJSON_CreateIntArray(v[i].ratios, 4));
    cJSON_AddNumberToObject(cfg, "num_heads", GM_HEADS);
    cJSON_AddNumberToObject(cfg, "num_stages", GM_STAGES);
    cJSON_AddNumberToObject(cfg, "num_segments", GM_SEGS);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    cJSON_AddNumberToObject(cfg, "block_norm_eps", 1e-6);
    cJSON_AddNumberToObject(cfg, "local_norm_eps", 1e-5);
    cJSON_AddNumberToObject(cfg, "bn_eps", 1e-5);
    /* data/build.py: Resize(int(256/224 S)) + CenterCrop(S), bicubic */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.875);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(std, 3));
    return 0;
}

/* Up to 4 numbers of an array key into out; -1 if present but not 4 numbers. */
static int read_nums(const cJSON *cfg, const char *key, double *out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!a)
        return 0;
    if (cJSON_GetArraySize(a) != GM_STAGES)
        return vt_seterr("groupmix: config \"%s\" must be %d numbers", key, GM_STAGES);
    for (int i = 0; i < GM_STAGES; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e))
            return vt_seterr("groupmix: config \"%s\" must be %d numbers", key, GM_STAGES);
        out[i] = e->valuedouble;
    }
    return 1;
}

static int conv_out(int in) { return (in - 1) / 2 + 1; }   /* k3 s2 p1 */

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* floats of the attention's buffers of stage s with its segments made
 * `group` at a time: Q K V of the group (Q^ K^ V^ in place), dwt, the
 * pointwise output when it cannot go over its input (group > 1), o */
static size_t att_floats(const gm_stage_cfg *s, int group)
{
    size_t N = s->n, S = s->seg;
    return N * (3 * S * group + 3 * S + (group > 1 ? 3 * S : 0) + s->dim);
}

/* Each stage's qkv in one product (group 5) when its buffers fit in what
 * the largest stage needs anyway (most often only stage 1 does not), else a
 * segment at a time (group 1): an [N, 3s] product pads its last 32-wide
 * panel (s = 40: 120 of 128 columns), and 5 products take more calls. The
 * results are the same either way. */
static void gm_groups(gm_config *c)
{
    size_t need = 0;
    for (int i = 0; i < GM_STAGES; i++) {
        const gm_stage_cfg *s = &c->st[i];
        int Cin = i == 0 ? s->dim : c->st[i - 1].dim;
        need = zmax(zmax(need, att_floats(s, 1)),
                    zmax((size_t)s->n * s->hidden, (size_t)s->n * Cin));
    }
    for (int i = 0; i < GM_STAGES; i++)
        c->st[i].group = att_floats(&c->st[i], GM_SEGS) <= need ? GM_SEGS : 1;
}

static int gm_config_read(const cJSON *cfg, gm_config *c)
{
    memset(c, 0, sizeof *c);
    int dims[5], depths[5];
    if (vt_cfg_ints(cfg, "embedding_dims", dims, 5) != GM_STAGES ||
        vt_cfg_ints(cfg, "serial_depths", depths, 5) != GM_STAGES)
        return vt_seterr("groupmix: config needs \"embedding_dims\" and \"serial_depths\" "
                         "of %d integers", GM_STAGES);
    if (vt_cfg_int(cfg, "num_heads", GM_HEADS) != GM_HEADS)
        return vt_seterr("groupmix: num_heads must be 8 (the official head layout is "
                         "hard-wired for 8)");
    if (vt_cfg_int(cfg, "num_stages", GM_STAGES) != GM_STAGES)
        return vt_seterr("groupmix: num_stages must be 4");
    if (vt_cfg_int(cfg, "num_segments", GM_SEGS) != GM_SEGS)
        return vt_seterr("groupmix: num_segments must be 5");
    double ratio[4] = {4, 4, 4, 4}, hidden[4], scale[4];
    if (read_nums(cfg, "mlp_ratios", ratio) < 0)
        return -1;
    int has_hidden = read_nums(cfg, "mlp_hidden", hidden);
    int has_scale = read_nums(cfg, "attn_scale", scale);
    if (has_hidden < 0 || has_scale < 0)
        return -1;
    c->img_size = vt_cfg_int(cfg, "img_size", 224);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    c->ln_eps = (float)vt_cfg_num(cfg, "block_norm_eps", 1e-6);
    c->local_eps = (float)vt_cfg_num(cfg, "local_norm_eps", 1e-5);
    c->bn_eps = (float)vt_cfg_num(cfg, "bn_eps", 1e-5);
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("groupmix: num_classes %d out of range", c->classes);
    float eps[3] = {c->ln_eps, c->local_eps, c->bn_eps};
    for (int i = 0; i < 3; i++)
        if (!(eps[i] > 0 && eps[i] < 1))
            return vt_seterr("groupmix: norm eps out of range");
    if (c->img_size < 32 || c->img_size > 8192)
        return vt_seterr("groupmix: img_size %d out of range", c->img_size);
    c->hm = c->wm = conv_out(c->img_size);
    c->h0 = c->w0 = conv_out(c->hm);
    if (c->h0 % 8 || c->w0 % 8)
        return vt_seterr("groupmix: img_size %d gives a %dx%d stage-1 grid; the official code "
                         "needs it divisible by 8 (each stride-2 patch embedding must halve it "
                         "exactly): use a multiple of 32", c->img_size, c->h0, c->w0);
    for (int i = 0; i < GM_STAGES; i++) {
        gm_stage_cfg *s = &c->st[i];
        s->dim = dims[i], s->depth = depths[i];
        if (s->dim < 10 || s->dim > 65536 || s->dim % 10)
            return vt_seterr("groupmix: stage %d: embedding dim %d must be a multiple of 10 "
                             "(5 segments, 8 heads over 4 of them)", i + 1, s->dim);
        if (s->depth < 1 || s->depth > GM_MAX_DEPTH)
            return vt_seterr("groupmix: stage %d: depth %d out of range", i + 1, s->depth);
        if (has_hidden) {
            if (!(hidden[i] >= 1 && hidden[i] <= 1 << 20 && hidden[i] == floor(hidden[i])))
                return vt_seterr("groupmix: stage %d: mlp_hidden out of range", i + 1);
            s->hidden = (int)hidden[i];
        } else {
            if (!(ratio[i] > 0 && ratio[i] * s->dim <= 1 << 20))
                return vt_seterr("groupmix: stage %d: mlp_ratio out of range", i + 1);
            s->hidden = (int)(s->dim * ratio[i]);
            if (s->hidden < 1)
                return vt_seterr("groupmix: stage %d: mlp hidden width 0", i + 1);
        }
        s->seg = s->dim / GM_SEGS;
        s->ca = 4 * s->seg;
        s->d = s->ca / GM_HEADS;
        s->scale = has_scale ? (float)scale[i] : (float)(1.0 / sqrt((double)(s->dim / GM_HEADS)));
        s->stride = i == 0 ? 1 : 2;
        s->h = i == 0 ? c->h0 : c->st[i - 1].h / 2;
        s->w = i == 0 ? c->w0 : c->st[i - 1].w / 2;
        s->n = s->h * s->w;
    }
    c->mid = c->st[0].dim / 2;
    gm_groups(c);
    return 0;
}

/* ---- state dict ------------------------------------------------------ */

static void add_bn(vt_params *ps, const char *prefix, int64_t n)
{
    static const char *const sfx[4] = {"weight", "bias", "running_mean", "running_var"};
    char name[160];
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "%s.%s", prefix, sfx[k]);
        vt_params_add(ps, 0, name, 1, n);
    }
    snprintf(name, sizeof name, "%s.num_batches_tracked", prefix);
    vt_params_add(ps, 1, name, 0);
}

/* name = "groupmixformer_backbone.<i>.gma_stage.<j>." + suffix */
static void block_name(char *name, size_t cap, int i, int j, const char *fmt, ...) VT_PRINTF(5, 6);
static void block_name(char *name, size_t cap, int i, int j, const char *fmt, ...)
{
    int o = snprintf(name, cap, "groupmixformer_backbone.%d.gma_stage.%d.", i, j);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + o, cap - o, fmt, ap);
    va_end(ap);
}

static int gm_params(const cJSON *cfg, vt_params *ps)
{
    gm_config c;
    if (gm_config_read(cfg, &c) < 0)
        return -1;
    char name[160], pre[160];
    int64_t m = c.mid, C1 = c.st[0].dim;
#define P(nd, ...) vt_params_add(ps, 0, name, nd, __VA_ARGS__)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    NAME("conv_stem.proj1.weight"), P(4, m, (int64_t)3, (int64_t)3, (int64_t)3);
    NAME("conv_stem.proj1.bias"), P(1, m);
    add_bn(ps, "conv_stem.norm1", m);
    NAME("conv_stem.proj2.weight"), P(4, C1, m, (int64_t)3, (int64_t)3);
    NAME("conv_stem.proj2.bias"), P(1, C1);
    add_bn(ps, "conv_stem.norm2", C1);
    for (int i = 0; i < GM_STAGES; i++) {
        const gm_stage_cfg *s = &c.st[i];
        int64_t C = s->dim, Cin = i == 0 ? C : c.st[i - 1].dim, S = s->seg, d = s->d;
        int64_t F = s->hidden, one = 1;
        NAME("patch_embed_layers.%d.proj.conv1.weight", i), P(4, Cin, one, (int64_t)3, (int64_t)3);
        NAME("patch_embed_layers.%d.proj.pointwise_conv.weight", i), P(4, C, Cin, one, one);
        snprintf(pre, sizeof pre, "patch_embed_layers.%d.norm", i);
        add_bn(ps, pre, C);
        for (int j = 0; j < s->depth; j++) {
#define B(...) block_name(name, sizeof name, i, j, __VA_ARGS__)
            B("cpe.proj.weight"), P(4, C, one, (int64_t)3, (int64_t)3);
            B("cpe.proj.bias"), P(1, C);
            B("norm1.weight"), P(1, C);
            B("norm1.bias"), P(1, C);
            B("att.qkv.weight"), P(2, 3 * C, C);
            if (c.qkv_bias)
                B("att.qkv.bias"), P(1, 3 * C);
            B("att.proj.weight"), P(2, C, C);
            B("att.proj.bias"), P(1, C);
            for (int k = 0; k < 4; k++) {
                if (k) {
                    int64_t kk = agg_k[k];
                    B("att.aggregator.agg%d.conv1.weight", k), P(4, S, one, kk, kk);
                    B("att.aggregator.agg%d.pointwise_conv.weight", k), P(4, S, S, one, one);
                }
                B("att.aggregator.norm%d", k);
                snprintf(pre, sizeof pre, "%s", name);
                add_bn(ps, pre, S);
            }
            B("att.aggregator.agg0.conv.conv1.weight"), P(4, 3 * S, one, (int64_t)3, (int64_t)3);
            B("att.aggregator.agg0.conv.pointwise_conv.weight"), P(4, S, 3 * S, one, one);
            B("att.aggregator.agg0.norm.weight"), P(1, S);
            B("att.aggregator.agg0.norm.bias"), P(1, S);
            for (int g = 0; g < 3; g++) {
                int64_t ch = crpe_heads[g] * d, kk = crpe_k[g];
                B("att.crpe.conv_list.%d.weight", g), P(4, ch, one, kk, kk);
                B("att.crpe.conv_list.%d.bias", g), P(1, ch);
            }
            B("norm2.weight"), P(1, C);
            B("norm2.bias"), P(1, C);
            B("mlp.fc1.weight"), P(2, F, C);
            B("mlp.fc1.bias"), P(1, F);
            B("mlp.fc2.weight"), P(2, C, F);
            B("mlp.fc2.bias"), P(1, C);
#undef B
        }
    }
    int64_t C4 = c.st[3].dim;
    add_bn(ps, "norm4", C4);
    NAME("head.weight"), P(2, (int64_t)c.classes, C4);
    NAME("head.bias"), P(1, (int64_t)c.classes);
#undef NAME
#undef P
    return 0;
}

/* ---- weights --------------------------------------------------------- */

/* A convolution with its BatchNorm folded in: the weight [o, ...] scaled
 * per output channel (packed: pk), b [o] = (conv bias - mean) * g + beta. */
typedef struct gm_conv {
    const float *b;
    vt_wpack pk;        /* the weight packed for vt_linear_packed */
} gm_conv;

/* The CRPE convolution of heads h0 .. h0+nh-1, all of one kernel size k
 * (one segment's part of a CRPE group: segment j holds heads 2j, 2j+1). */
typedef struct gm_crpe {
    const float *w, *b;     /* [k*k, nh*d] tap-major, [nh*d] */
    int k, h0, nh;
} gm_crpe;

typedef struct gm_block {
    const float *cpe_w, *cpe_b;             /* [9, C] tap-major, [C] */
    const float *n1w, *n1b, *n2w, *n2b;     /* [C] */
    const float *qkvb;                      /* [3C] segment-major (see qkv_src) or NULL */
    const float *projb;                     /* [C] */
    const float *bn0_g, *bn0_b;             /* seg 0 BN as x * g + b, [3s]: Q K V alike */
    const float *agg_dw[4];                 /* 1..3: [k*k, 3s] tap-major, Q K V alike */
    gm_conv agg_pw[4];                      /* 1..3: [s, s] + BN, [s] */
    const float *loc_dw;                    /* [9, 3s] tap-major, [Qs4 | Ks4 | Vs4] */
    const float *loc_nw, *loc_nb;           /* [s] */
    gm_crpe crpe[4][2];                     /* per attending segment: its CRPE pieces */
    int ncrpe[4];
    const float *fc1b, *fc2b;               /* [F], [C] */
    /* the linear layers packed once at load: every image, on any thread,
     * runs the same kernel on them (vt_pool_wpack is for the caller thread).
     * The pool owns proj [C, C], fc1 [F, C], fc2 [C, F] and loc [s, 3s]
     * (packed from a BF16 file's bits, vt_weight_packed); qkv is ours,
     * one pack per `group` segments (the stage's): output features [g: Q
     * K V | ...] (qkv_src), so at group 1 a segment's Q, K, V are made
     * when its aggregator needs them */
    const vt_wpack *proj, *fc1, *fc2, *loc;
    vt_wpack qkv[GM_SEGS];
} gm_block;

typedef struct gm_weights {
    gm_conv stem1;                          /* [m, 3, 3, 3] + BN, [m] */
    gm_conv stem2;                          /* [C1, 3, 3, m] (taps, channels) + BN, [C1] */
    const float *pe_dw[GM_STAGES];          /* [9, Cin] tap-major */
    gm_conv pe_pw[GM_STAGES];               /* [C, Cin] + BN, [C] */
    gm_block *blocks[GM_STAGES];            /* [depth] */
    const float *n4_g, *n4_b;               /* norm4 as x * g + b, [C4] */
    const float *headb;                     /* [classes] */
    const vt_wpack *head;                   /* [classes, C4], the pool's */
} gm_weights;

/* ---- run state ------------------------------------------------------- */

/* Work buffers for one image, sized for the largest stage. A net keeps
 * one per pool thread when batches have at least as many images as
 * threads (then each thread runs whole images on its own), else one, so
 * their size is what memory grows by with the threads: buffers whose uses
 * never overlap share one area (peak RSS, issue 11). It holds the two
 * streams, then the work area:
 *   stem:         xn | s_tok ... | cols      (s_tok over x and the work area)
 *   patch embed:  xn | x | pe
 *   attention:    xn | x | a | dwt | (pwt) | o   (at group 1: one segment's
 *                                                Q K V at a time)
 *   MLP:          xn | x | hid
 * groupmixformer_b: 21.5 MiB a run state when the attention kept Q, K, V
 * and Q^ K^ V^ of all five segments and the stem the columns of its whole
 * image (45 N1 s1 floats), 10.0 now (21). */
typedef struct gm_run {
    float *x, *xn;      /* [N, C] residual stream, normed; the CPE writes
                         * xn and the two swap */
    float *area;        /* the shared area: the streams, then the work area */
    size_t nc;          /* floats of one stream */
    float *work;        /* the work area; the attention's buffers (att_use): */
    float *a;           /* [N, 3s group] the Q | K | V of `group` segments
                         * from qkv, then Q^ | K^ | V^ in place (K^
                         * softmaxed) */
    float *dwt;         /* [N, 3s] depthwise outputs */
    float *pwt;         /* [3N, s] pointwise outputs; at group 1 over a */
    float *o;           /* [N, C] heads | local, proj input */
    float *hid;         /* [N, F] MLP hidden */
    float *pe;          /* [N, Cin] patch embedding depthwise output */
    float *g;           /* [8, d, d] K~^T V^ per head */
    float *qbar;        /* [8, d] mean query per head */
    float *sigh;        /* [8, N4] per-head received attention */
    float *sig;         /* [N4] significance map */
    float *pooled;      /* [C4] */
    /* stage 1 block 0 records (vt_groupmix_record) */
    float *rec_in, *rec_qkv, *rec_local, *rec_out;
} gm_run;

typedef struct gm_net {
    uint32_t magic;
    gm_config c;
    gm_weights w;
    gm_run *runs;       /* [nruns] */
    int nruns;
    int batch;          /* the run states are for batches up to this */
    int last_run;       /* the run state holding the last image of the last pass */
    /* the stem's and the stages' outputs of the last image of a pass
     * (vt_groupmix_extra), written by the pass that runs it: one copy,
     * not one per run state */
    float *kept_stem, *kept_stage[GM_STAGES];
    vt_pool *pool;
    int record;
    vt_store store;
    int last_batch;
} gm_net;

/* What one image's forward pass works with: its run state and the pool
 * its ops split over (NULL: serial, when images run in parallel). */
typedef struct gm_pass {
    const gm_net *n;
    gm_run *r;
    vt_pool *pool;
    int keep;           /* the batch's last image: keep its intermediates */
} gm_pass;

static float *own(gm_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

static const float *weight(gm_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "groupmix", name, count);
}

/* A weight read once to make something of it: F32 in place or a
 * transient widened copy in *tmp (vt_weight_read), which the caller frees. */
static const float *read_once(const vt_frame *w, const char *name, size_t count, float **tmp,
                              int *bf16)
{
    return vt_weight_read(w, "groupmix", name, count, tmp, bf16);
}

/* A linear weight [nout, nin] packed by the pool (vt_weight_packed). */
static const vt_wpack *packed(gm_net *n, const vt_frame *w, const char *name, int nout, int nin)
{
    return vt_weight_packed(n->pool, w, "groupmix", name, nout, nin);
}

/* depthwise [c, 1, k, k] -> owned tap-major [k*k, c] */
static const float *dw_weight(gm_net *n, const vt_frame *w, const char *name, int c, int k)
{
    float *tmp;
    const float *src = read_once(w, name, (size_t)c * k * k, &tmp, NULL);
    if (!src)
        return NULL;
    float *dst = own(n, (size_t)c * k * k);
    vt_dwk_weights(dst, src, c, k);
    free(tmp);
    return dst;
}

/* BatchNorm `prefix` over c channels as y = x * g + b (owned [2c]). */
static float *bn_affine(gm_net *n, const vt_frame *w, const char *prefix, int c)
{
    char name[200];
    const float *t[4];
    float *tmp[4] = {NULL, NULL, NULL, NULL};
    static const char *const sfx[4] = {"weight", "bias", "running_mean", "running_var"};
    float *gb = NULL;
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "%s.%s", prefix, sfx[k]);
        if (!(t[k] = read_once(w, name, (size_t)c, &tmp[k], NULL)))
            goto out;
    }
    gb = own(n, 2 * (size_t)c);
    for (int i = 0; i < c; i++) {
        double g = t[0][i] / sqrt((double)t[3][i] + n->c.bn_eps);
        gb[i] = (float)g;
        gb[c + i] = (float)(t[1][i] - t[2][i] * g);
    }
out:
    for (int k = 0; k < 4; k++)
        free(tmp[k]);
    return gb;
}

/* conv weight [o, per] (+ bias [o] or NULL) followed by BatchNorm `bn`:
 * the folded convolution. With k > 0 the weight is [o, cin, k, k] and
 * goes to [o, k, k, cin], the order vt_im2col_tokens makes its columns in. */
static int fold(gm_net *n, const vt_frame *w, gm_conv *out, const char *wname,
                const char *bname, const char *bn, int o, size_t per, int k)
{
    const float *b = bname ? weight(n, w, bname, (size_t)o) : NULL;
    const float *gb = bn_affine(n, w, bn, o);
    float *tmp;
    const float *wt = read_once(w, wname, (size_t)o * per, &tmp, NULL);
    if (!wt || (bname && !b) || !gb) {
        free(tmp);
        return -1;
    }
    /* packed in F32 whatever the file's dtype: the scaled weight is no
     * BF16 value, and these convolutions are a small part of the work */
    float *fw = vt_xmalloc((size_t)o * per * sizeof *fw), *fb = own(n, (size_t)o);
    for (int i = 0; i < o; i++) {
        for (size_t j = 0; j < per; j++)
            fw[i * per + j] = wt[i * per + j] * gb[i];
        fb[i] = (b ? b[i] : 0.0f) * gb[i] + gb[o + i];
    }
    vt_map_release(wt, (size_t)o * per * sizeof *wt);
    free(tmp);
    if (k > 0) {
        float *t = vt_xmalloc((size_t)o * per * sizeof *t);
        vt_conv_weight_hwc(t, fw, o, (int)(per / ((size_t)k * k)), k);
        free(fw);
        fw = t;
    }
    out->b = fb;
    return vt_wpack_init_take(&out->pk, fw, o, (int)per);
}

/* The qkv layer's outputs are used segment-major, [seg 0: Q K V | seg 1:
 * Q K V | ... | seg 4: Q K V] (each s wide), so an aggregator reads its
 * three inputs as one run of 3s channels; the official order is [Q | K |
 * V], each 5 segments. Output feature f comes from official feature: */
static int qkv_src(int f, int C, int S)
{
    int g = f / (3 * S), m = f % (3 * S) / S, c = f % S;
    return m * C + g * S + c;
}

/* B->qkv packed from the official weight `name` [3C, C] with its rows
 * (and the bias) in segment-major order, one pack per `group` segments
 * ([3s group, C]: 5 of them or 1), in the file's precision (rows of a BF16
 * weight are packed as BF16); its pages in the file are given back (the
 * reordered copies are what the products read). Each output is the same
 * dot product whatever the packs. */
static int qkv_pack(gm_net *n, const vt_frame *w, gm_block *B, const char *name,
                    const float *bias, int C, int S, int group)
{
    size_t row = (size_t)C;
    float *tmp;
    int bf16;
    const float *wt = read_once(w, name, (size_t)3 * C * row, &tmp, &bf16);
    if (!wt)
        return -1;
    int rc = 0, nf = 3 * S * group;
    for (int g = 0; g < GM_SEGS / group; g++) {
        float *t = vt_xmalloc((size_t)nf * row * sizeof *t);
        for (int f = 0; f < nf; f++)
            memcpy(t + f * row, wt + (size_t)qkv_src(g * nf + f, C, S) * row, row * sizeof *t);
        if (rc == 0)
            rc = vt_wpack_take_as(n->pool, &B->qkv[g], t, nf, C, bf16);
        else
            free(t);
    }
    vt_map_release(wt, (size_t)3 * C * row * sizeof *wt);
    free(tmp);
    if (bias) {
        float *b = own(n, (size_t)3 * C);
        for (int f = 0; f < 3 * C; f++)
            b[f] = bias[qkv_src(f, C, S)];
        B->qkvb = b;
    }
    return rc;
}

/* B->crpe from the official conv_list: per attending segment j, its heads
 * 2j, 2j+1 cut where a group's kernel size changes (heads 0-1 k3, 2-4 k5,
 * 5-7 k7), each piece's weights tap-major. */
static int crpe_bind(gm_net *n, const vt_frame *w, gm_block *B, const char *pre, int d)
{
    const float *src[3] = {NULL, NULL, NULL}, *bias[3];
    float *tmp[3] = {NULL, NULL, NULL};
    char name[200];
    int rc = -1, first[4] = {0, 2, 5, GM_HEADS};    /* first head of each group */
    for (int g = 0; g < 3; g++) {
        size_t ch = (size_t)crpe_heads[g] * d, kk = (size_t)crpe_k[g] * crpe_k[g];
        snprintf(name, sizeof name, "%satt.crpe.conv_list.%d.weight", pre, g);
        if (!(src[g] = read_once(w, name, ch * kk, &tmp[g], NULL)))
            goto out;
        snprintf(name, sizeof name, "%satt.crpe.conv_list.%d.bias", pre, g);
        if (!(bias[g] = weight(n, w, name, ch)))
            goto out;
    }
    for (int j = 0; j < 4; j++) {
        B->ncrpe[j] = 0;
        for (int h = 2 * j; h < 2 * j + 2;) {
            int g = h < first[1] ? 0 : h < first[2] ? 1 : 2, k = crpe_k[g];
            int end = first[g + 1] < 2 * j + 2 ? first[g + 1] : 2 * j + 2;
            size_t c0 = (size_t)(h - first[g]) * d, ch = (size_t)(end - h) * d;
            float *wt = own(n, ch * k * k);
            /* PyTorch's [ch, 1, k, k]: the piece's channels are consecutive rows */
            vt_dwk_weights(wt, src[g] + c0 * k * k, (int)ch, k);
            B->crpe[j][B->ncrpe[j]++] = (gm_crpe){wt, bias[g] + c0, k, h, end - h};
            h = end;
        }
    }
    rc = 0;
out:
    for (int g = 0; g < 3; g++)
        free(tmp[g]);
    return rc;
}

/* depthwise [s, 1, k, k] -> owned tap-major [k*k, 3s]: the same weights
 * for the Q, K and V runs of a segment-major block */
static const float *dw_weight3(gm_net *n, const vt_frame *w, const char *name, int s, int k)
{
    const float *one = dw_weight(n, w, name, s, k);
    if (!one)
        return NULL;
    float *t = own(n, (size_t)3 * s * k * k);
    for (int tap = 0; tap < k * k; tap++)
        for (int m = 0; m < 3; m++)
            memcpy(t + ((size_t)tap * 3 + m) * s, one + (size_t)tap * s, (size_t)s * sizeof *t);
    return t;
}

static int gm_bind(gm_net *n, const vt_frame *w)
{
    const gm_config *c = &n->c;
    gm_weights *W = &n->w;
    char name[200], bn[200];
    int m = c->mid, C1 = c->st[0].dim;
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
#define BN(...) snprintf(bn, sizeof bn, __VA_ARGS__)
    if (fold(n, w, &W->stem1, "conv_stem.proj1.weight", "conv_stem.proj1.bias",
             "conv_stem.norm1", m, 27, 0) < 0 ||
        fold(n, w, &W->stem2, "conv_stem.proj2.weight", "conv_stem.proj2.bias",
             "conv_stem.norm2", C1, (size_t)m * 9, 3) < 0)
        return -1;
    for (int i = 0; i < GM_STAGES; i++) {
        const gm_stage_cfg *s = &c->st[i];
        int C = s->dim, Cin = i == 0 ? C : c->st[i - 1].dim, S = s->seg, F = s->hidden;
        NAME("patch_embed_layers.%d.proj.conv1.weight", i);
        if (!(W->pe_dw[i] = dw_weight(n, w, name, Cin, 3)))
            return -1;
        NAME("patch_embed_layers.%d.proj.pointwise_conv.weight", i);
        BN("patch_embed_layers.%d.norm", i);
        if (fold(n, w, &W->pe_pw[i], name, NULL, bn, C, (size_t)Cin, 0) < 0)
            return -1;
        W->blocks[i] = vt_xcalloc((size_t)s->depth, sizeof(gm_block));
        for (int j = 0; j < s->depth; j++) {
            gm_block *B = &W->blocks[i][j];
            char pre[96];
            snprintf(pre, sizeof pre, "groupmixformer_backbone.%d.gma_stage.%d.", i, j);
#define G(dst, suffix, cnt) do { NAME("%s%s", pre, suffix); \
                                 if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
#define PK(dst, suffix, no, ni) do { NAME("%s%s", pre, suffix); \
                                     if (!((dst) = packed(n, w, name, (no), (ni)))) return -1; } while (0)
#define DW(dst, suffix, ch, k) do { NAME("%s%s", pre, suffix); \
                                    if (!((dst) = dw_weight(n, w, name, (ch), (k)))) return -1; } while (0)
            DW(B->cpe_w, "cpe.proj.weight", C, 3);
            G(B->cpe_b, "cpe.proj.bias", C);
            G(B->n1w, "norm1.weight", C);
            G(B->n1b, "norm1.bias", C);
            const float *qkvb = NULL;
            if (c->qkv_bias)
                G(qkvb, "att.qkv.bias", (size_t)3 * C);
            NAME("%satt.qkv.weight", pre);
            if (qkv_pack(n, w, B, name, qkvb, C, S, s->group) < 0)
                return -1;
            PK(B->proj, "att.proj.weight", C, C);
            G(B->projb, "att.proj.bias", C);
            BN("%satt.aggregator.norm0", pre);
            float *gb = bn_affine(n, w, bn, S);
            if (!gb)
                return -1;
            float *g3 = own(n, (size_t)6 * S);
            for (int m = 0; m < 3; m++) {
                memcpy(g3 + m * S, gb, (size_t)S * sizeof *g3);
                memcpy(g3 + (3 + m) * S, gb + S, (size_t)S * sizeof *g3);
            }
            B->bn0_g = g3, B->bn0_b = g3 + 3 * S;
            for (int k = 1; k < 4; k++) {
                char sfx[64];
                snprintf(sfx, sizeof sfx, "att.aggregator.agg%d.conv1.weight", k);
                NAME("%s%s", pre, sfx);
                if (!(B->agg_dw[k] = dw_weight3(n, w, name, S, agg_k[k])))
                    return -1;
                NAME("%satt.aggregator.agg%d.pointwise_conv.weight", pre, k);
                BN("%satt.aggregator.norm%d", pre, k);
                if (fold(n, w, &B->agg_pw[k], name, NULL, bn, S, (size_t)S, 0) < 0)
                    return -1;
            }
            DW(B->loc_dw, "att.aggregator.agg0.conv.conv1.weight", 3 * S, 3);
            PK(B->loc, "att.aggregator.agg0.conv.pointwise_conv.weight", S, 3 * S);
            G(B->loc_nw, "att.aggregator.agg0.norm.weight", S);
            G(B->loc_nb, "att.aggregator.agg0.norm.bias", S);
            if (crpe_bind(n, w, B, pre, s->d) < 0)
                return -1;
            G(B->n2w, "norm2.weight", C);
            G(B->n2b, "norm2.bias", C);
            PK(B->fc1, "mlp.fc1.weight", F, C);
            G(B->fc1b, "mlp.fc1.bias", F);
            PK(B->fc2, "mlp.fc2.weight", C, F);
            G(B->fc2b, "mlp.fc2.bias", C);
#undef PK
#undef DW
#undef G
        }
    }
    int C4 = c->st[3].dim;
    float *gb = bn_affine(n, w, "norm4", C4);
    if (!gb)
        return -1;
    W->n4_g = gb, W->n4_b = gb + C4;
    if (!(W->head = packed(n, w, "head.weight", c->classes, C4)) ||
        !(W->headb = weight(n, w, "head.bias", (size_t)c->classes)))
        return -1;
#undef BN
#undef NAME
    return 0;
}

static void run_free(gm_run *r)
{
    float *f[] = {r->area, r->g, r->qbar, r->sigh, r->sig, r->pooled,
                  r->rec_in, r->rec_qkv, r->rec_local, r->rec_out};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        free(f[i]);
    memset(r, 0, sizeof *r);
}

static float *falloc(size_t n) { return vt_xmalloc((n ? n : 1) * sizeof(float)); }

static void runs_free(gm_net *n)
{
    for (int i = 0; i < n->nruns; i++)
        run_free(&n->runs[i]);
    free(n->runs);
    n->runs = NULL;
    n->nruns = 0;
    free(n->kept_stem);
    n->kept_stem = NULL;
    for (int i = 0; i < GM_STAGES; i++) {
        free(n->kept_stage[i]);
        n->kept_stage[i] = NULL;
    }
}

static void run_alloc1(const gm_net *n, gm_run *r)
{
    const gm_config *c = &n->c;
    size_t nc = 0, att = 0, nf = 0, npe = 0, dd = 0, dmax = 0;
    for (int i = 0; i < GM_STAGES; i++) {
        const gm_stage_cfg *s = &c->st[i];
        size_t N = s->n;
        int Cin = i == 0 ? s->dim : c->st[i - 1].dim;
        nc = zmax(nc, N * s->dim);
        att = zmax(att, att_floats(s, s->group));
        nf = zmax(nf, N * s->hidden);
        npe = zmax(npe, N * Cin);
        dd = zmax(dd, (size_t)s->d * s->d);
        dmax = zmax(dmax, (size_t)s->d);
    }
    size_t m = c->mid, nm = (size_t)c->hm * c->wm, N4 = c->st[3].n;
    /* the stem: the first conv's columns (the whole image's: 27 floats a
     * position), the second's in bands (vt_conv_tokens) */
    size_t ncols = zmax(nm * 27, vt_conv_tokens_scratch(n->pool, c->wm, (int)m, 3, 2, 1));
    /* its output [N0, C1] goes to xn (N0 C1 is stage 1's N C); s_tok and
     * the columns lie over x and the work area */
    size_t stem = nm * m + ncols > nc ? nm * m + ncols - nc : 0;
    size_t work = zmax(zmax(att, nf), zmax(npe, stem));
    r->nc = nc;
    r->area = falloc(2 * nc + work);
    r->xn = r->area, r->x = r->area + nc;
    r->work = r->area + 2 * nc;
    r->hid = r->work, r->pe = r->work;
    r->g = falloc(GM_HEADS * dd), r->qbar = falloc(GM_HEADS * dmax);
    r->sigh = falloc(GM_HEADS * N4), r->sig = falloc(N4);
    r->pooled = falloc(c->st[3].dim);
    if (n->record) {
        const gm_stage_cfg *s = &c->st[0];
        r->rec_in = falloc((size_t)s->n * s->dim);
        r->rec_qkv = falloc((size_t)3 * s->n * s->ca);
        r->rec_local = falloc((size_t)s->n * s->seg);
        r->rec_out = falloc((size_t)s->n * s->dim);
    }
}

/* Run states for batches up to `batch`: one per pool thread if the batch
 * can give each thread an image, else one. */
static int run_alloc(gm_net *n, int batch)
{
    if (batch > 1 << 16)
        return vt_seterr("groupmix: batch %d is too large", batch);
    runs_free(n);
    int T = vt_pool_size(n->pool);
    n->batch = batch;
    n->nruns = batch >= T ? T : 1;
    n->runs = vt_xcalloc((size_t)n->nruns, sizeof *n->runs);
    for (int i = 0; i < n->nruns; i++)
        run_alloc1(n, &n->runs[i]);
    n->kept_stem = falloc((size_t)n->c.h0 * n->c.w0 * n->c.st[0].dim);
    for (int i = 0; i < GM_STAGES; i++)
        n->kept_stage[i] = falloc((size_t)n->c.st[i].n * n->c.st[i].dim);
    n->last_run = 0;
    return 0;
}

/* ---- forward: stem and patch embeddings ------------------------------ */

/* xn[N0, C1] = hswish(BN(conv/2(hswish(BN(conv/2(img)))))) */
static void stem(const gm_pass *P, const float *img)
{
    const gm_net *n = P->n;
    const gm_config *c = &n->c;
    const gm_weights *W = &n->w;
    gm_run *r = P->r;
    int S = c->img_size, m = c->mid, C1 = c->st[0].dim, nm = c->hm * c->wm;
    /* xn first: s_tok and the columns run on from x into the work area */
    r->xn = r->area, r->x = r->area + r->nc;
    float *s_tok = r->x, *cols = s_tok + (size_t)nm * m;
    /* convolutions as im2col + the packed product: out[ho*wo, o]; the
     * second in bands of output rows, their columns made and used in cache */
    vt_im2col(cols, img, 3, S, S, 3, 2, 1);
    vt_linear_packed(P->pool, s_tok, cols, &W->stem1.pk, W->stem1.b, nm, 0, 0);
    vt_hswish(s_tok, (size_t)nm * m);
    vt_conv_tokens(P->pool, r->xn, s_tok, c->hm, c->wm, m, &W->stem2.pk, W->stem2.b, 3, 2, 1,
                   cols);
    vt_hswish(r->xn, (size_t)c->h0 * c->w0 * C1);
}

/* x[N_i, C_i] = hswish(BN(pw(dw3x3/stride(in)))), in = the stem's output
 * (in xn) or stage i-1's (in x) */
static void patch_embed(const gm_pass *P, int i)
{
    const gm_net *n = P->n;
    const gm_config *c = &n->c;
    gm_run *r = P->r;
    const gm_stage_cfg *s = &c->st[i];
    const float *in = i == 0 ? r->xn : r->x;
    int hin = i == 0 ? c->h0 : c->st[i - 1].h, win = i == 0 ? c->w0 : c->st[i - 1].w;
    int Cin = i == 0 ? s->dim : c->st[i - 1].dim;
    vt_dwk_tokens(P->pool, r->pe, Cin, in, Cin, hin, win, Cin, n->w.pe_dw[i], NULL, 3, s->stride);
    vt_linear_packed(P->pool, r->x, r->pe, &n->w.pe_pw[i].pk, n->w.pe_pw[i].b, s->n, 0, 0);
    vt_hswish(r->x, (size_t)s->n * s->dim);
}

/* ---- forward: Group-Mix attention ------------------------------------ */

/* The attention's buffers for stage s in the work area (att_floats) */
static void att_use(gm_run *r, const gm_stage_cfg *s)
{
    size_t N = s->n, S = s->seg;
    r->a = r->work;
    r->dwt = r->a + N * 3 * S * s->group;
    r->pwt = s->group > 1 ? r->dwt + N * 3 * S : r->a;
    r->o = (s->group > 1 ? r->pwt : r->dwt) + N * 3 * S;
}

/* Segment j's Q | K | V (or Q^ | K^ | V^) in a: [N, 3s], rows ld apart */
static float *seg_qkv(const gm_run *r, const gm_stage_cfg *s, int j)
{
    return r->a + (size_t)(j % s->group) * 3 * s->seg;
}

/* Aggregator j on segment j's Q, K, V in a, in place: j = 0:
 * hswish(BN(x)); j = 1..3: hswish(BN(pw(dw k_j(x)))), pw's [3N, s] (row
 * 3t+m: token t of Q, K or V) at group 1 over its input, dead once dw has
 * read it. */
static void aggregate(const gm_pass *P, const gm_stage_cfg *s, const gm_block *B, int j)
{
    gm_run *r = P->r;
    int N = s->n, S = s->seg, ld = 3 * S * s->group;
    float *x = seg_qkv(r, s, j);
    if (j == 0) {
        vt_hswish_rows(P->pool, x, ld, x, ld, N, 3 * S, B->bn0_g, B->bn0_b);
        return;
    }
    vt_dwk_tokens(P->pool, r->dwt, 3 * S, x, ld, s->h, s->w, 3 * S, B->agg_dw[j], NULL,
                  agg_k[j], 1);
    vt_linear_packed(P->pool, r->pwt, r->dwt, &B->agg_pw[j].pk, B->agg_pw[j].b, 3 * N, 0, 0);
    vt_hswish_rows(P->pool, x, ld, r->pwt, 3 * S, N, 3 * S, NULL, NULL);
}

/* Non-attention branch into o[:, Ca:C]: hswish(LN(pw(dw3x3([Qs4|Ks4|Vs4])))),
 * segment 4's Q, K, V in a. */
static void local_branch(const gm_pass *P, const gm_stage_cfg *s, const gm_block *B)
{
    gm_run *r = P->r;
    int N = s->n, C = s->dim, S = s->seg, Ca = s->ca;
    vt_dwk_tokens(P->pool, r->dwt, 3 * S, seg_qkv(r, s, 4), 3 * S * s->group, s->h, s->w, 3 * S,
                  B->loc_dw, NULL, 3, 1);
    vt_linear_packed(P->pool, r->pwt, r->dwt, B->loc, NULL, N, 0, 0);
    vt_layernorm(r->pwt, r->pwt, B->loc_nw, B->loc_nb, N, S, P->n->c.local_eps);
    vt_hswish_rows(P->pool, r->o + Ca, C, r->pwt, S, N, S, NULL, NULL);
}

typedef struct head_job {
    const gm_pass *P;
    const gm_stage_cfg *s;
    int h0;             /* the first head */
    int sig;            /* record the received-attention map */
} head_job;

/* o[t, 0:n] = Q^[t] * o[t]: CRPE(V^), written there, gated; the head
 * adds its product to it (o rows ldo apart, q rows ldq apart) */
VT_CLONES
static void crpe_gate(float *restrict o, int ldo, const float *restrict q, int ldq, int n,
                      int rows)
{
    for (int t = 0; t < rows; t++) {
        float *restrict ot = o + (size_t)t * ldo;
        const float *restrict qt = q + (size_t)t * ldq;
        int c = 0;
        for (; c + 16 <= n; c += 16)
            for (int l = 0; l < 16; l++)
                ot[c + l] = qt[c + l] * ot[c + l];
        for (; c < n; c++)
            ot[c] = qt[c] * ot[c];
    }
}

/* Head h = h0 + task, whole: K~ = softmax over the tokens of K^ (per
 * lane, in place), o[:, h*d..] = Q^ * CRPE(V^) (there already) +
 * scale * Q^ (K~^T V^). */
static void head_task(void *ctx, int task, int thread)
{
    (void)thread;
    const head_job *j = ctx;
    gm_run *r = j->P->r;
    const gm_stage_cfg *s = j->s;
    int N = s->n, d = s->d, S = s->seg, ld = 3 * S * s->group, C = s->dim;
    int h = j->h0 + task;
    float *q = seg_qkv(r, s, h / 2) + (size_t)(h % 2) * d, *k = q + S, *v = q + 2 * S;
    float *g = r->g + (size_t)h * d * d, *o = r->o + (size_t)h * d;
    vt_softmax_cols(k, N, d, ld);
    crpe_gate(o, C, q, ld, d, N);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, N, 1.0f, k, ld, v, ld, 0.0f, g, d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, d, s->scale, q, ld, g, d,
                1.0f, o, C);
    if (j->sig) {
        /* received[n] = scale * mean_q(Q^) . K~[n] */
        float *qb = r->qbar + (size_t)h * d, *out = r->sigh + (size_t)h * N;
        for (int l = 0; l < d; l++) {
            double a = 0;
            for (int t = 0; t < N; t++)
                a += q[(size_t)t * ld + l];
            qb[l] = (float)(a / N);
        }
        for (int t = 0; t < N; t++) {
            float a = 0;
            for (int l = 0; l < d; l++)
                a += qb[l] * k[(size_t)t * ld + l];
            out[t] = s->scale * a;
        }
    }
}

/* CRPE(V^) of segment j's heads 2j, 2j+1 into their columns of o, for the
 * heads to gate */
static void crpe(const gm_pass *P, const gm_stage_cfg *s, const gm_block *B, int j)
{
    gm_run *r = P->r;
    int d = s->d;
    const float *v = seg_qkv(r, s, j) + 2 * s->seg;
    for (int i = 0; i < B->ncrpe[j]; i++) {
        const gm_crpe *c = &B->crpe[j][i];
        vt_dwk_tokens(P->pool, r->o + (size_t)c->h0 * d, s->dim, v + (c->h0 - 2 * j) * d,
                      3 * s->seg * s->group, s->h, s->w, c->nh * d, c->w, c->b, c->k, 1);
    }
}

/* Q^ K^ V^ of segment j (in a) to their columns of the record [3, N, Ca] */
static void record_segment(const gm_pass *P, const gm_stage_cfg *s, int j)
{
    int N = s->n, S = s->seg, Ca = s->ca, ld = 3 * S * s->group;
    const float *x = seg_qkv(P->r, s, j);
    for (int m = 0; m < 3; m++)
        for (int t = 0; t < N; t++)
            memcpy(P->r->rec_qkv + ((size_t)m * N + t) * Ca + j * S, x + (size_t)t * ld + m * S,
                   (size_t)S * sizeof(float));
}

/* o [N, C] = [scale * Q^ (K~^T V^) + Q^ * CRPE(V^) | local]; xn is the
 * input. `group` segments at a time, from their Q, K, V to their part of
 * o: at group 1 only one segment's [N, 3s] of qkv's output is ever held. */
static void gma(const gm_pass *P, const gm_stage_cfg *s, const gm_block *B, int sig, int rec)
{
    gm_run *r = P->r;
    int N = s->n, S = s->seg, G = s->group;
    att_use(r, s);
    for (int g0 = 0; g0 < GM_SEGS; g0 += G) {
        vt_linear_packed(P->pool, r->a, r->xn, &B->qkv[g0 / G],
                         B->qkvb ? B->qkvb + (size_t)3 * S * g0 : NULL, N, 0, 0);
        int g1 = g0 + G < 4 ? g0 + G : 4;   /* the attending segments */
        for (int j = g0; j < g1; j++) {
            aggregate(P, s, B, j);
            if (rec)
                record_segment(P, s, j);
        }
        for (int j = g0; j < g1; j++)
            crpe(P, s, B, j);
        if (g1 > g0) {
            head_job hj = {P, s, 2 * g0, sig};
            vt_pool_run(P->pool, 2 * (g1 - g0), head_task, &hj);
        }
        if (g0 + G > 4)
            local_branch(P, s, B);
    }
    if (sig)
        for (int t = 0; t < N; t++) {
            float a = 0;
            for (int h = 0; h < GM_HEADS; h++)
                a += r->sigh[(size_t)h * N + t];
            r->sig[t] = a / GM_HEADS;
        }
}

/* ---- forward: blocks, stages, head ----------------------------------- */

static void block(const gm_pass *P, int si, int bj)
{
    const gm_net *n = P->n;
    const gm_stage_cfg *s = &n->c.st[si];
    const gm_block *B = &n->w.blocks[si][bj];
    gm_run *r = P->r;
    int N = s->n, C = s->dim;
    int rec = n->record && si == 0 && bj == 0;
    int sig = si == GM_STAGES - 1 && bj == s->depth - 1;
    /* CPE: x = x + dw3x3(x) + b */
    vt_dwk_tokens_residual(P->pool, r->xn, r->x, C, s->h, s->w, C, B->cpe_w, B->cpe_b, 3);
    float *tmp = r->x;
    r->x = r->xn, r->xn = tmp;
    vt_layernorm_mt(P->pool, r->xn, r->x, B->n1w, B->n1b, N, C, n->c.ln_eps);
    if (rec)
        memcpy(r->rec_in, r->xn, (size_t)N * C * sizeof(float));
    gma(P, s, B, sig, rec);
    if (rec) {
        for (int t = 0; t < N; t++)
            memcpy(r->rec_local + (size_t)t * s->seg, r->o + (size_t)t * C + s->ca,
                   (size_t)s->seg * sizeof(float));
        vt_linear_packed(P->pool, r->rec_out, r->o, B->proj, B->projb, N, 0, 0);
        vt_add(r->x, r->rec_out, (size_t)N * C);
    } else {
        vt_linear_packed(P->pool, r->x, r->o, B->proj, B->projb, N, 1, 0);
    }
    vt_layernorm_mt(P->pool, r->xn, r->x, B->n2w, B->n2b, N, C, n->c.ln_eps);
    vt_linear_packed(P->pool, r->hid, r->xn, B->fc1, B->fc1b, N, 0, 1);
    vt_linear_packed(P->pool, r->x, r->hid, B->fc2, B->fc2b, N, 1, 0);
}

static void forward_image(const gm_pass *P, const float *img, float *logits)
{
    const gm_net *n = P->n;
    const gm_config *c = &n->c;
    gm_run *r = P->r;
    stem(P, img);
    if (P->keep)
        memcpy(n->kept_stem, r->xn, (size_t)c->h0 * c->w0 * c->st[0].dim * sizeof(float));
    for (int i = 0; i < GM_STAGES; i++) {
        const gm_stage_cfg *s = &c->st[i];
        patch_embed(P, i);
        for (int j = 0; j < s->depth; j++)
            block(P, i, j);
        if (P->keep)
            memcpy(n->kept_stage[i], r->x, (size_t)s->n * s->dim * sizeof(float));
    }
    const gm_stage_cfg *s4 = &c->st[3];
    vt_mean_rows(r->pooled, r->x, s4->n, s4->dim);
    for (int ch = 0; ch < s4->dim; ch++)
        r->pooled[ch] = r->pooled[ch] * n->w.n4_g[ch] + n->w.n4_b[ch];
    vt_linear_packed(P->pool, logits, r->pooled, n->w.head, n->w.headb, 1, 0, 0);
}

typedef struct image_job {
    gm_net *n;
    const float *x;
    float *logits;
    int last;           /* the batch's last image */
} image_job;

/* Image `task`, run by pool thread `thread` alone with its own run state. */
static void image_task(void *ctx, int task, int thread)
{
    const image_job *j = ctx;
    gm_net *n = j->n;
    gm_pass P = {n, &n->runs[thread], NULL, task == j->last};
    size_t img = (size_t)3 * n->c.img_size * n->c.img_size;
    forward_image(&P, j->x + task * img, j->logits + (size_t)task * n->c.classes);
    if (task == j->last)
        n->last_run = thread;
}

static int gm_forward(void *net, const float *x, int batch, float *logits)
{
    gm_net *n = net;
    if (!n || n->magic != GM_MAGIC)
        return vt_seterr("groupmix: not a groupmix net");
    if (batch < 1)
        return vt_seterr("groupmix: batch %d", batch);
    if (batch > n->batch && run_alloc(n, batch) < 0)
        return -1;
    /* While every thread can have an image, each runs whole images on its
     * own (no hand-over per op: most ops of the small stages are too short
     * to split well); the images left over run one by one with their ops
     * split over the pool. The ops give the same sums either way. */
    int T = n->nruns, par = T > 1 ? batch - batch % T : 0;
    n->last_run = 0;
    if (par) {
        image_job j = {n, x, logits, batch - 1};
        vt_pool_run(n->pool, par, image_task, &j);
    }
    gm_pass P = {n, &n->runs[0], n->pool, 0};
    size_t img = (size_t)3 * n->c.img_size * n->c.img_size;
    for (int b = par; b < batch; b++) {
        P.keep = b == batch - 1;
        forward_image(&P, x + b * img, logits + (size_t)b * n->c.classes);
    }
    n->last_batch = batch;
    return 0;
}

/* ---- lifetime -------------------------------------------------------- */

static void gm_destroy(void *net)
{
    gm_net *n = net;
    if (!n)
        return;
    runs_free(n);
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    gm_weights *W = &n->w;
    vt_wpack_free(&W->stem1.pk);
    vt_wpack_free(&W->stem2.pk);
    for (int i = 0; i < GM_STAGES; i++) {
        vt_wpack_free(&W->pe_pw[i].pk);
        for (int j = 0; W->blocks[i] && j < n->c.st[i].depth; j++) {
            gm_block *B = &W->blocks[i][j];
            for (int g = 0; g < GM_SEGS; g++)
                vt_wpack_free(&B->qkv[g]);
            for (int k = 1; k < 4; k++)
                vt_wpack_free(&B->agg_pw[k].pk);
        }
        free(W->blocks[i]);
    }
    n->magic = 0;
    free(n);
}

static void *gm_create(const cJSON *cfg, const vt_frame *weights, const vt_run_opts *o)
{
    gm_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = GM_MAGIC;
    if (gm_config_read(cfg, &n->c) < 0) {
        gm_destroy(n);
        return NULL;
    }
    for (int i = 0; i < GM_STAGES; i++)
        if (n->c.st[i].d > 64) {
            vt_seterr("groupmix: per-head width %d above 64", n->c.st[i].d);
            gm_destroy(n);
            return NULL;
        }
    /* the pool first: it packs the linear weights and keeps the packs */
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    if (!n->pool || gm_bind(n, weights) < 0 ||
        run_alloc(n, o && o->batch > 0 ? o->batch : 1) < 0) {
        gm_destroy(n);
        return NULL;
    }
    return n;
}

/* ---- cost ------------------------------------------------------------ */

/* Multiply-adds per image (spec section 8): convs, linears and the two
 * attention products; norms, activations and softmax not counted. */
static int gm_cost(const cJSON *cfg, vt_cost *out)
{
    gm_config c;
    if (gm_config_read(cfg, &c) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    double m = c.mid, C1 = c.st[0].dim;
    vt_cost_add(out, "stem", 27.0 * m * c.hm * c.wm + 9.0 * m * C1 * c.h0 * c.w0);
    for (int i = 0; i < GM_STAGES; i++) {
        const gm_stage_cfg *s = &c.st[i];
        double N = s->n, C = s->dim, S = s->seg, d = s->d, F = s->hidden;
        double Cin = i == 0 ? C : c.st[i - 1].dim;
        char nm[40];
        snprintf(nm, sizeof nm, "stage%d patch embed", i + 1);
        vt_cost_add(out, nm, 9 * Cin * N + Cin * C * N);
        double blk_lin = 4 * C * C * N, blk_conv = 9 * C * N + 3 * N * (83 * S + 3 * S * S) +
                                                  N * (27 * S + 3 * S * S) + 240 * d * N;
        double blk_att = 16 * d * d * N, blk_mlp = 2 * C * F * N;
        snprintf(nm, sizeof nm, "stage%d qkv+proj", i + 1);
        vt_cost_add(out, nm, s->depth * blk_lin);
        snprintf(nm, sizeof nm, "stage%d convs", i + 1);
        vt_cost_add(out, nm, s->depth * blk_conv);
        snprintf(nm, sizeof nm, "stage%d attention", i + 1);
        vt_cost_add(out, nm, s->depth * blk_att);
        snprintf(nm, sizeof nm, "stage%d mlp", i + 1);
        vt_cost_add(out, nm, s->depth * blk_mlp);
    }
    vt_cost_add(out, "head", (double)c.st[3].dim * c.classes);
    return 0;
}

/* ---- extras (models/groupmix.h) -------------------------------------- */

static const gm_net *as_net(const void *net)
{
    const gm_net *n = net;
    if (!n || n->magic != GM_MAGIC)
        return vt_seterr("not a groupmix net"), NULL;
    return n;
}

const float *vt_groupmix_extra(const void *net, const char *name, int *rows, int *cols,
                               int *h, int *w)
{
    const gm_net *n = as_net(net);
    if (!n)
        return NULL;
    if (!n->last_batch)
        return vt_seterr("groupmix: no forward pass yet"), NULL;
    const gm_config *c = &n->c;
    const gm_run *r = &n->runs[n->last_run];
    const gm_stage_cfg *s1 = &c->st[0];
    const float *p = NULL;
    int R = s1->n, K = s1->dim, H = s1->h, W = s1->w, st = 0;
    if (strcmp(name, "stem") == 0) {
        p = n->kept_stem, R = c->h0 * c->w0, H = c->h0, W = c->w0;
    } else if (sscanf(name, "stage%d", &st) == 1 && st >= 1 && st <= GM_STAGES) {
        const gm_stage_cfg *s = &c->st[st - 1];
        p = n->kept_stage[st - 1], R = s->n, K = s->dim, H = s->h, W = s->w;
    } else if (strcmp(name, "pooled") == 0) {
        p = r->pooled, R = 1, K = c->st[3].dim, H = W = 1;
    } else if (strncmp(name, "s1b0_", 5) == 0) {
        if (!n->record || !r->rec_in)
            return vt_seterr("groupmix: %s is kept only after vt_groupmix_record(net, 1)", name),
                   NULL;
        if (strcmp(name + 5, "attn_in") == 0)
            p = r->rec_in;
        else if (strcmp(name + 5, "qkv_proxies") == 0)
            p = r->rec_qkv, R = 3 * s1->n, K = s1->ca;
        else if (strcmp(name + 5, "local") == 0)
            p = r->rec_local, K = s1->seg;
        else if (strcmp(name + 5, "attn_out") == 0)
            p = r->rec_out;
    }
    if (!p)
        return vt_seterr("groupmix: no intermediate called '%s'", name), NULL;
    if (rows) *rows = R;
    if (cols) *cols = K;
    if (h) *h = H;
    if (w) *w = W;
    return p;
}

int vt_groupmix_record(void *net, int on)
{
    gm_net *n = (gm_net *)as_net(net);
    if (!n)
        return -1;
    n->record = on != 0;
    n->last_batch = 0;
    return run_alloc(n, n->batch > 0 ? n->batch : 1);
}

const float *vt_groupmix_sigmap(const void *net, int *h, int *w)
{
    const gm_net *n = as_net(net);
    if (!n)
        return NULL;
    if (h) *h = n->c.st[3].h;
    if (w) *w = n->c.st[3].w;
    if (!n->last_batch)
        return vt_seterr("groupmix: no forward pass yet"), NULL;
    return n->runs[n->last_run].sig;
}

const vt_family vt_family_groupmix = {
    .name = "groupmix",
    .archs = gm_archs,
    .config = gm_config_defaults,
    .params = gm_params,
    .create = gm_create,
    .forward = gm_forward,
    .destroy = gm_destroy,
    .cost = gm_cost,
};
