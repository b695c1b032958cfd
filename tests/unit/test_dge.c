/* test_dge.c - the dge family (DeiT-DGE, PVT-DGE and their DeiT / PVT /
 * deformable-PVT baselines) against the authors' own code: parameter
 * counts and dense GMACs of the full-size variants against the spec's
 * (../shared/specs/dge.md, section 9 and 12) and the paper's; sizes the
 * family cannot take are refused; the project's own small fixtures
 * (tests/fixtures/dge/NAME, made by tests/make-dge-fixtures.py) and, with
 * VT_SHARED, every ../shared/conformance/fixtures/dge-* (checkpoint read in
 * process): logits (compare.py's bound, top-1 equal, 1 and 2 threads), the
 * gates' decisions per region and layer (exactly), their logits, query
 * counts, layer 0's query rows and raw queries, block / stage outputs,
 * features, and the MACs the gates spent against the reference's count.
 * More fixture folders (full-size refgen output): VT_DGE_FIXTURES=d1:d2. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "model.h"
#include "models/dge.h"
#include "npy.h"
#include "tap.h"
#include "conform.h"
#include "util.h"

extern const vt_family vt_family_dge;
static const vt_family *fam = &vt_family_dge;

static void compare_rel(const char *what, const char *name, const float *got, const float *want,
                        size_t n, double rel)
{
    double err = max_err(got, want, n), mx = max_abs(want, n);
    double r = mx > 0 ? err / mx : err;
    ok(r <= rel, "%s %s: max abs err %.3g, relative %.3g <= %.0e", what, name, err, r, rel);
}

/* Images the fixture keeps of extra `name` (refgen: all; ours: maybe 1). */
static int extra_images(const cJSON *meta, const char *name, int batch)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(meta, "extras_images");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, name);
    return cJSON_IsNumber(n) ? n->valueint : batch;
}

/* The layers of stage `stage` (1-based), in order: first and count. */
static int stage_layers(void *net, int stage, int *first)
{
    int L = vt_dge_layers(net), count = 0;
    *first = -1;
    for (int l = 0; l < L; l++) {
        vt_dge_layer li;
        if (vt_dge_layer_info(net, l, &li) == 0 && li.stage == stage) {
            if (*first < 0)
                *first = l;
            count++;
        }
    }
    return count;
}

/* Gate maps [L, B, hr, wr] and logits [L, B, hr, wr, S] of the layers of
 * one stage; decisions must agree exactly. */
static void compare_gates(const char *what, void *net, const char *dir, int stage, int pvt,
                          int B)
{
    char gm[64], gl[64];
    snprintf(gm, sizeof gm, pvt ? "gate_map_stage%d" : "gate_map", stage);
    snprintf(gl, sizeof gl, pvt ? "gate_logits_stage%d" : "gate_logits", stage);
    vt_tensor map, logit;
    if (load_npy(dir, gm, &map) < 0)
        return;
    if (load_npy(dir, gl, &logit) < 0) {
        vt_tensor_free(&map);
        return;
    }
    int first, L = stage_layers(net, stage, &first);
    vt_dge_layer li;
    vt_dge_layer_info(net, first, &li);
    int R = li.hr * li.wr, S = li.nsplits, agree = 0, total = 0;
    double margin = INFINITY, lerr = 0, lmax = 0;
    int shape_ok = map.ndim == 4 && map.shape[0] == L && map.shape[1] == B &&
                   map.shape[2] * map.shape[3] == R && logit.shape[4] == S;
    for (int l = 0; shape_ok && l < L; l++)
        for (int b = 0; b < B; b++) {
            const int8_t *dec = vt_dge_decisions(net, b, first + l);
            const float *lg = vt_dge_gate_logits(net, b, first + l);
            const float *wm = (const float *)map.data + ((size_t)l * B + b) * R;
            const float *wl = (const float *)logit.data + ((size_t)l * B + b) * R * S;
            for (int r = 0; r < R && dec && lg; r++) {
                agree += dec[r] == (int)wm[r];
                total++;
                float top = -INFINITY, second = -INFINITY;
                for (int k = 0; k < S; k++) {
                    lerr = fmax(lerr, fabs((double)lg[r * S + k] - wl[r * S + k]));
                    lmax = fmax(lmax, fabs(wl[r * S + k]));
                    float v = wl[r * S + k];
                    if (v > top) second = top, top = v;
                    else if (v > second) second = v;
                }
                margin = fmin(margin, top - second);
            }
        }
    ok(shape_ok && total == L * B * R && agree == total,
       "%s stage %d: gate decisions agree in %d of %d regions (reference's smallest top-2 "
       "margin %.3g)", what, stage, agree, total, margin);
    ok(shape_ok && lerr <= 1e-5 * lmax + 1e-6, "%s stage %d: gate logits max abs err %.3g (max %.3g)",
       what, stage, lerr, lmax);
    vt_tensor_free(&map);
    vt_tensor_free(&logit);
}

