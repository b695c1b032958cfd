/* prune.c - token reduction under a budget (see prune.h).
 *
 * Every method ends the same way: it assigns each input token to a group
 * (or to none), and each group becomes one output token, in group order:
 * a group of one is its token copied exactly; a larger group is the mean of
 * its members, weighted by score (fuse, cluster) or plain (reallocate's
 * pooling), with the bounding box of their boxes and the sum of their CLS
 * attention. */
#include "prune.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[VT_PRUNE_COUNT] = {"topk", "fuse", "reallocate",
                                                         "cluster"};

const char *vt_prune_method_name(vt_prune_method m)
{
    return m < VT_PRUNE_COUNT ? method_names[m] : "?";
}

int vt_prune_method_from_name(const char *s)
{
    for (int m = 0; m < VT_PRUNE_COUNT; m++)
        if (strcmp(s, method_names[m]) == 0) return m;
    return -1;
}

int vt_budget_tokens(double keep, int tokens, int n)
{
    long k = tokens > 0 ? (tokens < n ? tokens : n) : (long)ceil(keep * n - 1e-9);
    if (k > n) k = n;
    return k < 1 ? 1 : (int)k;
}

/* ---- scores ------------------------------------------------------------- */

const char *vt_score_name(vt_score_source s)
{
    return s == VT_SCORE_SIGMAP ? "sigmap" : s == VT_SCORE_CLS ? "cls" : "norm";
}

int vt_score_sigmap(const vt_tokens *t, const float *map, int mh, int mw, float *score)
{
    if (mh != t->grid_h || mw != t->grid_w)
        return vt_seterr("sigmap is %dx%d; the tokens' grid is %dx%d", mh, mw, t->grid_h,
                         t->grid_w);
    for (int i = 0; i < t->n; i++) {
        const int32_t *b = t->box + (size_t)i * 4;
        double s = 0;
        for (int y = b[1]; y < b[3]; y++)
            for (int x = b[0]; x < b[2]; x++)
                s += map[(size_t)y * mw + x];
        score[i] = (float)(s / ((double)(b[2] - b[0]) * (b[3] - b[1])));
    }
    return 0;
}

vt_score_source vt_score_tokens(const vt_tokens *t, float *score)
{
    if (t->cls) {
        memcpy(score, t->cls, (size_t)t->n * sizeof *score);
        return VT_SCORE_CLS;
    }
    for (int i = 0; i < t->n; i++) {
        const float *x = t->x + (size_t)i * t->dim;
        double s = 0;
        for (int c = 0; c < t->dim; c++)
            s += (double)x[c] * x[c];
        score[i] = (float)sqrt(s);
    }
    return VT_SCORE_NORM;
}

/* ---- scratch ------------------------------------------------------------ */

typedef struct ranked { float s; int i; } ranked;

typedef struct region {
    int x0, y0, x1, y1;     /* cells, half-open */
    int level;              /* side 1 << level: 2 (4x4), 1 (2x2), 0 (a cell) */
    double mean;            /* mean score of its cells */
    int alive;
} region;

struct vt_prune_work {
    int cap_n, cap_c;
    ranked *order;      /* [n] tokens by score, best first */
    int *group;         /* [n] token -> group, -1: dropped */
    int *count;         /* [n] members per group */
    int *cell;          /* [n] grid cell -> token (reallocate) */
    float *w;           /* [n] weights: positive scores, 0 otherwise */
    double *acc;        /* [n, C] weighted sums per group */
    double *wsum;       /* [n] weight per group */
    float *centre;      /* [n, C] cluster centres */
    region *reg;        /* [5n + 16] reallocate's regions */
};

vt_prune_work *vt_prune_work_new(void)
{
    return vt_xcalloc(1, sizeof(vt_prune_work));
}

void vt_prune_work_free(vt_prune_work *w)
{
    if (!w) return;
    free(w->order); free(w->group); free(w->count); free(w->cell); free(w->w);
    free(w->acc); free(w->wsum); free(w->centre); free(w->reg);
    free(w);
}

