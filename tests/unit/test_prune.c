/* test_prune.c - lib/prune.c on hand-made token sets: budgets, scores, and
 * what each method must give (tests/bats/prune.bats runs them on real
 * models and checks topk and fuse against PyTorch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "tap.h"
#include "util.h"

/* A full gh x gw grid of C channels: token i has x[i, c] = i + c / 100. */
static void grid_tokens(vt_tokens *t, int gh, int gw, int C, int with_cls)
{
    vt_tokens_reserve(t, gh * gw, C, 1, with_cls);
    t->grid_h = gh;
    t->grid_w = gw;
    t->block = 3;
    for (int i = 0; i < t->n; i++)
        for (int c = 0; c < C; c++)
            t->x[i * C + c] = i + c / 100.0f;
    for (int c = 0; c < C; c++) t->ex[c] = -1;
    for (int i = 0; with_cls && i < t->n; i++) t->cls[i] = 1.0f / t->n;
    vt_tokens_grid_boxes(t);
}

static int same(const vt_tokens *a, const vt_tokens *b)
{
    return a->n == b->n && a->dim == b->dim && a->extra == b->extra && a->block == b->block &&
           !memcmp(a->x, b->x, sizeof(float) * a->n * a->dim) &&
           !memcmp(a->box, b->box, sizeof(int32_t) * a->n * 4) &&
           !memcmp(a->ex, b->ex, sizeof(float) * a->extra * a->dim) && !a->cls == !b->cls &&
           (!a->cls || !memcmp(a->cls, b->cls, sizeof(float) * a->n));
}

/* Every grid cell covered by exactly one box. */
static int tiles(const vt_tokens *t)
{
    int *seen = calloc((size_t)t->grid_h * t->grid_w, sizeof *seen), ok_ = 1;
    for (int i = 0; i < t->n; i++) {
        const int32_t *b = t->box + i * 4;
        for (int y = b[1]; y < b[3]; y++)
            for (int x = b[0]; x < b[2]; x++)
                ok_ &= seen[y * t->grid_w + x]++ == 0;
    }
    for (int i = 0; i < t->grid_h * t->grid_w; i++) ok_ &= seen[i] == 1;
    free(seen);
    return ok_;
}

static void budgets(void)
{
    ok(vt_budget_tokens(0.5, 0, 196) == 98 && vt_budget_tokens(0.7, 0, 196) == 138 &&
       vt_budget_tokens(0.25, 0, 196) == 49 && vt_budget_tokens(1.0, 0, 196) == 196,
       "keep R: ceil(R n) (98, 138, 49, 196 of 196)");
    ok(vt_budget_tokens(0.001, 0, 196) == 1 && vt_budget_tokens(0, 50, 196) == 50 &&
       vt_budget_tokens(0, 500, 196) == 196, "at least 1; --tokens N capped at n");
    ok(vt_budget_tokens(0.3, 0, 10) == 3, "keep 0.3 of 10 is 3 (no float creep)");
    for (int m = 0; m < VT_PRUNE_COUNT; m++)
        ok(vt_prune_method_from_name(vt_prune_method_name(m)) == m, "method %s", vt_prune_method_name(m));
    ok(vt_prune_method_from_name("random") < 0, "unknown method");
}

static void identity(void)
{
    vt_prune_work *w = vt_prune_work_new();
    vt_tokens in = {0}, out = {0};
    grid_tokens(&in, 14, 14, 8, 1);
    float score[196];
    for (int i = 0; i < 196; i++) score[i] = (float)sin(i);
    for (int m = 0; m < VT_PRUNE_COUNT; m++)
        for (int b = 196; b <= 300; b += 104) {
            int rc = vt_prune(w, &in, score, b, m, &out);
            ok(rc == 0 && same(&in, &out), "%s with budget %d of 196: an exact copy",
               vt_prune_method_name(m), b);
        }
    vt_tokens_free(&in);
    vt_tokens_free(&out);
    vt_prune_work_free(w);
}

