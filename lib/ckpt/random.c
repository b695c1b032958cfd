/* random.c - model files with deterministic random weights, for benchmarks
 * and demos. Each tensor draws from its own stream (splitmix64 seeded by
 * the seed and the tensor's name), so weights do not depend on the order
 * of the parameter table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "model.h"
#include "util.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* Uniform in (0, 1]. */
static double uniform(uint64_t *s) { return ((splitmix64(s) >> 11) + 1) * 0x1.0p-53; }

/* N(0,1) truncated to [-2, 2] (Box-Muller, rejecting the tails). */
static double trunc_normal(uint64_t *s)
{
    for (;;) {
        double z = sqrt(-2 * log(uniform(s))) * cos(2 * M_PI * uniform(s));
        if (fabs(z) <= 2) return z;
    }
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static void fill(vt_tensor *t, unsigned long seed)
{
    float *x = t->data;
    size_t n = (size_t)vt_tensor_numel(t);
    uint64_t s = (uint64_t)seed ^ fnv1a(t->name);
    int normal = t->ndim >= 2 || strstr(t->name, "token") || ends_with(t->name, "pos_embed");
    float constant = strstr(t->name, "bias") ? 0.0f : 1.0f;   /* norms, scales: 1 */
    for (size_t i = 0; i < n; i++) x[i] = normal ? (float)(0.02 * trunc_normal(&s)) : constant;
}

int vt_make_random_model(const char *arch, const cJSON *config_over, unsigned long seed,
                         vt_dtype dtype, const char *out_path)
{
    if (dtype != VT_F32 && dtype != VT_F16 && dtype != VT_BF16)
        return vt_seterr("model dtype must be f32, f16 or bf16");
    cJSON *cfg = vt_config_make(arch, config_over);
    if (!cfg) return -1;
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(cfg, "family");
    const vt_family *fam = vt_family_find(cJSON_IsString(fname) ? fname->valuestring : arch);
    vt_params ps = {0};
    vt_frame out;
    vt_frame_init(&out);
    int rc = -1;
    if (!fam || fam->params(cfg, &ps) < 0) goto done;
    for (int i = 0; i < ps.n; i++) {
        const vt_param *p = &ps.p[i];
        if (p->optional) continue;      /* recomputed buffers */
        vt_tensor *t = vt_frame_add(&out, p->name, VT_F32, p->ndim, p->shape);
        fill(t, seed);
        if (dtype == VT_F32 || !vt_half_in_model(t)) continue;
        size_t n = (size_t)vt_tensor_numel(t);
        void *d = vt_xmalloc(n * vt_dtype_size(dtype) + 1);
        vt_convert_elems(t->data, VT_F32, d, dtype, n);
        free(t->data);
        t->data = d;
        t->dtype = dtype;
        t->nbytes = n * vt_dtype_size(dtype);
    }
    /* The identity of random weights: everything that determines them. */
    char *cs = cJSON_PrintUnformatted(cfg), source[64], sha[65];
    size_t len = strlen(cs) + 96;
    char *id = vt_xmalloc(len);
    snprintf(id, len, "vtkit random weights v1\nseed %lu\ndtype %s\n%s", seed,
             vt_dtype_name(dtype), cs);
    vt_sha256_hex(id, strlen(id), sha);
    free(id);
    free(cs);
    snprintf(source, sizeof source, "random seed %lu", seed);
    rc = vt_write_model(&out, cfg, fam, source, sha, 1, out_path);
done:
    vt_frame_free(&out);
    vt_params_free(&ps);
    cJSON_Delete(cfg);
    return rc;
}
