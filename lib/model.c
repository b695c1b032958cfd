/* model.c - the family registry, model configs, weight validation and
 * opening model files. */
#include "model.h"
#include "ops.h"
#include "ops/half.h"
#include "util.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const vt_family vt_family_vit;
extern const vt_family vt_family_sgformer;
extern const vt_family vt_family_groupmix;
extern const vt_family vt_family_swin;
extern const vt_family vt_family_stvit;
extern const vt_family vt_family_pale;
extern const vt_family vt_family_dge;

/* Every family, in the order --list-archs shows them. */
static const vt_family *const registry[] = {
    &vt_family_vit,
    &vt_family_sgformer,
    &vt_family_groupmix,
    &vt_family_swin,
    &vt_family_stvit,
    &vt_family_pale,
    &vt_family_dge,
    NULL,
};

const vt_family *const *vt_families(void) { return registry; }

const vt_family *vt_family_find(const char *name)
{
    for (int i = 0; registry[i]; i++) {
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
        for (int j = 0; registry[i]->archs[j]; j++)
            if (strcmp(registry[i]->archs[j], name) == 0) return registry[i];
    }
    return NULL;
}

static int is_arch_of(const vt_family *f, const char *arch)
{
    for (int j = 0; f->archs[j]; j++)
        if (strcmp(f->archs[j], arch) == 0) return 1;
    return 0;
}

/* ---- parameter tables ---- */

void vt_params_add(vt_params *ps, int optional, const char *name, int ndim, ...)
{
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        ps->p = vt_xrealloc(ps->p, ps->cap * sizeof *ps->p);
    }
    vt_param *p = &ps->p[ps->n++];
    memset(p, 0, sizeof *p);
    p->name = vt_xstrdup(name);
    p->ndim = ndim;
    p->optional = optional;
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < VT_MAX_DIM; i++) p->shape[i] = va_arg(ap, int64_t);
    va_end(ap);
}

