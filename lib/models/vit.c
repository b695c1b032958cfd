/* vit.c - the plain ViT / DeiT family with timm's names and state dict
 * (VisionTransformer, VisionTransformerDistilled), eval mode.
 *
 *   x = patch_embed(img) -> [cls, (dist), patches] + pos_embed
 *   depth x { x += proj(attn(norm1(x)));  x += fc2(gelu(fc1(norm2(x)))) }
 *   logits = head(norm(x)[:, 0])   (distilled: mean with head_dist(.., 1))
 *
 * Config keys (as refgen's meta.json "config"): arch, img_size, patch_size,
 * embed_dim, depth, num_heads, mlp_ratio, qkv_bias, num_classes, distilled,
 * eps, crop_pct, interpolation, mean, std; and pos_embed_size, the image
 * size the stored pos_embed was trained at when it differs from img_size
 * (it is then resampled like timm's resample_abs_pos_embed: bicubic with
 * antialias). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops.h"
#include "tokens.h"
#include "util.h"

#define VIT_MAGIC 0x56695431u   /* "ViT1": the net behind a vt_model */

extern const vt_family vt_family_vit;

static const char *const vit_archs[] = {
    "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
    "deit_tiny_distilled_patch16_224", "deit_small_distilled_patch16_224",
    "deit_base_distilled_patch16_224",
    "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224",
    NULL,
};

typedef struct vit_config {
    int img_size;       /* S: input side */
    int pos_size;       /* side the stored pos_embed was trained at */
    int patch;          /* P */
    int dim;            /* D = heads * dh */
    int depth;
    int heads;
    int hidden;         /* D * mlp_ratio */
    int qkv_bias;
    int classes;        /* C */
    int distilled;
    int prefix;         /* 1 + distilled: cls (and dist) tokens */
    int grid;           /* S / P */
    int pos_grid;       /* pos_size / P */
    int t;              /* tokens: prefix + grid^2 */
    float eps;
} vit_config;

typedef struct vit_block {
    const float *n1w, *n1b;         /* [D] */
    /* the linear weights packed (vt_weight_packed; the pool owns them) */
    const vt_wpack *qkv; const float *qkvb;     /* [3D, D], [3D] (qkvb may be NULL) */
    const vt_wpack *proj; const float *projb;   /* [D, D], [D] */
    const float *n2w, *n2b;                     /* [D] */
    const vt_wpack *fc1; const float *fc1b;     /* [hidden, D], [hidden] */
    const vt_wpack *fc2; const float *fc2b;     /* [D, hidden], [D] */
} vit_block;

typedef struct vit_weights {
    const float *cls;               /* [D] */
    const float *dist;              /* [D] or NULL */
    const float *pos;               /* [t, D], resampled to the grid */
    const vt_wpack *pe;             /* [D, 3, P, P] packed as [D, 3PP] */
    const float *peb;               /* [D] */
    vit_block *blocks;              /* [depth] */
    const float *normw, *normb;     /* [D] */
    const float *headw, *headb;     /* [C, D], [C] */
    const float *hdw, *hdb;         /* head_dist, or NULL */
} vit_weights;

/* Activations for up to `batch` images, allocated once. */
typedef struct vit_run {
    int batch;
    float *x;           /* [B*t, D] residual stream */
    float *xn;          /* [B*t, D] normed */
    /* qkv, h and cols share one area (work), att follows qkv's part: h is
     * written after qkv and att are read for the last time, cols are read
     * before the first qkv. A DeiT-B at batch 8 keeps 24 MB less. */
    float *work;
    float *qkv;         /* [B*t, 3D] */
    float *att;         /* [B*t, D] attention output (also patch tokens) */
    float *h;           /* [B*t, hidden] */
    float *cols;        /* [B*grid^2, 3*P*P] im2col of the images */
    float *scratch;     /* vt_attention_scratch */
    float *cls_heads;   /* [B, heads, t] last block's attention of token 0 */
    float *cls_attn;    /* [B, t-1] mean over heads */
    float *heads_map;   /* [B, heads, t, t] one block's attention, if kept */
    float *kept;        /* [keep, B, t, t] kept blocks' attention, head mean */
    float *pre;         /* [prefix*B, D] final-normed prefix tokens */
    float *tmp;         /* [B, C] */
} vit_run;

typedef struct vit_net {
    uint32_t magic;
    vit_config c;
    vit_weights w;
    vit_run r;
    vt_pool *pool;
    vt_store store;      /* copies (resampled pos_embed, misaligned tensors) */
    int last_batch;     /* images in the last forward pass (0: none yet) */
    int keep;           /* blocks whose attention is kept (vt_vit_keep_attention) */
    int last_t;         /* tokens per image in that pass */
} vit_net;

