/* tokens.c - token sets between blocks: buffers, tokens frames, model
 * identity, and the model-level split calls (see tokens.h). */
#include "tokens.h"
#include "ckpt.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <stdio.h>

/* ---- buffers ---------------------------------------------------------- */

void vt_tokens_reserve(vt_tokens *t, int n, int dim, int extra, int with_cls)
{
    int grow_n = n > t->cap_n || !t->x, grow_c = dim > t->cap_c, grow_e = extra > t->cap_e;
    if (grow_n) t->cap_n = n > t->cap_n ? n : t->cap_n;
    if (grow_c) t->cap_c = dim;
    if (grow_e) t->cap_e = extra;
    if (grow_n || grow_c) {
        free(t->x);
        t->x = vt_xmalloc(((size_t)t->cap_n * t->cap_c + 1) * sizeof *t->x);
    }
    if (grow_n) {
        free(t->box);
        free(t->cls);
        t->box = vt_xmalloc(((size_t)t->cap_n * 4 + 1) * sizeof *t->box);
        t->cls = NULL;
    }
    if (grow_c || grow_e || !t->ex) {
        free(t->ex);
        t->ex = vt_xmalloc(((size_t)t->cap_e * t->cap_c + 1) * sizeof *t->ex);
    }
    if (with_cls && !t->cls)
        t->cls = vt_xmalloc(((size_t)t->cap_n + 1) * sizeof *t->cls);
    if (!with_cls) {
        free(t->cls);
        t->cls = NULL;
    }
    t->n = n;
    t->dim = dim;
    t->extra = extra;
}

void vt_tokens_free(vt_tokens *t)
{
    free(t->x);
    free(t->box);
    free(t->ex);
    free(t->cls);
    memset(t, 0, sizeof *t);
}

void vt_tokens_copy(vt_tokens *dst, const vt_tokens *src)
{
    vt_tokens_reserve(dst, src->n, src->dim, src->extra, src->cls != NULL);
    dst->grid_h = src->grid_h;
    dst->grid_w = src->grid_w;
    dst->block = src->block;
    memcpy(dst->x, src->x, (size_t)src->n * src->dim * sizeof *dst->x);
    memcpy(dst->box, src->box, (size_t)src->n * 4 * sizeof *dst->box);
    memcpy(dst->ex, src->ex, (size_t)src->extra * src->dim * sizeof *dst->ex);
    if (src->cls)
        memcpy(dst->cls, src->cls, (size_t)src->n * sizeof *dst->cls);
}

void vt_tokens_grid_boxes(vt_tokens *t)
{
    for (int i = 0; i < t->n; i++) {
        int32_t *b = t->box + (size_t)i * 4;
        b[0] = i % t->grid_w;
        b[1] = i / t->grid_w;
        b[2] = b[0] + 1;
        b[3] = b[1] + 1;
    }
}

int vt_tokens_grid_cells(const vt_tokens *t, int *cell)
{
    size_t cells = (size_t)t->grid_h * t->grid_w;
    if ((size_t)t->n != cells)
        return 0;
    for (size_t c = 0; c < cells; c++)
        cell[c] = -1;
    for (int i = 0; i < t->n; i++) {
        const int32_t *b = t->box + (size_t)i * 4;
        if (b[0] < 0 || b[1] < 0 || b[0] >= t->grid_w || b[1] >= t->grid_h ||
            b[2] != b[0] + 1 || b[3] != b[1] + 1)
            return 0;
        size_t c = (size_t)b[1] * t->grid_w + b[0];
        if (cell[c] >= 0)
            return 0;
        cell[c] = i;
    }
    return 1;
}

int vt_tokens_is_full_grid(const vt_tokens *t)
{
    int *cell = vt_xmalloc((t->n > 0 ? (size_t)t->n : 1) * sizeof *cell);
    int full = vt_tokens_grid_cells(t, cell);
    free(cell);
    return full;
}

/* ---- frames ----------------------------------------------------------- */

static void set_int(vt_frame *f, const char *key, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    vt_frame_set_meta(f, key, buf);
}

