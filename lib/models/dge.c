/* dge.c - Dynamic Grained Encoder (Song et al., "Dynamic Grained Encoder
 * for Vision Transformers", NeurIPS 2021; official code StevenGrove/vtpack)
 * in eval mode: DeiT-DGE and PVT-DGE, and the vtpack baselines they are
 * compared with (DeiT at 256, PVT v1, deformable PVT). One builder, five
 * kinds; ../shared/specs/dge.md describes the math in words.
 *
 * A DGE block on tokens x[n, C] (E extra tokens, then an H x W grid):
 *   router:  per R x R region (R = 4) of the raw grid tokens, the mean g,
 *            logits = gate(g), s = splits[argmax] in {4, 2, 1}
 *   queries: q0 = one mean per patch of R/s x R/s tokens (s*s per region),
 *            extra tokens as they are; only these nq <= n rows go on
 *   q  = q0 + proj(Attn(q: LN1(q0), k/v: LN1(x)))
 *   q  = q + fc2(GELU(fc1(LN2(q))))
 *   x += (q - q0) on every token of each query's patch
 * Keys and values stay dense (all tokens; PVT: after its spatial
 * reduction). The baselines are the same block with every token its own
 * query and no router (deformable PVT: point-sampling attention).
 *
 *   DeiT:  x = [cls, conv16(img)] + pos;  blocks;  head(LN(x)[0])
 *   PVT:   4 stages of  x = LN(conv_p(x)) (+ cls in stage 4) + pos;  blocks
 *          keys/values: LN(conv_sr(LN1 x)) when sr > 1;  head(LN(x)[0])
 *   DPVT:  PVT without cls and sr; attention samples 4 points per head
 *          around each token (lib/ops/deform.h);  head(mean LN(x))
 *
 * Config keys (as refgen's meta.json "config"): kind (deit_dge, deit,
 * pvt_dge, pvt, dpvt), img_size, pos_embed_size (the side the position
 * embeddings were made for, when it differs), num_classes, qkv_bias; DeiT:
 * patch_size, embed_dim, depth, num_heads, mlp_hidden, ln_eps; PVT:
 * patch_sizes, embed_dims, depths, num_heads, mlp_hidden, sr_ratios,
 * num_points (dpvt), block_ln_eps, patch_embed_ln_eps, sr_ln_eps; DGE:
 * dge.split_sizes; crop_pct, interpolation, mean, std. Descriptive keys
 * are ignored. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "models/dge.h"
#include "ops.h"
#include "ops/attend.h"
#include "ops/deform.h"
#include "ops/grid.h"
#include "util.h"

#define DGE_MAGIC 0x44474531u   /* "DGE1" */
#define DGE_STAGES 4
#define DGE_MAX_DEPTH 256
#define DGE_MAX_SPLITS 4
#define DGE_MLP_ROWS 1024   /* rows of one MLP chunk (hidden [rows, F] in cache) */
#define DGE_CHUNK_FLOATS (1 << 18) /* a thread's MLP hidden chunk in rows_task (1 MB) */
#define DGE_ATTEND_HEADS 64 /* (image, head) pairs per vt_attend call */
#define DGE_GROUP_ROWS 256  /* token rows of a group of images (stage_group) */

extern const vt_family vt_family_dge;

/* The variants of ../shared/conformance/families/dge.py (vtpack's factory
 * names); *_mixgate are refgen's copies with re-drawn gates, the same nets. */
static const char *const dge_archs[] = {
    "deit_dge_s124_tiny_patch16_256", "deit_dge_s124_small_patch16_256",
    "pvt_dge_s124_tiny_256", "pvt_dge_s124_small_256",
    "deit_tiny_patch16_256", "deit_small_patch16_256",
    "pvt_tiny_256", "pvt_small_256", "dpvt_small_256",
    "deit_dge_s124_tiny_patch16_256_mixgate", "deit_dge_s124_small_patch16_256_mixgate",
    "pvt_dge_s124_tiny_256_mixgate", "pvt_dge_s124_small_256_mixgate",
    NULL,
};

enum { K_DEIT_DGE, K_DEIT, K_PVT_DGE, K_PVT, K_DPVT, K_COUNT };
static const char *const kind_names[K_COUNT] = {"deit_dge", "deit", "pvt_dge", "pvt", "dpvt"};

static int is_deit(int kind) { return kind == K_DEIT_DGE || kind == K_DEIT; }

/* ---- config ---------------------------------------------------------- */

typedef struct dge_stage_cfg {
    int cin;            /* channels in (3: the image) */
    int dim;            /* C = heads * d */
    int depth;
    int heads;
    int hidden;         /* F: MLP hidden */
    int patch;          /* patch embedding kernel = stride */
    int sr;             /* spatial reduction of keys/values (1: none) */
    int points;         /* dpvt: sampling points per head */
    int in_grid;        /* side of the map the patch embedding reads */
    int grid;           /* H = W at the run size */
    int native;         /* grid the stored pos_embed was made for */
    int extra;          /* E: CLS tokens before the grid (0 or 1) */
    int n;              /* E + H*W */
    int nkv;            /* keys per query: E + (H/sr)^2 */
    int regions;        /* gated: (H/R)^2; else 0 */
    int pos_rows;       /* rows of the stored pos_embed: E + native^2 */
    int resample;       /* the pos_embed grid is resampled (bilinear) at load */
} dge_stage_cfg;

typedef struct dge_config {
    int kind;
    int img_size;       /* S: input side */
    int native_size;    /* side the position embeddings were made for */
    int classes;
    int qkv_bias;
    int nstages;        /* 1 (DeiT) or 4 */
    int gated;          /* a router in every block */
    int fused_qkv;      /* plain DeiT: attn.qkv [3C, C] */
    int nsplits;
    int splits[DGE_MAX_SPLITS];     /* queries per region side, gate order */
    int region;         /* R = max split */
    float ln_eps;       /* blocks and the final norm */
    float pe_eps;       /* PVT patch-embedding norm */
    float sr_eps;       /* PVT spatial-reduction norm */
    int layers;         /* blocks over all stages */
    dge_stage_cfg st[DGE_STAGES];
} dge_config;

static int dge_config_defaults(const char *arch, cJSON *cfg)
{
    int kind, small = strstr(arch, "_small") != NULL;
    if (!small && !strstr(arch, "_tiny"))
        return vt_seterr("dge: unknown arch '%s'", arch);
    if (strncmp(arch, "deit_dge_", 9) == 0)
        kind = K_DEIT_DGE;
    else if (strncmp(arch, "deit_", 5) == 0)
        kind = K_DEIT;
    else if (strncmp(arch, "pvt_dge_", 8) == 0)
        kind = K_PVT_DGE;
    else if (strncmp(arch, "pvt_", 4) == 0)
        kind = K_PVT;
    else if (strncmp(arch, "dpvt_", 5) == 0)
        kind = K_DPVT;
    else
        return vt_seterr("dge: unknown arch '%s'", arch);
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddStringToObject(cfg, "kind", kind_names[kind]);
    cJSON_AddNumberToObject(cfg, "img_size", 256);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    if (is_deit(kind)) {
        int dim = small ? 384 : 192;
        cJSON_AddNumberToObject(cfg, "patch_size", 16);
        cJSON_AddNumberToObject(cfg, "embed_dim", dim);
        cJSON_AddNumberToObject(cfg, "depth", 12);
        cJSON_AddNumberToObject(cfg, "num_heads", small ? 6 : 3);
        cJSON_AddNumberToObject(cfg, "mlp_hidden", 4 * dim);
        cJSON_AddNumberToObject(cfg, "ln_eps", 1e-6);
    } else {
        static const int dims[4] = {64, 128, 320, 512}, heads[4] = {1, 2, 5, 8};
        static const int hidden[4] = {512, 1024, 1280, 2048}, patches[4] = {4, 2, 2, 2};
        static const int d_tiny[4] = {2, 2, 2, 2}, d_small[4] = {3, 4, 6, 3};
        static const int sr[4] = {8, 4, 2, 1}, points[4] = {4, 4, 4, 4};
        cJSON_AddItemToObject(cfg, "patch_sizes", cJSON_CreateIntArray(patches, 4));
        cJSON_AddItemToObject(cfg, "embed_dims", cJSON_CreateIntArray(dims, 4));
        cJSON_AddItemToObject(cfg, "depths", cJSON_CreateIntArray(small ? d_small : d_tiny, 4));
        cJSON_AddItemToObject(cfg, "num_heads", cJSON_CreateIntArray(heads, 4));
        cJSON_AddItemToObject(cfg, "mlp_hidden", cJSON_CreateIntArray(hidden, 4));
        if (kind == K_DPVT)
            cJSON_AddItemToObject(cfg, "num_points", cJSON_CreateIntArray(points, 4));
        else
            cJSON_AddItemToObject(cfg, "sr_ratios", cJSON_CreateIntArray(sr, 4));
        cJSON_AddNumberToObject(cfg, "block_ln_eps", 1e-6);
        cJSON_AddNumberToObject(cfg, "patch_embed_ln_eps", 1e-5);
        if (kind != K_DPVT)
            cJSON_AddNumberToObject(cfg, "sr_ln_eps", 1e-5);
    }
    if (kind == K_DEIT_DGE || kind == K_PVT_DGE) {
        static const int splits[3] = {4, 2, 1};
        cJSON *d = cJSON_AddObjectToObject(cfg, "dge");
        cJSON_AddItemToObject(d, "split_sizes", cJSON_CreateIntArray(splits, 3));
    }
    /* vtpack's eval transform: Resize(int(256/224*S)), CenterCrop(S) */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.875);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(std, 3));
    return 0;
}

/* out[DGE_STAGES] from the config list `key` (def_all everywhere when it
 * is absent and def_all >= 0). Read through a buffer one longer, so a
 * longer list is refused, never written past out. */
static int read_stage_ints(const cJSON *cfg, const char *key, int *out, int def_all)
{
    int buf[DGE_STAGES + 1];
    int n = vt_cfg_ints(cfg, key, buf, DGE_STAGES + 1);
    if (n == 0 && def_all >= 0) {
        for (int i = 0; i < DGE_STAGES; i++)
            out[i] = def_all;
        return 0;
    }
    if (n != DGE_STAGES)
        return vt_seterr("dge: config \"%s\" must be %d integers", key, DGE_STAGES);
    memcpy(out, buf, sizeof buf - sizeof *buf);
    return 0;
}