static void topk_fuse(void)
{
    vt_prune_work *w = vt_prune_work_new();
    vt_tokens in = {0}, out = {0};
    grid_tokens(&in, 3, 4, 3, 1);
    /* scores: token 5 best, then 2, 9, 0 ...; 7 and 8 tie; NaN last */
    float score[12] = {0.5f, 0.1f, 0.8f, 0.05f, 0.2f, 0.9f, 0.3f, 0.4f, 0.4f, 0.7f, NAN, -1};
    for (int i = 0; i < 12; i++) in.cls[i] = (float)(i + 1);
    int rc = vt_prune(w, &in, score, 4, VT_PRUNE_TOPK, &out);
    int want[4] = {0, 2, 5, 9}, good = rc == 0 && out.n == 4;
    for (int k = 0; good && k < 4; k++)
        good = !memcmp(out.x + k * 3, in.x + want[k] * 3, 3 * sizeof(float)) &&
               !memcmp(out.box + k * 4, in.box + want[k] * 4, 4 * sizeof(int32_t)) &&
               out.cls[k] == in.cls[want[k]];
    ok(good, "topk 4: tokens 0, 2, 5, 9 (the best four, in input order), copied exactly");
    rc = vt_prune(w, &in, score, 5, VT_PRUNE_TOPK, &out);
    ok(rc == 0 && out.n == 5 && out.box[3 * 4] == 3 && out.box[3 * 4 + 1] == 1 &&
       out.box[4 * 4] == 1 && out.box[4 * 4 + 1] == 2,
       "topk 5: of the tie 7/8 the lower index is kept (0, 2, 5, 7, 9)");
    ok(vt_prune(w, &in, score, 11, VT_PRUNE_TOPK, &out) == 0 && out.box[10 * 4] == 3 &&
       out.box[10 * 4 + 1] == 2, "topk 11: the NaN score is dropped first");
    ok(out.ex[0] == -1 && out.extra == 1 && out.block == 3, "extra tokens and block kept");

    /* fuse 4: top 3 (5, 2, 9) kept, the other 9 merged weighted by score */
    rc = vt_prune(w, &in, score, 4, VT_PRUNE_FUSE, &out);
    double sw = 0, sx[3] = {0}, scls = 0;
    for (int i = 0; i < 12; i++) {
        if (i == 5 || i == 2 || i == 9) continue;
        double wt = score[i] > 0 ? score[i] : 0;
        sw += wt;
        for (int c = 0; c < 3; c++) sx[c] += wt * in.x[i * 3 + c];
        scls += in.cls[i];
    }
    double err = 0;
    for (int c = 0; c < 3; c++) err = fmax(err, fabs(out.x[3 * 3 + c] - sx[c] / sw));
    ok(rc == 0 && out.n == 4 && out.box[0] == 2 && out.box[4] == 1 && out.box[4 + 1] == 1 &&
       err < 1e-5, "fuse 4: tokens 2, 5, 9, then their weighted mean (err %.2g)", err);
    const int32_t *fb = out.box + 3 * 4;
    ok(fb[0] == 0 && fb[1] == 0 && fb[2] == 4 && fb[3] == 3 && fabs(out.cls[3] - scls) < 1e-4,
       "fused token: the bounding box of what it merged, their CLS attention summed");
    /* all weights zero: a plain mean */
    float zero[12] = {0};
    zero[4] = 1;
    rc = vt_prune(w, &in, zero, 2, VT_PRUNE_FUSE, &out);
    double mean = 0;
    for (int i = 0; i < 12; i++) if (i != 4) mean += in.x[i * 3] / 11.0;
    ok(rc == 0 && out.n == 2 && fabs(out.x[3] - mean) < 1e-5,
       "fuse with no positive weight: a plain mean (%g vs %g)", out.x[3], mean);
    rc = vt_prune(w, &in, score, 1, VT_PRUNE_FUSE, &out);
    ok(rc == 0 && out.n == 1 && out.box[2] == 4 && out.box[3] == 3, "fuse 1: all in one token");
    vt_tokens_free(&in);
    vt_tokens_free(&out);
    vt_prune_work_free(w);
}