/* ---- config ---------------------------------------------------------- */

static int vit_config_defaults(const char *arch, cJSON *cfg)
{
    int dim, heads;
    if (strstr(arch, "_tiny_"))
        dim = 192, heads = 3;
    else if (strstr(arch, "_small_"))
        dim = 384, heads = 6;
    else if (strstr(arch, "_base_"))
        dim = 768, heads = 12;
    else
        return vt_seterr("vit: unknown arch '%s'", arch);
    int is_vit = strncmp(arch, "vit_", 4) == 0;
    cJSON_AddStringToObject(cfg, "arch", arch);
    cJSON_AddNumberToObject(cfg, "img_size", 224);
    cJSON_AddNumberToObject(cfg, "patch_size", 16);
    cJSON_AddNumberToObject(cfg, "embed_dim", dim);
    cJSON_AddNumberToObject(cfg, "depth", 12);
    cJSON_AddNumberToObject(cfg, "num_heads", heads);
    cJSON_AddNumberToObject(cfg, "mlp_ratio", 4);
    cJSON_AddBoolToObject(cfg, "qkv_bias", 1);
    cJSON_AddNumberToObject(cfg, "num_classes", 1000);
    cJSON_AddBoolToObject(cfg, "distilled", strstr(arch, "_distilled_") != NULL);
    cJSON_AddNumberToObject(cfg, "eps", 1e-6);
    /* timm's pretrained cfgs: both crop 0.9 bicubic; DeiT (fb_in1k) uses
     * ImageNet mean/std, the augreg ViTs 0.5/0.5 (Inception). */
    cJSON_AddNumberToObject(cfg, "crop_pct", 0.9);
    cJSON_AddStringToObject(cfg, "interpolation", "bicubic");
    const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
    const float half[3] = {0.5f, 0.5f, 0.5f};
    cJSON_AddItemToObject(cfg, "mean", cJSON_CreateFloatArray(is_vit ? half : in_mean, 3));
    cJSON_AddItemToObject(cfg, "std", cJSON_CreateFloatArray(is_vit ? half : in_std, 3));
    return 0;
}

/* Read and check a config; the distilled default follows the arch name. */
static int vit_config_read(const cJSON *cfg, vit_config *c)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, "arch");
    const char *arch = cJSON_IsString(a) ? a->valuestring : "";
    memset(c, 0, sizeof *c);
    c->img_size = vt_cfg_int(cfg, "img_size", 224);
    c->pos_size = vt_cfg_int(cfg, "pos_embed_size", c->img_size);
    c->patch = vt_cfg_int(cfg, "patch_size", 16);
    c->dim = vt_cfg_int(cfg, "embed_dim", 768);
    c->depth = vt_cfg_int(cfg, "depth", 12);
    c->heads = vt_cfg_int(cfg, "num_heads", 12);
    double ratio = vt_cfg_num(cfg, "mlp_ratio", 4.0);
    c->qkv_bias = vt_cfg_bool(cfg, "qkv_bias", 1);
    c->classes = vt_cfg_int(cfg, "num_classes", 1000);
    c->distilled = vt_cfg_bool(cfg, "distilled", strstr(arch, "_distilled_") != NULL);
    c->eps = (float)vt_cfg_num(cfg, "eps", 1e-6);
    if (c->patch < 1 || c->patch > 1024)
        return vt_seterr("vit: patch_size %d out of range", c->patch);
    if (c->img_size < c->patch || c->img_size > 8192)
        return vt_seterr("vit: img_size %d out of range", c->img_size);
    if (c->pos_size < c->patch || c->pos_size > 8192)
        return vt_seterr("vit: pos_embed_size %d out of range", c->pos_size);
    if (c->dim < 1 || c->dim > 65536 || c->heads < 1 || c->dim % c->heads)
        return vt_seterr("vit: embed_dim %d not divisible into %d heads", c->dim, c->heads);
    if (c->depth < 1 || c->depth > 1000)
        return vt_seterr("vit: depth %d out of range", c->depth);
    if (!(ratio > 0 && ratio * c->dim <= 1 << 20))
        return vt_seterr("vit: mlp_ratio out of range");
    c->hidden = (int)(c->dim * ratio);
    if (c->classes < 1 || c->classes > 1000000)
        return vt_seterr("vit: num_classes %d out of range", c->classes);
    if (!(c->eps > 0 && c->eps < 1))
        return vt_seterr("vit: eps out of range");
    c->prefix = 1 + (c->distilled != 0);
    c->grid = c->img_size / c->patch;
    c->pos_grid = c->pos_size / c->patch;
    c->t = c->prefix + c->grid * c->grid;
    return 0;
}

