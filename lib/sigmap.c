/* sigmap.c - the table of significance-map sources (see sigmap.h and
 * vt-sigmap(1)). A family adds its methods to `methods` below. */
#include "sigmap.h"
#include "models/dge.h"
#include "models/sgformer.h"
#include "ops.h"
#include "util.h"

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

static int sg_resolve(const vt_model *m, int stage, int block, vt_sigmap_where *w)
{
    const void *net = m->net;
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

/* ---- vit: CLS attention of the last block ------------------------------
 * One stage (1); blocks 0..depth-1. Only the last block's attention is
 * kept by lib/models/vit.c (vt_vit_cls_attention). */

static int vit_resolve(const vt_model *m, int stage, int block, vt_sigmap_where *w)
{
    int depth = vt_cfg_int(m->config, "depth", 12);
    int patch = vt_cfg_int(m->config, "patch_size", 16);
    int img = vt_cfg_int(m->config, "img_size", 224);
    if (stage != VT_SIGMAP_DEFAULT && stage != 1)
        return vt_seterr("vit has one stage (1), not %d", stage);
    if (block != VT_SIGMAP_DEFAULT && block != depth - 1) {
        if (block < 0 || block >= depth)
            return vt_seterr("the model has blocks 0 to %d, not %d", depth - 1, block);
        return vt_seterr("cls: only the last block's attention (block %d) is available", depth - 1);
    }
    if (patch <= 0 || img < patch)
        return vt_seterr("bad patch_size/img_size in the model's config");
    w->stage = 1;
    w->block = depth - 1;
    w->h = w->w = img / patch;
    return 0;
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

/* ---- dge: the granularity the gates chose ------------------------------
 * Stages 1..4 (DeiT: 1), blocks as in the state dict. The map of one block
 * is the query density its gate chose for each token's region: (s/R)^2 =
 * 1 (a query per token), 1/4 (one per 2x2 patch) or 1/16 (one per 4x4
 * region). Without --block: the mean over the stage's blocks (metadata
 * block -1). Default stage: 1, the finest grid. */

static int dge_resolve(const vt_model *m, int stage, int block, vt_sigmap_where *w)
{
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

/* ---- the table --------------------------------------------------------- */

static const vt_sigmap_method methods[] = {
    {"sgformer", "sgformer",
     "M = L + G of a hybrid block: the map the next block reallocates tokens by", 1, NULL,
     sg_resolve, sg_compute},
    {"sgformer", "sgformer-global",
     "G: mean global attention each sr x sr cell received, nearest-upsampled", 0, NULL,
     sg_resolve, sg_compute_global},
    {"sgformer", "sgformer-local",
     "L: mean attention each token received from its 7x7 window", 0, NULL,
     sg_resolve, sg_compute_local},
    {"vit", "cls",
     "CLS-token attention to each patch in the last block, mean over heads", 1, NULL,
     vit_resolve, vit_compute_cls},
    {"vit", "rollout",
     "attention rollout over all blocks (Abnar & Zuidema 2020)", 0,
     "not available yet: the vit family does not expose per-block attention", NULL, NULL},
    {"dge", "granularity",
     "queries per token the DGE gates chose (1, 1/4, 1/16), mean over the stage's blocks", 1,
     NULL, dge_resolve, dge_compute_granularity},
    {NULL, NULL, NULL, 0, NULL, NULL, NULL},
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