/* Intermediates after a forward pass of the whole batch with recording on. */
static void compare_extras(const char *what, void *net, const char *dir, const cJSON *meta, int B,
                           int pvt)
{
    const cJSON *extras = cJSON_GetObjectItemCaseSensitive(meta, "extras");
    const cJSON *e;
    int L = vt_dge_layers(net), gated_done = 0;
    cJSON_ArrayForEach(e, extras) {
        const char *x = cJSON_IsString(e) ? e->valuestring : "";
        int stage = 0;
        if (strncmp(x, "gate_", 5) == 0) {
            if (gated_done++)
                continue;
            for (int s = 1; s <= (pvt ? 4 : 1); s++)
                compare_gates(what, net, dir, s, pvt, B);
            continue;
        }
        vt_tensor want;
        if (load_npy(dir, x, &want) < 0)
            continue;
        const float *wd = want.data;
        int nb = extra_images(meta, x, B);
        if (strcmp(x, "num_queries") == 0) {
            int same = want.ndim == 2 && want.shape[0] == L && want.shape[1] == B;
            for (int l = 0; same && l < L; l++)
                for (int b = 0; b < B; b++)
                    same &= vt_dge_queries(net, b, l) == (int)wd[l * B + b];
            ok(same, "%s num_queries: every layer and image", what);
        } else if (strcmp(x, "patches_l0") == 0 || strcmp(x, "queries_l0") == 0) {
            int q = x[0] == 'q', P = 0, C = 0, good = 1;
            size_t n = (size_t)vt_tensor_numel(&want);
            float *got = calloc(n ? n : 1, sizeof *got);
            for (int b = 0; b < nb && good; b++) {
                int nq = vt_dge_patches(net, b, 0, NULL);
                if (nq < 0 || (size_t)(P + nq) * (q ? (size_t)want.shape[1] : 4) > n) {
                    good = 0;
                    break;
                }
                if (q) {
                    const float *src = vt_dge_queries0(net, b, NULL, &C);
                    good = src && C == want.shape[1];
                    if (good)
                        memcpy(got + (size_t)P * C, src, (size_t)nq * C * sizeof *got);
                } else {
                    int64_t *rows = malloc((size_t)nq * 4 * sizeof *rows);
                    vt_dge_patches(net, b, 0, rows);
                    for (int i = 0; i < nq * 4; i++)
                        got[(size_t)P * 4 + i] = (float)rows[i];
                    free(rows);
                }
                P += nq;
            }
            good = good && P == want.shape[0];
            if (!good)
                ok(0, "%s %s: %d rows, want %lld (%s)", what, x, P, (long long)want.shape[0],
                   vt_error());
            else if (q)
                compare_rel(what, x, got, wd, n, 1e-5);
            else
                ok(max_err(got, wd, n) == 0, "%s patches_l0: %d rows (image, y0, x0, side) equal",
                   what, P);
            free(got);
        } else if (strcmp(x, "block_out") == 0) {
            /* [Lk, Bk, N, C]: the last Lk layers, the first Bk images */
            int Lk = (int)want.shape[0], Bk = (int)want.shape[1], good = Lk <= L && Bk <= B;
            size_t nc = (size_t)want.shape[2] * want.shape[3];
            float *got = calloc((size_t)vt_tensor_numel(&want) + 1, sizeof *got);
            for (int l = 0; l < Lk && good; l++)
                for (int b = 0; b < Bk && good; b++) {
                    int n, c;
                    const float *src = vt_dge_layer_out(net, b, L - Lk + l, &n, &c);
                    good = src && (size_t)n * c == nc;
                    if (good)
                        memcpy(got + ((size_t)l * Bk + b) * nc, src, nc * sizeof *got);
                }
            if (good)
                compare_rel(what, x, got, wd, (size_t)vt_tensor_numel(&want), 1e-4);
            else
                ok(0, "%s block_out: %s", what, vt_error());
            free(got);
        } else if (sscanf(x, "stage%d", &stage) == 1 || strcmp(x, "features") == 0) {
            /* stageK [Bk, C, H, W] (grid of the stage's last layer), stage4_cls
             * [Bk, C] (its CLS row), features [Bk, C] */
            int cls = strstr(x, "_cls") != NULL, feat = stage == 0, good = 1, first;
            int nl = feat ? 0 : stage_layers(net, stage, &first);
            size_t per = (size_t)vt_tensor_numel(&want) / (want.shape[0] ? want.shape[0] : 1);
            float *got = calloc((size_t)vt_tensor_numel(&want) + 1, sizeof *got);
            for (int b = 0; b < nb && good; b++) {
                int n = 0, c = 0;
                const float *src;
                if (feat) {
                    src = vt_dge_features(net, b, &c);
                    good = src && (size_t)c == per;
                    if (good)
                        memcpy(got + b * per, src, per * sizeof *got);
                    continue;
                }
                vt_dge_layer li;
                good = nl > 0 && vt_dge_layer_info(net, first + nl - 1, &li) == 0;
                src = good ? vt_dge_layer_out(net, b, first + nl - 1, &n, &c) : NULL;
                good = src && (cls ? li.extra == 1 && (size_t)c == per
                                   : (size_t)li.h * li.w * c == per);
                for (int ch = 0; good && ch < c; ch++) {
                    if (cls) {
                        got[b * per + ch] = src[ch];
                        continue;
                    }
                    for (int p = 0; p < li.h * li.w; p++)
                        got[b * per + (size_t)ch * li.h * li.w + p] = src[(size_t)(li.extra + p) * c + ch];
                }
            }
            if (good)
                compare_rel(what, x, got, wd, per * nb, 1e-4);
            else
                ok(0, "%s %s: %s", what, x, vt_error());
            free(got);
        }
        vt_tensor_free(&want);
    }
}