static int vit_params(const cJSON *cfg, vt_params *ps)
{
    vit_config c;
    if (vit_config_read(cfg, &c) < 0)
        return -1;
    int64_t D = c.dim, H = c.hidden, P = c.patch;
    int64_t npos = c.prefix + (int64_t)c.pos_grid * c.pos_grid;
    char name[96];
    vt_params_add(ps, 0, "cls_token", 3, (int64_t)1, (int64_t)1, D);
    if (c.distilled)
        vt_params_add(ps, 0, "dist_token", 3, (int64_t)1, (int64_t)1, D);
    vt_params_add(ps, 0, "pos_embed", 3, (int64_t)1, npos, D);
    vt_params_add(ps, 0, "patch_embed.proj.weight", 4, D, (int64_t)3, P, P);
    vt_params_add(ps, 0, "patch_embed.proj.bias", 1, D);
    for (int i = 0; i < c.depth; i++) {
#define ADD(suffix, ...) \
    (snprintf(name, sizeof name, "blocks.%d.%s", i, suffix), vt_params_add(ps, 0, name, __VA_ARGS__))
        ADD("norm1.weight", 1, D);
        ADD("norm1.bias", 1, D);
        ADD("attn.qkv.weight", 2, 3 * D, D);
        if (c.qkv_bias)
            ADD("attn.qkv.bias", 1, 3 * D);
        ADD("attn.proj.weight", 2, D, D);
        ADD("attn.proj.bias", 1, D);
        ADD("norm2.weight", 1, D);
        ADD("norm2.bias", 1, D);
        ADD("mlp.fc1.weight", 2, H, D);
        ADD("mlp.fc1.bias", 1, H);
        ADD("mlp.fc2.weight", 2, D, H);
        ADD("mlp.fc2.bias", 1, D);
#undef ADD
    }
    vt_params_add(ps, 0, "norm.weight", 1, D);
    vt_params_add(ps, 0, "norm.bias", 1, D);
    vt_params_add(ps, 0, "head.weight", 2, (int64_t)c.classes, D);
    vt_params_add(ps, 0, "head.bias", 1, (int64_t)c.classes);
    if (c.distilled) {
        vt_params_add(ps, 0, "head_dist.weight", 2, (int64_t)c.classes, D);
        vt_params_add(ps, 0, "head_dist.bias", 1, (int64_t)c.classes);
    }
    return 0;
}

/* ---- weights --------------------------------------------------------- */

static float *own(vit_net *n, size_t count)
{
    return vt_store_alloc(&n->store, count);
}

/* The F32 data of tensor `name` with `count` elements (copied when the
 * file does not align it), or NULL with vt_error(). */
static const float *weight(vit_net *n, const vt_frame *w, const char *name, size_t count)
{
    return vt_weight_f32(&n->store, w, "vit", name, count);
}

/* A linear weight [nout, nin] packed once, from the file's BF16 bits as
 * they are or from F32 (vt_weight_packed), or NULL with vt_error(). */
static const vt_wpack *packed(vit_net *n, const vt_frame *w, const char *name, size_t nout,
                              size_t nin)
{
    return vt_weight_packed(n->pool, w, "vit", name, (int)nout, (int)nin);
}

/* A linear weight for vt_linear (a handle in a half-precision file). */
static const float *lweight(vit_net *n, const vt_frame *w, const char *name, size_t nout,
                            size_t nin)
{
    return vt_weight_linear(n->pool, w, "vit", name, (int)nout, (int)nin);
}

/* pos_embed [1, prefix + pg*pg, D] -> [prefix + g*g, D] (timm's
 * resample_abs_pos_embed: bicubic, antialias, prefix tokens kept). */
static float *resample_pos(vit_net *n, const float *pos)
{
    const vit_config *c = &n->c;
    int D = c->dim, pg = c->pos_grid, g = c->grid, pre = c->prefix;
    float *out = own(n, (size_t)c->t * D);
    float *a = vt_xmalloc((size_t)D * pg * pg * sizeof *a);
    float *b = vt_xmalloc((size_t)D * g * g * sizeof *b);
    memcpy(out, pos, (size_t)pre * D * sizeof *out);
    for (int i = 0; i < pg * pg; i++)           /* [pg*pg, D] -> [D, pg, pg] */
        for (int d = 0; d < D; d++)
            a[(size_t)d * pg * pg + i] = pos[(size_t)(pre + i) * D + d];
    vt_interp_bicubic(b, a, D, pg, pg, g, g, 0, 1);
    for (int i = 0; i < g * g; i++)
        for (int d = 0; d < D; d++)
            out[(size_t)(pre + i) * D + d] = b[(size_t)d * g * g + i];
    free(a);
    free(b);
    return out;
}