static int eps_of(const cJSON *cfg, const char *key, double def, float *out)
{
    double e = vt_cfg_num(cfg, key, def);
    if (!(e > 0 && e < 1))
        return vt_seterr("dge: %s out of range", key);
    *out = (float)e;
    return 0;
}

/* Stage sizes at the run size and the native one, as vtpack computes them:
 * stage 1 embeds p1 x p1 patches of the image, the others 2 x 2 patches of
 * the previous map; PatchEmbed i >= 2 is built for img_size // 2^i // 2. */
static int dge_stage_sizes(dge_config *c, const char *arch)
{
    int S = c->img_size, pvt = !is_deit(c->kind);
    int prod = 1;
    for (int i = 0; i < c->nstages; i++)
        prod *= c->st[i].patch;
    int need = prod * (c->gated ? c->region : 1);
    if (is_deit(c->kind)) {
        dge_stage_cfg *s = &c->st[0];
        if (S != c->native_size)
            return vt_seterr("dge: %s takes %dx%d input only (its position embedding is for "
                             "a %dx%d grid and vtpack does not resample it), not %dx%d", arch,
                             c->native_size, c->native_size, c->native_size / s->patch,
                             c->native_size / s->patch, S, S);
        if (S % need)
            return vt_seterr("dge: %s: img_size %d must be a multiple of %d (patch %d%s)", arch,
                             S, need, s->patch, c->gated ? " times the 4-token region" : "");
    } else if (S % need || S < need) {
        return vt_seterr("dge: %s takes input sides that are multiples of %d (%s), not %d", arch,
                         need, c->gated ? "every stage grid a whole number of 4x4-token regions"
                                        : "the patch embeddings' total stride", S);
    }
    int side = S, native = c->native_size;
    for (int i = 0; i < c->nstages; i++) {
        dge_stage_cfg *s = &c->st[i];
        s->in_grid = side;
        s->grid = side / s->patch;
        side = s->grid;
        s->native = i == 0 ? native / s->patch : (native >> (i + 1)) / s->patch;
        if (s->native < 1)
            return vt_seterr("dge: pos_embed_size %d gives stage %d no tokens", native, i + 1);
        s->extra = is_deit(c->kind) || (c->kind != K_DPVT && i == c->nstages - 1);
        s->n = s->extra + s->grid * s->grid;
        if (s->sr > 1 && s->extra)
            return vt_seterr("dge: stage %d has a CLS token and sr_ratio %d; vtpack reduces "
                             "only stages without one", i + 1, s->sr);
        if (s->grid % s->sr)
            return vt_seterr("dge: stage %d grid %d is not a multiple of its sr_ratio %d "
                             "(img_size %d)", i + 1, s->grid, s->sr, S);
        s->nkv = s->extra + (s->grid / s->sr) * (s->grid / s->sr);
        s->regions = c->gated ? (s->grid / c->region) * (s->grid / c->region) : 0;
        s->pos_rows = s->extra + s->native * s->native;
        /* vtpack resamples a pos_embed when the token count differs from
         * the native one: PVT-DGE compares with its own stage, PVT and
         * DPVT with stage 1 (which then fails when counts agree but the
         * grids do not). */
        int ref = c->kind == K_PVT_DGE ? s->native : c->st[0].native;
        if (pvt && s->grid == ref && s->grid != s->native)
            return vt_seterr("dge: at img_size %d stage %d has %d tokens, as many as stage 1 "
                             "was built for, so vtpack adds its %dx%d pos_embed unresampled "
                             "and fails; use another size", S, i + 1, s->grid * s->grid,
                             s->native, s->native);
        s->resample = pvt && s->grid != ref && s->grid != s->native;
    }
    return 0;
}

static int dge_config_read(const cJSON *cfg, dge_config *c)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, "arch");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(cfg, "kind");
    const char *arch = cJSON_IsString(a) ? a->valuestring : "dge";
    memset(c, 0, sizeof *c);
    c->kind = -1;
    for (int i = 0; i < K_COUNT && cJSON_IsString(k); i++)
        if (strcmp(k->valuestring, kind_names[i]) == 0)
            c->kind = i;
    if (c->kind < 0)
        return vt_seterr("dge: config \"kind\" must be deit_dge, deit, pvt_dge, pvt or dpvt");
    c->gated = c->kind == K_DEIT_DGE || c->kind == K_PVT_DGE;
    c->img_size = vt_cfg_int(cfg, "img_size", 256);
    c->native_size = vt_cfg_int(cfg, "pos_embed_size", c->img_size);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    if (c->img_size < 1 || c->img_size > 8192 || c->native_size < 1 || c->native_size > 8192)
        return vt_seterr("dge: img_size %d / pos_embed_size %d out of range (1..8192)",
                         c->img_size, c->native_size);
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("dge: num_classes %d out of range", c->classes);
    if (c->gated) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(cfg, "dge");
        int buf[DGE_MAX_SPLITS + 1];
        c->nsplits = vt_cfg_ints(d, "split_sizes", buf, DGE_MAX_SPLITS + 1);
        if (c->nsplits < 1 || c->nsplits > DGE_MAX_SPLITS)
            return vt_seterr("dge: config dge.split_sizes must be 1 to %d integers", DGE_MAX_SPLITS);
        memcpy(c->splits, buf, (size_t)c->nsplits * sizeof *buf);
        for (int i = 0; i < c->nsplits; i++)
            if (c->splits[i] > c->region)
                c->region = c->splits[i];
        for (int i = 0; i < c->nsplits; i++)
            if (c->splits[i] < 1 || c->region % c->splits[i])
                return vt_seterr("dge: split size %d does not divide the region side %d",
                                 c->splits[i], c->region);
        if (c->region > 64)
            return vt_seterr("dge: region side %d out of range", c->region);
    }
    int dims[4], depths[4], heads[4], hidden[4], patches[4], sr[4], points[4];
    if (is_deit(c->kind)) {
        c->nstages = 1;
        c->fused_qkv = c->kind == K_DEIT;
        dims[0] = vt_cfg_int(cfg, "embed_dim", 192);
        depths[0] = vt_cfg_int(cfg, "depth", 12);
        heads[0] = vt_cfg_int(cfg, "num_heads", 3);
        hidden[0] = vt_cfg_int(cfg, "mlp_hidden", 4 * dims[0]);
        patches[0] = vt_cfg_int(cfg, "patch_size", 16);
        sr[0] = 1, points[0] = 0;
        if (eps_of(cfg, "ln_eps", 1e-6, &c->ln_eps) < 0)
            return -1;
    } else {
        c->nstages = 4;
        if (read_stage_ints(cfg, "embed_dims", dims, -1) < 0 ||
            read_stage_ints(cfg, "depths", depths, -1) < 0 ||
            read_stage_ints(cfg, "num_heads", heads, -1) < 0 ||
            read_stage_ints(cfg, "mlp_hidden", hidden, -1) < 0 ||
            read_stage_ints(cfg, "patch_sizes", patches, -1) < 0 ||
            read_stage_ints(cfg, "sr_ratios", sr, 1) < 0 ||
            read_stage_ints(cfg, "num_points", points, 4) < 0)
            return -1;
        if (c->kind == K_DPVT)
            for (int i = 0; i < 4; i++)
                sr[i] = 1;
        if (eps_of(cfg, "block_ln_eps", 1e-6, &c->ln_eps) < 0 ||
            eps_of(cfg, "patch_embed_ln_eps", 1e-5, &c->pe_eps) < 0 ||
            eps_of(cfg, "sr_ln_eps", 1e-5, &c->sr_eps) < 0)
            return -1;
        for (int i = 1; i < 4; i++)
            if (patches[i] != 2)
                return vt_seterr("dge: patch_sizes[%d] is %d; vtpack's PVT merges 2x2 patches "
                                 "after stage 1", i, patches[i]);
    }
    int cin = 3;
    for (int i = 0; i < c->nstages; i++) {
        dge_stage_cfg *s = &c->st[i];
        s->cin = cin, s->dim = dims[i], s->depth = depths[i], s->heads = heads[i];
        s->hidden = hidden[i], s->patch = patches[i], s->sr = sr[i], s->points = points[i];
        if (s->dim < 1 || s->dim > 65536 || s->heads < 1 || s->dim % s->heads)
            return vt_seterr("dge: stage %d: embed_dim %d not divisible into %d heads", i + 1,
                             s->dim, s->heads);
        if (s->depth < 1 || s->depth > DGE_MAX_DEPTH)
            return vt_seterr("dge: stage %d: depth %d out of range (1..%d)", i + 1, s->depth,
                             DGE_MAX_DEPTH);
        if (s->hidden < 1 || s->hidden > 1 << 20)
            return vt_seterr("dge: stage %d: mlp_hidden %d out of range", i + 1, s->hidden);
        if (s->patch < 1 || s->patch > 64 || s->sr < 1 || s->sr > 64)
            return vt_seterr("dge: stage %d: patch %d / sr_ratio %d out of range", i + 1,
                             s->patch, s->sr);
        if (c->kind == K_DPVT && (s->points < 1 || s->points > 64))
            return vt_seterr("dge: stage %d: num_points %d out of range", i + 1, s->points);
        c->layers += s->depth;
        cin = s->dim;
    }
    return dge_stage_sizes(c, arch);
}

/* ---- state dict ------------------------------------------------------ */

/* "blocks.N." (DeiT) or "blockI.N." (PVT) */
static void block_prefix(const dge_config *c, int stage, int b, char *out, size_t len)
{
    if (is_deit(c->kind))
        snprintf(out, len, "blocks.%d.", b);
    else
        snprintf(out, len, "block%d.%d.", stage + 1, b);
}

