/* sigmap.c - the table of significance-map sources (see sigmap.h and
 * vt-sigmap(1)). A family adds its methods to `methods` below. */
#include "sigmap.h"
#include "models/dge.h"
#include "models/groupmix.h"
#include "models/pale.h"
#include "models/sgformer.h"
#include "models/stvit.h"
#include "ops.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- sgformer: the maps its hybrid blocks compute ----------------------
 *
 * Stages 1..4, blocks 0..depth-1 as in the state dict. A HYBRID block makes
 * a map M = L + G over the stage grid; the REALLOC block after it sorts its
 * tokens by M to decide which are merged. Default: the last hybrid block
 * whose map a reallocation block uses, in the last stage that has one. A
 * --block naming a REALLOC block selects the map that block sorts by (the
 * hybrid block before it); the metadata then names the hybrid block. */

static int sg_usable(const void *net, int stage, int block)
{
    int k = vt_sgformer_block_kind(net, stage, block);
    if (k == VT_SG_HYBRID) return block;
    if (k == VT_SG_REALLOC && block > 0 &&
        vt_sgformer_block_kind(net, stage, block - 1) == VT_SG_HYBRID)
        return block - 1;
    return -1;
}

/* Last hybrid block of a stage, preferring one followed by a realloc block. */
static int sg_last_hybrid(const void *net, int stage)
{
    int depth = vt_sgformer_depth(net, stage), any = -1;
    for (int b = depth - 1; b >= 0; b--) {
        if (vt_sgformer_block_kind(net, stage, b) != VT_SG_HYBRID) continue;
        if (b + 1 < depth && vt_sgformer_block_kind(net, stage, b + 1) == VT_SG_REALLOC)
            return b;
        if (any < 0) any = b;
    }
    return any;
}

static int sg_resolve(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    const void *net = m->net;
    int stage = o->stage, block = o->block;
    if (stage != VT_SIGMAP_DEFAULT && (stage < 1 || stage > 4))
        return vt_seterr("sgformer has stages 1 to 4, not %d", stage);
    int s0 = stage == VT_SIGMAP_DEFAULT ? 4 : stage, s1 = stage == VT_SIGMAP_DEFAULT ? 1 : stage;
    for (int s = s0; s >= s1; s--) {
        int b = block == VT_SIGMAP_DEFAULT ? sg_last_hybrid(net, s) : sg_usable(net, s, block);
        if (b < 0) continue;
        int g = vt_sgformer_grid(net, s);
        if (g <= 0) return -1;
        w->stage = s;
        w->block = b;
        w->h = w->w = g;
        return 0;
    }
    if (stage == VT_SIGMAP_DEFAULT)
        return vt_seterr("no stage has a block %d with a significance map", block);
    int depth = vt_sgformer_depth(net, stage);
    if (block == VT_SIGMAP_DEFAULT)
        return vt_seterr("stage %d has no hybrid block, so no significance map "
                         "(maps are made in stages 1-3)", stage);
    if (block < 0 || block >= depth)
        return vt_seterr("stage %d has blocks 0 to %d, not %d", stage, depth - 1, block);
    return vt_seterr("stage %d block %d makes no significance map (hybrid blocks make "
                     "them, the reallocation block after each uses it)", stage, block);
}

static int sg_map(const vt_model *m, int image, const vt_sigmap_where *w, int which, float *out)
{
    int h, wd;
    if (vt_sgformer_sigmap(m->net, image, w->stage, w->block, which, NULL, &h, &wd) < 0)
        return -1;
    if (h != w->h || wd != w->w)
        return vt_seterr("sgformer map is %dx%d, expected %dx%d", h, wd, w->h, w->w);
    return vt_sgformer_sigmap(m->net, image, w->stage, w->block, which, out, NULL, NULL);
}

static int sg_compute(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    return sg_map(m, image, w, VT_SG_MAP, out);
}

static int sg_compute_global(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    return sg_map(m, image, w, VT_SG_GLOBAL, out);
}

static int sg_compute_local(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    return sg_map(m, image, w, VT_SG_LOCAL, out);
}

/* ---- vit: CLS attention and attention rollout ---------------------------
 * One stage (1); blocks 0..depth-1. lib/models/vit.c keeps the last
 * block's CLS attention always (vt_vit_cls_attention) and the whole
 * head-mean attention of the first blocks when asked to
 * (vt_vit_keep_attention), which rollout does. */

