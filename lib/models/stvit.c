/* stvit.c - STViT-R on Swin (Chang et al., "Making Vision Transformers
 * Efficient from A Token Sparsification View", CVPR 2023), eval mode, with
 * the official code's names and state dict (changsn/STViT-R
 * models/swin_transformer.py, models/layers.py). Spec:
 * ../shared/specs/stvit.md.
 *
 *   x = hswish(BN(conv3x3/2(hswish(BN(conv3x3/2(img))))))   56x56 tokens, no LN
 *   stages 1, 2, 4: Swin blocks (shifted windows on odd blocks of 1, 2)
 *   stage 3 (14x14), per group g of 6 blocks:
 *     B0  x = SwinBlock(x)                       (ws 7, never shifted)
 *     B1  s = pooled seeds attend to seeds + 10x10 key windows (no residual)
 *     B2  s += attn(LN(s), LN([s; x]))           semantic tokens read the image
 *     B3  s += attn inside k x k windows of the 2k x 2k semantic grid
 *     B4  s += attn(LN(s), LN(s))                global
 *     B5  x += attn(LN(x), LN(s))                recovery: the image reads s
 *     (every semantic-block update is scaled by layer_scale_1/2 per channel,
 *      and followed by s (or x) += ls2 * MLP(LN2(.)))
 *   merges after stages 1-3, logits = head(mean(LN(x)))
 *
 * Config keys (refgen's meta.json "config"): embed_dim, depths[4],
 * num_heads[4], mlp_ratio, num_classes, img_size (224 only), patch_size
 * (4), window_size (7), sample_window_size (k, 3), qkv_bias, ln_eps, bn_eps,
 * preprocessing keys; the other descriptive keys are ignored. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "models/stvit.h"
#include "ops.h"
#include "ops/cpu.h"
#include "ops/sepconv.h"
#include "ops/window.h"
#include "util.h"

#define ST_MAGIC 0x53545652u    /* "STVR" */
#define ST_STAGES 4
#define ST_MAX_DEPTH 64
#define ST_GROUP 6              /* stage-3 blocks per semantic group */
#define ST_SEM 2                /* the semantic stage */
#define ST_WS 7
#define ST_KV_SIDE 10           /* F.unfold(kernel 10, stride 4) key windows */
#define ST_KV_STRIDE 4
#define ST_NWIN 4               /* 7x7 windows on the 14x14 map */

enum { R_SWIN, R_INIT, R_CROSS, R_LOCAL, R_GLOBAL, R_RECOVER };

static const char *const st_archs[] = {"stvit_r_swin_t", "stvit_r_swin_s", "stvit_r_swin_b", NULL};

/* ---- config ---------------------------------------------------------- */

typedef struct st_stage {
    int dim, depth, heads, hidden;
    int res;            /* 56, 28, 14, 7 */
    int ws, can_shift;
} st_stage;

typedef struct st_config {
    int img_size, classes, qkv_bias;
    int k;              /* seeds per window side (sample_window_size) */
    int nsem;           /* 4 k^2 semantic tokens on a 2k x 2k grid */
    int nkv;            /* k^2 + 100 keys per window in B1 */
    int groups;
    float eps, bn_eps;
    st_stage st[ST_STAGES];
} st_config;

/* the official forward's dispatch on the stage-3 block index */
static int role(int j) { return j >= 17 ? R_RECOVER : j % ST_GROUP; }

static int st_config_defaults(const char *arch, cJSON *cfg)
{
    static const int dep_t[4] = {2, 2, 6, 2}, dep_sb[4] = {2, 2, 18, 2};
    static const int heads_ts[4] = {3, 6, 12, 24}, heads_b[4] = {4, 8, 16, 32};
    int C;
    const int *dep, *heads;
    if (strcmp(arch, st_archs[0]) == 0)
        C = 96, dep = dep_t, heads = heads_ts;
    else if (strcmp(arch, st_archs[1]) == 0)
        C = 96, dep = dep_sb, heads = heads_ts;
    else if (strcmp(arch, st_archs[2]) == 0)
        C = 128, dep = dep_sb, heads = heads_b;
    else
        return vt_seterr("stvit: unknown arch '%s'", arch);
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddNumberToObject(cfg, "img_size", 224);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    cJSON_AddNumberToObject(cfg, "patch_size", 4);
    cJSON_AddNumberToObject(cfg, "embed_dim", C);
    cJSON_AddItemToObject(cfg, "depths", cJSON_CreateIntArray(dep, 4));
    cJSON_AddItemToObject(cfg, "num_heads", cJSON_CreateIntArray(heads, 4));
    cJSON_AddNumberToObject(cfg, "window_size", ST_WS);
    cJSON_AddNumberToObject(cfg, "sample_window_size", 3);
    cJSON_AddNumberToObject(cfg, "mlp_ratio", 4.0);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    cJSON_AddNumberToObject(cfg, "ln_eps", 1e-5);
    cJSON_AddNumberToObject(cfg, "bn_eps", 1e-5);
    /* data/build.py eval: resize int(256/224*224), center crop 224 */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.875);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(std, 3));
    return 0;
}

