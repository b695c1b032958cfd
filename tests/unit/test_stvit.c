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

/* Pass 0 (1 thread): each image alone gives every recorded intermediate. */
static void check_extras(conform_case *c, void *net)
{
    for (int b = 0; b < c->B && c->threads == 1; b++) {
        ok(c->fx.fam->forward(net, (const float *)c->in.data + b * c->img, 1, c->logits) == 0,
           "%s: image %d alone", c->what, b);
        char what[450];
        snprintf(what, sizeof what, "%s image %d", c->fx.base, b);
        compare_extras(what, c->fx.fam, net, c->dir, c->fx.extras, b);
    }
}

static void fixture(const char *dir)
{
    conform_hooks h = {.after = check_extras};
    conform_logits(dir, NULL, &h, NULL);
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