static void work_fit(vt_prune_work *w, int n, int c)
{
    if (n <= w->cap_n && c <= w->cap_c)
        return;
    n = n > w->cap_n ? n : w->cap_n;
    c = c > w->cap_c ? c : w->cap_c;
    free(w->order); free(w->group); free(w->count); free(w->cell); free(w->w);
    free(w->acc); free(w->wsum); free(w->centre); free(w->reg);
    w->order = vt_xmalloc((size_t)n * sizeof *w->order);
    w->group = vt_xmalloc((size_t)n * sizeof *w->group);
    w->count = vt_xmalloc((size_t)n * sizeof *w->count);
    w->cell = vt_xmalloc((size_t)n * sizeof *w->cell);
    w->w = vt_xmalloc((size_t)n * sizeof *w->w);
    w->acc = vt_xmalloc((size_t)n * c * sizeof *w->acc);
    w->wsum = vt_xmalloc((size_t)n * sizeof *w->wsum);
    w->centre = vt_xmalloc((size_t)n * c * sizeof *w->centre);
    w->reg = vt_xmalloc(((size_t)n * 5 + 16) * sizeof *w->reg);
    w->cap_n = n;
    w->cap_c = c;
}

/* ---- groups to tokens --------------------------------------------------- */

/* means[g, C] of the groups' members: weighted by w->w when weighted (a
 * group whose weights are all 0 is averaged plainly), else plain. Members
 * per group go to w->count; an empty group's row of means is left as it
 * was. */
static void group_means(vt_prune_work *w, const vt_tokens *in, int ngroups, int weighted,
                        float *means)
{
    int C = in->dim;
    memset(w->count, 0, (size_t)ngroups * sizeof *w->count);
    memset(w->wsum, 0, (size_t)ngroups * sizeof *w->wsum);
    for (int j = 0; j < in->n; j++) {
        int g = w->group[j];
        if (g < 0) continue;
        w->count[g]++;
        w->wsum[g] += w->w[j];
    }
    /* a negative wsum marks a plain mean over -wsum members */
    for (int g = 0; g < ngroups; g++)
        if (!weighted || w->wsum[g] == 0)
            w->wsum[g] = -w->count[g];
    memset(w->acc, 0, (size_t)ngroups * C * sizeof *w->acc);
    for (int j = 0; j < in->n; j++) {
        int g = w->group[j];
        if (g < 0) continue;
        double wt = w->wsum[g] < 0 ? 1.0 : w->w[j];
        const float *x = in->x + (size_t)j * C;
        double *a = w->acc + (size_t)g * C;
        for (int c = 0; c < C; c++)
            a[c] += wt * x[c];
    }
    for (int g = 0; g < ngroups; g++) {
        if (!w->count[g]) continue;
        double div = fabs(w->wsum[g]);
        for (int c = 0; c < C; c++)
            means[(size_t)g * C + c] = (float)(w->acc[(size_t)g * C + c] / div);
    }
}

