/* test_sgformer.c - the sgformer family end to end against the official
 * code: the project's own small fixture (tests/fixtures/sgformer, made by
 * tests/make-sgformer-fixtures.py) and, with VT_SHARED, every conformance
 * fixture ../shared/conformance/fixtures/sgformer-* (checkpoint read in
 * process): logits (compare.py's bound, top-1 equal), every significance
 * map (M, global and local halves), the token orders (may differ only
 * between near-tied map values), the stage outputs and pooled features;
 * then again with the reference's token orders forced in (spec section 9,
 * step 3), where everything must match to float32 noise. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "model.h"
#include "models/sgformer.h"
#include "npy.h"
#include "tap.h"
#include "conform.h"
#include "util.h"

extern const vt_family vt_family_sgformer;
static const vt_family *fam = &vt_family_sgformer;

static char root[512];

/* An intermediate: relative error (max abs err / max |ref|) <= rel. */
static void compare_rel(const char *what, const char *name, const float *got,
                        const float *want, size_t n, double rel)
{
    double err = max_err(got, want, n), mx = max_abs(want, n);
    double r = mx > 0 ? err / mx : err;
    printf("# %s %s: max abs err %.3g, relative %.3g\n", what, name, err, r);
    ok(r <= rel, "%s %s: relative err %.3g <= %.0e", what, name, r, rel);
}

/* ---- the reference orders, forced in through the hook ---- */

typedef struct forced {
    const char *dir;
    int failed;
    int differ, bad;    /* our orders vs the reference's (spec 9, step 4) */
    double worst;
} forced;

/* Positions where our order (from our own map) differs from the
 * reference's must hold reference map values within 1e-5 relative. */
static void tally(forced *f, int stage, int block, const int *ours, const vt_tensor *ref, int n)
{
    char path[1400];
    vt_tensor map;
    snprintf(path, sizeof path, "%s/sigmap_s%d_b%d.npy", f->dir, stage, block - 1);
    memset(&map, 0, sizeof map);
    if (vt_npy_load(path, &map) < 0 || vt_tensor_numel(&map) % n) {
        f->failed = 1;
        vt_tensor_free(&map);
        return;
    }
    for (int i = 0; i < n; i++) {
        int want = (int)vt_tensor_get(ref, (size_t)i);
        if (ours[i] == want)
            continue;
        double a = vt_tensor_get(&map, (size_t)ours[i]), b = vt_tensor_get(&map, (size_t)want);
        double rel = fabs(a - b) / fmax(fabs(b), 1e-30);
        f->differ++;
        f->worst = fmax(f->worst, rel);
        f->bad += rel > 1e-5;
    }
    vt_tensor_free(&map);
}

static int force_orders(void *ctx, int image, int stage, int block, int *o1, int *o2, int n)
{
    forced *f = ctx;
    char name[64];
    vt_tensor t;
    int *dst[2] = {o1, o2};
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "realloc_order%s_s%d_b%d", k ? "2" : "", stage, block);
        char path[1400];
        snprintf(path, sizeof path, "%s/%s.npy", f->dir, name);
        memset(&t, 0, sizeof t);
        if (vt_npy_load(path, &t) < 0 || vt_tensor_numel(&t) % n) {
            vt_tensor_free(&t);
            f->failed = 1;
            return -1;
        }
        if ((image + 1) * (int64_t)n > vt_tensor_numel(&t)) {
            vt_tensor_free(&t);     /* stored for fewer images: keep ours */
            return 0;
        }
        if (image == 0)
            tally(f, stage, block, dst[k], &t, n);
        for (int i = 0; i < n; i++)
            dst[k][i] = (int)vt_tensor_get(&t, (size_t)image * n + i);
        vt_tensor_free(&t);
    }
    return 0;
}

/* Our order vs the reference's for one REALLOC block: positions may differ
 * only where the reference map's values at the two tokens are near-tied. */