static int vit_bind(vit_net *n, const vt_frame *w)
{
    const vit_config *c = &n->c;
    size_t D = c->dim, H = c->hidden, C = c->classes, P = c->patch;
    vit_weights *W = &n->w;
    char name[96];
    const float *pos;
#define GET(dst, nm, cnt) do { if (!((dst) = weight(n, w, nm, cnt))) return -1; } while (0)
    GET(W->cls, "cls_token", D);
    if (c->distilled)
        GET(W->dist, "dist_token", D);
    GET(pos, "pos_embed", (size_t)(c->prefix + c->pos_grid * c->pos_grid) * D);
    W->pos = c->pos_grid == c->grid ? pos : resample_pos(n, pos);
#define PACK(dst, nm, no, ni) do { if (!((dst) = packed(n, w, nm, no, ni))) return -1; } while (0)
#define LIN(dst, nm, no, ni) do { if (!((dst) = lweight(n, w, nm, no, ni))) return -1; } while (0)
    PACK(W->pe, "patch_embed.proj.weight", D, 3 * P * P);
    GET(W->peb, "patch_embed.proj.bias", D);
    W->blocks = vt_xcalloc((size_t)c->depth, sizeof *W->blocks);
    for (int i = 0; i < c->depth; i++) {
        vit_block *B = &W->blocks[i];
#define BNAME(suffix) snprintf(name, sizeof name, "blocks.%d.%s", i, suffix)
#define BGET(dst, suffix, cnt) do { BNAME(suffix); GET(dst, name, cnt); } while (0)
#define BPACK(dst, suffix, no, ni) do { BNAME(suffix); PACK(dst, name, no, ni); } while (0)
        BGET(B->n1w, "norm1.weight", D);
        BGET(B->n1b, "norm1.bias", D);
        BPACK(B->qkv, "attn.qkv.weight", 3 * D, D);
        if (c->qkv_bias)
            BGET(B->qkvb, "attn.qkv.bias", 3 * D);
        BPACK(B->proj, "attn.proj.weight", D, D);
        BGET(B->projb, "attn.proj.bias", D);
        BGET(B->n2w, "norm2.weight", D);
        BGET(B->n2b, "norm2.bias", D);
        BPACK(B->fc1, "mlp.fc1.weight", H, D);
        BGET(B->fc1b, "mlp.fc1.bias", H);
        BPACK(B->fc2, "mlp.fc2.weight", D, H);
        BGET(B->fc2b, "mlp.fc2.bias", D);
#undef BNAME
#undef BGET
#undef BPACK
    }
    GET(W->normw, "norm.weight", D);
    GET(W->normb, "norm.bias", D);
    LIN(W->headw, "head.weight", C, D);
    GET(W->headb, "head.bias", C);
    if (c->distilled) {
        LIN(W->hdw, "head_dist.weight", C, D);
        GET(W->hdb, "head_dist.bias", C);
    }
#undef GET
#undef PACK
#undef LIN
    return 0;
}

/* ---- run state ------------------------------------------------------- */

static void run_free(vit_run *r)
{
    free(r->x); free(r->xn); free(r->work); free(r->scratch); free(r->cls_heads); free(r->cls_attn);
    free(r->pre); free(r->tmp); free(r->heads_map); free(r->kept);
    memset(r, 0, sizeof *r);
}