void vt_tokens_to_frame(const vt_tokens *t, const vt_frame *meta, const char *name,
                        vt_frame *out)
{
    vt_frame_init(out);
    int64_t xs[2] = {t->n, t->dim}, bs[2] = {t->n, 4}, es[2] = {t->extra, t->dim};
    int64_t cs[1] = {t->n};
    vt_frame_add_ref(out, "tokens", VT_F32, 2, xs, t->x);
    vt_frame_add_ref(out, "boxes", VT_I32, 2, bs, t->box);
    if (t->extra > 0)
        vt_frame_add_ref(out, "extra", VT_F32, 2, es, t->ex);
    if (t->cls)
        vt_frame_add_ref(out, "cls_attn", VT_F32, 1, cs, t->cls);
    for (int i = 0; meta && i < meta->nmeta; i++)
        vt_frame_set_meta(out, meta->meta_key[i], meta->meta_val[i]);
    vt_frame_stamp(out, "tokens", name);
    set_int(out, "block", t->block);
    char grid[48];
    snprintf(grid, sizeof grid, "%d,%d", t->grid_h, t->grid_w);
    vt_frame_set_meta(out, "grid", grid);
    set_int(out, "tokens", t->n);
    set_int(out, "extra_tokens", t->extra);
}

/* *out = the frame's tensor `name` when it has exactly this dtype and rank:
 * 1; 0 when there is none (an error when required); -1 when it differs. */
static int tensor(const vt_frame *f, const char *name, vt_dtype dt, int ndim, int required,
                  const vt_tensor **out)
{
    const vt_tensor *x = vt_frame_get(f, name);
    *out = NULL;
    if (!x)
        return required ? vt_seterr("tokens frame has no '%s' tensor", name) : 0;
    if (x->dtype != dt || x->ndim != ndim) {
        char b[96];
        return vt_seterr("tokens frame: '%s' is %s %s, expected %s of rank %d", name,
                         vt_dtype_name(x->dtype), vt_shape_str(x, b, sizeof b),
                         vt_dtype_name(dt), ndim);
    }
    *out = x;
    return 1;
}

static int meta_int(const vt_frame *f, const char *key, long min, long max, long *v)
{
    const char *s = vt_frame_meta(f, key);
    if (!s)
        return vt_seterr("tokens frame has no '%s' metadata", key);
    if (vt_parse_int(s, min, max, v) < 0)
        return vt_seterr("tokens frame: %s '%s' is not a number from %ld to %ld", key, s, min,
                         max);
    return 0;
}

/* grid "H,W": two whole numbers from 1 to 2^15 and nothing else. */
static int grid_meta(const vt_frame *f, long *gh, long *gw)
{
    const char *s = vt_frame_meta(f, "grid");
    const char *comma = s ? strchr(s, ',') : NULL;
    char h[32];
    if (comma && (size_t)(comma - s) < sizeof h) {
        memcpy(h, s, (size_t)(comma - s));
        h[comma - s] = 0;
        if (vt_parse_int(h, 1, 1L << 15, gh) == 0 && vt_parse_int(comma + 1, 1, 1L << 15, gw) == 0)
            return 0;
    }
    return vt_seterr("tokens frame: grid '%s' is not H,W (each from 1 to %ld)",
                     s ? s : "(missing)", 1L << 15);
}

int vt_tokens_from_frame(const vt_frame *f, vt_tokens *t)
{
    const char *kind = vt_frame_meta(f, "kind");
    if (!kind || strcmp(kind, "tokens") != 0)
        return vt_seterr("a '%s' frame, not a tokens frame", kind ? kind : "?");
    const vt_tensor *x, *bx, *ex, *cl;
    if (tensor(f, "tokens", VT_F32, 2, 1, &x) < 0 || tensor(f, "boxes", VT_I32, 2, 1, &bx) < 0 ||
        tensor(f, "extra", VT_F32, 2, 0, &ex) < 0 || tensor(f, "cls_attn", VT_F32, 1, 0, &cl) < 0)
        return -1;
    int64_t n = x->shape[0], c = x->shape[1], e = ex ? ex->shape[0] : 0;
    if (n < 1 || n > 1 << 24 || c < 1 || c > 1 << 20)
        return vt_seterr("tokens frame: tokens are [%lld,%lld]", (long long)n, (long long)c);
    if (bx->shape[0] != n || bx->shape[1] != 4)
        return vt_seterr("tokens frame: boxes are [%lld,%lld], expected [%lld,4]",
                         (long long)bx->shape[0], (long long)bx->shape[1], (long long)n);
    if (ex && (ex->shape[1] != c || e > 64))
        return vt_seterr("tokens frame: extra is [%lld,%lld], expected [E,%lld]", (long long)e,
                         (long long)ex->shape[1], (long long)c);
    if (cl && cl->shape[0] != n)
        return vt_seterr("tokens frame: cls_attn has %lld entries for %lld tokens",
                         (long long)cl->shape[0], (long long)n);
    long block, gh, gw;
    if (meta_int(f, "block", 0, 1000000, &block) < 0 || grid_meta(f, &gh, &gw) < 0)
        return -1;
    const int32_t *b = bx->data;
    for (int64_t i = 0; i < n; i++, b += 4)
        if (b[0] < 0 || b[1] < 0 || b[2] <= b[0] || b[3] <= b[1] || b[2] > gw || b[3] > gh)
            return vt_seterr("tokens frame: box %lld (%d,%d,%d,%d) is not inside the %ldx%ld "
                             "grid", (long long)i, b[0], b[1], b[2], b[3], gh, gw);
    vt_tokens_reserve(t, (int)n, (int)c, (int)e, cl != NULL);
    t->grid_h = (int)gh;
    t->grid_w = (int)gw;
    t->block = (int)block;
    memcpy(t->x, x->data, (size_t)n * c * sizeof *t->x);
    memcpy(t->box, bx->data, (size_t)n * 4 * sizeof *t->box);
    if (e)
        memcpy(t->ex, ex->data, (size_t)e * c * sizeof *t->ex);
    if (cl)
        memcpy(t->cls, cl->data, (size_t)n * sizeof *t->cls);
    return 0;
}

