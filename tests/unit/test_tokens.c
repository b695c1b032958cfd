/* test_tokens.c - split inference (lib/tokens.c, the vit family's split
 * hooks): tokens frames round-trip exactly and bad ones are refused with a
 * reason; for the project's small DeiT fixtures, running until block L and
 * continuing gives logits bit-identical to the uninterrupted forward for
 * every L, at batch 1 and B, on 1 and 2 threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "npy.h"
#include "tap.h"
#include "tokens.h"
#include "util.h"

static char root[512];

/* A 3x4 grid of 12 tokens of 5 channels, 2 extra, with CLS attention. */
static void make_tokens(vt_tokens *t)
{
    vt_tokens_reserve(t, 12, 5, 2, 1);
    t->grid_h = 3;
    t->grid_w = 4;
    t->block = 7;
    for (int i = 0; i < 12 * 5; i++) t->x[i] = (float)sin(i * 0.7) * 3;
    for (int i = 0; i < 2 * 5; i++) t->ex[i] = (float)i / 3;
    for (int i = 0; i < 12; i++) t->cls[i] = 1.0f / (i + 1);
    vt_tokens_grid_boxes(t);
}

static int same_tokens(const vt_tokens *a, const vt_tokens *b)
{
    return a->n == b->n && a->dim == b->dim && a->extra == b->extra &&
           a->grid_h == b->grid_h && a->grid_w == b->grid_w && a->block == b->block &&
           !memcmp(a->x, b->x, (size_t)a->n * a->dim * sizeof *a->x) &&
           !memcmp(a->box, b->box, (size_t)a->n * 4 * sizeof *a->box) &&
           !memcmp(a->ex, b->ex, (size_t)a->extra * a->dim * sizeof *a->ex) &&
           !a->cls == !b->cls && (!a->cls || !memcmp(a->cls, b->cls, (size_t)a->n * 4));
}

/* t -> frame -> bytes -> frame -> u */
static int round_trip(const vt_tokens *t, vt_tokens *u, vt_frame *back)
{
    vt_frame f, meta;
    vt_frame_init(&meta);
    vt_frame_set_meta(&meta, "arch", "x");
    vt_tokens_to_frame(t, &meta, "img.jpg", &f);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    int rc = vt_frame_write(mem, &f);
    fclose(mem);
    vt_frame_free(&f);
    vt_frame_free(&meta);
    size_t used;
    vt_frame_init(back);
    if (rc == 0) rc = vt_frame_parse((uint8_t *)buf, len, back, 1, &used);
    free(buf);
    if (rc == 0) rc = vt_tokens_from_frame(back, u);
    return rc;
}