static int run_alloc(vit_net *n, int batch)
{
    const vit_config *c = &n->c;
    vit_run *r = &n->r;
    size_t bt = (size_t)batch * c->t, np = (size_t)c->grid * c->grid;
    size_t need = bt * ((size_t)c->dim * 6 + c->hidden) * sizeof(float);
    if (need / sizeof(float) / c->t / batch == 0 || need > ((size_t)1 << 40))
        return vt_seterr("vit: batch %d is too large", batch);
    run_free(r);
    r->batch = batch;
    r->x = vt_xmalloc(bt * c->dim * sizeof(float));
    r->xn = vt_xmalloc(bt * c->dim * sizeof(float));
    size_t qkv = bt * 3 * c->dim, cols = (size_t)batch * np * 3 * c->patch * c->patch;
    size_t lead = qkv > cols ? qkv : cols, work = lead + bt * c->dim;
    if (work < bt * c->hidden)
        work = bt * c->hidden;
    r->work = vt_xmalloc(work * sizeof(float));
    r->qkv = r->h = r->cols = r->work;
    r->att = r->work + lead;
    r->scratch = vt_xmalloc(vt_attention_scratch(n->pool, c->t, c->dim / c->heads) * sizeof(float));
    r->cls_heads = vt_xmalloc(bt * c->heads * sizeof(float));
    r->cls_attn = vt_xmalloc((size_t)batch * (c->t - 1) * sizeof(float));
    r->pre = vt_xmalloc((size_t)batch * c->prefix * c->dim * sizeof(float));
    r->tmp = vt_xmalloc((size_t)batch * c->classes * sizeof(float));
    if (n->keep) {
        r->heads_map = vt_xmalloc(bt * c->heads * c->t * sizeof(float));
        r->kept = vt_xmalloc((size_t)n->keep * bt * c->t * sizeof(float));
    }
    return 0;
}

/* ---- forward --------------------------------------------------------- */

/* x[B*t, D] = [cls, (dist), patch_embed(img)] + pos */
static void vit_embed(vit_net *n, const float *img, int batch)
{
    const vit_config *c = &n->c;
    const vit_weights *W = &n->w;
    vit_run *r = &n->r;
    int D = c->dim, P = c->patch, S = c->img_size, np = c->grid * c->grid;
    size_t kk = (size_t)3 * P * P;
    for (int b = 0; b < batch; b++)
        vt_im2col(r->cols + (size_t)b * np * kk, img + (size_t)b * 3 * S * S,
                  3, S, S, P, P, 0);
    /* patches: att[B*np, D] = cols[B*np, 3PP] @ pew[D, 3PP]^T + peb */
    vt_linear_packed(n->pool, r->att, r->cols, W->pe, W->peb, batch * np, 0, 0);
    for (int b = 0; b < batch; b++) {
        float *x = r->x + (size_t)b * c->t * D;
        memcpy(x, W->cls, (size_t)D * sizeof *x);
        if (W->dist)
            memcpy(x + D, W->dist, (size_t)D * sizeof *x);
        memcpy(x + (size_t)c->prefix * D, r->att + (size_t)b * np * D,
               (size_t)np * D * sizeof *x);
        vt_add(x, W->pos, (size_t)c->t * D);
    }
}

/* kept[l, b] = mean over heads of heads_map[b] (attention rollout's A_l) */
static void vit_keep_mean(vit_net *n, int batch, int l)
{
    const vit_config *c = &n->c;
    size_t tt = (size_t)c->t * c->t;
    for (int b = 0; b < batch; b++) {
        float *o = n->r.kept + ((size_t)l * n->r.batch + b) * tt;
        const float *hm = n->r.heads_map + (size_t)b * c->heads * tt;
        memcpy(o, hm, tt * sizeof *o);
        for (int h = 1; h < c->heads; h++)
            vt_add(o, hm + h * tt, tt);
        for (size_t i = 0; i < tt; i++)
            o[i] /= (float)c->heads;
    }
}

/* Blocks [first, last) over the residual stream of `batch` sequences of t
 * tokens (c->t, or fewer after pruning); the last block run records the
 * CLS attention; blocks below n->keep keep their whole attention (full
 * token sets only: rollout is defined on the unpruned sequence). */
static void vit_blocks(vit_net *n, int batch, int t, int first, int last)
{
    const vit_config *c = &n->c;
    vit_run *r = &n->r;
    int D = c->dim, m = batch * t, dh = D / c->heads;
    float scale = 1.0f / sqrtf((float)dh);
    for (int l = first; l < last; l++) {
        const vit_block *B = &n->w.blocks[l];
        vt_layernorm_mt(n->pool, r->xn, r->x, B->n1w, B->n1b, m, D, c->eps);
        vt_linear_packed(n->pool, r->qkv, r->xn, B->qkv, B->qkvb, m, 0, 0);
        int keep = l < n->keep && t == c->t;
        vt_attention(n->pool, r->att, r->qkv, batch, t, c->heads, dh, scale,
                     r->scratch, l == last - 1 ? r->cls_heads : NULL,
                     keep ? r->heads_map : NULL);
        if (keep)
            vit_keep_mean(n, batch, l);
        vt_linear_packed(n->pool, r->x, r->att, B->proj, B->projb, m, 1, 0);
        vt_layernorm_mt(n->pool, r->xn, r->x, B->n2w, B->n2b, m, D, c->eps);
        vt_linear_packed(n->pool, r->h, r->xn, B->fc1, B->fc1b, m, 0, 1);
        vt_linear_packed(n->pool, r->x, r->h, B->fc2, B->fc2b, m, 1, 0);
    }
}

