/* conform.h - what every family's conformance test shares (header only,
 * after tap.h): loading a fixture's .npy and input, and compare.py's logit
 * bound. */
#ifndef VT_CONFORM_H
#define VT_CONFORM_H
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ckpt.h"
#include "model.h"
#include "npy.h"
#include "util.h"

#define CONFORM_UNUSED __attribute__((unused))

/* dir/name.npy into t (owned); a failed load is a failed test. */
CONFORM_UNUSED static int load_npy(const char *dir, const char *name, vt_tensor *t)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    memset(t, 0, sizeof *t);
    if (vt_npy_load(path, t) < 0) {
        ok(0, "load %s: %s", path, vt_error());
        return -1;
    }
    return 0;
}

/* A fixture's input: dir/input.npy, or, when meta.json's "input" is a
 * "hash: ..." rule (the own fixtures of tests/make-*-fixtures.py, which
 * keep no input file), x[i] = ((i * 2654435761) mod 2^32 >> 24) / 64 - 2,
 * exact in float32, for [batch, 3, size, size] of meta.json. */
CONFORM_UNUSED static int conform_input(const char *dir, const cJSON *meta, vt_tensor *t)
{
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(meta, "input");
    if (!cJSON_IsString(rule) || strncmp(rule->valuestring, "hash:", 5) != 0)
        return load_npy(dir, "input", t);
    int batch = vt_cfg_int(meta, "batch", 1), size = vt_cfg_int(meta, "size", 224);
    memset(t, 0, sizeof *t);
    size_t n = (size_t)batch * 3 * size * size;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((uint32_t)((uint64_t)i * 2654435761u) >> 24) / 64.0f - 2.0f;
    t->dtype = VT_F32;
    t->ndim = 4;
    int64_t shape[4] = {batch, 3, size, size};
    memcpy(t->shape, shape, sizeof shape);
    t->data = x;
    t->nbytes = n * sizeof *x;
    t->owned = 1;
    return 0;
}

/* A fixture folder opened for a conformance run: meta.json, the config
 * made for its "variant" (refgen's hyperparameters and run size applied by
 * vt_config_make), and checkpoint.pth loaded and checked strictly against
 * the family's parameter list. */
typedef struct conform_fixture {
    char base[256];         /* the folder's name, for messages */
    cJSON *meta;            /* meta.json */
    cJSON *cfg;             /* the arch config, or NULL */
    const cJSON *extras;    /* meta's "extras" (names of intermediates), or NULL */
    const vt_family *fam;   /* the family asked for, else the variant's */
    vt_frame w;             /* the checkpoint's tensors */
    vt_params ps;           /* the family's parameter list */
} conform_fixture;

/* Open dir (fam NULL: the family of the variant). One ok() line for the
 * config and one for the weights; 0 when both passed, -1 otherwise (fx is
 * then still to be closed). */
CONFORM_UNUSED static int conform_open(conform_fixture *fx, const vt_family *fam, const char *dir)
{
    char path[1400];
    memset(fx, 0, sizeof *fx);
    vt_frame_init(&fx->w);
    const char *slash = strrchr(dir, '/');
    snprintf(fx->base, sizeof fx->base, "%s", slash ? slash + 1 : dir);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    uint8_t *buf;
    size_t len;
    if (vt_read_file(path, 1 << 20, &buf, &len) < 0) {
        ok(0, "%s: %s", path, vt_error());
        return -1;
    }
    fx->meta = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *variant = cJSON_GetObjectItemCaseSensitive(fx->meta, "variant");
    fx->extras = cJSON_GetObjectItemCaseSensitive(fx->meta, "extras");
    if (cJSON_IsString(variant)) {
        fx->fam = fam ? fam : vt_family_find(variant->valuestring);
        fx->cfg = fx->fam ? vt_config_make(variant->valuestring, fx->meta) : NULL;
    }
    ok(fx->cfg != NULL, "%s: config %s", fx->base, fx->cfg ? "made" : vt_error());
    if (!fx->cfg)
        return -1;
    snprintf(path, sizeof path, "%s/checkpoint.pth", dir);
    vt_ckpt_opts co = {0};
    int rc = vt_ckpt_load(path, &co, &fx->w);
    if (rc == 0)
        rc = fx->fam->params(fx->cfg, &fx->ps);
    if (rc == 0)
        rc = vt_check_weights(&fx->ps, &fx->w);
    ok(rc == 0, "%s: %d tensors fit the arch (%s)", fx->base, fx->ps.n,
       rc ? vt_error() : "strict");
    return rc;
}

CONFORM_UNUSED static void conform_close(conform_fixture *fx)
{
    vt_params_free(&fx->ps);
    vt_frame_free(&fx->w);
    cJSON_Delete(fx->cfg);
    cJSON_Delete(fx->meta);
}

CONFORM_UNUSED static double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* Max |a-b|; a NaN anywhere makes it infinite. */
CONFORM_UNUSED static double max_err(const float *a, const float *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(d))
            return INFINITY;
        e = fmax(e, d);
    }
    return e;
}

/* compare.py's bound: max|got-want| <= 1e-3 max|want| + 1e-5, and the same
 * top-1 in every row of [rows, n]. */