/* The reference's MAC counts (meta config.measured) use its configured
 * grids; they mean ours only when those are the grids the net runs on. */
static int grids_as_configured(void *net, const cJSON *cfg)
{
    int grids[4], n = vt_cfg_ints(cfg, "grids", grids, 4);
    if (n == 0) {
        n = 1;
        grids[0] = vt_cfg_int(cfg, "grid", -1);
    }
    for (int s = 1; s <= n; s++) {
        int first;
        vt_dge_layer li;
        if (stage_layers(net, s, &first) < 1 || vt_dge_layer_info(net, first, &li) < 0 ||
            li.h != grids[s - 1])
            return 0;
    }
    return 1;
}

static void compare_macs(const char *what, void *net, const cJSON *cfg, int B)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cfg, "measured");
    double plain = vt_cfg_num(m, "macs_plain", -1), dense = vt_cfg_num(m, "macs_plain_dense", -1);
    if (plain < 0 || !grids_as_configured(net, cfg))
        return;
    vt_cost cost, spent;
    double sum = 0;
    int rc = fam->cost(cfg, &cost);
    for (int b = 0; b < B && rc == 0; b++) {
        rc = fam->spent(net, b, &spent);
        sum += spent.macs;
    }
    ok(rc == 0 && fabs(cost.macs - dense) < 0.5,
       "%s: dense cost %.0f MACs = reference macs_plain_dense %.0f", what, cost.macs, dense);
    ok(rc == 0 && fabs(sum / B - plain) < 0.5 * B,
       "%s: spent %.0f MACs per image (%.1f%% of dense) = reference macs_plain %.0f", what,
       sum / B, 100 * sum / B / cost.macs, plain);
}

/* A batch of three images (the fixture's first, the same reversed in
 * memory, which the gates route differently, and the first again) gives
 * each image the logits and query counts it gets alone: the batched
 * forward pass mixes no rows between images, also when their query counts
 * differ or match in runs. */
