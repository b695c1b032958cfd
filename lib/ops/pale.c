/* pale.c - attention inside interlaced row / column groups. See pale.h. */

#include "ops/attend.h"
#include "ops/pale.h"

int vt_pale_groups(int n, int s) { return (n + s - 1) / s; }

/* cells i, i+N, ... < n along one axis */
static int axis_count(int n, int s, int g)
{
    int N = vt_pale_groups(n, s);
    return g < n ? (n - g + N - 1) / N : 0;
}

int vt_pale_max_tokens(int h, int w, int s, int axis)
{
    return axis == VT_PALE_ROWS ? axis_count(h, s, 0) * w : axis_count(w, s, 0) * h;
}

int vt_pale_group_tokens(int *idx, int h, int w, int s, int axis, int g)
{
    int t = 0;
    if (axis == VT_PALE_ROWS) {
        int N = vt_pale_groups(h, s);
        for (int y = g; y < h; y += N)
            for (int x = 0; x < w; x++)
                idx[t++] = y * w + x;
    } else {
        int M = vt_pale_groups(w, s);
        for (int y = 0; y < h; y++)
            for (int x = g; x < w; x += M)
                idx[t++] = y * w + x;
    }
    return t;
}

typedef struct pale_job {
    const float *q, *k, *v;
    float *out, *scratch;
    int ld, ldo, h, w, s, axis, d, ngroups, L;
    float scale;
} pale_job;

static size_t per_thread(int L, int d)
{
    /* q, k, v, o [L, d], the fused head's scratch, token indices [L] (as
     * floats' room) */
    return 4 * (size_t)L * d + vt_attn_head_scratch(L, d) + (size_t)L;
}

size_t vt_pale_scratch(const vt_pool *p, int h, int w, int s, int axis, int d)
{
    return (size_t)vt_pool_size(p) * per_thread(vt_pale_max_tokens(h, w, s, axis), d);
}

/* One (head, group): gather, attend, scatter. */
static void pale_task(void *ctx, int task, int thread)
{
    const pale_job *j = ctx;
    int head = task / j->ngroups, g = task % j->ngroups, d = j->d;
    float *q = j->scratch + (size_t)thread * per_thread(j->L, d);
    float *k = q + (size_t)j->L * d, *v = k + (size_t)j->L * d, *o = v + (size_t)j->L * d;
    float *sc = o + (size_t)j->L * d;
    int *idx = (int *)(sc + vt_attn_head_scratch(j->L, d));
    int t = vt_pale_group_tokens(idx, j->h, j->w, j->s, j->axis, g);
    size_t hc = (size_t)head * d;
    /* the reference scales q first */
    vt_rows_gather(q, j->q + hc, (size_t)j->ld, idx, t, d, j->scale);
    vt_rows_gather(k, j->k + hc, (size_t)j->ld, idx, t, d, 1.0f);
    vt_rows_gather(v, j->v + hc, (size_t)j->ld, idx, t, d, 1.0f);
    vt_attn_head(o, d, q, d, k, d, v, d, t, t, d, 1.0f, sc);
    vt_rows_scatter(j->out + hc, (size_t)j->ldo, o, idx, t, d);
}

void vt_pale_attend(vt_pool *p, int heads, const float *q, const float *k,
                    const float *v, int ld, float *out, int ldo, int h, int w,
                    int s, int axis, int d, float scale, float *scratch)
{
    int ngroups = vt_pale_groups(axis == VT_PALE_ROWS ? h : w, s);
    pale_job j = {q, k, v, out, scratch, ld, ldo, h, w, s, axis, d, ngroups,
                  vt_pale_max_tokens(h, w, s, axis), scale};
    vt_pool_run_work(p, heads * ngroups, pale_task, &j, 4.0 * heads * h * w * j.L * d);
}