CONFORM_UNUSED static void compare_logits(const char *what, const float *got, const float *want,
                                          int rows, int n)
{
    double err = max_err(got, want, (size_t)rows * n);
    double bound = 1e-3 * max_abs(want, (size_t)rows * n) + 1e-5;
    int top1 = 0;
    for (int r = 0; r < rows; r++) {
        int a = 0, b = 0;
        for (int j = 1; j < n; j++) {
            if (got[r * n + j] > got[r * n + a]) a = j;
            if (want[r * n + j] > want[r * n + b]) b = j;
        }
        top1 += a == b;
    }
    printf("# %s logits: max abs err %.3g (max|logit| %.3g)\n", what, err,
           max_abs(want, (size_t)rows * n));
    ok(err <= bound && top1 == rows, "%s: logits max abs err %.3g (bound %.3g), top-1 %d/%d",
       what, err, bound, top1, rows);
}

/* One fixture's logits check, as every family test makes it: the input and
 * reference logits loaded, the family's net made for each pass (pass 0 on 1
 * thread, the others on 2), run on the whole batch and its logits compared
 * with compare.py's bound; the hooks add the family's own checks. */
typedef struct conform_case {
    conform_fixture fx;
    const char *dir;
    vt_tensor in, want;     /* input [B, 3, S, S], reference logits [B, K] */
    int B, K;
    size_t img;             /* floats of one input image */
    float *logits;          /* [B, K], ours */
    int pass, threads;      /* the pass being run */
    char what[400];         /* "<fixture> (batch B, T threads<label>)" */
    void *user;             /* the hooks' own state */
} conform_case;

typedef struct conform_hooks {
    int passes;                                   /* 0: two (1 and 2 threads) */
    const char *label;                            /* added to `what` of the last pass */
    void (*before)(conform_case *c, void *net);   /* net made, not run yet */
    void (*after)(conform_case *c, void *net);    /* logits compared */
    void (*end)(conform_case *c);                 /* after every pass */
} conform_hooks;

CONFORM_UNUSED static void conform_logits(const char *dir, const vt_family *fam,
                                          const conform_hooks *h, void *user)
{
    conform_case c;
    memset(&c, 0, sizeof c);
    c.dir = dir;
    c.user = user;
    int rc = conform_open(&c.fx, fam, dir);
    if (rc == 0)
        rc = conform_input(dir, c.fx.meta, &c.in);
    if (rc == 0)
        rc = load_npy(dir, "logits", &c.want);
    if (rc == 0) {
        c.B = (int)c.in.shape[0];
        c.K = (int)c.want.shape[1];
        c.img = (size_t)vt_tensor_numel(&c.in) / c.B;
        c.logits = malloc(sizeof(float) * c.B * c.K);
        int passes = h->passes > 0 ? h->passes : 2;
        for (c.pass = 0; c.pass < passes; c.pass++) {
            c.threads = c.pass == 0 ? 1 : 2;
            vt_run_opts o = {c.threads, c.B};
            void *net = c.fx.fam->create(c.fx.cfg, &c.fx.w, &o);
            snprintf(c.what, sizeof c.what, "%s (batch %d, %d threads%s)", c.fx.base, c.B,
                     c.threads, c.pass == passes - 1 && h->label ? h->label : "");
            if (net && h->before)
                h->before(&c, net);
            double t0 = vt_now();
            if (!net || c.fx.fam->forward(net, c.in.data, c.B, c.logits) < 0) {
                ok(0, "%s: %s", c.what, vt_error());
            } else {
                printf("# %s: %.1f ms/image\n", c.what, 1000 * (vt_now() - t0) / c.B);
                compare_logits(c.what, c.logits, c.want.data, c.B, c.K);
                if (h->after)
                    h->after(&c, net);
            }
            if (net)
                c.fx.fam->destroy(net);
        }
        if (h->end)
            h->end(&c);
    }
    free(c.logits);
    vt_tensor_free(&c.in);
    vt_tensor_free(&c.want);
    conform_close(&c.fx);
}

/* Run fn on every fixture a family test knows: the project's own
 * tests/fixtures/<own> (a failure when it is missing), each folder listed in
 * the environment variable env (colon-separated: full-size refgen output),
 * and each $VT_SHARED/conformance/fixtures/<prefix>* (skipped cleanly
 * without VT_SHARED). */
CONFORM_UNUSED static void conform_run(const char *own, const char *env, const char *prefix,
                                       void (*fn)(const char *dir))
{
    const char *root = getenv("VT_ROOT");
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", root && *root ? root : ".", own);
    DIR *od = opendir(dir);
    if (ok(od != NULL, "own fixture %s is there", dir)) {
        closedir(od);
        fn(dir);
    }
    const char *more = getenv(env);
    if (more && *more) {
        char *list = vt_xstrdup(more), *save = NULL;
        for (char *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save))
            fn(d);
        free(list);
    }
    const char *shared = tap_shared();
    if (!shared) {
        skip("official conformance fixtures", "VT_SHARED not set");
        return;
    }
    char fx[1024];
    snprintf(fx, sizeof fx, "%s/conformance/fixtures", shared);
    DIR *d = opendir(fx);
    struct dirent *e;
    char *names[64];
    int n = 0;
    while (d && (e = readdir(d)) && n < 64)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            names[n++] = vt_xstrdup(e->d_name);
    if (d)
        closedir(d);
    ok(n > 0, "found %d %s* fixtures in %s", n, prefix, fx);
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof dir, "%s/%s", fx, names[i]);
        fn(dir);
        free(names[i]);
    }
}
#endif