static int dge_params(const cJSON *cfg, vt_params *ps)
{
    dge_config c;
    if (dge_config_read(cfg, &c) < 0)
        return -1;
    char name[160], pre[64];
    int deit = is_deit(c.kind);
#define P(opt, nd, ...) vt_params_add(ps, opt, name, nd, __VA_ARGS__)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    for (int i = 0; i < c.nstages; i++) {
        const dge_stage_cfg *s = &c.st[i];
        int64_t C = s->dim, F = s->hidden, p = s->patch, one = 1;
        const char *sfx = deit ? "" : (const char *[]){"1", "2", "3", "4"}[i];
        NAME("pos_embed%s", sfx), P(0, 3, one, (int64_t)s->pos_rows, C);
        NAME("patch_embed%s.proj.weight", sfx), P(0, 4, C, (int64_t)s->cin, p, p);
        NAME("patch_embed%s.proj.bias", sfx), P(0, 1, C);
        if (!deit) {
            NAME("patch_embed%s.norm.weight", sfx), P(0, 1, C);
            NAME("patch_embed%s.norm.bias", sfx), P(0, 1, C);
        }
        for (int b = 0; b < s->depth; b++) {
            block_prefix(&c, i, b, pre, sizeof pre);
            NAME("%snorm1.weight", pre), P(0, 1, C);
            NAME("%snorm1.bias", pre), P(0, 1, C);
            if (c.kind == K_DPVT) {
                int64_t hp = (int64_t)s->heads * s->points;
                NAME("%sattn.v.weight", pre), P(0, 2, C, C);
                if (c.qkv_bias)
                    NAME("%sattn.v.bias", pre), P(0, 1, C);
                NAME("%sattn.attn_weight.weight", pre), P(0, 2, hp, C);
                NAME("%sattn.attn_weight.bias", pre), P(0, 1, hp);
                NAME("%sattn.offsets.weight", pre), P(0, 2, 2 * hp, C);
                NAME("%sattn.offsets.bias", pre), P(0, 1, 2 * hp);
            } else if (c.fused_qkv) {
                NAME("%sattn.qkv.weight", pre), P(0, 2, 3 * C, C);
                if (c.qkv_bias)
                    NAME("%sattn.qkv.bias", pre), P(0, 1, 3 * C);
            } else {
                NAME("%sattn.q.weight", pre), P(0, 2, C, C);
                if (c.qkv_bias)
                    NAME("%sattn.q.bias", pre), P(0, 1, C);
                NAME("%sattn.kv.weight", pre), P(0, 2, 2 * C, C);
                if (c.qkv_bias)
                    NAME("%sattn.kv.bias", pre), P(0, 1, 2 * C);
                if (s->sr > 1) {
                    int64_t r = s->sr;
                    NAME("%sattn.sr.weight", pre), P(0, 4, C, C, r, r);
                    NAME("%sattn.sr.bias", pre), P(0, 1, C);
                    NAME("%sattn.norm.weight", pre), P(0, 1, C);
                    NAME("%sattn.norm.bias", pre), P(0, 1, C);
                }
            }
            NAME("%sattn.proj.weight", pre), P(0, 2, C, C);
            NAME("%sattn.proj.bias", pre), P(0, 1, C);
            NAME("%snorm2.weight", pre), P(0, 1, C);
            NAME("%snorm2.bias", pre), P(0, 1, C);
            NAME("%smlp.fc1.weight", pre), P(0, 2, F, C);
            NAME("%smlp.fc1.bias", pre), P(0, 1, F);
            NAME("%smlp.fc2.weight", pre), P(0, 2, C, F);
            NAME("%smlp.fc2.bias", pre), P(0, 1, C);
            if (c.gated) {
                int64_t S = c.nsplits;
                /* an int64 Parameter equal to the config's split_sizes;
                 * optional: random-weight model files leave it out */
                NAME("%sdge.splits", pre), P(1, 1, S);
                NAME("%sdge.router.gate.weight", pre), P(0, 2, S, C);
                NAME("%sdge.router.gate.bias", pre), P(0, 1, S);
            }
        }
    }
    int64_t CL = c.st[c.nstages - 1].dim, K = c.classes;
    if (c.kind != K_DPVT)
        NAME("cls_token"), P(0, 3, (int64_t)1, (int64_t)1, CL);
    NAME("norm.weight"), P(0, 1, CL);
    NAME("norm.bias"), P(0, 1, CL);
    NAME("head.weight"), P(0, 2, K, CL);
    NAME("head.bias"), P(0, 1, K);
#undef P
#undef NAME
    return 0;
}

/* ---- cost ------------------------------------------------------------ */

/* Multiply-accumulates of one layer of stage s computing nq queries (the
 * papers' convention: linear layers, convolutions, the two attention
 * matmuls; norms, softmax, pooling and the patch copies are free). */
static void layer_cost(const dge_config *c, int i, double nq, int router, vt_cost *out)
{
    const dge_stage_cfg *s = &c->st[i];
    double C = s->dim, F = s->hidden, N = s->n, nkv = s->nkv;
    char name[64], st[24] = "blocks";
    if (!is_deit(c->kind))
        snprintf(st, sizeof st, "stage%d", i + 1);
    if (c->kind == K_DPVT) {
        double hp = (double)s->heads * s->points;
        snprintf(name, sizeof name, "%s v+proj", st);
        vt_cost_add(out, name, 2 * N * C * C);
        snprintf(name, sizeof name, "%s offsets+weights", st);
        vt_cost_add(out, name, 3 * N * C * hp);
        /* 4 corners and the point weight per channel and point */
        snprintf(name, sizeof name, "%s point sampling", st);
        vt_cost_add(out, name, 5 * N * s->points * C);
        snprintf(name, sizeof name, "%s mlp", st);
        vt_cost_add(out, name, 2 * N * C * F);
        return;
    }
    snprintf(name, sizeof name, "%s q+kv+proj", st);
    vt_cost_add(out, name, 2 * nq * C * C + 2 * nkv * C * C);
    if (s->sr > 1) {
        snprintf(name, sizeof name, "%s sr conv", st);
        vt_cost_add(out, name, nkv * C * C * s->sr * s->sr);
    }
    snprintf(name, sizeof name, "%s attn matmuls", st);
    vt_cost_add(out, name, 2 * nq * nkv * C);
    snprintf(name, sizeof name, "%s mlp", st);
    vt_cost_add(out, name, 2 * nq * C * F);
    if (router) {
        snprintf(name, sizeof name, "%s router", st);
        vt_cost_add(out, name, (double)s->regions * C * c->nsplits);
    }
}

/* Patch embeddings and the head. */
static void fixed_cost(const dge_config *c, vt_cost *out)
{
    for (int i = 0; i < c->nstages; i++) {
        const dge_stage_cfg *s = &c->st[i];
        vt_cost_add(out, "patch_embed", (double)s->grid * s->grid * s->cin * s->patch *
                                            s->patch * s->dim);
    }
    vt_cost_add(out, "head", (double)c->st[c->nstages - 1].dim * c->classes);
}

/* Dense: every token a query, no router (the baseline's count; for a DGE
 * arch what its gates could at most spend, less the routers). */