static void compare_order(const char *what, void *net, const char *dir, int stage, int block)
{
    char name[64];
    vt_tensor ref, map;
    snprintf(name, sizeof name, "sigmap_s%d_b%d", stage, block - 1);
    if (load_npy(dir, name, &map) < 0)
        return;
    const float *M = map.data;
    for (int k = 1; k <= 2; k++) {
        snprintf(name, sizeof name, "realloc_order%s_s%d_b%d", k == 2 ? "2" : "", stage, block);
        if (load_npy(dir, name, &ref) < 0)
            break;
        int n = 0;
        vt_sgformer_order(net, 0, stage, block, k, NULL, &n);
        int *ours = malloc(sizeof(int) * (n ? n : 1));
        int rc = vt_sgformer_order(net, 0, stage, block, k, ours, &n);
        int differ = 0, bad = 0;
        double worst = 0;
        int rows_ok = n > 0 && vt_tensor_numel(&ref) % n == 0;
        for (int i = 0; rc == 0 && rows_ok && i < n; i++) {
            int want = (int)vt_tensor_get(&ref, (size_t)i);
            if (ours[i] == want)
                continue;
            differ++;
            double a = M[ours[i]], b = M[want];
            double rel = fabs(a - b) / fmax(fabs(b), 1e-30);
            worst = fmax(worst, rel);
            bad += rel > 1e-5;
        }
        printf("# %s %s: %d positions differ, largest relative gap %.3g\n", what, name,
               differ, worst);
        ok(rc == 0 && rows_ok && !bad,
           "%s %s: %d positions differ, only between near-ties (%d not)", what, name, differ, bad);
        free(ours);
        vt_tensor_free(&ref);
    }
    vt_tensor_free(&map);
}

/* Every intermediate meta.json lists. */
#define EX_MAPS 1      /* maps and orders (image 0 of any batch) */
#define EX_STAGES 2    /* stage outputs and features (last image: run image 0 alone) */
static void compare_extras(const char *what, void *net, const char *dir, const cJSON *extras,
                           int hooked, int kinds)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, extras) {
        const char *x = cJSON_IsString(e) ? e->valuestring : "";
        int stage, block;
        vt_tensor want;
        if (sscanf(x, "realloc_order2_s%d_b%d", &stage, &block) == 2)
            continue;       /* with order 1 */
        int is_map = strncmp(x, "sigmap_", 7) == 0 || strncmp(x, "realloc_", 8) == 0;
        if (!(kinds & (is_map ? EX_MAPS : EX_STAGES)))
            continue;
        if (sscanf(x, "realloc_order_s%d_b%d", &stage, &block) == 2) {
            /* Before the first reallocation both runs agree to float noise;
             * later maps follow our own orders, so only the first block's
             * orders can be held to near-ties of the reference map. The
             * later ones are checked in hook mode (force_orders). */
            if (!hooked && stage == 1 && block == 1)
                compare_order(what, net, dir, stage, block);
            continue;
        }
        if (load_npy(dir, x, &want) < 0)
            continue;
        /* [images, ...]: compare image 0 */
        size_t n = (size_t)vt_tensor_numel(&want) / (want.ndim > 1 && want.shape[0] > 0 ? want.shape[0] : 1);
        float *got = malloc(sizeof(float) * n);
        int which = -1, h = 0, w = 0, cnt = 0, c = 0;
        const float *src = NULL;
        if (sscanf(x, "sigmap_global_s%d_b%d", &stage, &block) == 2)
            which = VT_SG_GLOBAL;
        else if (sscanf(x, "sigmap_local_s%d_b%d", &stage, &block) == 2)
            which = VT_SG_LOCAL;
        else if (sscanf(x, "sigmap_s%d_b%d", &stage, &block) == 2)
            which = VT_SG_MAP;
        else if (sscanf(x, "stage%d", &stage) == 1)
            src = vt_sgformer_stage(net, stage, &cnt, &c);
        else if (strcmp(x, "features") == 0)
            src = vt_sgformer_stage(net, 5, &cnt, &c);
        int got_ok = 0;
        if (which >= 0)
            got_ok = vt_sgformer_sigmap(net, 0, stage, block, which, NULL, &h, &w) == 0 &&
                     (size_t)h * w == n &&
                     vt_sgformer_sigmap(net, 0, stage, block, which, got, &h, &w) == 0;
        else if (src && (size_t)cnt * c == n)
            got_ok = (memcpy(got, src, n * sizeof *got), 1);
        if (!got_ok) {
            ok(0, "%s %s: %s", what, x, which >= 0 || src ? "shape" : "unknown extra");
        } else {
            /* The first map comes before any reallocation: float noise only
             * (spec: <= 1e-4). Later ones follow our own token orders
             * (near-ties may sort differently), except with the reference's
             * orders forced in. */
            int first = which >= 0 && stage == 1 && block == 0;
            compare_rel(what, x, got, want.data, n, first || hooked ? 1e-4 : 2e-3);
        }
        free(got);
        vt_tensor_free(&want);
    }
}

/* Passes: 0 on 1 thread with our own token orders, 1 on 2 threads, 2 on 2
 * threads with the reference's orders forced in (force_orders). */
static void force_last_pass(conform_case *c, void *net)
{
    forced *f = c->user;
    *f = (forced){c->dir, 0, 0, 0, 0};
    if (c->pass == 2)
        vt_sgformer_set_order_hook(net, force_orders, f);
}