/* cls_attn[b, j] = mean over heads of cls_heads[b, h, 1 + j] */
static void vit_cls_reduce(vit_net *n, int batch, int t)
{
    const vit_config *c = &n->c;
    for (int b = 0; b < batch; b++) {
        float *o = n->r.cls_attn + (size_t)b * (t - 1);
        for (int j = 0; j < t - 1; j++) {
            float s = 0;
            for (int h = 0; h < c->heads; h++)
                s += n->r.cls_heads[((size_t)b * c->heads + h) * t + 1 + j];
            o[j] = s / (float)c->heads;
        }
    }
}

static void vit_head(vit_net *n, int batch, int t, float *logits)
{
    const vit_config *c = &n->c;
    const vit_weights *W = &n->w;
    vit_run *r = &n->r;
    int D = c->dim, C = c->classes;
    /* final norm on the prefix tokens only (the head reads nothing else) */
    for (int p = 0; p < c->prefix; p++)
        for (int b = 0; b < batch; b++)
            vt_layernorm(r->pre + ((size_t)p * batch + b) * D,
                         r->x + ((size_t)b * t + p) * D, W->normw, W->normb,
                         1, D, c->eps);
    vt_linear(n->pool, logits, r->pre, W->headw, W->headb, batch, D, C, 0, 0);
    if (c->distilled) {
        /* eval: (head(x[:, 0]) + head_dist(x[:, 1])) / 2 */
        vt_linear(n->pool, r->tmp, r->pre + (size_t)batch * D, W->hdw, W->hdb,
                  batch, D, C, 0, 0);
        for (size_t i = 0; i < (size_t)batch * C; i++)
            logits[i] = (logits[i] + r->tmp[i]) / 2;
    }
}

static int vit_forward(void *net, const float *x, int batch, float *logits)
{
    vit_net *n = net;
    if (batch < 1)
        return vt_seterr("vit: batch %d", batch);
    if (batch > n->r.batch && run_alloc(n, batch) < 0)
        return -1;
    vit_embed(n, x, batch);
    vit_blocks(n, batch, n->c.t, 0, n->c.depth);
    vit_cls_reduce(n, batch, n->c.t);
    vit_head(n, batch, n->c.t, logits);
    n->last_batch = batch;
    n->last_t = n->c.t;
    return 0;
}

/* ---- split inference (tokens.h) -------------------------------------- *
 * The forward above is embed, blocks [0, depth), head; a split runs the
 * same calls over [0, L+1) and, in another process, [L+1, depth) on the
 * floats written in between, so an unpruned split is bit-identical to it
 * (same batch and threads). Pruned sets simply run with fewer tokens: the
 * blocks after the position embedding do not read positions. */

static int vit_split_point(const void *net, int block)
{
    const vit_net *n = net;
    if (block < 0 || block >= n->c.depth)
        return vt_seterr("the model has blocks 0 to %d, not %d", n->c.depth - 1, block);
    return 0;
}

/* out = image b of the residual stream (t tokens): prefix rows to ex, the
 * rest to x; cls from the last block's CLS attention. Boxes are the
 * caller's. */
static void vit_export(const vit_net *n, int b, int t, int block, vt_tokens *out)
{
    const vit_config *c = &n->c;
    int D = c->dim, N = t - c->prefix;
    const float *x = n->r.x + (size_t)b * t * D;
    vt_tokens_reserve(out, N, D, c->prefix, 1);
    out->grid_h = out->grid_w = c->grid;
    out->block = block;
    memcpy(out->ex, x, (size_t)c->prefix * D * sizeof *x);
    memcpy(out->x, x + (size_t)c->prefix * D, (size_t)N * D * sizeof *x);
    /* cls_attn[b] holds t-1 entries (all but CLS itself); patches last */
    memcpy(out->cls, n->r.cls_attn + (size_t)b * (t - 1) + (c->prefix - 1),
           (size_t)N * sizeof *out->cls);
}

static int vit_run_until(void *net, const float *x, int batch, int until, vt_tokens *out)
{
    vit_net *n = net;
    if (vit_split_point(n, until) < 0)
        return -1;
    if (batch < 1)
        return vt_seterr("vit: batch %d", batch);
    if (batch > n->r.batch && run_alloc(n, batch) < 0)
        return -1;
    vit_embed(n, x, batch);
    vit_blocks(n, batch, n->c.t, 0, until + 1);
    vit_cls_reduce(n, batch, n->c.t);
    /* vt_vit_cls_attention promises the last block's attention */
    n->last_batch = until == n->c.depth - 1 ? batch : 0;
    n->last_t = n->c.t;
    for (int b = 0; b < batch; b++) {
        vit_export(n, b, n->c.t, until, &out[b]);
        vt_tokens_grid_boxes(&out[b]);
    }
    return 0;
}