/* Stage and block (default: the last) checked; the patch grid. */
static int vit_where(const vt_model *m, int stage, int block, vt_sigmap_where *w)
{
    int depth = vt_cfg_int(m->config, "depth", 12);
    int patch = vt_cfg_int(m->config, "patch_size", 16);
    int img = vt_cfg_int(m->config, "img_size", 224);
    if (stage != VT_SIGMAP_DEFAULT && stage != 1)
        return vt_seterr("vit has one stage (1), not %d", stage);
    if (block != VT_SIGMAP_DEFAULT && (block < 0 || block >= depth))
        return vt_seterr("the model has blocks 0 to %d, not %d", depth - 1, block);
    if (patch <= 0 || img < patch)
        return vt_seterr("bad patch_size/img_size in the model's config");
    w->stage = 1;
    w->block = block == VT_SIGMAP_DEFAULT ? depth - 1 : block;
    w->h = w->w = img / patch;
    return 0;
}

static int vit_resolve(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    if (vit_where(m, o->stage, o->block, w) < 0) return -1;
    int depth = vt_cfg_int(m->config, "depth", 12);
    if (w->block != depth - 1)
        return vt_seterr("cls: only the last block's attention (block %d) is available", depth - 1);
    return 0;
}

static int vit_resolve_rollout(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    if (vit_where(m, o->stage, o->block, w) < 0) return -1;
    return vt_vit_keep_attention(m, w->block + 1);
}

static int vit_compute_cls(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    int batch, n, gh, gw;
    const float *a = vt_vit_cls_attention(m, &batch, &n, &gh, &gw);
    if (!a) return -1;
    if (image < 0 || image >= batch)
        return vt_seterr("image %d not in the last batch of %d", image, batch);
    if (gh != w->h || gw != w->w || n < gh * gw)
        return vt_seterr("CLS attention grid %dx%d, expected %dx%d", gh, gw, w->h, w->w);
    /* The patch tokens are the last gh*gw (a distillation token comes first). */
    memcpy(out, a + (size_t)image * n + (n - gh * gw), (size_t)gh * gw * sizeof *out);
    return 0;
}

/* Attention rollout through blocks 0..L = w->block: with A_l the head-mean
 * attention of block l and B_l = (A_l + I) with rows scaled to sum 1,
 * R = B_L B_(L-1) ... B_0, and the map is row 0 (CLS) of R over the patch
 * tokens. Only that row is needed, so it is carried down from the top:
 * r = e_0, then r <- r B_l for l = L .. 0 (t^2 per block, no t^3). */
static int vit_compute_rollout(const vt_model *m, int image, const vt_sigmap_where *w,
                               float *out)
{
    int batch, t, np = w->h * w->w;
    if (!vt_vit_attention(m, 0, &batch, &t)) return -1;
    if (image < 0 || image >= batch)
        return vt_seterr("image %d not in the last batch of %d", image, batch);
    if (t < np + 1)
        return vt_seterr("rollout: %d tokens for a %dx%d grid", t, w->h, w->w);
    double *buf = vt_xcalloc((size_t)2 * t, sizeof *buf), *r = buf, *next = buf + t;
    r[0] = 1;
    for (int l = w->block; l >= 0; l--) {
        const float *a = vt_vit_attention(m, l, NULL, NULL);
        if (!a) { free(buf); return -1; }
        a += (size_t)image * t * t;
        memset(next, 0, (size_t)t * sizeof *next);
        for (int i = 0; i < t; i++) {
            const float *row = a + (size_t)i * t;
            double sum = 1;                     /* the identity's 1 */
            for (int j = 0; j < t; j++) sum += row[j];
            double c = r[i] / sum;
            for (int j = 0; j < t; j++) next[j] += c * row[j];
            next[i] += c;
        }
        double *tmp = r; r = next; next = tmp;
    }
    /* the patch tokens are the last np (a distillation token comes first) */
    for (int j = 0; j < np; j++)
        out[j] = (float)r[t - np + j];
    free(buf);
    return 0;
}

/* ---- groupmix: attention each token receives ----------------------------
 * GroupMixFormer's attention is factorized (softmax of K over the tokens,
 * Q (K~^T V)): there is no N x N map to read, but its implicit one,
 * A_h = scale Q^_h K~_h^T, has column means that cost O(N d) (see
 * models/groupmix.h); lib/models/groupmix.c computes them in the last block
 * of the last stage on every forward pass. Stages and blocks as in the state
 * dict: groupmixformer_backbone.{0..3}.gma_stage.{j}. */