static void batch_vs_alone(const char *base, const cJSON *cfg, const vt_frame *w,
                           const float *img, size_t isz, int K)
{
    enum { NB = 3 };
    float *in = malloc(sizeof(float) * NB * isz), *got = malloc(sizeof(float) * NB * K);
    float *one = malloc(sizeof(float) * K);
    for (size_t i = 0; i < isz; i++) {
        in[i] = in[2 * isz + i] = img[i];
        in[isz + i] = img[isz - 1 - i];
    }
    vt_run_opts o = {2, NB};
    void *net = fam->create(cfg, w, &o);
    int L = net ? vt_dge_layers(net) : 0, good = net && fam->forward(net, in, NB, got) == 0;
    int *nq = calloc((size_t)NB * (L ? L : 1), sizeof *nq);
    for (int b = 0; good && b < NB; b++)
        for (int l = 0; l < L; l++)
            nq[b * L + l] = vt_dge_queries(net, b, l);
    double err = 0, mx = 0;
    for (int b = 0; good && b < NB; b++) {
        good = fam->forward(net, in + b * isz, 1, one) == 0;
        for (int l = 0; good && l < L; l++)
            good = vt_dge_queries(net, 0, l) == nq[b * L + l];
        for (int k = 0; good && k < K; k++) {
            double e = fabs(one[k] - got[b * K + k]);
            err = e > err ? e : err;
            mx = fabs(one[k]) > mx ? fabs(one[k]) : mx;
        }
    }
    ok(good && err <= 1e-6 * (mx > 1 ? mx : 1),
       "%s: a batch of %d gives each image its logits (max abs err %.3g) and query counts "
       "alone", base, NB, err);
    if (net)
        fam->destroy(net);
    free(nq);
    free(in);
    free(got);
    free(one);
}

static const char *kind_of(const conform_case *c)
{
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(c->fx.cfg, "kind");
    return cJSON_IsString(kind) ? kind->valuestring : "";
}

static void record_pass0(conform_case *c, void *net)
{
    if (c->threads == 1)
        vt_dge_record(net, 1);
}

/* Pass 0 (1 thread): intermediates, MACs against the reference's count,
 * gate decisions exposed exactly for DGE nets. */
static void check_pass0(conform_case *c, void *net)
{
    if (c->threads != 1)
        return;
    int pvt = strstr(kind_of(c), "pvt") != NULL, gated = strstr(kind_of(c), "_dge") != NULL;
    compare_extras(c->what, net, c->dir, c->fx.meta, c->B, pvt);
    compare_macs(c->what, net, cJSON_GetObjectItemCaseSensitive(c->fx.meta, "config"), c->B);
    ok(gated == (vt_dge_decisions(net, 0, 0) != NULL),
       "%s: gate decisions exposed exactly for DGE nets", c->what);
}

static void check_batch(conform_case *c)
{
    batch_vs_alone(c->fx.base, c->fx.cfg, &c->fx.w, c->in.data, c->img, c->K);
}

static void fixture(const char *dir)
{
    conform_hooks h = {.before = record_pass0, .after = check_pass0, .end = check_batch};
    conform_logits(dir, fam, &h, NULL);
}