static void frames(void)
{
    vt_tokens t = {0}, u = {0};
    vt_frame back;
    make_tokens(&t);
    ok(vt_tokens_is_full_grid(&t), "grid boxes cover the grid once");
    ok(round_trip(&t, &u, &back) == 0 && same_tokens(&t, &u), "round trip is exact: %s",
       vt_error());
    const char *keys[][2] = {{"kind", "tokens"}, {"name", "img.jpg"}, {"block", "7"},
                             {"grid", "3,4"}, {"tokens", "12"}, {"extra_tokens", "2"},
                             {"arch", "x"}};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = vt_frame_meta(&back, keys[i][0]);
        ok(v && strcmp(v, keys[i][1]) == 0, "metadata %s = %s", keys[i][0], v ? v : "(none)");
    }
    vt_frame_free(&back);

    /* without CLS attention and extra tokens */
    vt_tokens_reserve(&t, 12, 5, 0, 0);
    ok(round_trip(&t, &u, &back) == 0 && same_tokens(&t, &u) && !u.cls && u.extra == 0,
       "no cls_attn, no extra: still exact");
    vt_frame_free(&back);

    /* a box outside the grid, an empty box */
    make_tokens(&t);
    t.box[5 * 4 + 2] = 5;
    ok(round_trip(&t, &u, &back) < 0 && strstr(vt_error(), "box 5"), "box outside: %s",
       vt_error());
    vt_frame_free(&back);
    make_tokens(&t);
    t.box[3 * 4 + 3] = t.box[3 * 4 + 1];
    ok(round_trip(&t, &u, &back) < 0 && strstr(vt_error(), "box 3"), "empty box: %s",
       vt_error());
    vt_frame_free(&back);
    /* a duplicate cell is not the full grid */
    make_tokens(&t);
    memcpy(t.box + 4, t.box, 4 * sizeof *t.box);
    ok(!vt_tokens_is_full_grid(&t), "a repeated cell is not the full grid");
    int cell[12];
    ok(!vt_tokens_grid_cells(&t, cell), "grid_cells: a repeated cell is not the full grid");
    /* the cells in reverse order: each cell maps to its token */
    make_tokens(&t);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 4; k++) {
            int32_t a = t.box[i * 4 + k];
            t.box[i * 4 + k] = t.box[(11 - i) * 4 + k];
            t.box[(11 - i) * 4 + k] = a;
        }
    int mapped = vt_tokens_grid_cells(&t, cell);
    for (int c = 0; c < 12 && mapped; c++)
        mapped = cell[c] == 11 - c;
    ok(mapped, "grid_cells maps each cell to its token, in any order");

    /* frames that are not tokens frames, or lack parts */
    vt_frame f;
    vt_frame_init(&f);
    int64_t shape[2] = {3, 5};
    vt_frame_add(&f, "image", VT_F32, 2, shape);
    vt_frame_stamp(&f, "image", "a");
    ok(vt_tokens_from_frame(&f, &u) < 0 && strstr(vt_error(), "'image' frame"),
       "an image frame: %s", vt_error());
    vt_frame_free(&f);
    make_tokens(&t);
    vt_tokens_to_frame(&t, NULL, "a", &f);
    f.tensors[1].dtype = VT_F32;    /* boxes as F32 */
    ok(vt_tokens_from_frame(&f, &u) < 0 && strstr(vt_error(), "boxes"), "F32 boxes: %s",
       vt_error());
    f.tensors[1].dtype = VT_I32;
    static const char *const bad_grids[] = {
        "3x4", "3,4junk", "3junk,4", "3,4,5", "3,", ",4", "3", "", "0,4", "3,-4",
        "99999999999999999999,4", "3,99999999999999999999", "32769,1",
    };
    for (size_t i = 0; i < sizeof bad_grids / sizeof *bad_grids; i++) {
        vt_frame_set_meta(&f, "grid", bad_grids[i]);
        ok(vt_tokens_from_frame(&f, &u) < 0 && strstr(vt_error(), "grid"), "bad grid '%s': %s",
           bad_grids[i], vt_error());
    }
    vt_frame_set_meta(&f, "grid", "3,4");
    ok(vt_tokens_from_frame(&f, &u) == 0 && u.grid_h == 3 && u.grid_w == 4, "grid 3,4 reads");
    vt_frame_free(&f);
    vt_tokens_free(&t);
    vt_tokens_free(&u);
}

/* Every split point of a fixture model: until L, then continue; logits
 * must equal the uninterrupted forward bit for bit. */
