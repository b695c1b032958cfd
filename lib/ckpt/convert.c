/* convert.c - checkpoint -> model file: the config, strict validation
 * against the family's parameter table, dtype conversion, metadata, and an
 * atomic write. Tensors are written in the table's order. Memory: weights
 * that need no conversion are written straight from the checkpoint's
 * mapping; converted ones free (or drop the pages of) their source. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "model.h"
#include "util.h"

static int convertible(vt_dtype t) { return t == VT_F32 || t == VT_F16 || t == VT_BF16; }

static char *preprocess_json(const cJSON *cfg)
{
    vt_preproc p;
    vt_config_preproc(cfg, &p);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "size", p.size);
    char num[32];
    snprintf(num, sizeof num, "%.6g", p.crop_pct);
    cJSON_AddNumberToObject(j, "crop_pct", strtod(num, NULL));
    cJSON_AddStringToObject(j, "interpolation", vt_interp_name(p.interp));
    const char *keys[2] = {"mean", "std"};
    const float *src[2] = {p.mean, p.std};
    for (int k = 0; k < 2; k++) {
        cJSON *a = cJSON_AddArrayToObject(j, keys[k]);
        for (int i = 0; i < 3; i++) {
            /* %.7g gives back the decimal a float came from (0.485, not
             * 0.48500001430511475) */
            snprintf(num, sizeof num, "%.7g", src[k][i]);
            cJSON_AddItemToArray(a, cJSON_CreateNumber(strtod(num, NULL)));
        }
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int vt_write_model(vt_frame *out, const cJSON *cfg, const struct vt_family *fam,
                   const char *source, const char *sha, int random, const char *out_path)
{
    char *name = vt_basename(out_path && strcmp(out_path, "-") ? out_path : "-");
    vt_frame_stamp(out, "model", name);
    free(name);
    vt_frame_set_meta(out, "vt_model", "1");
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(cfg, "arch");
    vt_frame_set_meta(out, "arch", cJSON_IsString(arch) ? arch->valuestring : "");
    vt_frame_set_meta(out, "family", fam->name);
    char *s = cJSON_PrintUnformatted(cfg);
    vt_frame_set_meta(out, "config", s);
    free(s);
    s = preprocess_json(cfg);
    vt_frame_set_meta(out, "preprocess", s);
    free(s);
    vt_frame_set_meta(out, "labels", vt_cfg_int(cfg, "num_classes", 1000) == 1000 ? "imagenet1k" : "none");
    vt_frame_set_meta(out, "source", source);
    vt_frame_set_meta(out, "source_sha256", sha);
    if (random) vt_frame_set_meta(out, "random", "1");
    vt_out o;
    if (vt_out_open(&o, out_path, 1) < 0) return -1;
    if (vt_frame_write(o.fp, out) < 0) { vt_out_abort(&o); return -1; }
    return vt_out_commit(&o);
}

/* A half-precision model file holds the weights of linear layers (2-D
 * tensors named *.weight: the matrix products' operands, nearly all the
 * bytes) in half precision. Everything else stays F32: convolution
 * kernels, norms, biases, BatchNorm statistics, embeddings and tables are
 * a few percent of the bytes, and rounding them moves every value they
 * touch: rounding all of a tiny GroupMix to BF16 moved its logits 3.5%,
 * its conv kernels alone 3.8%, its linear weights alone 0.76%. */
int vt_half_in_model(const vt_tensor *t)
{
    size_t n = strlen(t->name);
    return t->ndim == 2 && n > 7 && strcmp(t->name + n - 7, ".weight") == 0;
}

/* Model tensors in params order: references to w's tensors, or converted
 * copies (whose sources are released at once). */
static void assemble(vt_frame *w, const vt_params *ps, vt_dtype dtype, vt_frame *out)
{
    for (int i = 0; i < ps->n; i++) {
        vt_tensor *t = vt_frame_get(w, ps->p[i].name);
        if (!t) continue;   /* an optional buffer, recomputed */
        vt_dtype dt = !vt_dtype_is_float(t->dtype) ? t->dtype : vt_half_in_model(t) ? dtype : VT_F32;
        if (dt == t->dtype) {
            vt_frame_add_ref(out, t->name, dt, t->ndim, t->shape, t->data);
            continue;
        }
        vt_tensor *n = vt_frame_add(out, t->name, dt, t->ndim, t->shape);
        vt_convert_elems(t->data, t->dtype, n->data, dt, (size_t)vt_tensor_numel(t));
        if (!t->owned) vt_ckpt_drop_pages(w, t->data, t->nbytes);
        if (t->owned) {
            free(t->data);
            t->data = NULL;
            t->owned = 0;
        }
    }
}

int vt_convert_checkpoint(const char *ckpt_path, const char *arch, const cJSON *config_over,
                          const vt_convert_opts *o, const char *out_path)
{
    static const vt_convert_opts defaults;
    if (!o) o = &defaults;
    if (!convertible(o->dtype)) return vt_seterr("model dtype must be f32, f16 or bf16");
    cJSON *cfg = vt_config_make(arch, config_over);
    if (!cfg) return -1;
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(cfg, "family");
    const vt_family *fam = vt_family_find(cJSON_IsString(fname) ? fname->valuestring : arch);
    vt_params ps = {0};
    vt_frame w, out;
    vt_frame_init(&w);
    vt_frame_init(&out);
    char sha[65];
    int rc = -1;
    if (!fam || fam->params(cfg, &ps) < 0) goto done;
    /* keep_half: no detour through F32 when the model is half too */
    vt_ckpt_opts co = {.ema = o->ema, .keep_half = o->dtype != VT_F32};
    if (vt_ckpt_load(ckpt_path, &co, &w) < 0) goto done;
    if (vt_check_weights(&ps, &w) < 0) goto done;
    if (vt_sha256_file(ckpt_path, sha) < 0) goto done;
    assemble(&w, &ps, o->dtype, &out);
    char *base = vt_basename(ckpt_path);
    rc = vt_write_model(&out, cfg, fam, base, sha, 0, out_path);
    free(base);
done:
    vt_frame_free(&out);
    vt_frame_free(&w);
    vt_params_free(&ps);
    cJSON_Delete(cfg);
    return rc;
}