void vt_params_free(vt_params *ps)
{
    for (int i = 0; i < ps->n; i++) free(ps->p[i].name);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

void vt_cost_add(vt_cost *c, const char *name, double macs)
{
    c->macs += macs;
    int i = 0;
    while (i < c->nparts && strcmp(c->part[i].name, name) != 0) i++;
    if (i == VT_COST_PARTS) return;   /* total still counts */
    if (i == c->nparts) {
        snprintf(c->part[i].name, sizeof c->part[i].name, "%s", name);
        c->part[i].macs = 0;
        c->nparts++;
    }
    c->part[i].macs += macs;
}

/* ---- binding weights ---- */

float *vt_store_alloc(vt_store *s, size_t count)
{
    s->buf = vt_xrealloc(s->buf, (s->n + 1) * sizeof *s->buf);
    return s->buf[s->n++] = vt_xcalloc(count ? count : 1, sizeof(float));
}

void vt_store_free(vt_store *s)
{
    for (int i = 0; i < s->n; i++) free(s->buf[i]);
    free(s->buf);
    s->buf = NULL;
    s->n = 0;
}

/* dst[count] = the F32, F16 or BF16 tensor t as F32 (exact). */
static void to_f32(float *dst, const vt_tensor *t, size_t count)
{
    if (t->dtype == VT_F32)
        memcpy(dst, t->data, count * sizeof *dst);
    else
        for (size_t i = 0; i < count; i++)
            dst[i] = (float)vt_tensor_get(t, i);
}

/* The checks vt_weight_f32 makes: the tensor, or NULL after vt_seterr. */
static const vt_tensor *weight_tensor(const vt_frame *w, const char *family,
                                      const char *name, size_t count)
{
    const vt_tensor *t = vt_frame_get(w, name);
    if (!t)
        return vt_seterr("%s: missing tensor %s", family, name), NULL;
    if (t->dtype != VT_F32 && t->dtype != VT_BF16 && t->dtype != VT_F16)
        return vt_seterr("%s: tensor %s is %s; only F32, F16 and BF16 weights are supported "
                         "(convert with vt-convert)", family, name, vt_dtype_name(t->dtype)), NULL;
    if ((size_t)vt_tensor_numel(t) != count)
        return vt_seterr("%s: tensor %s has %lld elements, expected %zu", family, name,
                         (long long)vt_tensor_numel(t), count), NULL;
    return t;
}

const float *vt_weight_f32(vt_store *s, const vt_frame *w, const char *family,
                           const char *name, size_t count)
{
    const vt_tensor *t = weight_tensor(w, family, name, count);
    if (!t)
        return NULL;
    /* Always a copy, F32 too (half precision widened exactly): these are
     * the small tensors a forward pass reads (norms, biases, tables), and
     * read in place they would keep the file's pages mapped. A read fault
     * maps not one page but its neighbours in the page cache too (fault-
     * around; since Linux 6.18 the whole large folio, up to 2 MiB), and the
     * neighbours are the big weights already packed and given back: a
     * DeiT-B BF16 file held 29 MiB of them, more or less from run to run
     * as the page cache's folios came out. Copied, nothing reads the
     * mapping after load and vt_model_open gives all of it back. */
    float *copy = vt_store_alloc(s, count);
    to_f32(copy, t, count);
    vt_map_release(t->data, count * vt_dtype_size(t->dtype));
    return copy;
}

const float *vt_weight_linear(vt_pool *p, const vt_frame *w, const char *family,
                              const char *name, int nout, int nin)
{
    size_t count = (size_t)nout * nin;
    const vt_tensor *t = weight_tensor(w, family, name, count);
    if (!t)
        return NULL;
    if (t->dtype == VT_F32 && (uintptr_t)t->data % sizeof(float) == 0)
        return t->data;
    if (!p)
        return vt_seterr("%s: no pool to pack %s on", family, name), NULL;
    if (vt_pool_wpack_find(p, t->data, nout, nin))
        return t->data;                 /* bound twice: packed already */
    vt_wpack pk;
    int rc;
    if (t->dtype == VT_BF16 && (uintptr_t)t->data % 2 == 0) {
        rc = vt_wpack_init_bf16_pool(p, &pk, t->data, nout, nin);
    } else {
        float *wide = vt_xmalloc((count ? count : 1) * sizeof *wide);
        to_f32(wide, t, count);
        rc = vt_wpack_init_take(&pk, wide, nout, nin);
    }
    if (rc < 0 || !vt_pool_wpack_put(p, t->data, &pk, count * vt_dtype_size(t->dtype))) {
        char why[256];
        snprintf(why, sizeof why, "%s", vt_error());
        return vt_seterr("%s: packing %s: %s", family, name, why), NULL;
    }
    return t->data;
}

const vt_wpack *vt_weight_packed(vt_pool *p, const vt_frame *w, const char *family,
                                 const char *name, int nout, int nin)
{
    const float *key = vt_weight_linear(p, w, family, name, nout, nin);
    if (!key || vt_pool_wpack_load(p, key, nout, nin) < 0)
        return NULL;
    return vt_pool_wpack_find(p, key, nout, nin);
}

/* ---- config access ---- */

int vt_cfg_int(const cJSON *cfg, const char *key, int def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsBool(j)) return cJSON_IsTrue(j);
    if (!cJSON_IsNumber(j) || !(fabs(j->valuedouble) < INT_MAX)) return def;
    return (int)j->valuedouble;
}

double vt_cfg_num(const cJSON *cfg, const char *key, double def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsNumber(j) ? j->valuedouble : def;
}

int vt_cfg_bool(const cJSON *cfg, const char *key, int def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsBool(j)) return cJSON_IsTrue(j);
    if (cJSON_IsNumber(j)) return j->valuedouble != 0;
    return def;
}

int vt_cfg_ints(const cJSON *cfg, const char *key, int *out, int max)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!cJSON_IsArray(j)) return 0;
    int n = 0;
    for (const cJSON *e = j->child; e; e = e->next, n++) {
        if (!cJSON_IsNumber(e) || !(fabs(e->valuedouble) < INT_MAX)) return -1;
        if (n < max) out[n] = (int)e->valuedouble;
        if (n == INT_MAX - 1) return -1;
    }
    return n;
}

/* ---- configs ---- */