static int st_config_read(const cJSON *cfg, st_config *c)
{
    memset(c, 0, sizeof *c);
    int dep[5], heads[5];
    if (vt_cfg_ints(cfg, "depths", dep, 5) != ST_STAGES ||
        vt_cfg_ints(cfg, "num_heads", heads, 5) != ST_STAGES)
        return vt_seterr("stvit: config \"depths\" and \"num_heads\" must be 4 integers");
    c->img_size = vt_cfg_int(cfg, "img_size", 224);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    c->k = vt_cfg_int(cfg, "sample_window_size", 3);
    c->eps = (float)vt_cfg_num(cfg, "ln_eps", 1e-5);
    c->bn_eps = (float)vt_cfg_num(cfg, "bn_eps", 1e-5);
    int C = vt_cfg_int(cfg, "embed_dim", 96);
    double ratio = vt_cfg_num(cfg, "mlp_ratio", 4.0);
    if (c->img_size != 224)
        return vt_seterr("stvit: img_size %d: STViT-R takes 224x224 input only (its 10x10/"
                         "stride-4 key windows tile only a 14x14 stage-3 map)", c->img_size);
    if (vt_cfg_int(cfg, "patch_size", 4) != 4 || vt_cfg_int(cfg, "window_size", ST_WS) != ST_WS)
        return vt_seterr("stvit: patch_size must be 4 and window_size 7");
    if (c->k < 1 || c->k > ST_WS)
        return vt_seterr("stvit: sample_window_size %d: 1..7", c->k);
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("stvit: num_classes %d out of range", c->classes);
    if (!(c->eps > 0 && c->eps < 1 && c->bn_eps > 0 && c->bn_eps < 1))
        return vt_seterr("stvit: eps out of range");
    if (C < 2 || C % 2 || C > 8192 || !(ratio > 0 && ratio * C * 8 <= 1 << 20))
        return vt_seterr("stvit: embed_dim (even) or mlp_ratio out of range");
    c->nsem = 4 * c->k * c->k;
    c->nkv = c->k * c->k + ST_KV_SIDE * ST_KV_SIDE;
    int res = c->img_size / 4;
    for (int i = 0; i < ST_STAGES; i++) {
        st_stage *s = &c->st[i];
        s->dim = C << i, s->depth = dep[i], s->heads = heads[i];
        s->hidden = (int)(s->dim * ratio);
        s->res = res;
        s->can_shift = res > ST_WS && i != ST_SEM;
        s->ws = res > ST_WS ? ST_WS : res;
        if (s->depth < 1 || s->depth > ST_MAX_DEPTH)
            return vt_seterr("stvit: stage %d: depth %d out of range", i + 1, s->depth);
        if (s->heads < 1 || s->dim % s->heads)
            return vt_seterr("stvit: stage %d: %d channels not divisible into %d heads",
                             i + 1, s->dim, s->heads);
        res /= 2;
    }
    int d3 = c->st[ST_SEM].depth;
    if (d3 % ST_GROUP || d3 > 18)
        return vt_seterr("stvit: stage-3 depth %d: the official forward is written for "
                         "6, 12 or 18 (groups of 6 blocks)", d3);
    c->groups = d3 / ST_GROUP;
    return 0;
}

/* ---- state dict ------------------------------------------------------ */

static int block_shift(const st_stage *s, int j) { return j % 2 && s->can_shift ? s->ws / 2 : 0; }

static int is_swin(int stage, int j) { return stage != ST_SEM || role(j) == R_SWIN; }

static int st_params(const cJSON *cfg, vt_params *ps)
{
    st_config c;
    if (st_config_read(cfg, &c) < 0)
        return -1;
    char name[160];
    int64_t C = c.st[0].dim;
#define P(nd, ...) vt_params_add(ps, 0, name, nd, __VA_ARGS__)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    for (int k = 0; k <= 2; k += 2) {
        int64_t o = k ? C : C / 2, in = k ? C / 2 : 3;
        NAME("patch_embed.proj.%d.c.weight", k), P(4, o, in, (int64_t)3, (int64_t)3);
        static const char *bn[4] = {"weight", "bias", "running_mean", "running_var"};
        for (int b = 0; b < 4; b++)
            NAME("patch_embed.proj.%d.bn.%s", k, bn[b]), P(1, o);
        NAME("patch_embed.proj.%d.bn.num_batches_tracked", k), vt_params_add(ps, 1, name, 0);
    }
    for (int i = 0; i < ST_STAGES; i++) {
        const st_stage *s = &c.st[i];
        int64_t Ci = s->dim, F = s->hidden, N = (int64_t)s->ws * s->ws;
        int64_t nW = (int64_t)(s->res / s->ws) * (s->res / s->ws), T = (2 * s->ws - 1) * (2 * s->ws - 1);
        for (int j = 0; j < s->depth; j++) {
#define B(sfx) NAME("layers.%d.blocks.%d.%s", i, j, sfx)
            if (is_swin(i, j)) {
                if (block_shift(s, j))
                    B("attn_mask"), vt_params_add(ps, 1, name, 3, nW, N, N);
                B("attn.relative_position_bias_table"), P(2, T, (int64_t)s->heads);
                B("attn.relative_position_index"), vt_params_add(ps, 1, name, 2, N, N);
                B("attn.qkv.weight"), P(2, 3 * Ci, Ci);
                if (c.qkv_bias)
                    B("attn.qkv.bias"), P(1, 3 * Ci);
            } else {
                B("layer_scale_1"), P(1, Ci);
                B("layer_scale_2"), P(1, Ci);
                B("attn.q.weight"), P(2, Ci, Ci);
                if (c.qkv_bias)
                    B("attn.q.bias"), P(1, Ci);
                B("attn.kv.weight"), P(2, 2 * Ci, Ci);
                if (c.qkv_bias)
                    B("attn.kv.bias"), P(1, 2 * Ci);
            }
            B("norm1.weight"), P(1, Ci);
            B("norm1.bias"), P(1, Ci);
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
        if (i < ST_STAGES - 1) {
            NAME("layers.%d.downsample.reduction.weight", i), P(2, 2 * Ci, 4 * Ci);
            NAME("layers.%d.downsample.norm.weight", i), P(1, 4 * Ci);
            NAME("layers.%d.downsample.norm.bias", i), P(1, 4 * Ci);
        }
    }
    int64_t Cl = c.st[3].dim, K = c.classes;
    vt_params_add(ps, 0, "norm.weight", 1, Cl);
    vt_params_add(ps, 0, "norm.bias", 1, Cl);
    vt_params_add(ps, 0, "head.weight", 2, K, Cl);
    vt_params_add(ps, 0, "head.bias", 1, K);
#undef NAME
#undef P
    return 0;
}

/* ---- weights --------------------------------------------------------- */

/* A semantic block (roles B1..B5), stage-3 width C3, hidden F3. */
typedef struct st_sem_w {
    const float *ls1, *ls2;         /* layer scales [C] */
    const float *n1w, *n1b, *n2w, *n2b;
    const float *qw, *qb;           /* attn.q [C, C], [C] */
    const float *kvw, *kvb;         /* attn.kv [2C, C], [2C]: k | v */
    const float *projw, *projb;     /* [C, C], [C] */
    const float *fc1w, *fc1b, *fc2w, *fc2b;
} st_sem_w;