static int gm_resolve(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    int depths[4], stage = o->stage, block = o->block;
    if (vt_cfg_ints(m->config, "serial_depths", depths, 4) != 4)
        return vt_seterr("groupmix: the model's config has no 4 serial_depths");
    int last = depths[3] - 1;
    if (stage != VT_SIGMAP_DEFAULT && stage != 3)
        return vt_seterr("groupmix stages are 0 to 3 (groupmixformer_backbone.N); "
                         "attention is taken in the last one, 3, not %d", stage);
    if (block != VT_SIGMAP_DEFAULT && (block < 0 || block > last))
        return vt_seterr("stage 3 has blocks 0 to %d, not %d", last, block);
    if (block != VT_SIGMAP_DEFAULT && block != last)
        return vt_seterr("attention: only the last block's (block %d) is available", last);
    vt_groupmix_sigmap(m->net, &w->h, &w->w);
    if (w->h <= 0 || w->w <= 0)
        return vt_seterr("groupmix: no stage-3 grid");
    w->stage = 3;
    w->block = last;
    return 0;
}

static int gm_compute(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    int h, wd;
    const float *map = vt_groupmix_sigmap(m->net, &h, &wd);
    if (!map) return -1;
    if (image != 0)     /* the net keeps the last image's map: run one at a time */
        return vt_seterr("groupmix: attention of image %d: run images one at a time", image);
    if (h != w->h || wd != w->w)
        return vt_seterr("groupmix map is %dx%d, expected %dx%d", h, wd, w->h, w->w);
    memcpy(out, map, (size_t)h * wd * sizeof *out);
    return 0;
}

/* ---- pale: the attention one query token pays ----------------------------
 * A PS-attention block splits its channels: the first half of the heads
 * attend inside interlaced row pales, the second half inside interlaced
 * column pales. The map is what query token (qy, qx) pays to every token
 * of the stage grid, (row branch + column branch) / 2 with the heads of
 * each branch averaged (VT_PALE_BOTH): zero outside the query's row pale
 * and column pale, sums to 1. lib/models/pale.c records q and k of one
 * block (vt_pale_set_map_block). Stages and blocks as in the state dict:
 * stages.{0..3}.blocks.{b}; default stage 1, its last block (the block the
 * reference exports), the centre token (h/2, w/2). */

static int pale_resolve(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    int depths[4];
    if (vt_cfg_ints(m->config, "depths", depths, 4) != 4)
        return vt_seterr("pale: the model's config has no 4 depths");
    int stage = o->stage == VT_SIGMAP_DEFAULT ? 1 : o->stage;
    if (stage < 0 || stage > 3)
        return vt_seterr("pale stages are 0 to 3 (stages.N), not %d", stage);
    int block = o->block == VT_SIGMAP_DEFAULT ? depths[stage] - 1 : o->block;
    if (block < 0 || block >= depths[stage])
        return vt_seterr("stage %d has blocks 0 to %d, not %d", stage, depths[stage] - 1, block);
    if (vt_pale_set_map_block(m->net, stage, block) < 0 ||
        vt_pale_map_shape(m->net, &w->h, &w->w, NULL) < 0)
        return -1;
    w->stage = stage;
    w->block = block;
    w->qy = o->qy == VT_SIGMAP_DEFAULT ? w->h / 2 : o->qy;
    w->qx = o->qx == VT_SIGMAP_DEFAULT ? w->w / 2 : o->qx;
    if (w->qy < 0 || w->qy >= w->h || w->qx < 0 || w->qx >= w->w)
        return vt_seterr("--query %d,%d is outside stage %d's %dx%d token grid (rows 0 to %d, "
                         "columns 0 to %d)", w->qy, w->qx, stage, w->h, w->w, w->h - 1, w->w - 1);
    return 0;
}

static int pale_compute(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    int h, wd;
    if (vt_pale_map_shape(m->net, &h, &wd, NULL) < 0) return -1;
    if (h != w->h || wd != w->w)
        return vt_seterr("pale map is %dx%d, expected %dx%d", h, wd, w->h, w->w);
    return vt_pale_attention(m->net, image, VT_PALE_BOTH, -1, w->qy, w->qx, out);
}

/* ---- dge: the granularity the gates chose ------------------------------
 * Stages 1..4 (DeiT: 1), blocks as in the state dict. The map of one block
 * is the query density its gate chose for each token's region: (s/R)^2 =
 * 1 (a query per token), 1/4 (one per 2x2 patch) or 1/16 (one per 4x4
 * region). Without --block: the mean over the stage's blocks (metadata
 * block -1). Default stage: 1, the finest grid. */