/* ---- model identity --------------------------------------------------- */

/* SHA-256 of data[0, len), a mapped model file's tensor data, without
 * leaving the file resident: by the time a frame asks for the model's
 * identity its weights are packed and their pages given back, so each
 * chunk's pages are given back after it is hashed. (Which of them were
 * resident before cannot be told: mincore reports the page cache of a
 * file mapping, not this process's pages.) The few weights a forward
 * pass reads in place fault back in once from the page cache. */
static void hash_mapped(const uint8_t *data, size_t len, char hex[65])
{
    enum { CHUNK = 4 << 20 };
    vt_sha256 s;
    vt_sha256_init(&s);
    for (size_t at = 0; at < len; at += CHUNK) {
        size_t n = len - at < CHUNK ? len - at : CHUNK;
        vt_sha256_update(&s, data + at, n);
        vt_map_release(data + at, n);
    }
    uint8_t d[32];
    vt_sha256_final(&s, d);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int vt_weights_sha256(const vt_model *m, char hex[65])
{
    const uint8_t *p = m->weights.map;
    size_t len = m->weights.map_len;
    if (!p || len < 8)
        return vt_seterr("model file is not mapped");
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | p[i];
    if (hl > len - 8)
        return vt_seterr("model file header is longer than the file");
    hash_mapped(p + 8 + hl, len - 8 - (size_t)hl, hex);
    return 0;
}

void vt_tokens_identity(const vt_model *m, const char *hex, vt_frame *meta)
{
    vt_frame_set_meta(meta, "arch", m->arch);
    vt_frame_set_meta(meta, "family", m->family->name);
    vt_frame_set_meta(meta, "weights_sha256", hex);
    if (vt_model_random(m))
        vt_frame_set_meta(meta, "random", "1");
}

int vt_tokens_check_identity(const vt_frame *f, const vt_model *m, const char *hex)
{
    const char *arch = vt_frame_meta(f, "arch"), *sha = vt_frame_meta(f, "weights_sha256");
    if (!arch || !sha)
        return vt_seterr("tokens frame does not say which model made it (arch, weights_sha256)");
    if (strcmp(arch, m->arch) != 0 || strcmp(sha, hex) != 0)
        return vt_seterr("tokens frame is from another model (%s, weights %.12s...); this is "
                         "%s, weights %.12s...", arch, sha, m->arch, hex);
    return 0;
}

/* ---- running ---------------------------------------------------------- */

static int split_supported(const vt_model *m)
{
    const vt_family *f = m->family;
    if (f->split_point && f->run_until && f->run_from)
        return 0;
    char list[256] = "";
    for (const vt_family *const *g = vt_families(); *g; g++)
        if ((*g)->split_point && strlen(list) + strlen((*g)->name) + 3 < sizeof list) {
            if (*list) strcat(list, ", ");
            strcat(list, (*g)->name);
        }
    return vt_seterr("split inference is not available for the %s family (it is for: %s)",
                     f->name, list);
}

int vt_model_split_point(const vt_model *m, int block)
{
    if (split_supported(m) < 0)
        return -1;
    return m->family->split_point(m->net, block);
}

int vt_model_run_until(vt_model *m, const float *x, int batch, int until, vt_tokens *out)
{
    if (split_supported(m) < 0)
        return -1;
    return m->family->run_until(m->net, x, batch, until, out);
}

int vt_model_run_from(vt_model *m, const vt_tokens *in, int batch, int until,
                      vt_tokens *out, float *logits)
{
    if (split_supported(m) < 0)
        return -1;
    return m->family->run_from(m->net, in, batch, until, out, logits);
}