/* out = one token per non-empty group, in group order. */
static void emit_groups(vt_prune_work *w, const vt_tokens *in, int ngroups, int weighted,
                        vt_tokens *out)
{
    int C = in->dim;
    group_means(w, in, ngroups, weighted, w->centre);
    int nout = 0;
    for (int g = 0; g < ngroups; g++)
        nout += w->count[g] > 0;
    vt_tokens_reserve(out, nout, C, in->extra, in->cls != NULL);
    out->grid_h = in->grid_h;
    out->grid_w = in->grid_w;
    out->block = in->block;
    memcpy(out->ex, in->ex, (size_t)in->extra * C * sizeof *out->ex);
    /* group -> output row; a single member's row is copied exactly */
    int *row = w->cell;     /* free here: groups <= n */
    int k = 0;
    for (int g = 0; g < ngroups; g++)
        row[g] = w->count[g] > 0 ? k++ : -1;
    for (int i = 0; i < nout; i++) {
        int32_t *b = out->box + (size_t)i * 4;
        b[0] = b[1] = INT32_MAX;
        b[2] = b[3] = INT32_MIN;
        if (out->cls) out->cls[i] = 0;
    }
    for (int j = 0; j < in->n; j++) {
        int g = w->group[j];
        if (g < 0) continue;
        int i = row[g];
        const int32_t *s = in->box + (size_t)j * 4;
        int32_t *b = out->box + (size_t)i * 4;
        if (s[0] < b[0]) b[0] = s[0];
        if (s[1] < b[1]) b[1] = s[1];
        if (s[2] > b[2]) b[2] = s[2];
        if (s[3] > b[3]) b[3] = s[3];
        if (out->cls) out->cls[i] += in->cls[j];
        if (w->count[g] == 1)
            memcpy(out->x + (size_t)i * C, in->x + (size_t)j * C, (size_t)C * sizeof *out->x);
    }
    for (int g = 0; g < ngroups; g++)     /* a merged group's mean, once */
        if (w->count[g] > 1)
            memcpy(out->x + (size_t)row[g] * C, w->centre + (size_t)g * C,
                   (size_t)C * sizeof *out->x);
}

/* ---- ranking ------------------------------------------------------------ */

static int by_score(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i - y->i;
}

/* w->order = tokens by score, highest first, ties to the lower index; NaN
 * ranks last. w->w = positive scores, 0 otherwise. */
static void rank(vt_prune_work *w, const float *score, int n)
{
    for (int i = 0; i < n; i++) {
        float s = score[i];
        w->order[i].s = isnan(s) ? -INFINITY : s;
        w->order[i].i = i;
        w->w[i] = s > 0 && isfinite(s) ? s : 0;
    }
    qsort(w->order, (size_t)n, sizeof *w->order, by_score);
}

/* ---- methods ------------------------------------------------------------ */

/* The top `keep` tokens each their own group, in input order; the rest in
 * group `rest` (-1: dropped). Returns the number of groups. */
static int keep_top(vt_prune_work *w, int n, int keep, int rest)
{
    for (int j = 0; j < n; j++)
        w->group[j] = rest;
    for (int r = 0; r < keep; r++)
        w->group[w->order[r].i] = -2;
    int g = 0;
    for (int j = 0; j < n; j++)
        if (w->group[j] == -2) w->group[j] = g++;
    if (rest >= 0)
        for (int j = 0; j < n; j++)
            if (w->group[j] == rest) w->group[j] = g;
    return g + (rest >= 0 && keep < n);
}

static int topk(vt_prune_work *w, const vt_tokens *in, int budget, vt_tokens *out)
{
    int groups = keep_top(w, in->n, budget, -1);
    emit_groups(w, in, groups, 0, out);
    return 0;
}

static int fuse(vt_prune_work *w, const vt_tokens *in, int budget, vt_tokens *out)
{
    int groups = keep_top(w, in->n, budget - 1, in->n);
    emit_groups(w, in, groups, 1, out);
    return 0;
}

static double region_mean(const vt_prune_work *w, const float *score, int gw, const region *r)
{
    double s = 0;
    for (int y = r->y0; y < r->y1; y++)
        for (int x = r->x0; x < r->x1; x++)
            s += score[w->cell[(size_t)y * gw + x]];
    return s / ((double)(r->x1 - r->x0) * (r->y1 - r->y0));
}

static int children(const region *r, region *kids)
{
    int half = 1 << (r->level - 1), k = 0;
    for (int y = r->y0; y < r->y1; y += half)
        for (int x = r->x0; x < r->x1; x += half) {
            region c = {x, y, x + half < r->x1 ? x + half : r->x1,
                        y + half < r->y1 ? y + half : r->y1, r->level - 1, 0, 1};
            kids[k++] = c;
        }
    return k;
}