typedef struct st_net {
    uint32_t magic;
    st_config c;
    vt_pool *pool;
    /* stem: conv weights [C/2,3,3,3], [C,C/2,3,3]; folded BN scale/shift */
    const float *cw[2];
    float *bns[2], *bnt[2];
    vt_swin_block_w *blk[ST_STAGES];    /* [depth], swin roles */
    st_sem_w *sem;                      /* [depth3], semantic roles */
    const float *mrw[3], *mnw[3], *mnb[3];
    const float *nw, *nb, *hw, *hb;
    vt_store store;
    /* run state, one image at a time */
    float *x;           /* [3136, C] residual stream */
    float *g;           /* [784, 4C] merge gather / final norm */
    float *s_tok, *cols;            /* stem */
    float *scratch;     /* swin block scratch */
    float *s;           /* [nsem, C3] semantic tokens */
    float *y;           /* [nsem + 196, C3] concat / normed keys */
    float *qn;          /* [196, C3] normed queries */
    float *q;           /* [196, C3] */
    float *kv;          /* [4 nkv, 2 C3] */
    float *a, *a2;      /* [196, C3] attention out, projected */
    float *hid;         /* [196, F3]; B1: its [nsem + 196, 2 C3] distinct k|v rows */
    /* intermediates of the last image (models/stvit.h) */
    float *pe, *out[ST_STAGES], *merged[3], *feat;
    float *blkout[ST_MAX_DEPTH];        /* stage-3 block outputs */
    float *pool_rec, *init_attn, *cross_attn, *rec_attn;   /* [groups, ...] */
    float *sig_rec, *assign_rec, *sig_all;                 /* [groups, 196], [196] */
    /* per image of the last batch: [batch][groups + 1][3][196]: label, cover, sig */
    float *maps;
    int maps_batch, last_batch;
} st_net;

static float *own(st_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

static const float *weight(st_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "stvit", name, count);
}

/* A linear weight [nout, nin] for vt_linear (a handle when the file holds
 * it in half precision: vt_weight_linear). */
static const float *lweight(st_net *n, const vt_frame *w, const char *name, size_t nout,
                            size_t nin)
{
    return vt_weight_linear(n->pool, w, "stvit", name, (int)nout, (int)nin);
}

static int check_buffer(const vt_frame *w, const char *name, const float *f, const int *iv,
                        size_t count)
{
    const vt_tensor *t = vt_frame_get(w, name);
    if (!t)
        return 0;
    if ((size_t)vt_tensor_numel(t) != count)
        return vt_seterr("stvit: buffer %s has %lld elements, expected %zu", name,
                         (long long)vt_tensor_numel(t), count);
    for (size_t i = 0; i < count; i++)
        if (vt_tensor_get(t, i) != (f ? f[i] : iv[i]))
            return vt_seterr("stvit: stored %s differs from the recomputed one at %zu", name, i);
    return 0;
}

static int st_bind(st_net *n, const vt_frame *w)
{
    const st_config *c = &n->c;
    char name[160];
    size_t C = c->st[0].dim;
#define GET(dst, cnt) do { if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
#define LGET(dst, no, ni) do { if (!((dst) = lweight(n, w, name, (no), (ni)))) return -1; } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    for (int k = 0; k < 2; k++) {
        size_t o = k ? C : C / 2, in = k ? C / 2 : 3;
        const float *bw, *bb, *rm, *rv;
        /* the second conv runs as a product over im2col columns */
        NAME("patch_embed.proj.%d.c.weight", 2 * k);
        if (k)
            LGET(n->cw[k], o, in * 9);
        else
            GET(n->cw[k], o * in * 9);
        NAME("patch_embed.proj.%d.bn.weight", 2 * k); GET(bw, o);
        NAME("patch_embed.proj.%d.bn.bias", 2 * k); GET(bb, o);
        NAME("patch_embed.proj.%d.bn.running_mean", 2 * k); GET(rm, o);
        NAME("patch_embed.proj.%d.bn.running_var", 2 * k); GET(rv, o);
        n->bns[k] = own(n, o), n->bnt[k] = own(n, o);
        for (size_t ch = 0; ch < o; ch++) {
            n->bns[k][ch] = bw[ch] / sqrtf(rv[ch] + c->bn_eps);
            n->bnt[k][ch] = bb[ch] - rm[ch] * n->bns[k][ch];
        }
    }
    n->sem = vt_xcalloc((size_t)c->st[ST_SEM].depth, sizeof *n->sem);
    for (int i = 0; i < ST_STAGES; i++) {
        const st_stage *s = &c->st[i];
        size_t Ci = s->dim, F = s->hidden, N = (size_t)s->ws * s->ws;
        size_t nW = (size_t)(s->res / s->ws) * (s->res / s->ws), T = (2 * s->ws - 1) * (2 * s->ws - 1);
        int idx[ST_WS * ST_WS * ST_WS * ST_WS];
        vt_window_rel_index(idx, s->ws);
        n->blk[i] = vt_xcalloc((size_t)s->depth, sizeof(vt_swin_block_w));
        const float *mask = NULL;
        for (int j = 0; j < s->depth; j++) {
#define BG(dst, sfx, cnt) do { NAME("layers.%d.blocks.%d.%s", i, j, sfx); GET(dst, cnt); } while (0)
#define BL(dst, sfx, no, ni) do { NAME("layers.%d.blocks.%d.%s", i, j, sfx); LGET(dst, no, ni); } while (0)
            if (!is_swin(i, j)) {
                st_sem_w *b = &n->sem[j];
                BG(b->ls1, "layer_scale_1", Ci);
                BG(b->ls2, "layer_scale_2", Ci);
                BG(b->n1w, "norm1.weight", Ci);
                BG(b->n1b, "norm1.bias", Ci);
                BG(b->n2w, "norm2.weight", Ci);
                BG(b->n2b, "norm2.bias", Ci);
                BL(b->qw, "attn.q.weight", Ci, Ci);
                BL(b->kvw, "attn.kv.weight", 2 * Ci, Ci);
                if (c->qkv_bias) {
                    BG(b->qb, "attn.q.bias", Ci);
                    BG(b->kvb, "attn.kv.bias", 2 * Ci);
                }
                BL(b->projw, "attn.proj.weight", Ci, Ci);
                BG(b->projb, "attn.proj.bias", Ci);
                BL(b->fc1w, "mlp.fc1.weight", F, Ci);
                BG(b->fc1b, "mlp.fc1.bias", F);
                BL(b->fc2w, "mlp.fc2.weight", Ci, F);
                BG(b->fc2b, "mlp.fc2.bias", Ci);
                continue;
            }
            vt_swin_block_w *b = &n->blk[i][j];
            const float *table;
            b->heads = s->heads, b->ws = s->ws, b->hidden = s->hidden, b->shift = block_shift(s, j);
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
            if (check_buffer(w, name, NULL, idx, N * N) < 0)
                return -1;
            if (b->shift) {
                if (!mask) {
                    float *m = own(n, nW * N * N);
                    vt_window_shift_mask(m, s->res, s->res, s->ws, b->shift, -100.0f);
                    mask = m;
                }
                b->mask = mask;
                NAME("layers.%d.blocks.%d.attn_mask", i, j);
                if (check_buffer(w, name, mask, NULL, nW * N * N) < 0)
                    return -1;
            }
        }
        if (i < ST_STAGES - 1) {
            NAME("layers.%d.downsample.reduction.weight", i); LGET(n->mrw[i], 2 * Ci, 4 * Ci);
            NAME("layers.%d.downsample.norm.weight", i); GET(n->mnw[i], 4 * Ci);
            NAME("layers.%d.downsample.norm.bias", i); GET(n->mnb[i], 4 * Ci);
        }
    }
    size_t Cl = c->st[3].dim, K = c->classes;
    NAME("norm.weight"); GET(n->nw, Cl);
    NAME("norm.bias"); GET(n->nb, Cl);
    NAME("head.weight"); LGET(n->hw, K, Cl);
    NAME("head.bias"); GET(n->hb, K);