static int dge_resolve(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    int stage = o->stage, block = o->block;
    vt_dge_layer li;
    int L = vt_dge_layers(m->net);
    if (L < 1 || vt_dge_layer_info(m->net, L - 1, &li) < 0) return -1;
    if (!li.gated)
        return vt_seterr("granularity: %s is a baseline without dynamic grained encoders "
                         "(DGE archs: deit_dge_*, pvt_dge_*)", m->arch);
    int nstages = li.stage;
    if (stage == VT_SIGMAP_DEFAULT) stage = 1;
    if (stage < 1 || stage > nstages)
        return nstages == 1 ? vt_seterr("%s has one stage (1), not %d", m->arch, stage)
                            : vt_seterr("%s has stages 1 to %d, not %d", m->arch, nstages, stage);
    int first = vt_dge_layer_index(m->net, stage, 0);
    if (first < 0 || vt_dge_layer_info(m->net, first, &li) < 0) return -1;
    if (block != VT_SIGMAP_DEFAULT && vt_dge_layer_index(m->net, stage, block) < 0) {
        int depth = 0;
        while (vt_dge_layer_index(m->net, stage, depth) >= 0) depth++;
        return vt_seterr("stage %d has blocks 0 to %d, not %d", stage, depth - 1, block);
    }
    w->stage = stage;
    w->block = block;       /* VT_SIGMAP_DEFAULT (-1): the mean over the blocks */
    w->h = li.h;
    w->w = li.w;
    return 0;
}

static int dge_compute_granularity(const vt_model *m, int image, const vt_sigmap_where *w,
                                   float *out)
{
    size_t n = (size_t)w->h * w->w;
    int blocks = 0;
    memset(out, 0, n * sizeof *out);
    for (int b = 0;; b++) {
        int l = vt_dge_layer_index(m->net, w->stage, b);
        if (l < 0) break;
        if (w->block != VT_SIGMAP_DEFAULT && b != w->block) continue;
        vt_dge_layer li;
        const int8_t *dec = vt_dge_decisions(m->net, image, l);
        if (!dec || vt_dge_layer_info(m->net, l, &li) < 0) return -1;
        if (li.h != w->h || li.w != w->w)
            return vt_seterr("dge grid is %dx%d, expected %dx%d", li.h, li.w, w->h, w->w);
        for (int y = 0; y < li.h; y++)
            for (int x = 0; x < li.w; x++) {
                float s = (float)dec[(y / li.region) * li.wr + x / li.region] / (float)li.region;
                out[(size_t)y * li.w + x] += s * s;
            }
        blocks++;
    }
    if (!blocks) return vt_seterr("stage %d has no block %d", w->stage, w->block);
    for (size_t i = 0; i < n; i++)
        out[i] /= (float)blocks;
    return 0;
}

/* ---- stvit: which semantic token each image token belongs to ------------
 * STViT-R's semantic stage (layers.2 of the state dict, 14x14 tokens) runs
 * groups of 6 blocks (layers.2.blocks.6g .. 6g+5); in the last of each,
 * the recovery block, every image token p reads the 4k^2 semantic tokens
 * (36 for k = 3). The label of p is the semantic token with the largest
 * head-mean recovery attention (first on ties), the map that attention
 * weight (how strongly p belongs to it); lib/models/stvit.c keeps both
 * per group (vt_stvit_semantic). --block selects the group holding that
 * block (default the last group); the metadata names its recovery block. */

static int st_resolve(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w)
{
    int depths[4], k = vt_cfg_int(m->config, "sample_window_size", 3);
    if (vt_cfg_ints(m->config, "depths", depths, 4) != 4 || depths[2] < 6)
        return vt_seterr("stvit: the model's config has no semantic stage depth");
    int groups = depths[2] / 6;
    if (o->stage != VT_SIGMAP_DEFAULT && o->stage != 2)
        return vt_seterr("stvit: semantic tokens live in stage 2 (layers.2, stages from 0), "
                         "not %d", o->stage);
    if (o->block != VT_SIGMAP_DEFAULT && (o->block < 0 || o->block >= 6 * groups))
        return vt_seterr("stage 2 has blocks 0 to %d, not %d", 6 * groups - 1, o->block);
    int g = o->block == VT_SIGMAP_DEFAULT ? groups - 1 : o->block / 6;
    w->stage = 2;
    w->block = 6 * g + 5;
    w->h = w->w = vt_cfg_int(m->config, "img_size", 224) / 16;
    w->nlabels = 4 * k * k;
    return 0;
}

