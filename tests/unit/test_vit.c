/* test_vit.c - the vit family end to end: the project's own small DeiT
 * fixtures (tests/fixtures/vit, made by tests/make-vit-fixtures.py), and,
 * with VT_SHARED, the timm conformance fixtures ../shared/conformance/
 * fixtures/vit-* (checkpoint read in process; check.sh's pipe through the
 * commands is in tests/bats/classify.bats). */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "model.h"
#include "npy.h"
#include "ops.h"
#include "tap.h"
#include "util.h"

extern const vt_family vt_family_vit;

static char root[512];

static int load_npy(const char *dir, const char *name, vt_tensor *t)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    memset(t, 0, sizeof *t);
    if (vt_npy_load(path, t) < 0 || t->dtype != VT_F32) {
        ok(0, "load %s: %s", path, vt_error());
        return -1;
    }
    return 0;
}

/* compare.py's bound: max|got-want| <= 1e-3 max|want| + 1e-5, top-1 equal
 * per row of [rows, n]. */
static void compare(const char *what, const float *got, const vt_tensor *want, int rows)
{
    const float *w = want->data;
    size_t total = (size_t)vt_tensor_numel(want);
    int n = (int)(total / rows);
    double mx = 0, err = 0;
    for (size_t i = 0; i < total; i++) {
        mx = fmax(mx, fabs(w[i]));
        double d = fabs((double)got[i] - w[i]);
        err = d > err || isnan(d) ? (isnan(d) ? INFINITY : d) : err;
    }
    int top1 = 0;
    for (int r = 0; r < rows; r++) {
        int a = 0, b = 0;
        for (int j = 1; j < n; j++) {
            if (got[r * n + j] > got[r * n + a]) a = j;
            if (w[r * n + j] > w[r * n + b]) b = j;
        }
        top1 += a == b;
    }
    double bound = 1e-3 * mx + 1e-5;
    ok(err <= bound && top1 == rows, "%s: max abs err %.3g (bound %.3g), top-1 %d/%d",
       what, err, bound, top1, rows);
}

static void own_fixture(const char *name, int threads)
{
    char dir[1024], path[1100], what[200];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/vit", root);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    vt_tensor in, want, cls;
    char f_in[64], f_lo[64], f_cls[64];
    snprintf(f_in, sizeof f_in, "%s-input.npy", name);
    snprintf(f_lo, sizeof f_lo, "%s-logits.npy", name);
    snprintf(f_cls, sizeof f_cls, "%s-cls.npy", name);
    if (load_npy(dir, f_in, &in) < 0 || load_npy(dir, f_lo, &want) < 0 ||
        load_npy(dir, f_cls, &cls) < 0)
        return;
    int B = (int)in.shape[0];
    for (int batch = 1; batch <= B; batch += B - 1) {
        vt_run_opts o = {threads, batch};
        vt_model m;
        if (vt_model_open(path, &o, &m) < 0) {
            ok(0, "open %s: %s", path, vt_error());
            break;
        }
        float *logits = malloc(sizeof(float) * B * m.num_classes);
        size_t img = (size_t)vt_tensor_numel(&in) / B;
        int rc = 0;
        for (int i = 0; i < B && rc == 0; i += batch)
            rc = vt_model_forward(&m, (float *)in.data + i * img, batch,
                                  logits + (size_t)i * m.num_classes);
        snprintf(what, sizeof what, "%s at batch %d, %d threads", name, batch, threads);
        ok(rc == 0, "%s forward", what);
        compare(what, logits, &want, B);
        int bb, n, gh, gw;
        const float *ca = vt_vit_cls_attention(&m, &bb, &n, &gh, &gw);
        ok(ca && bb == batch && n == (int)cls.shape[1] && gh * gw <= n,
           "%s CLS attention shape [%d,%d], grid %dx%d", name, bb, n, gh, gw);
        if (ca && bb == B) {
            snprintf(what, sizeof what, "%s CLS attention", name);
            compare(what, ca, &cls, B);
        }
        free(logits);
        vt_model_close(&m);
    }
    vt_tensor_free(&in);
    vt_tensor_free(&want);
    vt_tensor_free(&cls);
}

/* Per-block attention (for rollout): kept only when asked, rows are
 * probabilities, keeping it does not change the logits, the last block's
 * row 0 is the CLS attention; its rollout is checked in sigmap.bats. */