static void check_pass(conform_case *c, void *net)
{
    const forced *f = c->user;
    int hooked = c->pass == 2;
    if (hooked) {
        printf("# %s: own orders differ from the reference's in %d positions, "
               "largest relative map gap %.3g\n", c->what, f->differ, f->worst);
        ok(!f->failed && !f->bad, "%s: own orders differ only between near-ties "
           "(%d of %d positions not)", c->what, f->bad, f->differ);
    }
    if (c->pass == 1)
        return;
    compare_extras(c->what, net, c->dir, c->fx.extras, hooked,
                   c->B == 1 ? EX_MAPS | EX_STAGES : EX_MAPS);
    if (c->B > 1) {
        char w1[450];
        snprintf(w1, sizeof w1, "%s image 0 alone", c->what);
        ok(fam->forward(net, c->in.data, 1, c->logits) == 0, "%s: forward", w1);
        compare_extras(w1, net, c->dir, c->fx.extras, hooked, EX_STAGES);
    }
}

/* A batch runs in groups of images per stage and in passes through the
 * stages: each image must get exactly the logits, maps, orders and (the
 * last image) stage outputs it gets alone. NB images (cyclic shifts of the
 * fixture's) are more than one pass of any fixture's plan. */
static void batch_vs_alone(const char *base, const cJSON *cfg, const vt_frame *w,
                           const float *img, size_t isz, int B, int K)
{
    enum { NB = 19 };
    float *in = malloc(sizeof(float) * NB * isz), *got = malloc(sizeof(float) * NB * K);
    float *one = malloc(sizeof(float) * K);
    for (int b = 0; b < NB; b++)
        for (size_t i = 0; i < isz; i++)
            in[b * isz + i] = img[(size_t)(b % B) * isz + (i + (size_t)b * 7919) % isz];
    vt_run_opts o = {2, NB};
    void *net = fam->create(cfg, w, &o), *alone = fam->create(cfg, w, &o);
    int good = net && alone && fam->forward(net, in, NB, got) == 0, same = good;
    for (int b = 0; good && b < NB; b++) {
        good = fam->forward(alone, in + b * isz, 1, one) == 0;
        same &= good && memcmp(one, got + (size_t)b * K, sizeof(float) * K) == 0;
        for (int st = 1; good && st <= 3; st++)
            for (int j = 0; j < vt_sgformer_depth(net, st); j++) {
                int kind = vt_sgformer_block_kind(net, st, j), h = 0, wd = 0, n = 0;
                int g = vt_sgformer_grid(net, st), sz = g * g;
                float *m1 = malloc(sizeof(float) * 2 * sz);
                int *o1 = malloc(sizeof(int) * 4 * sz);
                for (int which = 1; kind == VT_SG_HYBRID && which <= 3; which++)
                    same &= vt_sgformer_sigmap(net, b, st, j, which - 1, m1, &h, &wd) == 0 &&
                            vt_sgformer_sigmap(alone, 0, st, j, which - 1, m1 + sz, &h, &wd) == 0 &&
                            memcmp(m1, m1 + sz, sizeof(float) * sz) == 0;
                for (int which = 1; kind == VT_SG_REALLOC && which <= 2; which++)
                    same &= vt_sgformer_order(net, b, st, j, which, o1, &n) == 0 &&
                            vt_sgformer_order(alone, 0, st, j, which, o1 + sz, &n) == 0 &&
                            memcmp(o1, o1 + sz, sizeof(int) * sz) == 0;
                free(m1);
                free(o1);
            }
    }
    for (int st = 1; good && st <= 5; st++) {
        int n1 = 0, c1 = 0, n2 = 0, c2 = 0;
        const float *x1 = vt_sgformer_stage(net, st, &n1, &c1);
        const float *x2 = vt_sgformer_stage(alone, st, &n2, &c2);
        same &= x1 && x2 && n1 == n2 && c1 == c2 && memcmp(x1, x2, sizeof(float) * n1 * c1) == 0;
    }
    ok(good && same, "%s: a batch of %d gives each image the same logits, maps and orders "
       "as alone, bit for bit, and the last image's stage outputs", base, NB);
    fam->destroy(net);
    fam->destroy(alone);
    free(in);
    free(got);
    free(one);
}

static void check_batch(conform_case *c)
{
    batch_vs_alone(c->fx.base, c->fx.cfg, &c->fx.w, c->in.data, c->img, c->B, c->K);
}