cJSON *vt_config_make(const char *arch, const cJSON *over)
{
    const vt_family *fam = vt_family_find(arch);
    if (!fam) { vt_seterr("unknown arch '%s' (see vt-convert --list-archs)", arch); return NULL; }
    /* refgen's meta.json carries the model's hyperparameters under "config". */
    const cJSON *src = over;
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(over, "config");
    if (cJSON_IsObject(inner)) src = inner;
    if (over && !cJSON_IsObject(src)) { vt_seterr("config is not a JSON object"); return NULL; }
    /* A family name takes its variant from refgen's "variant" or the
     * config's "arch". A config "arch" that is no known variant (refgen
     * stores builder names such as "swin" there) is not a contradiction,
     * nor is one that differs from a "variant" naming the arch (refgen's
     * dge *_mixgate variants keep their base builder's name in "arch"). */
    const char *variant = arch;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(src, "arch");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(over, "variant");
    if (!is_arch_of(fam, arch)) {
        if (cJSON_IsString(v) && is_arch_of(fam, v->valuestring)) variant = v->valuestring;
        else if (cJSON_IsString(a) && is_arch_of(fam, a->valuestring)) variant = a->valuestring;
        else {
            vt_seterr("'%s' is a family; name a variant with --arch or \"arch\" in the config", arch);
            return NULL;
        }
    } else if (cJSON_IsString(a) && strcmp(a->valuestring, arch) != 0 &&
               !(cJSON_IsString(v) && strcmp(v->valuestring, arch) == 0) &&
               vt_family_find(a->valuestring) && strcmp(vt_family_find(a->valuestring)->name, a->valuestring) != 0) {
        vt_seterr("config is for arch '%s', not '%s'", a->valuestring, arch);
        return NULL;
    }
    cJSON *cfg = cJSON_CreateObject();
    if (fam->config(variant, cfg) < 0) { cJSON_Delete(cfg); return NULL; }
    for (const cJSON *e = src ? src->child : NULL; e; e = e->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, e->string);
        cJSON_AddItemToObject(cfg, e->string, cJSON_Duplicate(e, 1));
    }
    /* refgen's meta.json "size" is the side the reference actually ran at;
     * a config trained at another img_size keeps its position embedding
     * size under "pos_embed_size" and runs at "size". */
    const cJSON *run = inner ? cJSON_GetObjectItemCaseSensitive(over, "size") : NULL;
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(cfg, "img_size");
    if (cJSON_IsNumber(run) && cJSON_IsNumber(img) && run->valuedouble != img->valuedouble) {
        if (!cJSON_GetObjectItemCaseSensitive(cfg, "pos_embed_size"))
            cJSON_AddNumberToObject(cfg, "pos_embed_size", img->valuedouble);
        cJSON_ReplaceItemInObjectCaseSensitive(cfg, "img_size", cJSON_CreateNumber(run->valuedouble));
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "arch");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "family");
    cJSON_AddStringToObject(cfg, "arch", variant);
    cJSON_AddStringToObject(cfg, "family", fam->name);
    return cfg;
}

void vt_config_preproc(const cJSON *cfg, vt_preproc *p)
{
    vt_preproc_default(p);
    p->size = vt_cfg_int(cfg, "img_size", p->size);
    p->crop_pct = vt_cfg_num(cfg, "crop_pct", p->crop_pct);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(cfg, "interpolation");
    if (cJSON_IsString(in) && vt_interp_from_name(in->valuestring) >= 0)
        p->interp = vt_interp_from_name(in->valuestring);
    const char *keys[2] = {"mean", "std"};
    float *dst[2] = {p->mean, p->std};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(cfg, keys[k]);
        if (cJSON_GetArraySize(a) != 3) continue;
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetArrayItem(a, i);
            if (cJSON_IsNumber(v)) dst[k][i] = (float)v->valuedouble;
        }
    }
}

/* ---- strict weight validation ---- */

static const vt_param *find_param(const vt_params *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->p[i].name, name) == 0) return &ps->p[i];
    return NULL;
}

static int same_shape(const vt_param *p, const vt_tensor *t)
{
    if (p->ndim != t->ndim) return 0;
    for (int i = 0; i < p->ndim; i++)
        if (p->shape[i] != t->shape[i]) return 0;
    return 1;
}

typedef struct listing { char *s; size_t n, cap; int count; } listing;