#undef NAME
#undef GET
#undef LGET
    return 0;
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static void run_alloc(st_net *n)
{
    const st_config *c = &n->c;
    const st_stage *s3 = &c->st[ST_SEM];
    size_t C0 = c->st[0].dim, L0 = (size_t)c->st[0].res * c->st[0].res, scr = 0;
    size_t C3 = s3->dim, L3 = (size_t)s3->res * s3->res, nh = s3->heads, G = c->groups;
    size_t S = c->nsem, nkv4 = (size_t)ST_NWIN * c->nkv, rows = zmax(L3, nkv4);
    for (int i = 0; i < ST_STAGES; i++) {
        const st_stage *s = &c->st[i];
        size_t L = (size_t)s->res * s->res;
        scr = zmax(scr, vt_swin_block_scratch(n->pool, &n->blk[i][0], 1, s->res, s->res, s->dim));
        n->out[i] = own(n, L * s->dim);
        if (i < ST_STAGES - 1)
            n->merged[i] = own(n, L / 4 * 2 * s->dim);
    }
    size_t h0 = (size_t)c->img_size / 2;
    n->x = own(n, L0 * C0), n->g = own(n, L0 * C0);
    n->s_tok = own(n, h0 * h0 * C0 / 2);
    n->cols = own(n, zmax(L0 * 9 * C0 / 2, h0 * h0 * 27));
    n->scratch = own(n, scr);
    n->s = own(n, S * C3), n->y = own(n, (S + rows) * C3);
    n->qn = own(n, rows * C3), n->q = own(n, rows * C3), n->kv = own(n, (S + rows) * 2 * C3);
    n->a = own(n, rows * C3), n->a2 = own(n, rows * C3), n->hid = own(n, zmax(rows * s3->hidden, (S + L3) * 2 * C3));
    n->pe = own(n, L0 * C0), n->feat = own(n, c->st[3].dim);
    for (int j = 0; j < s3->depth; j++)
        n->blkout[j] = own(n, (role(j) == R_SWIN || role(j) == R_RECOVER ? L3 : S) * C3);
    n->pool_rec = own(n, G * ST_NWIN * c->k * c->k * C3);
    n->init_attn = own(n, G * ST_NWIN * nh * c->k * c->k * c->nkv);
    n->cross_attn = own(n, G * nh * S * (S + L3));
    n->rec_attn = own(n, G * nh * L3 * S);
    n->sig_rec = own(n, G * L3), n->assign_rec = own(n, G * L3), n->sig_all = own(n, L3);
}

/* ---- forward: stem, merging ------------------------------------------ */

/* x[56*56, C] = hswish(BN(conv(hswish(BN(conv(img)))))): both convolutions
 * as im2col + a product (the second's columns gathered from the first's
 * tokens, in the weight's order: no transposition to planes), BN + hswish
 * one pass over each output, everything split over the pool. */
static void stem(st_net *n, const float *img)
{
    const st_config *c = &n->c;
    int S = c->img_size, h0 = S / 2, C = c->st[0].dim, L = c->st[0].res * c->st[0].res;
    vt_conv2d_tokens(n->pool, n->s_tok, img, 3, S, S, n->cw[0], NULL, C / 2, 3, 2, 1, n->cols);
    vt_hswish_rows(n->pool, n->s_tok, C / 2, n->s_tok, C / 2, h0 * h0, C / 2, n->bns[0],
                   n->bnt[0]);
    vt_im2col_tokens_chw_mt(n->pool, n->cols, n->s_tok, h0, h0, C / 2, 3, 2, 1);
    vt_linear(n->pool, n->x, n->cols, n->cw[1], NULL, L, C / 2 * 9, C, 0, 0);
    vt_hswish_rows(n->pool, n->x, C, n->x, C, L, C, n->bns[1], n->bnt[1]);
}

static void merge(st_net *n, int i)
{
    const st_stage *s = &n->c.st[i];
    int H = s->res, C = s->dim, L = H * H;
    vt_patch_merge_gather(n->pool, n->g, n->x, 1, H, H, C);
    vt_layernorm_mt(n->pool, n->g, n->g, n->mnw[i], n->mnb[i], L / 4, 4 * C, n->c.eps);
    vt_linear(n->pool, n->x, n->g, n->mrw[i], NULL, L / 4, 4 * C, 2 * C, 0, 0);
}