static int by_position(const void *a, const void *b)
{
    const region *x = a, *y = b;
    if (x->alive != y->alive) return y->alive - x->alive;
    if (x->y0 != y->y0) return x->y0 - y->y0;
    return x->x0 - y->x0;
}

static int reallocate(vt_prune_work *w, const vt_tokens *in, const float *score, int budget,
                      vt_tokens *out)
{
    int gh = in->grid_h, gw = in->grid_w;
    if (!vt_tokens_grid_cells(in, w->cell))     /* the work's own scratch */
        return vt_seterr("reallocate re-tiles a full token grid (%dx%d, one token per cell); "
                         "these %d tokens are not one", gh, gw, in->n);
    int nreg = 0, alive = 0;
    for (int y = 0; y < gh; y += 4)
        for (int x = 0; x < gw; x += 4) {
            region r = {x, y, x + 4 < gw ? x + 4 : gw, y + 4 < gh ? y + 4 : gh, 2, 0, 1};
            r.mean = region_mean(w, score, gw, &r);
            w->reg[nreg++] = r;
            alive++;
        }
    if (budget < alive)
        return vt_seterr("reallocate: %d tokens are fewer than the %d 4x4 regions of the "
                         "%dx%d grid", budget, alive, gh, gw);
    for (;;) {
        int best = -1;
        region kids[4];
        for (int i = 0; i < nreg; i++) {
            region *r = &w->reg[i];
            if (!r->alive || r->level == 0) continue;
            if (alive + children(r, kids) - 1 > budget) continue;
            if (best < 0 || r->mean > w->reg[best].mean) best = i;
        }
        if (best < 0) break;
        int k = children(&w->reg[best], kids);
        w->reg[best].alive = 0;
        for (int c = 0; c < k; c++) {
            kids[c].mean = region_mean(w, score, gw, &kids[c]);
            w->reg[nreg++] = kids[c];
        }
        alive += k - 1;
    }
    qsort(w->reg, (size_t)nreg, sizeof *w->reg, by_position);   /* alive first */
    for (int g = 0; g < alive; g++) {
        const region *r = &w->reg[g];
        for (int y = r->y0; y < r->y1; y++)
            for (int x = r->x0; x < r->x1; x++)
                w->group[w->cell[(size_t)y * gw + x]] = g;
    }
    emit_groups(w, in, alive, 0, out);
    return 0;
}

/* Initial clusters: the grid cut into k regions, kh bands of rows and, in
 * band i, k_i columns (adaptive pooling with uneven bands); each token goes
 * to the region holding its box's centre. Returns the number of groups. */
static int pool_regions(vt_prune_work *w, const vt_tokens *in, int k)
{
    int gh = in->grid_h, gw = in->grid_w;
    int kh = (int)lround(sqrt((double)k * gh / gw));
    if (kh < 1) kh = 1;
    if (kh > gh) kh = gh;
    if (kh > k) kh = k;
    while ((long)kh * gw < k) kh++;
    for (int j = 0; j < in->n; j++) {
        const int32_t *b = in->box + (size_t)j * 4;
        long cy2 = (long)b[1] + b[3], cx2 = (long)b[0] + b[2];   /* doubled centre */
        int band = 0;
        while (band + 1 < kh && 2L * ((long)(band + 1) * gh / kh) <= cy2) band++;
        int before = band * (k / kh) + (band < k % kh ? band : k % kh);
        int cols = k / kh + (band < k % kh);
        int col = 0;
        while (col + 1 < cols && 2L * ((long)(col + 1) * gw / cols) <= cx2) col++;
        w->group[j] = before + col;
    }
    return k;
}

/* group[j] = the nearest live centre to token j (squared distance, ties to
 * the lower index). */
static void assign_nearest(vt_prune_work *w, const vt_tokens *in, int k, const int *live)
{
    int C = in->dim;
    for (int j = 0; j < in->n; j++) {
        const float *x = in->x + (size_t)j * C;
        int best = -1;
        float bd = INFINITY;
        for (int g = 0; g < k; g++) {
            if (!live[g]) continue;
            const float *c = w->centre + (size_t)g * C;
            float d = 0;
            for (int i = 0; i < C; i++)
                d += (x[i] - c[i]) * (x[i] - c[i]);
            if (best < 0 || d < bd) best = g, bd = d;
        }
        w->group[j] = best;
    }
}

