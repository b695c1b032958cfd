/* test_stvit.c - the swin and stvit families end to end against the
 * official code: the project's own small STViT-R fixture tests/fixtures/stvit
 * (tests/make-stvit-fixtures.py), folders listed in VT_STVIT_FIXTURES
 * (colon-separated, e.g. full-size refgen output) and, with VT_SHARED,
 * every conformance fixture ../shared/conformance/fixtures/stvit-*
 * (checkpoint read in process): logits (compare.py's bound, top-1 equal, 1
 * and 2 threads) and every intermediate meta.json lists (relative error),
 * for the images the fixture stores them for. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "model.h"
#include "models/stvit.h"
#include "npy.h"
#include "tap.h"
#include "conform.h"
#include "util.h"

/* Every extra of meta.json, image `img` of the fixture against our last
 * forward pass (which ran that image alone). Assignment labels must be
 * equal except where the reference's head-mean attention is near-tied. */
static void compare_extras(const char *what, const vt_family *fam, void *net, const char *dir,
                           const cJSON *extras, int img)
{
    const cJSON *e;
    int is_swin = strcmp(fam->name, "swin") == 0;
    cJSON_ArrayForEach(e, extras) {
        const char *x = cJSON_IsString(e) ? e->valuestring : "";
        char path[1400];
        snprintf(path, sizeof path, "%s/%s.npy", dir, x);
        vt_tensor want;
        memset(&want, 0, sizeof want);
        if (vt_npy_load(path, &want) < 0) {
            ok(0, "load %s: %s", path, vt_error());
            continue;
        }
        if (want.ndim < 1 || img >= want.shape[0]) {     /* stored for fewer images */
            vt_tensor_free(&want);
            continue;
        }
        size_t n = (size_t)vt_tensor_numel(&want) / (size_t)want.shape[0], cnt = 0;
        const float *ref = (const float *)want.data + (size_t)img * n;
        const float *got = is_swin ? vt_swin_extra(net, x, &cnt) : vt_stvit_extra(net, x, &cnt);
        if (!got || cnt != n) {
            ok(0, "%s %s: %s (%zu vs %zu values)", what, x, got ? "shape" : vt_error(), cnt, n);
        } else if (strncmp(x, "assignment_", 11) == 0) {
            int differ = 0;
            for (size_t i = 0; i < n; i++)
                differ += got[i] != ref[i];
            printf("# %s %s: %d of %zu labels differ\n", what, x, differ, n);
            ok(differ == 0, "%s %s: %d labels differ", what, x, differ);
        } else {
            double err = max_err(got, ref, n), mx = max_abs(ref, n);
            double r = mx > 0 ? err / mx : err;
            printf("# %s %s: max abs err %.3g, relative %.3g\n", what, x, err, r);
            ok(r <= 1e-4, "%s %s: relative err %.3g <= 1e-4", what, x, r);
        }
        vt_tensor_free(&want);
    }
}

static void fixture(const char *dir)
{
    conform_fixture fx;
    int rc = conform_open(&fx, NULL, dir);
    const vt_family *fam = fx.fam;
    const char *base = fx.base;
    const cJSON *meta = fx.meta;
    const cJSON *extras = fx.extras;
    const cJSON *cfg = fx.cfg;
    char path[1400];
    vt_tensor in, want;
    memset(&in, 0, sizeof in);
    memset(&want, 0, sizeof want);
    if (rc == 0 && conform_input(dir, meta, &in) < 0)
        rc = -1;
    snprintf(path, sizeof path, "%s/logits.npy", dir);
    if (rc == 0 && vt_npy_load(path, &want) < 0)
        rc = -1, ok(0, "%s: %s", path, vt_error());
    if (rc < 0)
        goto done;
    int B = (int)in.shape[0], K = (int)want.shape[1];
    size_t img = (size_t)vt_tensor_numel(&in) / B;
    float *logits = malloc(sizeof(float) * B * K);
    for (int threads = 1; threads <= 2; threads++) {
        vt_run_opts o = {threads, B};
        void *net = fam->create(cfg, &fx.w, &o);
        char what[400];
        snprintf(what, sizeof what, "%s (batch %d, %d threads)", base, B, threads);
        double t0 = vt_now();
        if (!net || fam->forward(net, in.data, B, logits) < 0) {
            ok(0, "%s: %s", what, vt_error());
        } else {
            printf("# %s: %.1f ms/image\n", what, 1000 * (vt_now() - t0) / B);
            compare_logits(what, logits, want.data, B, K);
            for (int b = 0; b < B && threads == 1; b++) {
                ok(fam->forward(net, (const float *)in.data + b * img, 1, logits) == 0,
                   "%s: image %d alone", what, b);
                snprintf(what, sizeof what, "%s image %d", base, b);
                compare_extras(what, fam, net, dir, extras, b);
            }
        }
        if (net)
            fam->destroy(net);
    }
    free(logits);
done:
    vt_tensor_free(&in);
    vt_tensor_free(&want);
    conform_close(&fx);
}

/* Parameter counts of the full-size variants (spec table; S/B equal the
 * official training logs). */
static void defaults(void)
{
    static const struct { const char *arch; long long params; } want[] = {
        {"swin_tiny_patch4_window7_224", 28288354LL},
        {"swin_small_patch4_window7_224", 49606258LL},
        {"swin_base_patch4_window7_224", 87768224LL},
        {"stvit_r_swin_t", 28320214LL},
        {"stvit_r_swin_s", 49625518LL},
        {"stvit_r_swin_b", 87812336LL}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const vt_family *fam = vt_family_find(want[i].arch);
        if (!fam) {
            skip(want[i].arch, "family not registered yet");
            continue;
        }
        cJSON *cfg = vt_config_make(want[i].arch, NULL);
        vt_params ps = {0};
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        long long total = 0;
        for (int j = 0; j < ps.n; j++) {
            const char *nm = ps.p[j].name;
            if (strstr(nm, "relative_position_index") || strstr(nm, "attn_mask") ||
                strstr(nm, "running_") || strstr(nm, "num_batches_tracked"))
                continue;   /* buffers */
            long long e = 1;
            for (int k = 0; k < ps.p[j].ndim; k++)
                e *= ps.p[j].shape[k];
            total += e;
        }
        vt_cost cost = {0};
        if (rc == 0 && fam->cost)
            fam->cost(cfg, &cost);
        printf("# %s: %lld parameters, %.3f GMACs\n", want[i].arch, total, cost.macs / 1e9);
        ok(rc == 0 && total == want[i].params, "%s: %lld parameters (want %lld)", want[i].arch,
           total, want[i].params);
        vt_params_free(&ps);
        cJSON_Delete(cfg);
    }
}

int main(void)
{
    defaults();
    conform_run("stvit", "VT_STVIT_FIXTURES", "stvit-", fixture);
    return tap_done();
}