/* A fixture folder, or a folder of them (tests/fixtures/dge). */
static void fixture_or_set(const char *dir)
{
    char path[1400];
    struct stat st;
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (stat(path, &st) == 0) {
        fixture(dir);
        return;
    }
    DIR *d = opendir(dir);
    struct dirent *e;
    char *names[64];
    int n = 0;
    while (d && (e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.')
            names[n++] = vt_xstrdup(e->d_name);
    if (d)
        closedir(d);
    ok(n >= 5, "%d fixtures in %s", n, dir);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        fixture(path);
        free(names[i]);
    }
}

/* Full-size variants: parameters (with the int64 split_sizes Parameter
 * torch counts) against the spec's counts, dense GMACs at 256 against the
 * spec's section 12 and the paper's 1.7 G / 6.1 G (DeiT-Ti, DeiT-S). */
static void defaults(void)
{
    static const struct {
        const char *arch; long long params; double gmacs, paper;
    } want[] = {
        {"deit_dge_s124_tiny_patch16_256", 5735920, 1.707, 1.7},
        {"deit_dge_s124_small_patch16_256", 22087600, 6.142, 6.1},
        {"pvt_dge_s124_tiny_256", 13354520, 2.553, 0},
        {"pvt_dge_s124_small_256", 24617480, 5.038, 0},
        {"deit_tiny_patch16_256", 5728936, 1.707, 1.7},
        {"deit_small_patch16_256", 22073704, 6.142, 6.1},
        {"pvt_tiny_256", 13348328, 2.553, 0},
        {"pvt_small_256", 24604904, 5.038, 0},
        {"dpvt_small_256", 17615796, 0, 0},
        {"pvt_dge_s124_small_256_mixgate", 24617480, 5.038, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        cJSON *cfg = vt_config_make(want[i].arch, NULL);
        vt_params ps = {0};
        vt_cost cost;
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        long long total = 0;
        for (int j = 0; j < ps.n; j++) {
            long long e = 1;
            for (int k = 0; k < ps.p[j].ndim; k++)
                e *= ps.p[j].shape[k];
            total += e;
        }
        int crc = cfg ? fam->cost(cfg, &cost) : -1;
        double gm = crc == 0 ? cost.macs / 1e9 : 0;
        ok(rc == 0 && total == want[i].params, "%s: %d tensors, %lld parameters (spec %lld)",
           want[i].arch, ps.n, total, want[i].params);
        char paper[32] = "";
        if (want[i].paper > 0)
            snprintf(paper, sizeof paper, ", paper %.1f", want[i].paper);
        if (want[i].gmacs > 0)
            ok(crc == 0 && fabs(gm - want[i].gmacs) < 0.0006 &&
               (want[i].paper == 0 || fabs(gm / want[i].paper - 1) <= 0.03),
               "%s: %.4f dense GMACs at 256 (spec %.3f%s)", want[i].arch, gm, want[i].gmacs,
               paper);
        else
            ok(crc == 0 && gm > 4 && gm < 5, "%s: %.4f GMACs at 256", want[i].arch, gm);
        vt_params_free(&ps);
        cJSON_Delete(cfg);
    }
}

/* Input sizes the official code cannot take (or takes with undefined
 * tokens) are refused with a reason. */
static void sizes(void)
{
    static const struct {
        const char *arch; int size; const char *why;
    } c[] = {
        {"deit_dge_s124_tiny_patch16_256", 224, "takes 256x256 input only"},
        {"deit_small_patch16_256", 288, "takes 256x256 input only"},
        {"pvt_dge_s124_tiny_256", 160, "multiples of 128"},
        {"pvt_dge_s124_small_256", 384, NULL},
        {"pvt_small_256", 100, "multiples of 32"},
        {"pvt_small_256", 224, NULL},
        {"pvt_small_256", 512, "unresampled"},
        {"dpvt_small_256", 96, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        cJSON *over = cJSON_CreateObject();
        cJSON_AddNumberToObject(over, "img_size", c[i].size);
        cJSON_AddNumberToObject(over, "pos_embed_size", 256);
        cJSON *cfg = vt_config_make(c[i].arch, over);
        vt_params ps = {0};
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        if (c[i].why)
            ok(rc < 0 && strstr(vt_error(), c[i].why), "%s at %d refused: %s", c[i].arch,
               c[i].size, vt_error());
        else
            ok(rc == 0, "%s at %d accepted (%s)", c[i].arch, c[i].size, rc ? vt_error() : "ok");
        vt_params_free(&ps);
        cJSON_Delete(cfg);
        cJSON_Delete(over);
    }
}

/* Nonsense configs are refused by params() with a reason, never read past
 * their lists. */
static void configs(void)
{
    static const struct {
        const char *arch, *json, *why;
    } c[] = {
        {"pvt_small_256", "{\"embed_dims\": [64, 128, 320, 512, 640]}", "must be 4 integers"},
        {"pvt_dge_s124_tiny_256", "{\"depths\": [2, 2, 2]}", "must be 4 integers"},
        {"deit_dge_s124_tiny_patch16_256", "{\"dge\": {\"split_sizes\": [4, 2, 1, 1, 1, 1]}}",
         "split_sizes must be"},
        {"deit_dge_s124_tiny_patch16_256", "{\"dge\": {\"split_sizes\": [3, 2, 1]}}",
         "does not divide"},
        {"pvt_tiny_256", "{\"patch_sizes\": [4, 2, 4, 2]}", "merges 2x2"},
        {"deit_small_patch16_256", "{\"num_heads\": 5}", "not divisible"},
        {"dpvt_small_256", "{\"kind\": \"vit\"}", "kind"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        cJSON *over = cJSON_Parse(c[i].json);
        cJSON *cfg = vt_config_make(c[i].arch, over);
        vt_params ps = {0};
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        ok(rc < 0 && strstr(vt_error(), c[i].why), "%s %s refused: %s", c[i].arch, c[i].json,
           vt_error());
        vt_params_free(&ps);
        cJSON_Delete(cfg);
        cJSON_Delete(over);
    }
}

int main(void)
{
    defaults();
    sizes();
    configs();
    conform_run("dge", "VT_DGE_FIXTURES", "dge-", fixture_or_set);
    return tap_done();
}