/* ---- forward: the semantic blocks ------------------------------------ */

/* Small reductions between the products, written so they vectorize (they
 * ran as strided scalar loops, serial time at every semantic block). Each
 * output still adds its terms in the original order: the same sums. */

/* o[c] = max(o[c], x[c]) */
VT_CLONES
static void max_into(float *restrict o, const float *restrict x, int n)
{
    for (int c = 0; c < n; c++)
        o[c] = x[c] > o[c] ? x[c] : o[c];
}

/* col[p] = sum over rows r (in order) of x[r * ld + p], p < n, in double */
VT_CLONES
static void column_sums(double *restrict col, const float *restrict x, int rows, int n,
                        int ld)
{
    for (int p = 0; p < n; p++)
        col[p] = 0;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < n; p++)
            col[p] += x[(size_t)r * ld + p];
}

/* out[i] = sum over planes h (in order) of x[h * n + i] */
VT_CLONES
static void plane_sum(float *restrict out, const float *restrict x, int planes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = 0;
    for (int h = 0; h < planes; h++)
        for (size_t i = 0; i < n; i++)
            out[i] += x[h * n + i];
}

/* a2[groups * nq, C] = proj(attention of the queries in q over the keys
 * and values in kv), the rows split into `groups` independent sets of nq
 * queries and nk keys; probs [groups, nh, nq, nk]. */
static void attend_proj(st_net *n, const st_sem_w *b, int nq, int nk, int groups,
                        float *probs)
{
    const st_stage *s = &n->c.st[ST_SEM];
    int C = s->dim, nh = s->heads, d = C / nh;
    float scale = 1.0f / sqrtf((float)d);
    for (int w = 0; w < groups; w++) {
        const float *k = n->kv + (size_t)w * nk * 2 * C;
        vt_mha_probs(n->pool, n->a + (size_t)w * nq * C, C, n->q + (size_t)w * nq * C, C, k,
                     2 * C, k + C, 2 * C, nq, nk, nh, d, scale, NULL, NULL,
                     probs + (size_t)w * nh * nq * nk);
    }
    vt_linear(n->pool, n->a2, n->a, b->projw, b->projb, groups * nq, C, C, 0, 0);
}

/* The same from normed queries qn and keys yn (q and kv projected here). */
static void xattn(st_net *n, const st_sem_w *b, const float *qn, int nq, const float *yn,
                  int nk, int groups, float *probs)
{
    int C = n->c.st[ST_SEM].dim;
    vt_linear(n->pool, n->q, qn, b->qw, b->qb, groups * nq, C, C, 0, 0);
    vt_linear(n->pool, n->kv, yn, b->kvw, b->kvb, groups * nk, C, 2 * C, 0, 0);
    attend_proj(n, b, nq, nk, groups, probs);
}

/* t[rows, C] += ls2 * MLP(LN2(t)) */
static void sem_mlp(st_net *n, const st_sem_w *b, float *t, int rows)
{
    const st_stage *s = &n->c.st[ST_SEM];
    int C = s->dim, F = s->hidden;
    vt_layernorm_mt(n->pool, n->qn, t, b->n2w, b->n2b, rows, C, n->c.eps);
    vt_linear(n->pool, n->hid, n->qn, b->fc1w, b->fc1b, rows, C, F, 0, 1);
    vt_linear(n->pool, n->a, n->hid, b->fc2w, b->fc2b, rows, F, C, 0, 0);
    vt_add_scaled_rows(n->pool, t, n->a, b->ls2, rows, C);
}

/* t[rows, C] += ls1 * a2 */
static void sem_residual(st_net *n, const st_sem_w *b, float *t, int rows)
{
    int C = n->c.st[ST_SEM].dim;
    vt_add_scaled_rows(n->pool, t, n->a2, b->ls1, rows, C);
}

/* B1: pooled seeds of each 7x7 window attend to themselves and the
 * window's 10x10 key block; s = ls1 * that (no residual) on the 2k x 2k
 * grid, then the MLP. */
static void sem_init(st_net *n, const st_sem_w *b, int g)
{
    const st_config *c = &n->c;
    const st_stage *s = &c->st[ST_SEM];
    int C = s->dim, H = s->res, k = c->k, kk = k * k, nkv = c->nkv, side = 2 * k;
    float *pool = n->pool_rec + (size_t)g * ST_NWIN * kk * C;
    for (int w = 0; w < ST_NWIN; w++) {
        int a = w / 2, bb = w % 2;
        float *seeds = pool + (size_t)w * kk * C;
        /* adaptive max pool 7 -> k: bins [floor(7i/k), ceil(7(i+1)/k)) */
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) {
                float *o = seeds + (size_t)(i * k + j) * C;
                int r0 = ST_WS * i / k, r1 = (ST_WS * (i + 1) + k - 1) / k;
                int c0 = ST_WS * j / k, c1 = (ST_WS * (j + 1) + k - 1) / k;
                for (int ch = 0; ch < C; ch++)
                    o[ch] = -INFINITY;
                for (int r = r0; r < r1; r++)
                    for (int cc = c0; cc < c1; cc++)
                        max_into(o, n->x + ((size_t)(ST_WS * a + r) * H + ST_WS * bb + cc) * C, C);
            }
    }
    /* Window w's keys are its seeds, then the 10x10 block at (4a, 4b) of
     * the map. The blocks overlap (400 rows, 196 distinct), and LN and the
     * projections act per row: project the 36 seeds and 196 map tokens
     * once, y = LN1([seeds; x]), then gather each window's rows of k|v. */
    int S = ST_NWIN * kk, L = H * H;
    float *kvu = n->hid;    /* [S + L, 2C], free until the MLP */
    vt_layernorm_mt(n->pool, n->y, pool, b->n1w, b->n1b, S, C, c->eps);
    vt_layernorm_mt(n->pool, n->y + (size_t)S * C, n->x, b->n1w, b->n1b, L, C, c->eps);
    vt_linear(n->pool, n->q, n->y, b->qw, b->qb, S, C, C, 0, 0);
    vt_linear(n->pool, kvu, n->y, b->kvw, b->kvb, S + L, C, 2 * C, 0, 0);
    for (int w = 0; w < ST_NWIN; w++) {
        int a = w / 2, bb = w % 2;
        float *kv = n->kv + (size_t)w * nkv * 2 * C;
        memcpy(kv, kvu + (size_t)w * kk * 2 * C, (size_t)kk * 2 * C * sizeof *kv);
        for (int r = 0; r < ST_KV_SIDE; r++)
            memcpy(kv + (size_t)(kk + r * ST_KV_SIDE) * 2 * C,
                   kvu + (S + (size_t)(ST_KV_STRIDE * a + r) * H + ST_KV_STRIDE * bb) * 2 * C,
                   (size_t)ST_KV_SIDE * 2 * C * sizeof *kv);
    }
    float *probs = n->init_attn + (size_t)g * ST_NWIN * s->heads * kk * nkv;
    attend_proj(n, b, kk, nkv, ST_NWIN, probs);
    /* window-major (w, i, j) -> grid (k a + i, k b + j) */
    for (int w = 0; w < ST_NWIN; w++)
        for (int t = 0; t < kk; t++) {
            int gi = (w / 2) * k + t / k, gj = (w % 2) * k + t % k;
            float *dst = n->s + (size_t)(gi * side + gj) * C;
            const float *src = n->a2 + ((size_t)w * kk + t) * C;
            for (int ch = 0; ch < C; ch++)
                dst[ch] = b->ls1[ch] * src[ch];
        }
    sem_mlp(n, b, n->s, c->nsem);
}