static int cluster(vt_prune_work *w, const vt_tokens *in, int budget, vt_tokens *out)
{
    int k = pool_regions(w, in, budget);
    int *live = w->cell;    /* [k]: the group has a centre (emit_groups reuses it) */
    group_means(w, in, k, 0, w->centre);    /* pooling: plain means */
    for (int g = 0; g < k; g++)
        live[g] = w->count[g] > 0;
    for (int round = 0; round < VT_CLUSTER_ROUNDS; round++) {
        assign_nearest(w, in, k, live);
        group_means(w, in, k, 1, w->centre);   /* a centre left without members stays */
    }
    emit_groups(w, in, k, 1, out);
    return 0;
}

int vt_prune(vt_prune_work *w, const vt_tokens *in, const float *score, int budget,
             vt_prune_method m, vt_tokens *out)
{
    if (budget < 1)
        return vt_seterr("a budget of %d tokens", budget);
    if (budget >= in->n) {
        vt_tokens_copy(out, in);
        return 0;
    }
    work_fit(w, in->n, in->dim);
    rank(w, score, in->n);
    switch (m) {
    case VT_PRUNE_TOPK: return topk(w, in, budget, out);
    case VT_PRUNE_FUSE: return fuse(w, in, budget, out);
    case VT_PRUNE_REALLOCATE: return reallocate(w, in, score, budget, out);
    case VT_PRUNE_CLUSTER: return cluster(w, in, budget, out);
    default: return vt_seterr("unknown method %d", (int)m);
    }
}

/* ---- a pruned forward pass ---------------------------------------------- */

void vt_pruned_pass_init(vt_pruned_pass *p, int batch, int after, double keep,
                         vt_prune_method method)
{
    memset(p, 0, sizeof *p);
    p->after = after;
    p->keep = keep;
    p->method = method;
    p->batch = batch;
    p->full = vt_xcalloc((size_t)batch, sizeof *p->full);
    p->cut = vt_xcalloc((size_t)batch, sizeof *p->cut);
    p->work = vt_prune_work_new();
}

void vt_pruned_pass_free(vt_pruned_pass *p)
{
    for (int b = 0; b < p->batch; b++) {
        vt_tokens_free(&p->full[b]);
        vt_tokens_free(&p->cut[b]);
    }
    free(p->full);
    free(p->cut);
    free(p->score);
    vt_prune_work_free(p->work);
    memset(p, 0, sizeof *p);
}

int vt_pruned_forward(vt_model *m, vt_pruned_pass *p, const float *x, float *logits,
                      int *tokens)
{
    if (vt_model_run_until(m, x, p->batch, p->after, p->full) < 0)
        return -1;
    int same = 1;
    for (int b = 0; b < p->batch; b++) {
        const vt_tokens *t = &p->full[b];
        if (t->n > p->score_cap) {
            free(p->score);
            p->score_cap = t->n;
            p->score = vt_xmalloc((size_t)t->n * sizeof *p->score);
        }
        vt_score_tokens(t, p->score);
        int budget = vt_budget_tokens(p->keep, 0, t->n);
        if (vt_prune(p->work, t, p->score, budget, p->method, &p->cut[b]) < 0)
            return -1;
        same &= p->cut[b].n == p->cut[0].n;
    }
    if (tokens)
        *tokens = p->cut[0].n;
    if (same)
        return vt_model_run_from(m, p->cut, p->batch, -1, NULL, logits);
    /* counts differ (cluster): one image at a time */
    for (int b = 0; b < p->batch; b++)
        if (vt_model_run_from(m, &p->cut[b], 1, -1, NULL, logits + (size_t)b * m->num_classes) < 0)
            return -1;
    return 0;
}