static void list_add(listing *l, const char *fmt, ...) VT_PRINTF(2, 3);
static void list_add(listing *l, const char *fmt, ...)
{
    if (++l->count > 20) return;
    char item[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(item, sizeof item, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof item) n = sizeof item - 1;
    if (l->n + n + 3 > l->cap) {
        l->cap = (l->n + n + 3) * 2;
        l->s = vt_xrealloc(l->s, l->cap);
    }
    l->n += sprintf(l->s + l->n, "%s%s", l->n ? ", " : "", item);
}

static void list_emit(listing *l, const char *what, char *msg, size_t cap)
{
    if (!l->count) return;
    size_t n = strlen(msg);
    snprintf(msg + n, cap - n, "%s%d %s: %s%s", n ? "; " : "", l->count, what, l->s,
             l->count > 20 ? ", ..." : "");
    free(l->s);
}

int vt_check_weights(const vt_params *ps, const vt_frame *w)
{
    listing missing = {0}, unexpected = {0}, shaped = {0};
    char a[96], b[96];
    for (int i = 0; i < ps->n; i++) {
        const vt_param *p = &ps->p[i];
        const vt_tensor *t = vt_frame_get(w, p->name);
        if (!t) {
            if (!p->optional) list_add(&missing, "%s", p->name);
            continue;
        }
        if (!same_shape(p, t)) {
            vt_tensor want = {.ndim = p->ndim};
            memcpy(want.shape, p->shape, sizeof want.shape);
            list_add(&shaped, "%s %s (want %s)", p->name, vt_shape_str(t, a, sizeof a),
                     vt_shape_str(&want, b, sizeof b));
        }
    }
    for (int i = 0; i < w->ntensors; i++)
        if (!find_param(ps, w->tensors[i].name)) list_add(&unexpected, "%s", w->tensors[i].name);
    if (!missing.count && !unexpected.count && !shaped.count) return 0;
    char msg[8192] = "";
    list_emit(&missing, "missing", msg, sizeof msg);
    list_emit(&unexpected, "unexpected", msg, sizeof msg);
    list_emit(&shaped, "mis-shaped", msg, sizeof msg);
    return vt_seterr("weights do not fit the arch: %s", msg);
}

/* ---- labels ---- */

/* share/ holds data files: beside the binary in a build tree (bin/../share),
 * installed under PREFIX/share/vtkit, or wherever VT_SHARE points. */
static FILE *open_share(const char *file)
{
    char path[2 * PATH_MAX + 64], exe[PATH_MAX];
    const char *env = getenv("VT_SHARE");
    if (env && *env) {
        snprintf(path, sizeof path, "%s/%s", env, file);
        FILE *f = fopen(path, "r");
        if (f) return f;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"../share", "../share/vtkit"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/%s/%s", exe, rel[i], file);
            FILE *f = fopen(path, "r");
            if (f) return f;
        }
    }
    snprintf(path, sizeof path, "%s/share/vtkit/%s", VT_PREFIX, file);
    return fopen(path, "r");
}

char **vt_labels_load(const char *set, int *count)
{
    char file[128], line[1024];
    snprintf(file, sizeof file, "%s_labels.tsv", set);
    FILE *f = open_share(file);
    if (!f) { vt_seterr("label set '%s' not found (set VT_SHARE)", set); return NULL; }
    int n = 0, cap = 1024;
    char **labels = vt_xmalloc((cap + 1) * sizeof *labels);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *tab = strchr(line, '\t');
        if (n == cap) { cap *= 2; labels = vt_xrealloc(labels, (cap + 1) * sizeof *labels); }
        labels[n++] = vt_xstrdup(tab ? tab + 1 : line);
    }
    fclose(f);
    labels[n] = NULL;
    *count = n;
    return labels;
}

/* ---- model files ---- */

void vt_config_set_size(cJSON *cfg, int size)
{
    int own = vt_cfg_int(cfg, "img_size", 224);
    if (size == own) return;
    if (!cJSON_GetObjectItemCaseSensitive(cfg, "pos_embed_size"))
        cJSON_AddNumberToObject(cfg, "pos_embed_size", own);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "img_size");
    cJSON_AddNumberToObject(cfg, "img_size", size);
}

/* Give back every page of the model file mapped so far. Safe at any time:
 * the mapping is read-only and private, and a later read (an F32 linear
 * not yet packed) faults its page back in from the page cache. Load reads
 * a file through and keeps what it needs as copies or packs, so without
 * this the pages mapped around those reads would stay in RSS. */
static void release_file_pages(vt_model *m)
{
    if (m->weights.map)
        vt_drop_pages(m->weights.map, m->weights.map_len);
}

int vt_model_open(const char *path, const vt_run_opts *o, vt_model *m)
{
    return vt_model_open_sized(path, o, 0, m);
}

