/* unwrap.c - finding the state dict inside a training checkpoint.
 *
 * Releases wrap the weights: DeiT, vtpack, Swin, GroupMixFormer and Pale
 * save {"model": sd, ...} (vtpack adds "model_ema", but its --eval reads
 * "model"); timm's CheckpointSaver (SG-Former) saves {"state_dict": sd,
 * "state_dict_ema": sd_ema, ...} and timm's load_checkpoint(use_ema=True)
 * reads the EMA set. Some older code saves {"module": sd}. */
#include <stdio.h>
#include <string.h>
#include "internal.h"
#include "util.h"

static const char *const ORDER_DEFAULT[] = {
    "state_dict_ema", "model", "state_dict", "module", "model_ema", NULL};
static const char *const ORDER_EMA[] = {
    "model_ema", "state_dict_ema", "model", "state_dict", "module", NULL};
static const char *const ORDER_RAW[] = {
    "model", "state_dict", "module", "model_ema", "state_dict_ema", NULL};

static const vt_pv *dict_get(const vt_pv *d, const char *key)
{
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (d->items[i]->type == PV_STR && strcmp(d->items[i]->s, key) == 0)
            return d->items[i + 1];
    return NULL;
}

/* A state dict maps strings to tensors. Values owed to an unknown global
 * count too, so that the caller can refuse them by name. */
static int is_state_dict(const vt_pv *d)
{
    if (d->type != PV_DICT || d->n == 0) return 0;
    for (size_t i = 0; i + 1 < d->n; i += 2) {
        const vt_pv *k = d->items[i], *v = d->items[i + 1];
        if (k->type != PV_STR) return 0;
        if (v->type != PV_TENSOR && !(v->type == PV_OBJECT && vt_pk_foreign(v)))
            return 0;
    }
    return 1;
}

static void list_keys(const vt_pv *d, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i + 1 < d->n && used + 1 < len; i += 2) {
        const vt_pv *k = d->items[i];
        if (k->type != PV_STR) continue;
        int w = snprintf(buf + used, len - used, "%s%.40s", used ? ", " : "", k->s);
        if (w < 0) break;
        used += (size_t)w;
        if (used + 1 >= len) {
            if (len > 4) strcpy(buf + len - 4, "...");
            break;
        }
    }
}

static int find(const vt_pv *v, const char *const *order, int depth, const vt_pv **dict,
                char *wrapper, size_t wlen)
{
    if (is_state_dict(v)) {
        *dict = v;
        return 0;
    }
    if (v->type != PV_DICT || depth >= 3) return -1;
    for (int i = 0; order[i]; i++) {
        const vt_pv *sub = dict_get(v, order[i]);
        if (!sub || sub->type != PV_DICT) continue;
        size_t used = strlen(wrapper);
        snprintf(wrapper + used, wlen - used, "%s%s", used ? "." : "", order[i]);
        if (find(sub, order, depth + 1, dict, wrapper, wlen) == 0) return 0;
        wrapper[used] = 0;
    }
    return -1;
}

int vt_ckpt_unwrap(const vt_pv *root, int ema, const vt_pv **dict, char *wrapper,
                   size_t wlen)
{
    const char *const *order = ema > 0 ? ORDER_EMA : ema < 0 ? ORDER_RAW : ORDER_DEFAULT;
    *dict = NULL;
    wrapper[0] = 0;
    if (find(root, order, 0, dict, wrapper, wlen) == 0) return 0;
    const char *g = vt_pk_foreign(root);
    if (g) return vt_seterr("checkpoint needs %s to build a tensor; refusing", g);
    if (root->type == PV_DICT && root->n == 0) return vt_seterr("checkpoint is an empty dict");
    if (root->type != PV_DICT) return vt_seterr("no state dict in checkpoint (not a dict)");
    char keys[200];
    list_keys(root, keys, sizeof keys);
    return vt_seterr("no state dict in checkpoint (top-level keys: %s)", keys);
}