static void kept_attention(const char *name)
{
    char dir[1024], path[1100], f[64];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/vit", root);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    vt_tensor in;
    snprintf(f, sizeof f, "%s-input.npy", name);
    if (load_npy(dir, f, &in) < 0)
        return;
    int B = (int)in.shape[0];
    vt_run_opts o = {2, B};
    vt_model m;
    if (vt_model_open(path, &o, &m) < 0) {
        ok(0, "open %s: %s", path, vt_error());
        vt_tensor_free(&in);
        return;
    }
    int depth = vt_cfg_int(m.config, "depth", 12), bb, t;
    float *l0 = malloc(sizeof(float) * B * m.num_classes), *l1 = malloc(sizeof(float) * B * m.num_classes);
    vt_model_forward(&m, in.data, B, l0);
    ok(!vt_vit_attention(&m, 0, &bb, &t) && strstr(vt_error(), "not kept"),
       "%s: no per-block attention unless asked: %s", name, vt_error());
    ok(vt_vit_keep_attention(&m, depth + 1) < 0, "%s: keeping %d blocks refused: %s", name,
       depth + 1, vt_error());
    ok(vt_vit_keep_attention(&m, depth) == 0 && !vt_vit_attention(&m, 0, NULL, NULL),
       "%s: keep %d blocks; nothing before the next forward pass", name, depth);
    vt_model_forward(&m, in.data, B, l1);
    ok(memcmp(l0, l1, sizeof(float) * B * m.num_classes) == 0, "%s: same logits while keeping",
       name);
    double worst = 0, cls_err = 0;
    int n, gh, gw, got = 1;
    const float *cls = vt_vit_cls_attention(&m, NULL, &n, &gh, &gw);
    for (int l = 0; l < depth; l++) {
        const float *a = vt_vit_attention(&m, l, &bb, &t);
        if (!a || bb != B || t != n + 1) { got = 0; break; }
        for (int i = 0; i < B * t; i++) {
            double s = 0;
            for (int j = 0; j < t; j++) s += a[(size_t)i * t + j];
            worst = fmax(worst, fabs(s - 1));
        }
        if (l == depth - 1)
            for (int b = 0; b < B; b++)
                for (int j = 1; j < t; j++)
                    cls_err = fmax(cls_err, fabs(a[(size_t)b * t * t + j] - cls[(size_t)b * n + j - 1]));
    }
    ok(got && worst < 1e-5 && cls_err < 1e-6,
       "%s: %d blocks kept, rows sum to 1 within %.2g, last row 0 = CLS attention within %.2g",
       name, depth, worst, cls_err);
    ok(vt_vit_keep_attention(&m, 0) == 0 && vt_model_forward(&m, in.data, B, l1) == 0 &&
       !vt_vit_attention(&m, 0, NULL, NULL), "%s: keeping switched off", name);
    free(l0);
    free(l1);
    vt_model_close(&m);
    vt_tensor_free(&in);
}

/* The distilled fixture run at 56x56: pos_embed resampled 5x5 -> 7x7. */
static void resample_fixture(void)
{
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/vit", root);
    snprintf(path, sizeof path, "%s/dist.safetensors", dir);
    vt_tensor in, want;
    if (load_npy(dir, "resample-input.npy", &in) < 0 || load_npy(dir, "resample-logits.npy", &want) < 0)
        return;
    vt_frame w;
    vt_frame_init(&w);
    if (vt_frame_map(path, &w) < 0) {
        ok(0, "map %s: %s", path, vt_error());
        return;
    }
    cJSON *cfg = cJSON_Parse(vt_frame_meta(&w, "config"));
    cJSON_DeleteItemFromObject(cfg, "img_size");
    cJSON_AddNumberToObject(cfg, "img_size", 56);
    cJSON_AddNumberToObject(cfg, "pos_embed_size", 40);
    vt_params ps = {0};
    ok(vt_family_vit.params(cfg, &ps) == 0 && vt_check_weights(&ps, &w) == 0,
       "params with pos_embed_size match the file: %s", vt_error());
    vt_params_free(&ps);
    vt_run_opts o = {2, 1};
    const vt_family *f = vt_family_find("vit");
    void *net = f->create(cfg, &w, &o);
    float logits[16];
    ok(net && f->forward(net, in.data, 1, logits) == 0, "create and run at 56x56: %s", vt_error());
    if (net)
        compare("pos_embed resampled 5x5 -> 7x7 (bicubic antialias)", logits, &want, 1);
    f->destroy(net);
    /* nonsense configs are refused */
    cJSON_DeleteItemFromObject(cfg, "num_heads");
    cJSON_AddNumberToObject(cfg, "num_heads", 5);
    ok(f->params(cfg, &ps) < 0 && strstr(vt_error(), "heads"), "embed_dim %% heads checked: %s",
       vt_error());
    vt_params_free(&ps);
    cJSON_Delete(cfg);
    vt_frame_free(&w);
    vt_tensor_free(&in);
    vt_tensor_free(&want);
}