/* Token sets the network can continue: its width, prefix and grid, at
 * most grid^2 tokens (the run state's size), one count and block. */
static int vit_check_tokens(const vit_net *n, const vt_tokens *in, int batch)
{
    const vit_config *c = &n->c;
    for (int b = 0; b < batch; b++) {
        const vt_tokens *t = &in[b];
        if (t->dim != c->dim)
            return vt_seterr("tokens have %d channels; the model has %d", t->dim, c->dim);
        if (t->extra != c->prefix)
            return vt_seterr("tokens have %d extra tokens; the model has %d (CLS%s)", t->extra,
                             c->prefix, c->distilled ? ", distillation" : "");
        if (t->grid_h != c->grid || t->grid_w != c->grid)
            return vt_seterr("tokens are on a %dx%d grid; the model's is %dx%d", t->grid_h,
                             t->grid_w, c->grid, c->grid);
        if (t->n < 1 || t->n > c->grid * c->grid)
            return vt_seterr("%d tokens; the model continues 1 to %d", t->n, c->grid * c->grid);
        if (t->block < 0 || t->block >= c->depth)
            return vt_seterr("tokens are after block %d; the model has blocks 0 to %d",
                             t->block, c->depth - 1);
        if (t->n != in[0].n || t->block != in[0].block)
            return vt_seterr("vit: a batch mixes token counts or blocks");
    }
    return 0;
}

static int vit_run_from(void *net, const vt_tokens *in, int batch, int until,
                        vt_tokens *out, float *logits)
{
    vit_net *n = net;
    const vit_config *c = &n->c;
    if (batch < 1)
        return vt_seterr("vit: batch %d", batch);
    if (vit_check_tokens(n, in, batch) < 0)
        return -1;
    if (until >= 0 && vit_split_point(n, until) < 0)
        return -1;
    if (until >= 0 && until <= in->block)
        return vt_seterr("tokens are already after block %d; cannot stop after block %d",
                         in->block, until);
    if (batch > n->r.batch && run_alloc(n, batch) < 0)
        return -1;
    int D = c->dim, t = c->prefix + in->n;
    int first = in->block + 1, last = until < 0 ? c->depth : until + 1;
    for (int b = 0; b < batch; b++) {
        float *x = n->r.x + (size_t)b * t * D;
        memcpy(x, in[b].ex, (size_t)c->prefix * D * sizeof *x);
        memcpy(x + (size_t)c->prefix * D, in[b].x, (size_t)in->n * D * sizeof *x);
    }
    vit_blocks(n, batch, t, first, last);
    if (last > first)
        vit_cls_reduce(n, batch, t);
    /* vt_vit_cls_attention promises the last block's attention */
    n->last_batch = last > first && last == c->depth ? batch : 0;
    n->last_t = t;
    if (until < 0) {
        vit_head(n, batch, t, logits);
        return 0;
    }
    for (int b = 0; b < batch; b++) {
        vit_export(n, b, t, until, &out[b]);
        memcpy(out[b].box, in[b].box, (size_t)in->n * 4 * sizeof *out[b].box);
    }
    return 0;
}

/* ---- lifetime -------------------------------------------------------- */

static void vit_destroy(void *net)
{
    vit_net *n = net;
    if (!n)
        return;
    run_free(&n->r);
    vt_pool_free(n->pool);
    vt_store_free(&n->store);
    free(n->w.blocks);
    free(n);
}

static void *vit_create(const cJSON *cfg, const vt_frame *weights,
                        const vt_run_opts *o)
{
    vit_net *n = vt_xcalloc(1, sizeof *n);
    n->magic = VIT_MAGIC;
    if (vit_config_read(cfg, &n->c) < 0) {
        vit_destroy(n);
        return NULL;
    }
    /* the pool first: binding packs the weights on it */
    n->pool = vt_pool_create(o && o->threads > 0 ? o->threads : 0);
    /* the mapped model file never changes: vt_linear packs its weights once */
    if (n->pool)
        vt_pool_readonly(n->pool, weights->map, weights->map_len);
    if (!n->pool || vit_bind(n, weights) < 0 ||
        run_alloc(n, o && o->batch > 0 ? o->batch : 1) < 0) {
        vit_destroy(n);
        return NULL;
    }
    return n;
}