static void reallocate(void)
{
    vt_prune_work *w = vt_prune_work_new();
    vt_tokens in = {0}, out = {0};
    grid_tokens(&in, 14, 14, 4, 1);
    /* significance high in the top-left corner, falling away */
    float score[196];
    for (int i = 0; i < 196; i++) score[i] = 1.0f / (1 + (i % 14) + (i / 14));
    for (int b = 16; b <= 195; b += 17) {
        int rc = vt_prune(w, &in, score, b, VT_PRUNE_REALLOCATE, &out);
        int sizes_ok = 1;
        for (int i = 0; i < out.n; i++) {
            const int32_t *x = out.box + i * 4;
            int wd = x[2] - x[0], ht = x[3] - x[1], side = wd > ht ? wd : ht;
            /* 4x4, 2x2 or 1x1, aligned to its size, clipped at the border */
            int s = side > 2 ? 4 : side;
            sizes_ok &= x[0] % s == 0 && x[1] % s == 0 && (wd == s || x[2] == 14) &&
                        (ht == s || x[3] == 14);
        }
        ok(rc == 0 && out.n <= b && out.n >= b - 2 && tiles(&out) && sizes_ok,
           "reallocate to %d: %d tokens tile the grid with 4x4, 2x2 and 1x1 boxes", b, out.n);
    }
    vt_prune(w, &in, score, 60, VT_PRUNE_REALLOCATE, &out);
    ok(out.box[0] == 0 && out.box[2] == 1 && out.box[3] == 1, "fine where significance is high");
    const int32_t *last = out.box + (out.n - 1) * 4;
    ok(last[2] - last[0] == 2 && last[3] - last[1] == 2 && last[0] == 12,
       "coarse where it is low (last box %d,%d-%d,%d)", last[0], last[1], last[2], last[3]);
    /* a pooled token is the plain mean of its cells, CLS attention summed */
    int found = 0;
    for (int i = 0; i < out.n && !found; i++) {
        const int32_t *x = out.box + i * 4;
        if (x[2] - x[0] != 4 || x[3] - x[1] != 4) continue;
        double m = 0;
        for (int y = x[1]; y < x[3]; y++)
            for (int xx = x[0]; xx < x[2]; xx++) m += in.x[(y * 14 + xx) * 4] / 16.0;
        found = fabs(out.x[i * 4] - m) < 1e-4 && fabs(out.cls[i] - 16.0f / 196) < 1e-6;
    }
    ok(found, "a 4x4 token: the mean of its 16 cells, 16 cells' CLS attention");
    ok(vt_prune(w, &in, score, 15, VT_PRUNE_REALLOCATE, &out) < 0 &&
       strstr(vt_error(), "16 4x4 regions"), "below the 4x4 tiling: %s", vt_error());
    /* not a full grid */
    vt_tokens part = {0};
    vt_prune(w, &in, score, 100, VT_PRUNE_TOPK, &part);
    ok(vt_prune(w, &part, score, 50, VT_PRUNE_REALLOCATE, &out) < 0 &&
       strstr(vt_error(), "full token grid"), "a pruned set: %s", vt_error());
    /* odd grids */
    grid_tokens(&in, 7, 9, 2, 0);
    int rc = vt_prune(w, &in, score, 30, VT_PRUNE_REALLOCATE, &out);
    ok(rc == 0 && tiles(&out) && out.n <= 30 && !out.cls, "a 7x9 grid: %d tokens tile it", out.n);
    vt_tokens_free(&part);
    vt_tokens_free(&in);
    vt_tokens_free(&out);
    vt_prune_work_free(w);
}