static int st_compute(const vt_model *m, int image, const vt_sigmap_where *w, float *out)
{
    return vt_stvit_semantic(m->net, image, w->block / 6, NULL, out, NULL) < 0 ? -1 : 0;
}

static int st_labels(const vt_model *m, int image, const vt_sigmap_where *w, int32_t *out)
{
    int n = w->h * w->w;
    int *lab = vt_xmalloc((size_t)n * sizeof *lab);
    int rc = vt_stvit_semantic(m->net, image, w->block / 6, lab, NULL, NULL);
    for (int i = 0; i < n && rc >= 0; i++)
        out[i] = lab[i];
    free(lab);
    return rc < 0 ? -1 : 0;
}

/* ---- the table --------------------------------------------------------- */

static const vt_sigmap_method methods[] = {
    {"sgformer", "sgformer",
     "M = L + G of a hybrid block: the map the next block reallocates tokens by", 1, NULL,
     sg_resolve, sg_compute, NULL},
    {"sgformer", "sgformer-global",
     "G: mean global attention each sr x sr cell received, nearest-upsampled", 0, NULL,
     sg_resolve, sg_compute_global, NULL},
    {"sgformer", "sgformer-local",
     "L: mean attention each token received from its 7x7 window", 0, NULL,
     sg_resolve, sg_compute_local, NULL},
    {"vit", "cls",
     "CLS-token attention to each patch in the last block, mean over heads", 1, NULL,
     vit_resolve, vit_compute_cls, NULL},
    {"vit", "rollout",
     "attention rollout (Abnar & Zuidema 2020) through blocks 0..--block", 0, NULL,
     vit_resolve_rollout, vit_compute_rollout, NULL},
    {"groupmix", "attention",
     "mean implicit attention each token receives in the last block, over heads and queries",
     1, NULL, gm_resolve, gm_compute, NULL},
    {"pale", "pale",
     "attention query token --query Y,X pays inside its row and column pales, mean over heads",
     1, NULL, pale_resolve, pale_compute, NULL},
    {"dge", "granularity",
     "queries per token the DGE gates chose (1, 1/4, 1/16), mean over the stage's blocks", 1,
     NULL, dge_resolve, dge_compute_granularity, NULL},
    {"stvit", "semantic",
     "semantic token each token is assigned to (labels) and how strongly (the map)", 1, NULL,
     st_resolve, st_compute, st_labels},
    {NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL},
};

const vt_sigmap_method *vt_sigmap_methods(void)
{
    return methods;
}

const vt_sigmap_method *vt_sigmap_find(const vt_model *m, const char *name)
{
    const char *fam = m && m->family ? m->family->name : "?";
    int known = 0;
    for (const vt_sigmap_method *e = methods; e->family; e++) {
        if (strcmp(e->family, fam) != 0) continue;
        known = 1;
        if (name ? strcmp(e->name, name) != 0 : !e->is_default) continue;
        if (e->unavailable)
            return vt_seterr("method '%s' for %s: %s", e->name, fam, e->unavailable), NULL;
        return e;
    }
    if (!known)
        return vt_seterr("no significance maps for the %s family yet", fam), NULL;
    if (!name)
        return vt_seterr("the %s family has no default method", fam), NULL;
    char list[256] = "";
    for (const vt_sigmap_method *e = methods; e->family; e++)
        if (strcmp(e->family, fam) == 0 && !e->unavailable &&
            strlen(list) + strlen(e->name) + 3 < sizeof list) {
            if (*list) strcat(list, ", ");
            strcat(list, e->name);
        }
    return vt_seterr("no method '%s' for the %s family (it has: %s)", name, fam, list), NULL;
}

int vt_sigmap_resolve(const vt_model *m, const vt_sigmap_method *e, const vt_sigmap_opts *o,
                      vt_sigmap_where *w)
{
    memset(w, 0, sizeof *w);
    w->qy = w->qx = VT_SIGMAP_DEFAULT;
    if (e->resolve(m, o, w) < 0) return -1;
    /* a method that takes a query sets w->qy, w->qx */
    if ((o->qy != VT_SIGMAP_DEFAULT || o->qx != VT_SIGMAP_DEFAULT) && w->qy == VT_SIGMAP_DEFAULT)
        return vt_seterr("--query: method '%s' of %s takes no query token", e->name, e->family);
    return 0;
}
