/* fuzz_tokens.c - libFuzzer harness: tokens frames as vt-prune and
 * vt-classify's continuation read them (vt_tokens_from_frame), scored by
 * any sigmap frame in the same stream or by their own CLS attention / norm,
 * and reduced by every method at three budgets.
 *
 * Invariants checked (abort = a finding):
 *   - a tokens frame that reads writes back and reads back identical;
 *   - a reduction returns at most its budget (all tokens when the budget
 *     covers them), and its output is itself a valid tokens frame (boxes on
 *     the grid, shapes consistent), so a pipe of vt-prunes never produces
 *     what the next tool refuses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "frame.h"
#include "prune.h"
#include "tokens.h"

#define MAX_FRAMES 8

static int same_floats(const float *a, const float *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof *a) == 0;
}

static void same_tokens_or_die(const vt_tokens *a, const vt_tokens *b)
{
    if (a->n != b->n || a->dim != b->dim || a->extra != b->extra || a->grid_h != b->grid_h ||
        a->grid_w != b->grid_w || a->block != b->block || !a->cls != !b->cls)
        abort();
    if (!same_floats(a->x, b->x, (size_t)a->n * a->dim) ||
        !same_floats(a->ex, b->ex, (size_t)a->extra * a->dim) ||
        (a->n && memcmp(a->box, b->box, (size_t)a->n * 4 * sizeof *a->box)) ||
        (a->cls && !same_floats(a->cls, b->cls, (size_t)a->n)))
        abort();
}

/* t -> frame -> bytes -> frame -> tokens must give t back; 0, or -1 when
 * the frame cannot be read back (only allowed when strict == 0). */
static int round_trip(const vt_tokens *t, const vt_frame *meta, int strict)
{
    vt_frame f, g;
    vt_tokens_to_frame(t, meta, "fuzz", &f);
    char *buf = NULL;
    size_t len = 0, used = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m || vt_frame_write(m, &f) < 0 || fclose(m) != 0) abort();
    vt_frame_free(&f);
    if (vt_frame_parse((const uint8_t *)buf, len, &g, 0, &used) < 0 || used != len) abort();
    vt_tokens u = {0};
    int rc = vt_tokens_from_frame(&g, &u);
    if (rc < 0 && strict) abort();
    if (rc == 0) same_tokens_or_die(t, &u);
    vt_tokens_free(&u);
    vt_frame_free(&g);
    free(buf);
    return rc;
}

/* The first F32 [h,w] "sigmap" tensor among the frames, or NULL. */
static const vt_tensor *find_sigmap(vt_frame *f, int nf)
{
    for (int i = 0; i < nf; i++) {
        const vt_tensor *s = vt_frame_get(&f[i], "sigmap");
        if (s && s->dtype == VT_F32 && s->ndim == 2) return s;
    }
    return NULL;
}

static void reduce_all(vt_prune_work *w, const vt_tokens *in, const float *score,
                       uint8_t knob)
{
    int budgets[3] = {
        vt_budget_tokens((knob + 1) / 256.0, 0, in->n),
        vt_budget_tokens(1.0, 1 + knob % 17, in->n),
        in->n,
    };
    vt_tokens out = {0};
    for (int m = 0; m < VT_PRUNE_COUNT; m++)
        for (int b = 0; b < 3; b++) {
            if (vt_prune(w, in, score, budgets[b], (vt_prune_method)m, &out) < 0) continue;
            if (out.n < 1 || out.n > (budgets[b] < in->n ? budgets[b] : in->n)) abort();
            if (budgets[b] >= in->n) {   /* covers every token: an exact copy */
                vt_tokens copy = {0};
                vt_tokens_copy(&copy, in);
                same_tokens_or_die(&copy, &out);
                vt_tokens_free(&copy);
            }
            round_trip(&out, NULL, 1);
        }
    vt_tokens_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    FILE *fp = fmemopen((void *)data, size, "rb");
    if (!fp) return 0;
    vt_frame f[MAX_FRAMES];
    int nf = 0;
    while (nf < MAX_FRAMES && vt_frame_read(fp, &f[nf]) == 1) nf++;
    fclose(fp);

    const vt_tensor *map = find_sigmap(f, nf);
    vt_prune_work *w = vt_prune_work_new();
    vt_tokens t = {0};
    float *score = NULL;
    for (int i = 0; i < nf; i++) {
        if (vt_tokens_from_frame(&f[i], &t) < 0) continue;
        round_trip(&t, &f[i], 1);
        vt_tokens_is_full_grid(&t);
        free(score);
        score = malloc(((size_t)t.n + 1) * sizeof *score);
        if (!score) abort();
        vt_score_tokens(&t, score);
        reduce_all(w, &t, score, data[size - 1]);
        if (map && vt_score_sigmap(&t, map->data, (int)map->shape[0], (int)map->shape[1],
                                   score) == 0)
            reduce_all(w, &t, score, data[0]);
    }
    free(score);
    vt_tokens_free(&t);
    vt_prune_work_free(w);
    for (int i = 0; i < nf; i++) vt_frame_free(&f[i]);
    return 0;
}