static int dge_cost(const cJSON *cfg, vt_cost *out)
{
    dge_config c;
    if (dge_config_read(cfg, &c) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    fixed_cost(&c, out);
    for (int i = 0; i < c.nstages; i++)
        for (int b = 0; b < c.st[i].depth; b++)
            layer_cost(&c, i, c.st[i].n, 0, out);
    return 0;
}

/* ---- weights --------------------------------------------------------- */

typedef struct dge_block {
    const float *n1w, *n1b, *n2w, *n2b;     /* [C] */
    const float *srnw, *srnb;               /* attn.norm [C] */
    const float *gatew, *gateb;             /* router [S, C], [S] */
    /* the linear weights packed once at load for vt_linear_packed (ops.h),
     * by the pool (vt_weight_packed: from a BF16 file's bits), and their
     * biases (NULL without qkv_bias) */
    const vt_wpack *q;      /* attn.q [C, C]; plain DeiT: the fused qkv [3C, C] */
    const vt_wpack *kv;     /* attn.kv [2C, C]: k rows, then v rows */
    const vt_wpack *v;      /* dpvt attn.v [C, C] */
    const vt_wpack *off;    /* dpvt attn.offsets [2hP, C] */
    const vt_wpack *aw;     /* dpvt attn.attn_weight [hP, C] */
    const vt_wpack *proj;   /* [C, C] */
    const vt_wpack *fc1;    /* [F, C] */
    const vt_wpack *fc2;    /* [C, F] */
    const float *qb, *kvb, *vb, *offb, *awb, *projb, *fc1b, *fc2b;
    vt_wpack sr;            /* sr conv [C, C, sr, sr] reordered (pack_patch_conv): ours */
    const float *srb;       /* [C] */
} dge_block;

typedef struct dge_weights {
    const float *peb[DGE_STAGES];                       /* [C] */
    const float *penw[DGE_STAGES], *penb[DGE_STAGES];   /* PVT embedding norm [C] */
    const float *pos[DGE_STAGES];   /* [n, C] at the run grid (CLS row first) */
    const float *cls;               /* [C_last] or NULL (dpvt) */
    dge_block *blocks;              /* [layers] */
    const float *normw, *normb;     /* [C_last] */
    const float *headb;             /* [classes] */
    /* patch embeddings [C, Cin, p, p] as [C, Cin*p*p]: stage 1 the pool's,
     * the others reordered into pe_own (pack_patch_conv) */
    const vt_wpack *pe[DGE_STAGES];
    vt_wpack pe_own[DGE_STAGES];
    const vt_wpack *head;           /* [classes, C_last], the pool's */
} dge_weights;

/* ---- run state ------------------------------------------------------- */

/* One query of a gated layer: the patch of side `side` tokens at (y0, x0)
 * of the grid, or extra token -1-y0 when y0 < 0. */
typedef struct dge_patch {
    int y0, x0, side;
} dge_patch;

/* The residual streams of the whole batch, and work buffers for a group
 * of G images (stage_group: every image of a group goes through each op
 * at once, images are G consecutive row blocks), sized for the largest
 * stage; the gates' record for every image. Only the streams grow with
 * the batch (peak RSS, issue 11). Q is the group's query count: G*n for
 * dense blocks, the sum of the images' nq for gated ones. */
typedef struct dge_run {
    int batch;
    float *x;           /* [batch, n, C] residual streams */
    float *xn;          /* [G, n, C] LN1(x); patch embedding output */
    float *cols;        /* [G, ...] im2col / patchify scratch */
    float *kvin;        /* [G, nkv, C] reduced keys/values input (sr > 1) */
    float *kv;          /* [G, nkv, 2C] k | v; plain DeiT [G, n, 3C] q | k | v; dpvt v */
    float *q0;          /* [Q, C] raw queries (patch means) */
    float *q;           /* [Q, C] query stream */
    float *qn;          /* [Q, C] normed queries */
    float *qp;          /* [Q, C] projected queries */
    float *att;         /* [Q, C] attention output */
    float *h;           /* [DGE_MLP_ROWS, F] MLP hidden of one row chunk; rows_task:
                         * [threads, chunk, F] */
    float *aux;         /* dpvt: [G, n, 3hP] offsets | point weights */
    float *pooled;      /* [regions, C] region means */
    float *scratch;     /* vt_attend_scratch / vt_attention_scratch; rows_task's
                         * vt_attn_head_scratch per thread */
    dge_patch *patches; /* [G, n] query rows of the current layer, per image */
    int *qoff;          /* [G + 1] first row of each image's queries in q */
    float *feat;        /* [batch, C_last] head input */
    float *gate;        /* [batch, region_total, S] gate logits of every gated layer */
    int8_t *decision;   /* [batch, region_total] split s per region */
    int *nq;            /* [batch, layers] queries per layer */
    float *out;         /* recorded: [batch, out_total] layer outputs */
    float *q0rec;       /* recorded: [batch, n0 * C0] layer 0's raw queries */
} dge_run;

typedef struct dge_net {
    uint32_t magic;
    dge_config c;
    dge_weights w;
    dge_run r;
    vt_pool *pool;
    vt_store store;
    int record;         /* keep layer outputs (vt_dge_record) */
    int last_batch;     /* images of the last forward pass (0: none) */
    /* per layer: stage, block in stage, and offsets into the records */
    int *lstage, *lblock;
    size_t *reg_off, *out_off;
    size_t region_total, out_total;
} dge_net;

static float *own(dge_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

static const float *weight(dge_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "dge", name, count);
}

/* The grid part of a stored pos_embed [E + nat^2, C] at the run grid:
 * F.interpolate(bilinear, align_corners=False) of the [C, nat, nat] map,
 * the CLS row kept. */
static const float *resample_pos(dge_net *n, const dge_stage_cfg *s, const float *pos)
{
    int C = s->dim, nat = s->native, g = s->grid, E = s->extra;
    float *out = own(n, (size_t)s->n * C);
    float *a = vt_xmalloc((size_t)C * nat * nat * sizeof *a);
    float *b = vt_xmalloc((size_t)C * g * g * sizeof *b);
    memcpy(out, pos, (size_t)E * C * sizeof *out);
    vt_tokens_to_planes(a, pos + (size_t)E * C, nat * nat, C);
    vt_interp_bilinear(b, a, C, nat, nat, g, g, 0);
    for (int i = 0; i < g * g; i++)
        for (int d = 0; d < C; d++)
            out[(size_t)(E + i) * C + d] = b[(size_t)d * g * g + i];
    free(a);
    free(b);
    return out;
}

/* A linear weight [nout, nin] packed by the pool (vt_weight_packed). */
static const vt_wpack *packed(dge_net *n, const vt_frame *w, const char *name, int nout,
                              int nin)
{
    return vt_weight_packed(n->pool, w, "dge", name, nout, nin);
}

/* A stride-r convolution's weight `name` [o, c, r, r] over token patches,
 * packed in the (ky, kx, c) order of vt_im2col_tokens's rows (copies of
 * runs of tokens instead of a transpose per patch), in the file's
 * precision (a reordering of BF16 values is packed as BF16). The
 * reordered copy is the one kept; the weight's pages in the file go back. */
static int pack_patch_conv(dge_net *n, const vt_frame *w, vt_wpack *out, const char *name,
                           int o, int c, int r)
{
    size_t count = (size_t)o * c * r * r;
    float *tmp;
    int bf16;
    const float *wt = vt_weight_read(w, "dge", name, count, &tmp, &bf16);
    if (!wt)
        return -1;
    float *hwc = vt_xmalloc(count * sizeof *hwc);
    vt_conv_weight_hwc(hwc, wt, o, c, r);
    vt_map_release(wt, count * sizeof *wt);
    free(tmp);
    return vt_wpack_take_as(n->pool, out, hwc, o, c * r * r, bf16);
}

static int dge_bind(dge_net *n, const vt_frame *w)
{
    const dge_config *c = &n->c;
    dge_weights *W = &n->w;
    char name[160], pre[64];
    int deit = is_deit(c->kind), l = 0;
#define GET(dst, cnt) do { if (!((dst) = weight(n, w, name, (cnt)))) return -1; } while (0)
#define PK(dst, no, ni) do { if (!((dst) = packed(n, w, name, (no), (ni)))) return -1; } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
    W->blocks = vt_xcalloc((size_t)c->layers, sizeof *W->blocks);
    for (int i = 0; i < c->nstages; i++) {
        const dge_stage_cfg *s = &c->st[i];
        size_t C = s->dim, F = s->hidden, p = s->patch;
        const char *sfx = deit ? "" : (const char *[]){"1", "2", "3", "4"}[i];
        const float *pos;
        NAME("pos_embed%s", sfx); GET(pos, (size_t)s->pos_rows * C);
        W->pos[i] = s->resample ? resample_pos(n, s, pos) : pos;
        /* stage 1 reads the image (im2col, the weight's order), the others
         * tokens */
        NAME("patch_embed%s.proj.weight", sfx);
        if (i == 0) {
            PK(W->pe[i], (int)C, (int)(s->cin * p * p));
        } else {
            if (pack_patch_conv(n, w, &W->pe_own[i], name, (int)C, s->cin, (int)p) < 0)
                return -1;
            W->pe[i] = &W->pe_own[i];
        }
        NAME("patch_embed%s.proj.bias", sfx); GET(W->peb[i], C);
        if (!deit) {
            NAME("patch_embed%s.norm.weight", sfx); GET(W->penw[i], C);
            NAME("patch_embed%s.norm.bias", sfx); GET(W->penb[i], C);
        }
        for (int b = 0; b < s->depth; b++, l++) {
            dge_block *B = &W->blocks[l];
            block_prefix(c, i, b, pre, sizeof pre);
#define BG(dst, suffix, cnt) do { NAME("%s%s", pre, suffix); GET(dst, cnt); } while (0)
#define BP(dst, suffix, no, ni) do { NAME("%s%s", pre, suffix); PK(dst, (int)(no), (int)(ni)); } while (0)
            BG(B->n1w, "norm1.weight", C);
            BG(B->n1b, "norm1.bias", C);
            if (c->kind == K_DPVT) {
                size_t hp = (size_t)s->heads * s->points;
                BP(B->v, "attn.v.weight", C, C);
                if (c->qkv_bias)
                    BG(B->vb, "attn.v.bias", C);
                BP(B->aw, "attn.attn_weight.weight", hp, C);
                BG(B->awb, "attn.attn_weight.bias", hp);
                BP(B->off, "attn.offsets.weight", 2 * hp, C);
                BG(B->offb, "attn.offsets.bias", 2 * hp);
            } else if (c->fused_qkv) {
                /* rows [q | k | v], multiplied whole into q | k | v */
                BP(B->q, "attn.qkv.weight", 3 * C, C);
                if (c->qkv_bias)
                    BG(B->qb, "attn.qkv.bias", 3 * C);
            } else {
                BP(B->q, "attn.q.weight", C, C);
                BP(B->kv, "attn.kv.weight", 2 * C, C);
                if (c->qkv_bias) {
                    BG(B->qb, "attn.q.bias", C);
                    BG(B->kvb, "attn.kv.bias", 2 * C);
                }
                if (s->sr > 1) {
                    NAME("%sattn.sr.weight", pre);
                    if (pack_patch_conv(n, w, &B->sr, name, (int)C, (int)C, s->sr) < 0)
                        return -1;
                    BG(B->srb, "attn.sr.bias", C);
                    BG(B->srnw, "attn.norm.weight", C);
                    BG(B->srnb, "attn.norm.bias", C);
                }
            }
            BP(B->proj, "attn.proj.weight", C, C);
            BG(B->projb, "attn.proj.bias", C);
            BG(B->n2w, "norm2.weight", C);
            BG(B->n2b, "norm2.bias", C);
            BP(B->fc1, "mlp.fc1.weight", F, C);
            BG(B->fc1b, "mlp.fc1.bias", F);
            BP(B->fc2, "mlp.fc2.weight", C, F);
            BG(B->fc2b, "mlp.fc2.bias", C);
            if (c->gated) {
                size_t S = c->nsplits;
                BG(B->gatew, "dge.router.gate.weight", S * C);
                BG(B->gateb, "dge.router.gate.bias", S);
                NAME("%sdge.splits", pre);
                const vt_tensor *t = vt_frame_get(w, name);
                for (int j = 0; t && j < c->nsplits; j++)
                    if (vt_tensor_numel(t) != c->nsplits || vt_tensor_get(t, j) != c->splits[j])
                        return vt_seterr("dge: %s does not hold the config's split_sizes", name);
            }
#undef BG
#undef BP
        }
    }
    size_t CL = c->st[c->nstages - 1].dim;
    if (c->kind != K_DPVT) {
        NAME("cls_token");
        GET(W->cls, CL);
    }
    NAME("norm.weight"); GET(W->normw, CL);
    NAME("norm.bias"); GET(W->normb, CL);
    NAME("head.weight"); PK(W->head, c->classes, (int)CL);
    NAME("head.bias"); GET(W->headb, (size_t)c->classes);
#undef NAME
#undef GET
#undef PK
    return 0;
}

/* The packs that are ours (the pool frees its own). */
static void dge_unpack(dge_weights *W, int layers)
{
    for (int i = 0; i < DGE_STAGES; i++)
        vt_wpack_free(&W->pe_own[i]);
    for (int l = 0; W->blocks && l < layers; l++)
        vt_wpack_free(&W->blocks[l].sr);
}

/* Per-layer bookkeeping: which stage/block, where its records live. */
static void dge_layout(dge_net *n)
{
    const dge_config *c = &n->c;
    int L = c->layers, l = 0;
    n->lstage = vt_xcalloc((size_t)L, sizeof *n->lstage);
    n->lblock = vt_xcalloc((size_t)L, sizeof *n->lblock);
    n->reg_off = vt_xcalloc((size_t)L + 1, sizeof *n->reg_off);
    n->out_off = vt_xcalloc((size_t)L + 1, sizeof *n->out_off);
    for (int i = 0; i < c->nstages; i++)
        for (int b = 0; b < c->st[i].depth; b++, l++) {
            n->lstage[l] = i, n->lblock[l] = b;
            n->reg_off[l + 1] = n->reg_off[l] + c->st[i].regions;
            n->out_off[l + 1] = n->out_off[l] + (size_t)c->st[i].n * c->st[i].dim;
        }
    n->region_total = n->reg_off[L];
    n->out_total = n->out_off[L];
}

static void run_free(dge_run *r)
{
    float *f[] = {r->x, r->xn, r->cols, r->kvin, r->kv, r->q0, r->q, r->qn, r->qp, r->att, r->h,
                  r->aux, r->pooled, r->scratch, r->feat, r->gate, r->out, r->q0rec};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        free(f[i]);
    free(r->patches);
    free(r->qoff);
    free(r->decision);
    free(r->nq);
    memset(r, 0, sizeof *r);
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static void *zalloc(size_t n, size_t size) { return vt_xcalloc(n ? n : 1, size); }

/* Images that go through a stage's blocks together: enough for
 * DGE_GROUP_ROWS token rows. Measured (2 cores, b8, CPU time): whole-batch
 * products won nothing over image by image on the large stages (the
 * weights stay in L3 anyway, and a batch's activations fall out of L2),
 * so only small stages (PVT's last, sparse DGE layers) are grouped, which
 * gives their products rows enough to split over the threads. */
static int stage_group(const dge_stage_cfg *s, int batch)
{
    int g = (DGE_GROUP_ROWS + s->n - 1) / s->n;
    return g < 1 ? 1 : g > batch ? batch : g;
}

/* Query rows of one rows_task chunk in stage s: its MLP hidden layer in
 * half an L2 (a power of two, at least VT_ATTEND_ROWS). */
static int chunk_rows(const dge_stage_cfg *s)
{
    int ch = VT_ATTEND_ROWS;
    while (ch < 512 && (size_t)2 * ch * s->hidden <= DGE_CHUNK_FLOATS)
        ch *= 2;
    return ch;
}

/* Images whose patch embedding runs at once in stage i: a stage group,
 * so only the group's tokens and patches are in the work buffers. That
 * writes the group's new streams over the previous stage's, in place: safe
 * when an image's stream does not grow (n C; PVT's shrink stage by
 * stage), as a group reads its own images before writing and later images
 * lie beyond what it writes. Otherwise the whole batch at once. */
static int embed_group(const dge_config *c, int i, int batch)
{
    const dge_stage_cfg *s = &c->st[i];
    if (i > 0 && (size_t)s->n * s->dim > (size_t)c->st[i - 1].n * c->st[i - 1].dim)
        return batch;
    return stage_group(s, batch);
}

/* Scratch floats of stage s's attention for a batch of B images (see
 * attend_images: up to DGE_ATTEND_HEADS heads per call). */
static size_t attention_scratch(const dge_net *n, const dge_stage_cfg *s, int B)
{
    int d = s->dim / s->heads;
    if (n->c.fused_qkv)
        return vt_attention_scratch(n->pool, s->n, d);
    int images = DGE_ATTEND_HEADS / s->heads > 0 ? DGE_ATTEND_HEADS / s->heads : 1;
    images = images < B ? images : B;
    int heads = images * s->heads < DGE_ATTEND_HEADS ? images * s->heads : DGE_ATTEND_HEADS;
    return vt_attend_scratch(n->pool, heads, s->n, s->nkv, d);
}

static int run_alloc(dge_net *n, int batch)
{
    const dge_config *c = &n->c;
    dge_run *r = &n->r;
    if (batch < 1 || batch > 1 << 16)
        return vt_seterr("dge: batch %d out of range", batch);
    run_free(r);
    r->batch = batch;
    size_t B = batch;
    size_t nx = 0, nc = 0, nf = 0, ncols = 0, nkv = 0, kv = 0, aux = 0, pooled = 0, scr = 0;
    size_t nxn = 0, npt = 0, gmax = 0;
    for (int i = 0; i < c->nstages; i++) {
        const dge_stage_cfg *s = &c->st[i];
        size_t N = s->n, C = s->dim, hp = (size_t)s->heads * s->points;
        size_t G = stage_group(s, batch), E = embed_group(c, i, batch);
        size_t pe = (size_t)s->grid * s->grid * s->cin * s->patch * s->patch;
        gmax = zmax(gmax, G);
        npt = zmax(npt, G * N);
        nx = zmax(nx, B * N * C);
        nc = zmax(nc, G * N * C);
        nxn = zmax(nxn, zmax(G, E) * N * C);
        nf = zmax(nf, (size_t)DGE_MLP_ROWS * s->hidden);
        nf = zmax(nf, (size_t)vt_pool_size(n->pool) * chunk_rows(s) * s->hidden);
        ncols = zmax(ncols, E * pe);
        ncols = zmax(ncols, G * s->grid * s->grid * C);    /* sr patchify */
        nkv = zmax(nkv, G * s->nkv * C);
        kv = zmax(kv, G * s->nkv * 2 * C);
        kv = zmax(kv, G * N * (c->fused_qkv ? 3 : 1) * C);
        aux = zmax(aux, G * N * 3 * hp);
        pooled = zmax(pooled, (size_t)s->regions * C);
        if (c->kind != K_DPVT) {
            scr = zmax(scr, attention_scratch(n, s, (int)G));
            scr = zmax(scr, vt_pool_size(n->pool) * vt_attn_head_scratch(s->nkv, s->dim / s->heads));
        }
    }
    r->x = zalloc(nx, sizeof(float));
    r->xn = zalloc(nxn, sizeof(float));
    r->cols = zalloc(ncols, sizeof(float));
    r->kvin = zalloc(nkv, sizeof(float));
    r->kv = zalloc(kv, sizeof(float));
    r->q0 = zalloc(nc, sizeof(float));
    r->q = zalloc(nc, sizeof(float));
    r->qn = zalloc(nc, sizeof(float));
    r->qp = zalloc(nc, sizeof(float));
    r->att = zalloc(nc, sizeof(float));
    r->h = zalloc(nf, sizeof(float));
    r->aux = zalloc(aux, sizeof(float));
    r->pooled = zalloc(pooled, sizeof(float));
    r->scratch = zalloc(scr, sizeof(float));
    r->patches = zalloc(npt, sizeof *r->patches);
    r->qoff = zalloc(gmax + 1, sizeof *r->qoff);
    r->feat = zalloc(B * c->st[c->nstages - 1].dim, sizeof(float));
    r->gate = zalloc(B * n->region_total * c->nsplits, sizeof(float));
    r->decision = zalloc(B * n->region_total, sizeof(int8_t));
    r->nq = zalloc(B * c->layers, sizeof(int));
    if (n->record) {
        r->out = zalloc(B * n->out_total, sizeof(float));
        r->q0rec = zalloc(B * c->st[0].n * c->st[0].dim, sizeof(float));
    }
    return 0;
}

/* ---- forward: the DGE router and the sparse queries ------------------ */

/* Work of a router / patch job split into chunks for the pool: enough
 * that both threads get some, whole items (regions, queries) each. */
#define DGE_CHUNKS 8

typedef struct patch_job {
    const dge_net *n;
    const dge_stage_cfg *s;
    const dge_block *B;
    const dge_patch *pt;
    const float *x;     /* compress, route: the image's stream [n, C] */
    float *xw;          /* decompress: the stream written */
    float *q;           /* decompress: the queries, overwritten */
    const float *q0;
    float *q0w;         /* compress: the raw queries written */
    float *logits;      /* route: [regions, S] */
    int8_t *dec;        /* route: [regions] */
    int count;          /* regions or queries */
} patch_job;

static void chunk_range(int count, int task, int *i0, int *i1)
{
    int per = (count + DGE_CHUNKS - 1) / DGE_CHUNKS;
    *i0 = task * per;
    *i1 = *i0 + per < count ? *i0 + per : count;
}

/* Regions [i0, i1) of the router: AvgPool2d(R, R) of the raw grid tokens
 * (sum row-major, then divide), gate logits in double, argmax (the first
 * maximum wins). */
static void route_task(void *ctx, int task, int thread)
{
    (void)thread;
    const patch_job *j = ctx;
    const dge_config *c = &j->n->c;
    const dge_stage_cfg *s = j->s;
    int C = s->dim, W = s->grid, R = c->region, wr = W / R, S = c->nsplits, i0, i1;
    const float *grid = j->x + (size_t)s->extra * C;
    chunk_range(j->count, task, &i0, &i1);
    for (int reg = i0; reg < i1; reg++) {
        int ry = reg / wr, rx = reg % wr;
        float *g = j->n->r.pooled + (size_t)reg * C;
        memset(g, 0, (size_t)C * sizeof *g);
        for (int dy = 0; dy < R; dy++)
            for (int dx = 0; dx < R; dx++)
                vt_add(g, grid + ((size_t)(ry * R + dy) * W + rx * R + dx) * C, (size_t)C);
        for (int ch = 0; ch < C; ch++)
            g[ch] /= (float)(R * R);
        float *lg = j->logits + (size_t)reg * S;
        int best = 0;
        for (int k = 0; k < S; k++) {
            double acc = j->B->gateb[k];
            for (int ch = 0; ch < C; ch++)
                acc += (double)g[ch] * j->B->gatew[(size_t)k * C + ch];
            lg[k] = (float)acc;
            if (lg[k] > lg[best])
                best = k;
        }
        j->dec[reg] = (int8_t)c->splits[best];
    }
}

/* Route the grid of image b's x[n, C] (layer l): the gates' decisions per
 * region (recorded with their logits), then the query rows in pt (extra
 * tokens, then each region's patches row-major). Returns their count. */
static int route(dge_net *n, const dge_stage_cfg *s, const dge_block *B, int l, int b,
                 const float *x, dge_patch *pt)
{
    const dge_config *c = &n->c;
    dge_run *r = &n->r;
    int C = s->dim, E = s->extra, R = c->region, wr = s->grid / R, S = c->nsplits;
    patch_job j = {.n = n, .s = s, .B = B, .x = x, .count = s->regions,
                   .logits = r->gate + ((size_t)b * n->region_total + n->reg_off[l]) * S,
                   .dec = r->decision + (size_t)b * n->region_total + n->reg_off[l]};
    vt_pool_run_work(n->pool, DGE_CHUNKS, route_task, &j,
                     (double)s->grid * s->grid * C + 2.0 * s->regions * C * S);
    int nq = 0;
    for (int e = 0; e < E; e++)
        pt[nq++] = (dge_patch){-1 - e, 0, 1};
    for (int reg = 0; reg < s->regions; reg++) {
        int ry = reg / wr, rx = reg % wr, sp = j.dec[reg], side = R / sp;
        for (int i = 0; i < sp; i++)
            for (int k = 0; k < sp; k++)
                pt[nq++] = (dge_patch){ry * R + i * side, rx * R + k * side, side};
    }
    return nq;
}

/* Query rows [i0, i1) of q0: each row's patch mean of x
 * (grained_sample_compress: sum row-major, then divide by side^2); extra
 * tokens copied. */
static void compress_task(void *ctx, int task, int thread)
{
    (void)thread;
    const patch_job *j = ctx;
    int C = j->s->dim, E = j->s->extra, W = j->s->grid, i0, i1;
    chunk_range(j->count, task, &i0, &i1);
    for (int i = i0; i < i1; i++) {
        float *o = j->q0w + (size_t)i * C;
        const dge_patch *p = &j->pt[i];
        if (p->y0 < 0) {
            memcpy(o, j->x + (size_t)(-1 - p->y0) * C, (size_t)C * sizeof *o);
            continue;
        }
        const float *x = j->x + ((size_t)E + (size_t)p->y0 * W + p->x0) * C;
        memcpy(o, x, (size_t)C * sizeof *o);
        if (p->side == 1)
            continue;
        for (int dy = 0; dy < p->side; dy++)
            for (int dx = dy ? 0 : 1; dx < p->side; dx++)
                vt_add(o, x + ((size_t)dy * W + dx) * C, (size_t)C);
        float area = (float)(p->side * p->side);
        for (int ch = 0; ch < C; ch++)
            o[ch] /= area;
    }
}

static void compress(dge_net *n, const dge_stage_cfg *s, const dge_patch *pt, int nq,
                     const float *x, float *q0)
{
    patch_job j = {.n = n, .s = s, .pt = pt, .x = x, .q0w = q0, .count = nq};
    vt_pool_run_work(n->pool, DGE_CHUNKS, compress_task, &j, (double)s->n * s->dim);
}

/* Query rows [i0, i1): x += (q - q0) on every token of the row's patch
 * (grained_sample_decompress with add_ref on q - q0); q is overwritten.
 * The patches do not overlap, so chunks write disjoint tokens. */
static void decompress_task(void *ctx, int task, int thread)
{
    (void)thread;
    const patch_job *j = ctx;
    int C = j->s->dim, E = j->s->extra, W = j->s->grid, i0, i1;
    chunk_range(j->count, task, &i0, &i1);
    for (int i = i0; i < i1; i++) {
        float *d = j->q + (size_t)i * C;
        const float *z = j->q0 + (size_t)i * C;
        for (int ch = 0; ch < C; ch++)
            d[ch] -= z[ch];
        const dge_patch *p = &j->pt[i];
        if (p->y0 < 0) {
            vt_add(j->xw + (size_t)(-1 - p->y0) * C, d, (size_t)C);
            continue;
        }
        float *x = j->xw + ((size_t)E + (size_t)p->y0 * W + p->x0) * C;
        for (int dy = 0; dy < p->side; dy++)
            for (int dx = 0; dx < p->side; dx++)
                vt_add(x + ((size_t)dy * W + dx) * C, d, (size_t)C);
    }
}

static void decompress(dge_net *n, const dge_stage_cfg *s, const dge_patch *pt, int nq,
                       float *q, const float *q0, float *x)
{
    patch_job j = {.n = n, .s = s, .pt = pt, .q = q, .q0 = q0, .xw = x, .count = nq};
    vt_pool_run_work(n->pool, DGE_CHUNKS, decompress_task, &j, (double)s->n * s->dim);
}

/* The queries of layer l for images b0 .. b0+batch-1 (streams xs[batch,
 * n, C]): routed, pooled into r->q0 (the group's image b's rows from
 * r->qoff[b]) and copied to the query stream r->q. Returns the group's
 * query count. */
static int gather_queries(dge_net *n, const dge_stage_cfg *s, int l, int b0, int batch,
                          const float *xs)
{
    dge_run *r = &n->r;
    const dge_block *B = &n->w.blocks[l];
    size_t C = s->dim, N = s->n;
    r->qoff[0] = 0;
    for (int b = 0; b < batch; b++) {
        const float *x = xs + b * N * C;
        dge_patch *pt = r->patches + b * N;
        int nq = route(n, s, B, l, b0 + b, x, pt);
        compress(n, s, pt, nq, x, r->q0 + (size_t)r->qoff[b] * C);
        r->qoff[b + 1] = r->qoff[b] + nq;
        if (l == 0 && n->record)
            memcpy(r->q0rec + (size_t)(b0 + b) * n->c.st[0].n * C, r->q0 + (size_t)r->qoff[b] * C,
                   (size_t)nq * C * sizeof(float));
    }
    int Q = r->qoff[batch];
    memcpy(r->q, r->q0, (size_t)Q * C * sizeof *r->q);
    return Q;
}

/* Every token its own query: image b's rows from b*n. */
static int dense_queries(dge_run *r, const dge_stage_cfg *s, int batch)
{
    for (int b = 0; b <= batch; b++)
        r->qoff[b] = b * s->n;
    return batch * s->n;
}

/* ---- forward: blocks ------------------------------------------------- */

/* Attention of every image's queries (qp[Q, C], image b's from qoff[b])
 * over its own keys/values (k, v: image b's nkv rows from b*nkv, row stride
 * ldkv) into r->att[Q, C], heads concatenated. Consecutive images with as
 * many queries share one call (dense blocks: the whole batch). */
static void attend_images(dge_net *n, const dge_stage_cfg *s, const float *qp, const float *k,
                          const float *v, int ldkv, int batch)
{
    dge_run *r = &n->r;
    int C = s->dim, d = C / s->heads, nkv = s->nkv;
    vt_attend_head hd[DGE_ATTEND_HEADS];
    float scale = (float)pow((double)d, -0.5);   /* head_dim ** -0.5, as a C float */
    for (int b0 = 0, b1; b0 < batch; b0 = b1) {
        int nq = r->qoff[b0 + 1] - r->qoff[b0], nh = 0;
        for (b1 = b0; b1 < batch && r->qoff[b1 + 1] - r->qoff[b1] == nq &&
                      nh + s->heads <= DGE_ATTEND_HEADS; b1++)
            for (int j = 0; j < s->heads; j++, nh++) {
                size_t qo = (size_t)r->qoff[b1] * C + (size_t)j * d;
                size_t ko = (size_t)b1 * nkv * ldkv + (size_t)j * d;
                hd[nh] = (vt_attend_head){qp + qo, k + ko, v + ko, r->att + qo};
            }
        if (b1 == b0) {
            /* more heads than one call takes: this image alone, in parts */
            for (int j0 = 0; j0 < s->heads; j0 += DGE_ATTEND_HEADS) {
                int m = s->heads - j0 < DGE_ATTEND_HEADS ? s->heads - j0 : DGE_ATTEND_HEADS;
                for (int j = 0; j < m; j++) {
                    size_t qo = (size_t)r->qoff[b0] * C + (size_t)(j0 + j) * d;
                    size_t ko = (size_t)b0 * nkv * ldkv + (size_t)(j0 + j) * d;
                    hd[j] = (vt_attend_head){qp + qo, k + ko, v + ko, r->att + qo};
                }
                vt_attend(n->pool, hd, m, C, ldkv, ldkv, C, nq, nkv, d, scale, r->scratch, NULL);
            }
            b1 = b0 + 1;
            continue;
        }
        vt_attend(n->pool, hd, nh, C, ldkv, ldkv, C, nq, nkv, d, scale, r->scratch, NULL);
    }
}

/* q[rows, C] += fc2(GELU(fc1(LN2(q)))), the hidden layer made DGE_MLP_ROWS
 * rows at a time (a whole batch's [rows, F] would not stay in cache). */
static void mlp(dge_net *n, const dge_stage_cfg *s, const dge_block *B, float *q, int rows)
{
    dge_run *r = &n->r;
    size_t C = s->dim;
    vt_layernorm_mt(n->pool, r->qn, q, B->n2w, B->n2b, rows, (int)C, n->c.ln_eps);
    for (int r0 = 0; r0 < rows; r0 += DGE_MLP_ROWS) {
        int m = rows - r0 < DGE_MLP_ROWS ? rows - r0 : DGE_MLP_ROWS;
        vt_linear_packed(n->pool, r->h, r->qn + r0 * C, B->fc1, B->fc1b, m, 0, 1);
        vt_linear_packed(n->pool, q + r0 * C, r->h, B->fc2, B->fc2b, m, 1, 0);
    }
}

/* PVT's keys/values input for every image: LN(conv_sr(xn)) [B, nkv, C]
 * when sr > 1, else xn itself. */
static const float *kv_input(dge_net *n, const dge_stage_cfg *s, const dge_block *B, int batch)
{
    dge_run *r = &n->r;
    if (s->sr == 1)
        return r->xn;
    int g = s->grid, gs = g / s->sr;
    size_t C = s->dim, kk = C * s->sr * s->sr, m = (size_t)gs * gs;
    for (int b = 0; b < batch; b++)
        vt_patchify_tokens_mt(n->pool, r->cols + b * m * kk, r->xn + b * (size_t)s->n * C, g,
                              g, (int)C, s->sr, 1);
    vt_linear_packed(n->pool, r->kvin, r->cols, &B->sr, B->srb, batch * (int)m, 0, 0);
    vt_layernorm_mt(n->pool, r->kvin, r->kvin, B->srnw, B->srnb, batch * (int)m, (int)C,
                    n->c.sr_eps);
    return r->kvin;
}

typedef struct rows_job {
    dge_net *n;
    const dge_stage_cfg *s;
    const dge_block *B;
    float *q;           /* the query stream [Q, C] */
    int ch;             /* rows per chunk */
} rows_job;

/* Query rows of chunk `task` (each image's rows cut into chunks of ch)
 * through everything after the keys and values, on one thread with the
 * rows in its cache:
 *   q += proj(Attn(LN1 q, k, v));  q += fc2(GELU(fc1(LN2 q)))
 * (dense: LN1 q is xn, made for the keys already). */
static void rows_task(void *ctx, int task, int thread)
{
    const rows_job *j = ctx;
    dge_net *n = j->n;
    dge_run *r = &n->r;
    const dge_stage_cfg *s = j->s;
    const dge_block *B = j->B;
    int b = 0, C = s->dim, d = C / s->heads, nkv = s->nkv;
    for (;; b++) {
        int chunks = (r->qoff[b + 1] - r->qoff[b] + j->ch - 1) / j->ch;
        if (task < chunks)
            break;
        task -= chunks;
    }
    size_t r0 = (size_t)r->qoff[b] + (size_t)task * j->ch;
    int m = r->qoff[b + 1] - (int)r0 < j->ch ? r->qoff[b + 1] - (int)r0 : j->ch;
    float *q = j->q + r0 * C, *qn = r->qn + r0 * C, *qp = r->qp + r0 * C, *att = r->att + r0 * C;
    float *h = r->h + (size_t)thread * j->ch * s->hidden;
    float *scr = r->scratch + (size_t)thread * vt_attn_head_scratch(nkv, d);
    const float *kv = r->kv + (size_t)b * nkv * 2 * C, *in = r->xn + r0 * C;
    float scale = (float)pow((double)d, -0.5);
    if (n->c.gated) {
        vt_layernorm(qn, q, B->n1w, B->n1b, m, C, n->c.ln_eps);
        in = qn;
    }
    vt_linear_packed(NULL, qp, in, B->q, B->qb, m, 0, 0);
    for (int hd = 0; hd < s->heads; hd++)
        for (int a = 0; a < m; a += VT_ATTEND_ROWS)
            vt_attn_head(att + (size_t)a * C + hd * d, C, qp + (size_t)a * C + hd * d, C,
                         kv + hd * d, 2 * C, kv + C + hd * d, 2 * C,
                         m - a < VT_ATTEND_ROWS ? m - a : VT_ATTEND_ROWS, nkv, d, scale, scr);
    vt_linear_packed(NULL, q, att, B->proj, B->projb, m, 1, 0);
    vt_layernorm(qn, q, B->n2w, B->n2b, m, C, n->c.ln_eps);
    vt_linear_packed(NULL, h, qn, B->fc1, B->fc1b, m, 0, 1);
    vt_linear_packed(NULL, q, h, B->fc2, B->fc2b, m, 1, 0);
}

/* Layer l on the streams x[batch, n, C] of images b0 .. b0+batch-1; a
 * DGE block when the net is gated (queries: the patch means the router
 * chose; dense: every token, updated in place). The query counts go to
 * r->nq. */
static void block(dge_net *n, int i, int l, int b0, int batch, float *x)
{
    const dge_config *c = &n->c;
    const dge_stage_cfg *s = &c->st[i];
    const dge_block *B = &n->w.blocks[l];
    dge_run *r = &n->r;
    int C = s->dim, N = s->n;
    float eps = c->ln_eps;
    float *q = c->gated ? r->q : x;         /* the query stream */
    int Q = c->gated ? gather_queries(n, s, l, b0, batch, x) : dense_queries(r, s, batch);
    int chunked = 0;    /* the rest of the block ran in rows_task */
    vt_layernorm_mt(n->pool, r->xn, x, B->n1w, B->n1b, batch * N, C, eps);
    if (c->fused_qkv) {
        /* plain DeiT: one product gives q | k | v, then timm-layout attention */
        int d = C / s->heads;
        vt_linear_packed(n->pool, r->kv, r->xn, B->q, B->qb, batch * N, 0, 0);
        vt_attention(n->pool, r->att, r->kv, batch, N, s->heads, d,
                     (float)pow((double)d, -0.5), r->scratch, NULL, NULL);
    } else {
        const float *kvin = kv_input(n, s, B, batch);
        vt_linear_packed(n->pool, r->kv, kvin, B->kv, B->kvb, batch * s->nkv, 0, 0);
        int ch = chunk_rows(s);
        chunked = Q >= 2 * vt_pool_size(n->pool) * ch;
        if (chunked) {
            /* many rows (PVT's first two stages): each thread takes chunks
             * of them through the rest of the block, with no hand-over per
             * op and the rows in its own cache (the MLP hidden layer of a
             * whole-pool product was written in column slices by both
             * cores and read back in row blocks). pvt_small_256 b1, 2
             * threads, min over 100+ passes alternating in one process:
             * 48.8 -> 42.5 ms (60.3 -> 55.3, 78.2 -> 67.4 in busier runs) */
            rows_job j = {n, s, B, q, ch};
            int tasks = 0;
            for (int b = 0; b < batch; b++)
                tasks += (r->qoff[b + 1] - r->qoff[b] + ch - 1) / ch;
            vt_pool_run(n->pool, tasks, rows_task, &j);
        } else {
            /* queries: LN1 of the pooled queries (dense: LN1(x), done) */
            const float *qn = r->xn;
            if (c->gated) {
                vt_layernorm_mt(n->pool, r->qn, q, B->n1w, B->n1b, Q, C, eps);
                qn = r->qn;
            }
            vt_linear_packed(n->pool, r->qp, qn, B->q, B->qb, Q, 0, 0);
            attend_images(n, s, r->qp, r->kv, r->kv + C, 2 * C, batch);
        }
    }
    if (!chunked) {
        /* q += proj(att); q += fc2(GELU(fc1(LN2(q)))) */
        vt_linear_packed(n->pool, q, r->att, B->proj, B->projb, Q, 1, 0);
        mlp(n, s, B, q, Q);
    }
    for (int b = 0; b < batch; b++) {
        int q0 = r->qoff[b], nq = r->qoff[b + 1] - q0;
        if (c->gated)
            decompress(n, s, r->patches + (size_t)b * N, nq, q + (size_t)q0 * C,
                       r->q0 + (size_t)q0 * C, x + (size_t)b * N * C);
        r->nq[(size_t)(b0 + b) * c->layers + l] = nq;
    }
}

/* A deformable-PVT block on x[batch, n, C] (no CLS, no sr; images b0 ..),
 * in place:
 *   x += proj(points(LN1 x));  x += fc2(GELU(fc1(LN2 x)))
 * points: v = Linear(u), offsets [n, h, P, 2] and point weights
 * softmax_P(Linear(u)) [n, h, P] from u = LN1(x); lib/ops/deform.h. */
static void dpvt_block(dge_net *n, int i, int l, int b0, int batch, float *x)
{
    const dge_config *c = &n->c;
    const dge_stage_cfg *s = &c->st[i];
    const dge_block *B = &n->w.blocks[l];
    dge_run *r = &n->r;
    int C = s->dim, N = s->n, M = batch * N, hp = s->heads * s->points, g = s->grid;
    float *off = r->aux, *wts = r->aux + (size_t)M * 2 * hp;
    vt_layernorm_mt(n->pool, r->xn, x, B->n1w, B->n1b, M, C, c->ln_eps);
    vt_linear_packed(n->pool, r->kv, r->xn, B->v, B->vb, M, 0, 0);
    vt_linear_packed(n->pool, off, r->xn, B->off, B->offb, M, 0, 0);
    vt_linear_packed(n->pool, wts, r->xn, B->aw, B->awb, M, 0, 0);
    vt_softmax(wts, M * s->heads, s->points);
    for (int b = 0; b < batch; b++) {
        size_t o = (size_t)b * N;
        vt_deform_attend(n->pool, r->att + o * C, C, r->kv + o * C, C, off + o * 2 * hp,
                         wts + o * hp, g, g, s->heads, s->points, C / s->heads);
        r->nq[(size_t)(b0 + b) * c->layers + l] = N;
    }
    vt_linear_packed(n->pool, x, r->att, B->proj, B->projb, M, 1, 0);
    mlp(n, s, B, x, M);
}

/* x[b, n, C] of stage i for images b0 .. b0+batch-1: patch embedding of
 * the images (stage 0) or of the previous stage's grids (in r->x, no
 * extra tokens there), PVT's LayerNorm, CLS, + pos. */
static void embed(dge_net *n, int i, const float *img, int b0, int batch)
{
    const dge_config *c = &n->c;
    const dge_stage_cfg *s = &c->st[i];
    const dge_weights *W = &n->w;
    dge_run *r = &n->r;
    int C = s->dim, E = s->extra, p = s->patch, side = s->in_grid;
    size_t m = (size_t)s->grid * s->grid, kk = (size_t)s->cin * p * p;
    for (int b = 0; b < batch; b++) {
        float *cols = r->cols + b * m * kk;
        size_t im = (size_t)b0 + b;
        if (i == 0)
            vt_im2col(cols, img + im * 3 * side * side, 3, side, side, p, p, 0);
        else
            vt_patchify_tokens_mt(n->pool, cols, r->x + im * c->st[i - 1].n * s->cin,
                                  side, side, s->cin, p, 1);
    }
    /* tokens [batch*m, C] into xn, then into each image's grid rows of x */
    vt_linear_packed(n->pool, r->xn, r->cols, W->pe[i], W->peb[i], batch * (int)m, 0, 0);
    if (W->penw[i])
        vt_layernorm_mt(n->pool, r->xn, r->xn, W->penw[i], W->penb[i], batch * (int)m, C,
                        c->pe_eps);
    for (int b = 0; b < batch; b++) {
        float *x = r->x + ((size_t)b0 + b) * s->n * C;
        memcpy(x + (size_t)E * C, r->xn + b * m * C, m * C * sizeof *x);
        if (E)
            memcpy(x, W->cls, (size_t)C * sizeof(float));
        vt_add(x, W->pos[i], (size_t)s->n * C);
    }
}

/* Every stage on the whole batch; image b's features into r->feat[b]. */
static void forward_batch(dge_net *n, const float *img, int batch)
{
    const dge_config *c = &n->c;
    dge_run *r = &n->r;
    int l0 = 0;
    for (int i = 0; i < c->nstages; l0 += c->st[i].depth, i++) {
        const dge_stage_cfg *s = &c->st[i];
        size_t nc = (size_t)s->n * s->dim;
        int G = stage_group(s, batch), EG = embed_group(c, i, batch);
        /* a group embedded (EG: a group or the batch) and through all of
         * the stage's blocks, then the next group */
        for (int b0 = 0; b0 < batch; b0 += G) {
            int nb = batch - b0 < G ? batch - b0 : G;
            float *x = r->x + b0 * nc;
            if (b0 % EG == 0)
                embed(n, i, img, b0, batch - b0 < EG ? batch - b0 : EG);
            for (int l = l0; l < l0 + s->depth; l++) {
                if (c->kind == K_DPVT)
                    dpvt_block(n, i, l, b0, nb, x);
                else
                    block(n, i, l, b0, nb, x);
                for (int b = 0; n->record && b < nb; b++)
                    memcpy(r->out + (size_t)(b0 + b) * n->out_total + n->out_off[l],
                           x + b * nc, nc * sizeof(float));
            }
        }
    }
    const dge_stage_cfg *s = &c->st[c->nstages - 1];
    int C = s->dim;
    if (c->kind == K_DPVT) {
        for (int b = 0; b < batch; b++) {
            /* image by image: xn holds a group */
            vt_layernorm_mt(n->pool, r->xn, r->x + (size_t)b * s->n * C, n->w.normw,
                            n->w.normb, s->n, C, c->ln_eps);
            vt_mean_rows(r->feat + (size_t)b * C, r->xn, s->n, C);
        }
    } else {
        for (int b = 0; b < batch; b++)
            vt_layernorm(r->feat + (size_t)b * C, r->x + (size_t)b * s->n * C, n->w.normw,
                         n->w.normb, 1, C, c->ln_eps);
    }
}

static int dge_forward(void *net, const float *x, int batch, float *logits)
{
    dge_net *n = net;
    if (!n || n->magic != DGE_MAGIC)
        return vt_seterr("dge: not a dge net");
    if (batch < 1)
        return vt_seterr("dge: batch %d", batch);
    if (batch > n->r.batch && run_alloc(n, batch) < 0)
        return -1;
    n->last_batch = 0;
    forward_batch(n, x, batch);
    vt_linear_packed(n->pool, logits, n->r.feat, n->w.head, n->w.headb, batch, 0, 0);
    n->last_batch = batch;
    return 0;
}

/* ---- lifetime -------------------------------------------------------- */

static void dge_destroy(void *net)
{
    dge_net *n = net;
    if (!n)
        return;
    run_free(&n->r);
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    dge_unpack(&n->w, n->c.layers);
    free(n->w.blocks);
    free(n->lstage);
    free(n->lblock);
    free(n->reg_off);
    free(n->out_off);
    n->magic = 0;
    free(n);
}

static void *dge_create(const cJSON *cfg, const vt_frame *weights, const vt_run_opts *o)
{
    dge_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = DGE_MAGIC;
    if (dge_config_read(cfg, &n->c) < 0) {
        dge_destroy(n);
        return NULL;
    }
    dge_layout(n);
    /* the pool first: it packs the linear weights and keeps the packs */
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    /* the mapped model file never changes: vt_linear packs its weights once */
    if (n->pool)
        vt_pool_readonly(n->pool, weights->map, weights->map_len);
    if (!n->pool || dge_bind(n, weights) < 0 ||
        run_alloc(n, o && o->batch > 0 ? o->batch : 1) < 0) {
        dge_destroy(n);
        return NULL;
    }
    return n;
}

/* ---- what the gates did (models/dge.h) ------------------------------- */

static const dge_net *as_net(const void *net)
{
    const dge_net *n = net;
    if (!n || n->magic != DGE_MAGIC)
        return vt_seterr("not a dge net"), NULL;
    return n;
}

/* The net, when image is in its last forward pass and layer exists. */
static const dge_net *as_run(const void *net, int image, int layer)
{
    const dge_net *n = as_net(net);
    if (!n)
        return NULL;
    if (!n->last_batch)
        return vt_seterr("dge: no forward pass yet"), NULL;
    if (image < 0 || image >= n->last_batch)
        return vt_seterr("dge: image %d not in the last batch of %d", image, n->last_batch), NULL;
    if (layer < 0 || layer >= n->c.layers)
        return vt_seterr("dge: layer %d not in 0..%d", layer, n->c.layers - 1), NULL;
    return n;
}

int vt_dge_layers(const void *net)
{
    const dge_net *n = as_net(net);
    return n ? n->c.layers : -1;
}

int vt_dge_layer_info(const void *net, int layer, vt_dge_layer *out)
{
    const dge_net *n = as_net(net);
    if (!n)
        return -1;
    if (layer < 0 || layer >= n->c.layers)
        return vt_seterr("dge: layer %d not in 0..%d", layer, n->c.layers - 1);
    const dge_stage_cfg *s = &n->c.st[n->lstage[layer]];
    memset(out, 0, sizeof *out);
    out->stage = n->lstage[layer] + 1;
    out->block = n->lblock[layer];
    out->gated = n->c.gated;
    out->h = out->w = s->grid;
    out->extra = s->extra;
    out->dim = s->dim;
    if (n->c.gated) {
        out->region = n->c.region;
        out->hr = out->wr = s->grid / n->c.region;
        out->nsplits = n->c.nsplits;
    }
    return 0;
}

int vt_dge_layer_index(const void *net, int stage, int block)
{
    const dge_net *n = as_net(net);
    if (!n)
        return -1;
    for (int l = 0; l < n->c.layers; l++)
        if (n->lstage[l] + 1 == stage && n->lblock[l] == block)
            return l;
    return -1;
}

int vt_dge_batch(const void *net)
{
    const dge_net *n = as_net(net);
    return n ? n->last_batch : 0;
}

const int8_t *vt_dge_decisions(const void *net, int image, int layer)
{
    const dge_net *n = as_run(net, image, layer);
    if (!n)
        return NULL;
    if (!n->c.gated)
        return vt_seterr("dge: %s has no gates", kind_names[n->c.kind]), NULL;
    return n->r.decision + (size_t)image * n->region_total + n->reg_off[layer];
}

const float *vt_dge_gate_logits(const void *net, int image, int layer)
{
    const dge_net *n = as_run(net, image, layer);
    if (!n)
        return NULL;
    if (!n->c.gated)
        return vt_seterr("dge: %s has no gates", kind_names[n->c.kind]), NULL;
    return n->r.gate + ((size_t)image * n->region_total + n->reg_off[layer]) * n->c.nsplits;
}

int vt_dge_queries(const void *net, int image, int layer)
{
    const dge_net *n = as_run(net, image, layer);
    return n ? n->r.nq[(size_t)image * n->c.layers + layer] : -1;
}

const float *vt_dge_features(const void *net, int image, int *dim)
{
    const dge_net *n = as_run(net, image, 0);
    if (!n)
        return NULL;
    int C = n->c.st[n->c.nstages - 1].dim;
    if (dim)
        *dim = C;
    return n->r.feat + (size_t)image * C;
}

int vt_dge_record(void *net, int on)
{
    dge_net *n = (dge_net *)as_net(net);
    if (!n)
        return -1;
    n->record = on != 0;
    n->last_batch = 0;
    return run_alloc(n, n->r.batch);
}

const float *vt_dge_layer_out(const void *net, int image, int layer, int *rows, int *dim)
{
    const dge_net *n = as_run(net, image, layer);
    if (!n)
        return NULL;
    if (!n->r.out)
        return vt_seterr("dge: layer outputs are not recorded (vt_dge_record)"), NULL;
    const dge_stage_cfg *s = &n->c.st[n->lstage[layer]];
    if (rows)
        *rows = s->n;
    if (dim)
        *dim = s->dim;
    return n->r.out + (size_t)image * n->out_total + n->out_off[layer];
}

const float *vt_dge_queries0(const void *net, int image, int *nq, int *dim)
{
    const dge_net *n = as_run(net, image, 0);
    if (!n)
        return NULL;
    if (!n->r.q0rec || !n->c.gated)
        return vt_seterr("dge: layer 0's queries are not recorded (vt_dge_record, gated nets)"),
               NULL;
    if (nq)
        *nq = n->r.nq[(size_t)image * n->c.layers];
    if (dim)
        *dim = n->c.st[0].dim;
    return n->r.q0rec + (size_t)image * n->c.st[0].n * n->c.st[0].dim;
}

int vt_dge_patches(const void *net, int image, int layer, int64_t *rows)
{
    const int8_t *dec = vt_dge_decisions(net, image, layer);
    if (!dec)
        return -1;
    const dge_net *n = net;
    const dge_stage_cfg *s = &n->c.st[n->lstage[layer]];
    int R = n->c.region, wr = s->grid / R, k = 0;
    for (int e = 0; e < s->extra; e++, k++)
        if (rows) {
            int64_t *o = rows + (size_t)k * 4;
            o[0] = image, o[1] = -1 - e, o[2] = 0, o[3] = 1;
        }
    for (int reg = 0; reg < s->regions; reg++) {
        int sp = dec[reg], side = R / sp;
        for (int i = 0; i < sp; i++)
            for (int j = 0; j < sp; j++, k++)
                if (rows) {
                    int64_t *o = rows + (size_t)k * 4;
                    o[0] = image, o[1] = (reg / wr) * R + i * side, o[2] = (reg % wr) * R + j * side;
                    o[3] = side;
                }
    }
    return k;
}

/* What image `image` of the last pass cost: the layers at the queries
 * their gates chose, plus the routers. */
static int dge_spent(const void *net, int image, vt_cost *out)
{
    const dge_net *n = as_run(net, image, 0);
    if (!n)
        return -1;
    const dge_config *c = &n->c;
    memset(out, 0, sizeof *out);
    fixed_cost(c, out);
    for (int l = 0; l < c->layers; l++)
        layer_cost(c, n->lstage[l], n->r.nq[(size_t)image * c->layers + l], c->gated, out);
    return 0;
}

const vt_family vt_family_dge = {
    .name = "dge",
    .archs = dge_archs,
    .config = dge_config_defaults,
    .params = dge_params,
    .create = dge_create,
    .forward = dge_forward,
    .destroy = dge_destroy,
    .cost = dge_cost,
    .spent = dge_spent,
};
