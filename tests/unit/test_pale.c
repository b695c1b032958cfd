/* test_pale.c - the pale family against our PyTorch reference
 * (../shared/conformance/families/pale.py; the authors released no code):
 * the parameter counts and MACs of the three full-size variants against
 * the paper's table (within 2%), the project's own small fixture
 * (tests/fixtures/pale, made by tests/make-pale-fixtures.py) and, with
 * VT_SHARED, every conformance fixture ../shared/conformance/fixtures/pale-*
 * (checkpoint read in process): logits (compare.py's bound, top-1 equal),
 * stage outputs, pooled features, and the dense row / column attention of
 * the recorded block. More fixture folders (full-size refgen output):
 * VT_PALE_FIXTURES=dir1:dir2. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "model.h"
#include "models/pale.h"
#include "npy.h"
#include "tap.h"
#include "conform.h"
#include "util.h"

extern const vt_family vt_family_pale;
static const vt_family *fam = &vt_family_pale;

static void compare_rel(const char *what, const char *name, const float *got, const float *want,
                        size_t n, double rel)
{
    double err = max_err(got, want, n), mx = max_abs(want, n);
    double r = mx > 0 ? err / mx : err;
    ok(r <= rel, "%s %s: max abs err %.3g, relative %.3g <= %.0e", what, name, err, r, rel);
}

/* Intermediates of image 0 (after a forward pass of image 0 alone). */
static void compare_extras(const char *what, void *net, const char *dir, const cJSON *extras)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, extras) {
        const char *x = cJSON_IsString(e) ? e->valuestring : "";
        vt_tensor want;
        if (load_npy(dir, x, &want) < 0)
            continue;
        size_t n = (size_t)vt_tensor_numel(&want) / (want.shape[0] > 0 ? want.shape[0] : 1);
        float *got = calloc(n ? n : 1, sizeof *got);
        int stage, h = 0, w = 0, c = 0, nh = 0, good = 0;
        if (sscanf(x, "stage%d", &stage) == 1 || strcmp(x, "features") == 0) {
            /* reference: NCHW; ours: tokens */
            const float *src = vt_pale_stage(net, strcmp(x, "features") ? stage : 5, &h, &w, &c);
            if (src && (size_t)h * w * c == n) {
                for (int ch = 0; ch < c; ch++)
                    for (int p = 0; p < h * w; p++)
                        got[(size_t)ch * h * w + p] = src[(size_t)p * c + ch];
                good = 1;
            }
        } else if (!strcmp(x, "row_attention") || !strcmp(x, "col_attention")) {
            int br = x[0] == 'r' ? VT_PALE_ROW : VT_PALE_COL;
            if (vt_pale_map_shape(net, &h, &w, &nh) == 0 &&
                (size_t)nh * h * w * h * w == n) {
                good = 1;
                int hw = h * w;
                for (int j = 0; j < nh && good; j++)
                    for (int p = 0; p < hw && good; p++)
                        good = vt_pale_attention(net, 0, br, j, p / w, p % w,
                                                 got + ((size_t)j * hw + p) * hw) == 0;
            }
        }
        if (!good)
            ok(0, "%s %s: %s", what, x, vt_error());
        else
            compare_rel(what, x, got, want.data, n, 1e-4);
        free(got);
        vt_tensor_free(&want);
    }
}

/* Pass 0 (1 thread): stage outputs are the last image's, so image 0 runs
 * alone before its intermediates are compared. */
static void check_extras(conform_case *c, void *net)
{
    if (c->threads != 1)
        return;
    ok(fam->forward(net, c->in.data, 1, c->logits) == 0, "%s: image 0 alone", c->what);
    compare_extras(c->what, net, c->dir, c->fx.extras);
}

/* Before pass 0: the reference's own layer-by-layer MAC count
 * (analytic_macs in the config) against ours. */
static void check_cost(conform_case *c, void *net)
{
    (void)net;
    double ref_macs = vt_cfg_num(c->fx.cfg, "analytic_macs", -1);
    vt_cost cost;
    if (c->pass != 0 || ref_macs < 0)
        return;
    int crc = fam->cost(c->fx.cfg, &cost);
    ok(crc == 0 && fabs(cost.macs - ref_macs) < 0.5, "%s: cost %.0f MACs = reference "
       "analytic_macs %.0f", c->fx.base, crc ? -1 : cost.macs, ref_macs);
}

static void fixture(const char *dir)
{
    conform_hooks h = {.before = check_cost, .after = check_extras};
    conform_logits(dir, fam, &h, NULL);
}

/* Full-size defaults: params (torch's parameters, no BN buffers) and
 * analytic MACs against the paper's table (22M/48M/85M, 4.2/9.0/15.6 G)
 * within 2%, and against the reference's own counts. */
static void defaults(void)
{
    static const struct {
        const char *arch; double params_m, gmacs; long long ref_params; double ref_macs;
    } want[] = {
        {"pale_tiny", 22, 4.2, 0, 0}, {"pale_small", 48, 9.0, 0, 0}, {"pale_base", 85, 15.6, 0, 0}};
    for (int i = 0; i < 3; i++) {
        cJSON *cfg = vt_config_make(want[i].arch, NULL);
        vt_params ps = {0};
        vt_cost cost;
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        double total = 0;
        for (int j = 0; j < ps.n; j++) {
            if (ps.p[j].optional || strstr(ps.p[j].name, "running_"))
                continue;   /* buffers, not parameters */
            double e = 1;
            for (int k = 0; k < ps.p[j].ndim; k++)
                e *= (double)ps.p[j].shape[k];
            total += e;
        }
        int crc = cfg ? fam->cost(cfg, &cost) : -1;
        double pm = total / 1e6, gm = crc == 0 ? cost.macs / 1e9 : 0;
        ok(rc == 0 && fabs(pm / want[i].params_m - 1) <= 0.02,
           "%s: %d tensors, %.2fM parameters (paper %gM)", want[i].arch, ps.n, pm, want[i].params_m);
        ok(crc == 0 && fabs(gm / want[i].gmacs - 1) <= 0.02,
           "%s: %.3f GMACs at 224 (paper %g)", want[i].arch, gm, want[i].gmacs);
        vt_params_free(&ps);
        cJSON_Delete(cfg);
    }
}

int main(void)
{
    defaults();
    conform_run("pale", "VT_PALE_FIXTURES", "pale-", fixture);
    return tap_done();
}