const float *vt_vit_cls_attention(const vt_model *m, int *batch, int *nout,
                                  int *gh, int *gw)
{
    const vit_net *n = m && m->family == &vt_family_vit ? m->net : NULL;
    if (!n || n->magic != VIT_MAGIC)
        return vt_seterr("CLS attention needs a vit-family model"), NULL;
    if (!n->last_batch)
        return vt_seterr("no forward pass yet"), NULL;
    if (n->last_t != n->c.t)
        return vt_seterr("vit: the last pass ran on a pruned token set; its attention is "
                         "not kept"), NULL;
    if (batch) *batch = n->last_batch;
    if (nout) *nout = n->last_t - 1;
    if (gh) *gh = n->c.grid;
    if (gw) *gw = n->c.grid;
    return n->r.cls_attn;
}

int vt_vit_keep_attention(const vt_model *m, int blocks)
{
    vit_net *n = m && m->family == &vt_family_vit ? m->net : NULL;
    if (!n || n->magic != VIT_MAGIC)
        return vt_seterr("per-block attention needs a vit-family model");
    if (blocks < 0 || blocks > n->c.depth)
        return vt_seterr("vit: %d blocks to keep, the model has %d", blocks, n->c.depth);
    n->keep = blocks;
    n->last_batch = 0;
    return run_alloc(n, n->r.batch > 0 ? n->r.batch : 1);
}

const float *vt_vit_attention(const vt_model *m, int block, int *batch, int *t)
{
    const vit_net *n = m && m->family == &vt_family_vit ? m->net : NULL;
    if (!n || n->magic != VIT_MAGIC)
        return vt_seterr("per-block attention needs a vit-family model"), NULL;
    if (block < 0 || block >= n->keep)
        return vt_seterr("vit: block %d's attention is not kept (%d kept)", block, n->keep),
               NULL;
    if (!n->last_batch)
        return vt_seterr("no forward pass yet"), NULL;
    if (n->last_t != n->c.t)
        return vt_seterr("vit: the last pass ran on a pruned token set; its attention is "
                         "not kept"), NULL;
    if (batch) *batch = n->last_batch;
    if (t) *t = n->c.t;
    return n->r.kept + (size_t)block * n->r.batch * n->c.t * n->c.t;
}

/* Multiply-accumulates per image: patch embedding, per block the qkv and
 * output projections, the two attention matmuls (q k^T and attn v) and the
 * MLP, then the head(s). DeiT-S: 4.6 GMACs, as the DeiT paper's table.
 * Blocks 0..after run on all t tokens, the others on prefix + tokens. */
static int vit_cost_split(const cJSON *cfg, int after, int tokens, vt_cost *out)
{
    vit_config c;
    if (vit_config_read(cfg, &c) < 0) return -1;
    if (after < 0 || after >= c.depth || tokens < 1)
        return vt_seterr("vit: no cost for %d tokens after block %d", tokens, after);
    memset(out, 0, sizeof *out);
    double t = c.t, d = c.dim, n = (double)c.grid * c.grid;
    double full = after + 1, cut = c.depth - full, k = c.prefix + tokens;
    vt_cost_add(out, "patch_embed", n * d * 3 * c.patch * c.patch);
    vt_cost_add(out, "blocks.attn.qkv+proj", full * (t * d * 3 * d + t * d * d) +
                                             cut * (k * d * 3 * d + k * d * d));
    vt_cost_add(out, "blocks.attn.matmuls", full * 2 * t * t * d + cut * 2 * k * k * d);
    vt_cost_add(out, "blocks.mlp", full * 2 * t * d * c.hidden + cut * 2 * k * d * c.hidden);
    vt_cost_add(out, "head", (1 + c.distilled) * d * c.classes);
    return 0;
}

static int vit_cost(const cJSON *cfg, vt_cost *out)
{
    vit_config c;
    if (vit_config_read(cfg, &c) < 0) return -1;
    return vit_cost_split(cfg, c.depth - 1, c.grid * c.grid, out);
}

const vt_family vt_family_vit = {
    .name = "vit",
    .archs = vit_archs,
    .config = vit_config_defaults,
    .params = vit_params,
    .create = vit_create,
    .forward = vit_forward,
    .destroy = vit_destroy,
    .cost = vit_cost,
    .split_point = vit_split_point,
    .run_until = vit_run_until,
    .run_from = vit_run_from,
    .cost_pruned = vit_cost_split,
    .split_subsets = 1,
};