int vt_model_open_sized(const char *path, const vt_run_opts *o, int size, vt_model *m)
{
    memset(m, 0, sizeof *m);
    m->opts = *o;
    if (m->opts.threads < 1) m->opts.threads = vt_ncpus();
    if (m->opts.batch < 1) m->opts.batch = 1;
    if (vt_frame_map(path, &m->weights) < 0) return -1;
    const char *is_model = vt_frame_meta(&m->weights, "vt_model");
    const char *arch = vt_frame_meta(&m->weights, "arch");
    const char *config = vt_frame_meta(&m->weights, "config");
    if (!is_model || !arch || !config) {
        vt_model_close(m);
        return vt_seterr("not a vtkit model file (make one with vt-convert --arch)");
    }
    m->family = vt_family_find(arch);
    if (!m->family) {
        vt_seterr("model is for arch '%s', which this build does not know", arch);
        vt_model_close(m);
        return -1;
    }
    m->arch = vt_xstrdup(arch);
    m->config = cJSON_Parse(config);
    if (!cJSON_IsObject(m->config)) {
        vt_model_close(m);
        return vt_seterr("model config is not a JSON object");
    }
    if (size > 0) vt_config_set_size(m->config, size);
    vt_params ps = {0};
    int rc = m->family->params(m->config, &ps);
    if (rc == 0) rc = vt_check_weights(&ps, &m->weights);
    vt_params_free(&ps);
    if (rc < 0) { vt_model_close(m); return -1; }

    vt_config_preproc(m->config, &m->pre);
    const char *pre = vt_frame_meta(&m->weights, "preprocess");
    cJSON *pj = pre ? cJSON_Parse(pre) : NULL;
    if (pj) {
        vt_config_preproc(pj, &m->pre);
        m->pre.size = vt_cfg_int(pj, "size", m->pre.size);
        cJSON_Delete(pj);
    }
    m->img_size = vt_cfg_int(m->config, "img_size", 224);
    m->num_classes = vt_cfg_int(m->config, "num_classes", 1000);
    const char *labels = vt_frame_meta(&m->weights, "labels");
    if (labels && strcmp(labels, "none") != 0) {
        int n = 0;
        m->labels = vt_labels_load(labels, &n);
        if (m->labels && n != m->num_classes) {
            for (int i = 0; i < n; i++) free(m->labels[i]);
            free(m->labels);
            m->labels = NULL;
        }
    }
    const char *sha = vt_frame_meta(&m->weights, "source_sha256");
    m->sha256 = vt_xstrdup(sha ? sha : "");
    m->net = m->family->create(m->config, &m->weights, &m->opts);
    if (!m->net) { vt_model_close(m); return -1; }
    release_file_pages(m);
    return 0;
}

int vt_model_forward(vt_model *m, const float *x, int batch, float *logits)
{
    int rc = m->family->forward(m->net, x, batch, logits);
    /* F32 linears are packed on their first use, each giving back its own
     * pages; what their reads mapped around them goes back here. */
    if (rc == 0 && !__atomic_exchange_n(&m->ran, 1, __ATOMIC_ACQ_REL))
        release_file_pages(m);
    return rc;
}

void vt_model_close(vt_model *m)
{
    if (m->net) m->family->destroy(m->net);
    if (m->labels) {
        for (int i = 0; m->labels[i]; i++) free(m->labels[i]);
        free(m->labels);
    }
    cJSON_Delete(m->config);
    free(m->arch);
    free(m->sha256);
    vt_frame_free(&m->weights);
    memset(m, 0, sizeof *m);
}

int vt_model_random(const vt_model *m)
{
    const char *rnd = vt_frame_meta(&m->weights, "random");
    return rnd && strcmp(rnd, "1") == 0;
}

/* ---- weights a family reorders or folds before packing ---- */

const float *vt_weight_read(const vt_frame *w, const char *family, const char *name,
                            size_t count, float **tmp, int *bf16)
{
    *tmp = NULL;
    const vt_tensor *t = weight_tensor(w, family, name, count);
    if (!t)
        return NULL;
    if (bf16)
        *bf16 = t->dtype == VT_BF16;
    size_t bytes = count * vt_dtype_size(t->dtype);
    /* Aligned F32 in a mapped file is copied too, so that its pages can
     * go back now: read in place they would stay resident for the net's
     * life though only the fold or reordering made from them is used (a
     * GroupMix-B held 10 MiB of F32 conv kernels so). */
    if (t->dtype == VT_F32 && (uintptr_t)t->data % sizeof(float) == 0 &&
        !vt_map_noted(t->data, bytes))
        return t->data;
    float *wide = vt_xmalloc((count ? count : 1) * sizeof *wide);
    to_f32(wide, t, count);
    /* the copy is what the family reads from now on */
    vt_map_release(t->data, bytes);
    return *tmp = wide;
}

int vt_wpack_take_as(vt_pool *p, vt_wpack *pk, float *raw, int n, int k, int bf16)
{
    if (!bf16)
        return vt_wpack_init_take(pk, raw, n, k);
    size_t count = (size_t)n * k;
    uint16_t *h = vt_xmalloc((count ? count : 1) * sizeof *h);
    for (size_t i = 0; i < count; i++)
        h[i] = vt_f32_to_bf16(raw[i]);  /* exact: a reordering holds BF16 values */
    free(raw);
    int rc = vt_wpack_init_bf16_pool(p, pk, h, n, k);
    free(h);
    return rc;
}