/* B2: s += ls1 * attn(LN1(s), LN1([s; x])); MLP. Keeps the significance. */
static void sem_cross(st_net *n, const st_sem_w *b, int g)
{
    const st_config *c = &n->c;
    const st_stage *s = &c->st[ST_SEM];
    int C = s->dim, S = c->nsem, L = s->res * s->res, nk = S + L, nh = s->heads;
    memcpy(n->y, n->s, (size_t)S * C * sizeof(float));
    memcpy(n->y + (size_t)S * C, n->x, (size_t)L * C * sizeof(float));
    vt_layernorm_mt(n->pool, n->y, n->y, b->n1w, b->n1b, nk, C, c->eps);
    float *probs = n->cross_attn + (size_t)g * nh * S * nk;
    xattn(n, b, n->y, S, n->y, nk, 1, probs);
    sem_residual(n, b, n->s, S);
    sem_mlp(n, b, n->s, S);
    /* significance: mean over heads and queries of the mass on image key p */
    float *sig = n->sig_rec + (size_t)g * L;
    double col[L], tot = 0;
    column_sums(col, probs + S, nh * S, L, nk);
    for (int p = 0; p < L; p++) {
        col[p] /= (double)nh * S;
        tot += col[p];
    }
    for (int p = 0; p < L; p++)
        sig[p] = (float)(col[p] / tot);
}

/* B3 (local: self attention inside k x k windows of the grid) and B4
 * (global): s += ls1 * attn(LN1(s), LN1(s)); MLP. */
static void sem_self(st_net *n, const st_sem_w *b, int local)
{
    const st_config *c = &n->c;
    const st_stage *s = &c->st[ST_SEM];
    int C = s->dim, S = c->nsem, side = 2 * c->k, nh = s->heads;
    float probs[nh * S * S];
    vt_layernorm_mt(n->pool, n->y, n->s, b->n1w, b->n1b, S, C, c->eps);
    if (local) {
        vt_window_partition(n->qn, n->y, side, side, C, c->k, 0);
        xattn(n, b, n->qn, c->k * c->k, n->qn, c->k * c->k, ST_NWIN, probs);
        memcpy(n->a, n->a2, (size_t)S * C * sizeof(float));
        vt_window_reverse(n->a2, n->a, side, side, C, c->k, 0, 0);
    } else {
        xattn(n, b, n->y, S, n->y, S, 1, probs);
    }
    sem_residual(n, b, n->s, S);
    sem_mlp(n, b, n->s, S);
}

/* B5: x += ls1 * attn(LN1(x), LN1(s)); MLP. Keeps the assignment. */
static void sem_recover(st_net *n, const st_sem_w *b, int g)
{
    const st_config *c = &n->c;
    const st_stage *s = &c->st[ST_SEM];
    int C = s->dim, S = c->nsem, L = s->res * s->res, nh = s->heads;
    vt_layernorm_mt(n->pool, n->qn, n->x, b->n1w, b->n1b, L, C, c->eps);
    vt_layernorm_mt(n->pool, n->y, n->s, b->n1w, b->n1b, S, C, c->eps);
    float *probs = n->rec_attn + (size_t)g * nh * L * S;
    xattn(n, b, n->qn, L, n->y, S, 1, probs);
    sem_residual(n, b, n->x, L);
    sem_mlp(n, b, n->x, L);
    /* assignment: argmax over s of the head-mean attention (first on ties) */
    float *lab = n->assign_rec + (size_t)g * L, hsum[L * S];
    plane_sum(hsum, probs, nh, (size_t)L * S);
    for (int p = 0; p < L; p++) {
        int best = 0;
        float bv = -1;
        for (int t = 0; t < S; t++) {
            float m = hsum[p * S + t] / (float)nh;
            if (m > bv)
                bv = m, best = t;
        }
        lab[p] = (float)best;
    }
}

/* ---- forward --------------------------------------------------------- */

static void semantic_stage(st_net *n)
{
    const st_stage *s = &n->c.st[ST_SEM];
    int H = s->res, C = s->dim;
    for (int j = 0; j < s->depth; j++) {
        const st_sem_w *b = &n->sem[j];
        int g = j / ST_GROUP < n->c.groups ? j / ST_GROUP : n->c.groups - 1;
        int r = role(j);
        switch (r) {
        case R_SWIN:
            vt_swin_block(n->pool, n->x, 1, H, H, C, &n->blk[ST_SEM][j], n->c.eps, n->scratch);
            break;
        case R_INIT: sem_init(n, b, g); break;
        case R_CROSS: sem_cross(n, b, g); break;
        case R_LOCAL: sem_self(n, b, 1); break;
        case R_GLOBAL: sem_self(n, b, 0); break;
        default: sem_recover(n, b, g); break;
        }
        int img = r == R_SWIN || r == R_RECOVER;
        vt_copy(n->pool, n->blkout[j], img ? n->x : n->s, (size_t)(img ? H * H : n->c.nsem) * C);
    }
}