static void exact_splits(const char *name, int threads)
{
    char path[1100], dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/vit", root);
    snprintf(path, sizeof path, "%s/%s-input.npy", dir, name);
    vt_tensor in;
    memset(&in, 0, sizeof in);
    if (vt_npy_load(path, &in) < 0) {
        ok(0, "load %s: %s", path, vt_error());
        return;
    }
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    int B = (int)in.shape[0];
    for (int batch = 1; batch <= B; batch += B - 1) {
        vt_run_opts o = {threads, batch};
        vt_model m;
        if (vt_model_open(path, &o, &m) < 0) {
            ok(0, "open %s: %s", path, vt_error());
            break;
        }
        int C = m.num_classes, depth = vt_cfg_int(m.config, "depth", 0);
        size_t img = (size_t)vt_tensor_numel(&in) / B;
        float *want = malloc(sizeof(float) * B * C), *got = malloc(sizeof(float) * B * C);
        vt_tokens *tk = calloc((size_t)batch, sizeof *tk), *tk2 = calloc((size_t)batch, sizeof *tk2);
        for (int i = 0; i < B; i += batch)
            vt_model_forward(&m, (float *)in.data + i * img, batch, want + (size_t)i * C);
        for (int L = 0; L < depth; L++) {
            int rc = 0;
            for (int i = 0; i < B && rc == 0; i += batch) {
                rc = vt_model_run_until(&m, (float *)in.data + i * img, batch, L, tk);
                if (rc == 0)
                    rc = vt_model_run_from(&m, tk, batch, -1, NULL, got + (size_t)i * C);
            }
            ok(rc == 0 && memcmp(want, got, sizeof(float) * B * C) == 0,
               "%s: until block %d, continue: logits bit-identical (batch %d, %d threads) %s",
               name, L, batch, threads, rc ? vt_error() : "");
            int g = (int)in.shape[2] / 8;   /* both fixtures have 8x8 patches */
            ok(tk[0].grid_h == g && tk[0].grid_w == g && tk[0].n == g * g && tk[0].block == L &&
                   tk[0].cls && vt_tokens_is_full_grid(&tk[0]),
               "%s: tokens after block %d: %d + %d extra on the %dx%d grid", name, L, tk[0].n,
               tk[0].extra, tk[0].grid_h, tk[0].grid_w);
        }
        /* until 0, then on to the last block, then the head alone */
        int rc = 0;
        for (int i = 0; i < B && rc == 0; i += batch) {
            rc = vt_model_run_until(&m, (float *)in.data + i * img, batch, 0, tk);
            if (rc == 0) rc = vt_model_run_from(&m, tk, batch, depth - 1, tk2, NULL);
            if (rc == 0) rc = vt_model_run_from(&m, tk2, batch, -1, NULL, got + (size_t)i * C);
        }
        ok(rc == 0 && memcmp(want, got, sizeof(float) * B * C) == 0,
           "%s: 0 -> %d -> head in three runs: bit-identical %s", name, depth - 1,
           rc ? vt_error() : "");
        /* refusals */
        ok(vt_model_split_point(&m, depth) < 0 && strstr(vt_error(), "blocks 0 to"),
           "until block %d refused: %s", depth, vt_error());
        ok(vt_model_run_from(&m, tk2, batch, depth - 1, tk, NULL) < 0 &&
           strstr(vt_error(), "already after"), "stopping where the tokens are: %s",
           vt_error());
        tk2[0].dim--;
        ok(vt_model_run_from(&m, tk2, batch, -1, NULL, got) < 0 && strstr(vt_error(), "channels"),
           "wrong width: %s", vt_error());
        tk2[0].dim++;
        tk2[0].grid_w++;
        ok(vt_model_run_from(&m, tk2, batch, -1, NULL, got) < 0 && strstr(vt_error(), "grid"),
           "wrong grid: %s", vt_error());
        tk2[0].grid_w--;
        for (int b = 0; b < batch; b++) {
            vt_tokens_free(&tk[b]);
            vt_tokens_free(&tk2[b]);
        }
        free(tk);
        free(tk2);
        free(want);
        free(got);
        vt_model_close(&m);
    }
    vt_tensor_free(&in);
}

/* Fewer tokens: the continuation runs on any count from 1 to the grid's
 * (tests/bats/prune.bats checks pruned logits against PyTorch). */
static void subsets(void)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/tests/fixtures/vit/tiny.safetensors", root);
    vt_run_opts o = {1, 1};
    vt_model m;
    if (vt_model_open(path, &o, &m) < 0) {
        ok(0, "open: %s", vt_error());
        return;
    }
    int S = m.img_size;
    float *x = malloc(sizeof(float) * 3 * S * S), logits[10], again[10];
    for (int i = 0; i < 3 * S * S; i++) x[i] = (float)cos(i * 0.37);
    vt_tokens t = {0}, keep = {0};
    vt_model_run_until(&m, x, 1, 0, &t);
    for (int n = 1; n <= t.n; n += 5) {
        vt_tokens_copy(&keep, &t);
        keep.n = n;         /* the first n rows */
        int rc = vt_model_run_from(&m, &keep, 1, -1, NULL, logits);
        int rc2 = vt_model_run_from(&m, &keep, 1, -1, NULL, again);
        int finite = 1;
        for (int c = 0; c < 10; c++) finite &= isfinite(logits[c]);
        ok(rc == 0 && rc2 == 0 && finite && !memcmp(logits, again, sizeof logits),
           "continue %d of %d tokens: finite, repeatable", n, t.n);
    }
    vt_tokens_free(&t);
    vt_tokens_free(&keep);
    free(x);
    vt_model_close(&m);
}

int main(void)
{
    const char *r = getenv("VT_ROOT");
    snprintf(root, sizeof root, "%s", r && *r ? r : ".");
    frames();
    for (int threads = 1; threads <= 2; threads++) {
        exact_splits("tiny", threads);
        exact_splits("dist", threads);
    }
    subsets();
    return tap_done();
}