static void cluster(void)
{
    vt_prune_work *w = vt_prune_work_new();
    vt_tokens in = {0}, out = {0};
    grid_tokens(&in, 6, 8, 4, 1);
    /* two kinds of token: A on the left three columns, B elsewhere */
    const float A[4] = {1, 2, 3, 4}, Bv[4] = {-5, 0, 5, 1};
    for (int i = 0; i < in.n; i++)
        memcpy(in.x + i * 4, i % 8 < 3 ? A : Bv, sizeof A);
    float score[48];
    for (int i = 0; i < 48; i++) score[i] = 1 + i % 5;
    int rc = vt_prune(w, &in, score, 2, VT_PRUNE_CLUSTER, &out);
    int a = out.n == 2 && out.x[0] == 1 ? 0 : 1;
    ok(rc == 0 && out.n == 2 && !memcmp(out.x + a * 4, A, sizeof A) &&
       !memcmp(out.x + (1 - a) * 4, Bv, sizeof Bv), "cluster 2: the two kinds of token");
    ok(out.n == 2 && out.box[a * 4 + 2] == 3 && out.box[(1 - a) * 4] == 3 &&
       fabs(out.cls[a] - 18.0 / 48) < 1e-6, "their boxes: the left 3 columns and the rest");
    for (int b = 1; b <= 47; b += 23) {
        for (int i = 0; i < in.n; i++)
            for (int c = 0; c < 4; c++) in.x[i * 4 + c] = (float)sin(i * 1.3 + c);
        rc = vt_prune(w, &in, score, b, VT_PRUNE_CLUSTER, &out);
        int inside = 1;
        for (int i = 0; i < out.n; i++)
            inside &= out.box[i * 4 + 2] <= 8 && out.box[i * 4 + 3] <= 6;
        ok(rc == 0 && out.n >= 1 && out.n <= b && inside, "cluster %d: %d tokens", b, out.n);
    }
    /* one cluster: the score-weighted mean of everything */
    rc = vt_prune(w, &in, score, 1, VT_PRUNE_CLUSTER, &out);
    double m = 0, sw = 0;
    for (int i = 0; i < 48; i++) m += score[i] * in.x[i * 4], sw += score[i];
    ok(rc == 0 && out.n == 1 && fabs(out.x[0] - m / sw) < 1e-5,
       "cluster 1: the score-weighted mean (%g vs %g)", out.x[0], m / sw);
    vt_tokens_free(&in);
    vt_tokens_free(&out);
    vt_prune_work_free(w);
}

static void scores(void)
{
    vt_tokens t = {0};
    grid_tokens(&t, 2, 3, 2, 1);
    float map[6] = {1, 2, 3, 4, 5, 6}, s[6];
    /* merge cells 0,1,3,4 into one token (box 0,0-2,2) */
    t.n = 3;
    int32_t boxes[12] = {0, 0, 2, 2, 2, 0, 3, 1, 2, 1, 3, 2};
    memcpy(t.box, boxes, sizeof boxes);
    ok(vt_score_sigmap(&t, map, 2, 3, s) == 0 && s[0] == 3 && s[1] == 3 && s[2] == 6,
       "sigmap score: the mean over each box");
    ok(vt_score_sigmap(&t, map, 3, 2, s) < 0 && strstr(vt_error(), "grid is 2x3"),
       "sigmap on another grid: %s", vt_error());
    ok(vt_score_tokens(&t, s) == VT_SCORE_CLS && s[1] == t.cls[1], "CLS attention when recorded");
    vt_tokens_reserve(&t, 3, 2, 1, 0);
    t.x[0] = 3, t.x[1] = 4;
    ok(vt_score_tokens(&t, s) == VT_SCORE_NORM && s[0] == 5, "else the token's norm");
    vt_tokens_free(&t);
}

int main(void)
{
    budgets();
    identity();
    topk_fuse();
    reallocate();
    cluster();
    scores();
    return tap_done();
}