static void forward_image(st_net *n, const float *img, float *logits)
{
    const st_config *c = &n->c;
    stem(n, img);
    int L = c->st[0].res * c->st[0].res;
    vt_copy(n->pool, n->pe, n->x, (size_t)L * c->st[0].dim);
    for (int i = 0; i < ST_STAGES; i++) {
        const st_stage *s = &c->st[i];
        int H = s->res, C = s->dim;
        L = H * H;
        if (i == ST_SEM)
            semantic_stage(n);
        else
            for (int j = 0; j < s->depth; j++)
                vt_swin_block(n->pool, n->x, 1, H, H, C, &n->blk[i][j], c->eps, n->scratch);
        vt_copy(n->pool, n->out[i], n->x, (size_t)L * C);
        if (i == ST_STAGES - 1)
            break;
        merge(n, i);
        vt_copy(n->pool, n->merged[i], n->x, (size_t)L / 4 * 2 * C);
    }
    int C = c->st[3].dim;
    vt_layernorm_mt(n->pool, n->g, n->x, n->nw, n->nb, L, C, c->eps);
    vt_mean_rows(n->feat, n->g, L, C);
    vt_linear(n->pool, logits, n->feat, n->hw, n->hb, 1, C, c->classes, 0, 0);
    /* model-level significance: mean over groups, renormalised */
    int L3 = c->st[ST_SEM].res * c->st[ST_SEM].res;
    double tot = 0;
    for (int p = 0; p < L3; p++) {
        double m = 0;
        for (int g = 0; g < c->groups; g++)
            m += n->sig_rec[(size_t)g * L3 + p];
        n->sig_all[p] = (float)(m / c->groups);
        tot += n->sig_all[p];
    }
    for (int p = 0; p < L3; p++)
        n->sig_all[p] = (float)(n->sig_all[p] / tot);
}

/* keep label, cover, significance of image b for vt_stvit_semantic */
static void record_maps(st_net *n, int b)
{
    const st_config *c = &n->c;
    int L = c->st[ST_SEM].res * c->st[ST_SEM].res, S = c->nsem, nh = c->st[ST_SEM].heads;
    float *m = n->maps + (size_t)b * (c->groups + 1) * 3 * L;
    for (int g = 0; g <= c->groups; g++, m += 3 * L) {
        if (g == c->groups) {
            memset(m, 0, 2 * (size_t)L * sizeof *m);
            memcpy(m + 2 * L, n->sig_all, (size_t)L * sizeof *m);
            continue;
        }
        const float *probs = n->rec_attn + (size_t)g * nh * L * S;
        for (int p = 0; p < L; p++) {
            int t = (int)n->assign_rec[(size_t)g * L + p];
            float cov = 0;
            for (int h = 0; h < nh; h++)
                cov += probs[((size_t)h * L + p) * S + t];
            m[p] = (float)t;
            m[L + p] = cov / (float)nh;
        }
        memcpy(m + 2 * L, n->sig_rec + (size_t)g * L, (size_t)L * sizeof *m);
    }
}

static int st_forward(void *net, const float *x, int batch, float *logits)
{
    st_net *n = net;
    if (!n || n->magic != ST_MAGIC)
        return vt_seterr("stvit: not an stvit net");
    if (batch < 1 || batch > 1 << 16)
        return vt_seterr("stvit: batch %d", batch);
    const st_config *c = &n->c;
    size_t L3 = (size_t)c->st[ST_SEM].res * c->st[ST_SEM].res;
    if (batch > n->maps_batch) {
        free(n->maps);
        n->maps = vt_xmalloc((size_t)batch * (c->groups + 1) * 3 * L3 * sizeof(float));
        n->maps_batch = batch;
    }
    size_t img = (size_t)3 * c->img_size * c->img_size;
    for (int b = 0; b < batch; b++) {
        forward_image(n, x + b * img, logits + (size_t)b * c->classes);
        record_maps(n, b);
    }
    n->last_batch = batch;
    return 0;
}

static void st_destroy(void *net)
{
    st_net *n = net;
    if (!n)
        return;
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    for (int i = 0; i < ST_STAGES; i++) {
        free(n->blk[i]);
    }
    free(n->sem);
    free(n->maps);
    n->magic = 0;
    free(n);
}

static void *st_create(const cJSON *cfg, const vt_frame *weights, const vt_run_opts *o)
{
    st_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = ST_MAGIC;
    if (st_config_read(cfg, &n->c) < 0) {
        st_destroy(n);
        return NULL;
    }
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    /* the mapped model file never changes: vt_linear packs its weights once */
    if (n->pool)
        vt_pool_readonly(n->pool, weights->map, weights->map_len);
    if (!n->pool || st_bind(n, weights) < 0) {
        st_destroy(n);
        return NULL;
    }
    /* the Swin blocks' weights packed once (vt_linear_packed) */
    for (int i = 0; i < ST_STAGES; i++)
        for (int j = 0; j < n->c.st[i].depth; j++)
            if (is_swin(i, j) && vt_swin_block_pack(n->pool, &n->blk[i][j], n->c.st[i].dim) < 0) {
                st_destroy(n);
                return NULL;
            }
    run_alloc(n);
    return n;
}

/* ---- cost ------------------------------------------------------------ */

/* multiply-accumulates of a semantic block: q over nq rows, kv over nkr
 * rows, attention nq x nk per window set, proj, MLP over mrows rows */
static double sem_cost(double C, double F, double nq, double nkr, double att, double mrows)
{
    return nq * C * C + nkr * 2 * C * C + 2 * att * C + nq * C * C + mrows * 2 * C * F;
}