static void shared_fixture(const char *dir)
{
    char path[1600], base[1400];
    const char *slash = strrchr(dir, '/');
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : dir);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    uint8_t *buf;
    size_t len;
    if (vt_read_file(path, 1 << 20, &buf, &len) < 0) {
        ok(0, "%s: %s", path, vt_error());
        return;
    }
    cJSON *meta = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *variant = cJSON_GetObjectItemCaseSensitive(meta, "variant");
    cJSON *cfg = cJSON_IsString(variant) ? vt_config_make(variant->valuestring, meta) : NULL;
    ok(cfg != NULL, "%s: config %s", base, cfg ? "made" : vt_error());
    vt_frame w;
    vt_frame_init(&w);
    snprintf(path, sizeof path, "%s/checkpoint.pth", dir);
    vt_ckpt_opts co = {0};
    vt_params ps = {0};
    vt_tensor in, want, cls;
    if (!cfg || vt_ckpt_load(path, &co, &w) < 0 ||
        vt_family_vit.params(cfg, &ps) < 0 || vt_check_weights(&ps, &w) < 0) {
        ok(0, "%s: weights: %s", base, vt_error());
        goto done;
    }
    if (load_npy(dir, "input.npy", &in) < 0)
        goto done;
    if (load_npy(dir, "logits.npy", &want) < 0 || load_npy(dir, "cls_attention.npy", &cls) < 0) {
        vt_tensor_free(&in);
        goto done;
    }
    int B = (int)in.shape[0];
    for (int threads = 1; threads <= 2; threads++) {
        vt_run_opts o = {threads, B};
        void *net = vt_family_vit.create(cfg, &w, &o);
        float *logits = malloc(sizeof(float) * vt_tensor_numel(&want));
        char what[1600];
        snprintf(what, sizeof what, "%s batch %d, %d threads", base, B, threads);
        if (!net || vt_family_vit.forward(net, in.data, B, logits) < 0) {
            ok(0, "%s: %s", what, vt_error());
        } else {
            compare(what, logits, &want, B);
            vt_model m = {.family = &vt_family_vit, .net = net};
            int bb, n;
            const float *ca = vt_vit_cls_attention(&m, &bb, &n, NULL, NULL);
            snprintf(what, sizeof what, "%s CLS attention", base);
            if (ca && n == (int)cls.shape[1])
                compare(what, ca, &cls, B);
            else
                ok(0, "%s shape", what);
        }
        free(logits);
        vt_family_vit.destroy(net);
    }
    vt_tensor_free(&in);
    vt_tensor_free(&want);
    vt_tensor_free(&cls);
done:
    vt_params_free(&ps);
    vt_frame_free(&w);
    cJSON_Delete(cfg);
    cJSON_Delete(meta);
}

int main(void)
{
    const char *r = getenv("VT_ROOT");
    snprintf(root, sizeof root, "%s", r && *r ? r : ".");
    for (int threads = 1; threads <= 3; threads++) {
        own_fixture("tiny", threads);
        own_fixture("dist", threads);
    }
    resample_fixture();
    kept_attention("tiny");
    kept_attention("dist");

    /* defaults of every arch */
    for (int i = 0; vt_family_vit.archs[i]; i++) {
        cJSON *cfg = vt_config_make(vt_family_vit.archs[i], NULL);
        vt_params ps = {0};
        int ok_ = cfg && vt_family_vit.params(cfg, &ps) == 0;
        const char *a = vt_family_vit.archs[i];
        int dist = strstr(a, "distilled") != NULL;
        int D = strstr(a, "tiny") ? 192 : strstr(a, "small") ? 384 : 768;
        const vt_param *pos = NULL;
        for (int j = 0; j < ps.n; j++)
            if (strcmp(ps.p[j].name, "pos_embed") == 0)
                pos = &ps.p[j];
        ok(ok_ && pos && pos->shape[1] == 197 + dist && pos->shape[2] == D &&
           ps.n == 152 + 3 * dist,
           "%s: %d params, pos_embed [1,%lld,%lld]", a, ps.n,
           pos ? (long long)pos->shape[1] : 0LL, pos ? (long long)pos->shape[2] : 0LL);
        vt_params_free(&ps);
        cJSON_Delete(cfg);
    }

    /* extra refgen outputs (full-size models): VT_VIT_FIXTURES=dir:dir */
    const char *extra = getenv("VT_VIT_FIXTURES");
    if (extra && *extra) {
        char *list = vt_xstrdup(extra), *save = NULL;
        for (char *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save))
            shared_fixture(d);
        free(list);
    }

    const char *shared = tap_shared();
    if (!shared) {
        skip("timm conformance fixtures", "VT_SHARED not set");
        return tap_done();
    }
    char fx[1024];
    snprintf(fx, sizeof fx, "%s/conformance/fixtures", shared);
    DIR *d = opendir(fx);
    struct dirent *e;
    char *names[64];
    int n = 0;
    while (d && (e = readdir(d)) && n < 64)
        if (strncmp(e->d_name, "vit-", 4) == 0)
            names[n++] = vt_xstrdup(e->d_name);
    if (d)
        closedir(d);
    ok(n > 0, "found %d vit fixtures in %s", n, fx);
    for (int i = 0; i < n; i++) {
        char dir[1300];
        snprintf(dir, sizeof dir, "%s/%s", fx, names[i]);
        shared_fixture(dir);
        free(names[i]);
    }
    return tap_done();
}