static void shared_fixture(const char *dir)
{
    forced f;
    conform_hooks h = {.passes = 3, .label = ", reference orders", .before = force_last_pass,
                       .after = check_pass, .end = check_batch};
    conform_logits(dir, fam, &h, &f);
}

/* Defaults of every arch: parameter counts and tensor counts of the
 * official models (spec section 5). */
static void defaults(void)
{
    static const struct { const char *arch; int tensors; long long params; } want[] = {
        {"sgformer_s", 669, 22545981LL}, {"sgformer_m", 1069, 38689316LL},
        {"sgformer_b", 1017, 77950293LL}};
    for (int i = 0; i < 3; i++) {
        cJSON *cfg = vt_config_make(want[i].arch, NULL);
        vt_params ps = {0};
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        long long total = 0;
        for (int j = 0; j < ps.n; j++) {
            long long e = 1;
            for (int k = 0; k < ps.p[j].ndim; k++)
                e *= ps.p[j].shape[k];
            total += e;
        }
        ok(rc == 0 && ps.n == want[i].tensors && total == want[i].params,
           "%s: %d tensors, %lld parameters", want[i].arch, ps.n, total);
        vt_params_free(&ps);
        /* sizes the official code cannot run are refused */
        int sizes[3] = {256, 240, 112};
        for (int k = 0; k < 3 && cfg; k++) {
            cJSON_ReplaceItemInObject(cfg, "img_size", cJSON_CreateNumber(sizes[k]));
            ok(fam->params(cfg, &ps) < 0 && strstr(vt_error(), "img_size"),
               "%s at %d refused: %s", want[i].arch, sizes[k], vt_error());
            vt_params_free(&ps);
        }
        if (cfg) {
            cJSON_ReplaceItemInObject(cfg, "img_size", cJSON_CreateNumber(448));
            ok(fam->params(cfg, &ps) == 0, "%s at 448 accepted (the official code runs it)",
               want[i].arch);
            vt_params_free(&ps);
        }
        cJSON_Delete(cfg);
    }
}

/* Analytic cost: the exact MACs (torch.profiler on the official model
 * counts the same convs, linears and matmuls: 4.7839 / 7.4268 / 15.5428 G),
 * the paper's table within 3% (4.8 / 7.5 / 15.6 GFLOPs, which are MACs
 * rounded to 0.1 G), parts adding up, and the sizes params() takes. */
static void cost_table(void)
{
    static const struct { const char *arch; double macs, paper; } want[] = {
        {"sgformer_s", 4783848448.0, 4.8}, {"sgformer_m", 7426853376.0, 7.5},
        {"sgformer_b", 15542800128.0, 15.6}};
    for (int i = 0; i < 3; i++) {
        cJSON *cfg = vt_config_make(want[i].arch, NULL);
        vt_cost c;
        int rc = cfg ? fam->cost(cfg, &c) : -1;
        ok(rc == 0 && fabs(c.macs - want[i].macs) < 0.5, "%s: %.0f MACs (want %.0f)", want[i].arch,
           rc ? -1.0 : c.macs, want[i].macs);
        double g = rc ? 0 : c.macs / 1e9, off = (g - want[i].paper) / want[i].paper;
        ok(fabs(off) < 0.03, "%s: %.3f GMACs, paper %.1f G (%+.2f%%)", want[i].arch, g,
           want[i].paper, 100 * off);
        double sum = 0;
        for (int k = 0; rc == 0 && k < c.nparts; k++)
            sum += c.part[k].macs;
        ok(rc == 0 && c.nparts < VT_COST_PARTS && fabs(sum - c.macs) < 1,
           "%s: %d parts add up to the total", want[i].arch, rc ? 0 : c.nparts);
        /* at 448 every grid doubles; 256 is refused as params() refuses it */
        vt_cost big;
        cJSON_ReplaceItemInObject(cfg, "img_size", cJSON_CreateNumber(448));
        rc = fam->cost(cfg, &big);
        ok(rc == 0 && big.macs > 4 * c.macs, "%s at 448: %.2f GMACs", want[i].arch,
           rc ? 0 : big.macs / 1e9);
        cJSON_ReplaceItemInObject(cfg, "img_size", cJSON_CreateNumber(256));
        ok(fam->cost(cfg, &big) < 0, "%s at 256: no cost (%s)", want[i].arch, vt_error());
        cJSON_Delete(cfg);
    }
}

int main(void)
{
    const char *r = getenv("VT_ROOT");
    snprintf(root, sizeof root, "%s", r && *r ? r : ".");
    defaults();
    cost_table();
    conform_run("sgformer", "VT_SGFORMER_FIXTURES", "sgformer-", shared_fixture);
    return tap_done();
}