static int st_cost(const cJSON *cfg, vt_cost *out)
{
    st_config c;
    if (st_config_read(cfg, &c) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    double C0 = c.st[0].dim, h0 = c.img_size / 2.0, L0 = (double)c.st[0].res * c.st[0].res;
    vt_cost_add(out, "stem", h0 * h0 * C0 / 2 * 27 + L0 * C0 * C0 / 2 * 9);
    char name[40];
    for (int i = 0; i < ST_STAGES; i++) {
        const st_stage *s = &c.st[i];
        double C = s->dim, F = s->hidden, N = (double)s->ws * s->ws, L = (double)s->res * s->res;
        double swin = L * C * 3 * C + 2 * L * N * C + L * C * C + 2 * L * C * F;
        double S = c.nsem, kk = (double)c.k * c.k, nkv = c.nkv;
        for (int j = 0; j < s->depth; j++) {
            int r = i == ST_SEM ? role(j) : R_SWIN;
            double m = r == R_SWIN ? swin
                     : r == R_INIT ? sem_cost(C, F, S, ST_NWIN * nkv, ST_NWIN * kk * nkv, S)
                     : r == R_CROSS ? sem_cost(C, F, S, S + L, S * (S + L), S)
                     : r == R_LOCAL ? sem_cost(C, F, S, S, ST_NWIN * kk * kk, S)
                     : r == R_GLOBAL ? sem_cost(C, F, S, S, S * S, S)
                                     : sem_cost(C, F, L, S, L * S, L);
            static const char *rn[6] = {"swin", "sem_init", "sem_cross", "sem_local",
                                        "sem_global", "recover"};
            if (i == ST_SEM)
                snprintf(name, sizeof name, "stage3.%s", rn[r]);
            else
                snprintf(name, sizeof name, "stage%d", i + 1);
            vt_cost_add(out, name, m);
        }
        if (i < ST_STAGES - 1) {
            snprintf(name, sizeof name, "merge%d", i + 1);
            vt_cost_add(out, name, L / 4 * 4 * C * 2 * C);
        }
    }
    vt_cost_add(out, "head", (double)c.st[3].dim * c.classes);
    return 0;
}

/* ---- extras (models/stvit.h) ----------------------------------------- */

static const st_net *as_net(const void *net)
{
    const st_net *n = net;
    if (!n || n->magic != ST_MAGIC)
        return vt_seterr("not an stvit net"), NULL;
    if (!n->last_batch)
        return vt_seterr("stvit: no forward pass yet"), NULL;
    return n;
}

const float *vt_stvit_extra(const void *net, const char *name, size_t *count)
{
    const st_net *n = as_net(net);
    if (!n)
        return NULL;
    const st_config *c = &n->c;
    const st_stage *s3 = &c->st[ST_SEM];
    size_t C3 = s3->dim, L3 = (size_t)s3->res * s3->res, nh = s3->heads, S = c->nsem;
    size_t kk = (size_t)c->k * c->k;
    int i, g;
    char tail[16];
    if (strcmp(name, "patch_embed") == 0)
        return *count = (size_t)c->st[0].res * c->st[0].res * c->st[0].dim, n->pe;
    if (strcmp(name, "features") == 0)
        return *count = c->st[3].dim, n->feat;
    if (strcmp(name, "significance") == 0)
        return *count = L3, n->sig_all;
    if (sscanf(name, "stage%d_%15s", &i, tail) == 2 && i >= 0 && i < ST_STAGES) {
        size_t L = (size_t)c->st[i].res * c->st[i].res;
        if (strcmp(tail, "out") == 0)
            return *count = L * c->st[i].dim, n->out[i];
        if (strcmp(tail, "merged") == 0 && i < ST_STAGES - 1)
            return *count = L / 2 * c->st[i].dim, n->merged[i];
    }
    if (sscanf(name, "s2_blk%d", &i) == 1 && i >= 0 && i < s3->depth) {
        int img = role(i) == R_SWIN || role(i) == R_RECOVER;
        return *count = (img ? L3 : S) * C3, n->blkout[i];
    }
    const char *u = strrchr(name, '_');
    if (!u || sscanf(u, "_g%d", &g) != 1 || g < 0 || g >= c->groups)
        return vt_seterr("stvit: no intermediate '%s'", name), NULL;
    size_t pre = (size_t)(u - name);
#define IS(str) (pre == strlen(str) && strncmp(name, str, pre) == 0)
    if (IS("sem_pool"))
        return *count = ST_NWIN * kk * C3, n->pool_rec + g * *count;
    if (IS("sem_init_attn"))
        return *count = ST_NWIN * nh * kk * c->nkv, n->init_attn + g * *count;
    if (IS("semantic_tokens"))
        return *count = S * C3, n->blkout[g * ST_GROUP + R_GLOBAL];
    if (IS("sem_cross_attn"))
        return *count = nh * S * (S + L3), n->cross_attn + g * *count;
    if (IS("recover_attn"))
        return *count = nh * L3 * S, n->rec_attn + g * *count;
    if (IS("significance"))
        return *count = L3, n->sig_rec + g * L3;
    if (IS("assignment"))
        return *count = L3, n->assign_rec + g * L3;
#undef IS
    return vt_seterr("stvit: no intermediate '%s'", name), NULL;
}

int vt_stvit_semantic(const void *net, int image, int g, int *label, float *cover, float *sig)
{
    const st_net *n = as_net(net);
    if (!n)
        return -1;
    const st_config *c = &n->c;
    if (image < 0 || image >= n->last_batch)
        return vt_seterr("stvit: image %d not in the last batch of %d", image, n->last_batch);
    if (g < -1 || g >= c->groups)
        return vt_seterr("stvit: group %d: 0..%d or -1", g, c->groups - 1);
    int L = c->st[ST_SEM].res * c->st[ST_SEM].res, gi = g < 0 ? c->groups : g;
    const float *m = n->maps + ((size_t)image * (c->groups + 1) + gi) * 3 * L;
    for (int p = 0; p < L; p++) {
        if (label && g >= 0)
            label[p] = (int)m[p];
        if (cover && g >= 0)
            cover[p] = m[L + p];
        if (sig)
            sig[p] = m[2 * L + p];
    }
    return c->groups;
}

const vt_family vt_family_stvit = {
    .name = "stvit",
    .archs = st_archs,
    .config = st_config_defaults,
    .params = st_params,
    .create = st_create,
    .forward = st_forward,
    .destroy = st_destroy,
    .cost = st_cost,
};
