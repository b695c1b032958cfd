/* test_model.c - binding weights: in place, copied when misaligned,
 * widened from F16/BF16, and refused with the family's name when missing,
 * of another dtype or mis-sized; read once through a transient copy and
 * packed again in BF16 after a reordering; config arrays of the wrong length refused
 * without writing past a buffer. */
#include "model.h"
#include "ops.h"
#include "util.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static void test_cfg_ints(void)
{
    cJSON *cfg = cJSON_Parse("{\"four\":[1,2,3,4],\"five\":[1,2,3,4,5],\"bad\":[1,\"x\"]}");
    int out[5] = {0, 0, 0, 0, -7};
    ok(vt_cfg_ints(cfg, "four", out, 4) == 4 && out[3] == 4, "four ints read");
    ok(vt_cfg_ints(cfg, "five", out, 4) == 5 && out[4] == -7,
       "a longer array gives its length and fills only max");
    ok(vt_cfg_ints(cfg, "bad", out, 4) == -1, "a non-number refused");
    ok(vt_cfg_ints(cfg, "none", out, 4) == 0, "absent is 0");
    cJSON_Delete(cfg);
}

/* Stage lists one too long, for every family that reads them (the fuzzer
 * found pale and sgformer writing the fifth value past a 4-int array). */
static void test_stage_lists(void)
{
    static const char *const cases[][2] = {
        {"pale_tiny", "{\"embed_dims\":[64,128,256,512,1024]}"},
        {"pale_tiny", "{\"attn_map_block\":[1,1,1]}"},
        {"sgformer_s", "{\"depths\":[1,1,1,1,1]}"},
        {"groupmixformer_m", "{\"serial_depths\":[1,1,1,1,1]}"},
        {"swin_tiny_patch4_window7_224", "{\"depths\":[2,2,2,2,2]}"},
        {"stvit_r_swin_t", "{\"num_heads\":[2,2,2,2,2]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *over = cJSON_Parse(cases[i][1]);
        cJSON *cfg = vt_config_make(cases[i][0], over);
        vt_params ps = {0};
        const vt_family *fam = vt_family_find(cases[i][0]);
        int rc = cfg ? fam->params(cfg, &ps) : -1;
        ok(rc < 0, "%s %s refused: %s", cases[i][0], cases[i][1], vt_error());
        vt_params_free(&ps);
        cJSON_Delete(cfg);
        cJSON_Delete(over);
    }
}

/* vt_weight_read: in place, a transient copy (misaligned, widened) or
 * refused; vt_wpack_take_as: a reordered BF16 weight packed as BF16. */
static void test_read_once(vt_frame *f)
{
    float *tmp = (float *)1;
    int bf16 = -1;
    const float *a = vt_weight_read(f, "fam", "a", 6, &tmp, &bf16);
    ok(a && tmp == NULL && bf16 == 0 && a[5] == 6, "read once: aligned F32 in place");
    const float *m = vt_weight_read(f, "fam", "m", 6, &tmp, &bf16);
    ok(m && m == tmp && bf16 == 0 && m[0] == 1 && m[5] == 6, "read once: misaligned F32 copied");
    free(tmp);
    ok(!vt_weight_read(f, "fam", "x", 6, &tmp, NULL) && tmp == NULL &&
       strcmp(vt_error(), "fam: missing tensor x") == 0, "read once: missing: %s", vt_error());
    const float *w = vt_weight_read(f, "fam", "w", 6, &tmp, &bf16);
    ok(w && w == tmp && bf16 == 1 && w[0] == 0.5f && w[1] == -1.25f && w[5] == 1,
       "read once: BF16 widened into a copy to free");
    /* rows swapped, packed as BF16 again: y = x W'^T exactly */
    float *sw = vt_xmalloc(6 * sizeof *sw), x[3] = {1, 2, 3}, y[2] = {0, 0};
    memcpy(sw, w + 3, 3 * sizeof *sw);
    memcpy(sw + 3, w, 3 * sizeof *sw);
    free(tmp);
    vt_wpack pk;
    ok(vt_wpack_take_as(NULL, &pk, sw, 2, 3, 1) == 0 && pk.bf16 && !pk.raw,
       "a reordered BF16 weight is packed as BF16");
    vt_linear_packed(NULL, y, x, &pk, NULL, 1, 0, 0);
    ok(y[0] == 4.5f && y[1] == 4.0f, "its product: %g %g", y[0], y[1]);
    vt_wpack_free(&pk);
}

/* vt_weight_read with no dtype flag: in place when it can be, else a copy to free */
static void test_read_widen(const vt_frame *f, const float *aligned)
{
    float *tmp = (float *)1;
    const float *a = vt_weight_read(f, "fam", "a", 6, &tmp, NULL);
    ok(a == aligned && !tmp, "read: an aligned F32 tensor in place, nothing to free");
    const float *m = vt_weight_read(f, "fam", "m", 6, &tmp, NULL);
    ok(m && m == tmp && memcmp(m, aligned, 6 * sizeof *m) == 0, "read: a misaligned one copied");
    free(tmp);
    const float *h = vt_weight_read(f, "fam", "h", 6, &tmp, NULL);
    ok(h && h == tmp && h[0] == 1.5f && h[1] == -2.0f && h[5] == 0, "read: F16 widened");
    free(tmp);
    const float *b = vt_weight_read(f, "fam", "bh", 6, &tmp, NULL);
    ok(b && b == tmp && b[0] == 1.5f && b[1] == -2.0f && b[5] == 0, "read: BF16 widened");
    free(tmp);
    ok(!vt_weight_read(f, "fam", "i", 6, &tmp, NULL) && !tmp &&
       strstr(vt_error(), "fam: tensor i is I32"), "read: not a float: %s", vt_error());
}

int main(void)
{
    test_cfg_ints();
    test_stage_lists();
    float aligned[6] = {1, 2, 3, 4, 5, 6};
    uint8_t raw[4 * 6 + 2];
    memcpy(raw + 2, aligned, sizeof aligned);   /* float data at an odd address */
    int64_t shape[1] = {6};
    vt_frame f;
    vt_frame_init(&f);
    vt_frame_add_ref(&f, "a", VT_F32, 1, shape, aligned);
    vt_frame_add_ref(&f, "m", VT_F32, 1, shape, raw + 2);
    /* 1.5 and -2 in each half format, then zeros (filled before the next
     * add, which may move the tensor table) */
    memcpy(vt_frame_add(&f, "h", VT_F16, 1, shape)->data, (uint16_t[6]){0x3e00, 0xc000}, 12);
    memcpy(vt_frame_add(&f, "bh", VT_BF16, 1, shape)->data, (uint16_t[6]){0x3fc0, 0xc000}, 12);
    vt_frame_add(&f, "i", VT_I32, 1, shape);
    /* 0.5 -1.25 2 / 3 -0.75 1 in BF16 */
    memcpy(vt_frame_add(&f, "w", VT_BF16, 1, shape)->data,
           (uint16_t[6]){0x3f00, 0xbfa0, 0x4000, 0x4040, 0xbf40, 0x3f80}, 12);
    vt_store s = {0};

    const float *a = vt_weight_f32(&s, &f, "fam", "a", 6);
    ok(a && a != aligned && memcmp(a, aligned, sizeof aligned) == 0 && s.n == 1,
       "an aligned tensor is copied into the store (nothing reads the file after load)");
    const float *m = vt_weight_f32(&s, &f, "fam", "m", 6);
    ok(m && (uintptr_t)m % sizeof(float) == 0 && memcmp(m, aligned, sizeof aligned) == 0 && s.n == 2,
       "a misaligned tensor is copied into the store");
    ok(!vt_weight_f32(&s, &f, "fam", "x", 6) && strcmp(vt_error(), "fam: missing tensor x") == 0,
       "missing: %s", vt_error());
    const float *wh = vt_weight_f32(&s, &f, "fam", "h", 6), *wb = vt_weight_f32(&s, &f, "fam", "bh", 6);
    ok(wh && wh[0] == 1.5f && wh[1] == -2.0f && wh[5] == 0 && wb && wb[0] == 1.5f &&
       wb[1] == -2.0f && wb[5] == 0 && s.n == 4, "F16 and BF16 are widened into the store");
    ok(!vt_weight_f32(&s, &f, "fam", "i", 6) && strstr(vt_error(), "fam: tensor i is I32"),
       "not a float: %s", vt_error());
    ok(!vt_weight_f32(&s, &f, "fam", "a", 5) && strstr(vt_error(), "has 6 elements, expected 5"),
       "mis-sized: %s", vt_error());
    float *z = vt_store_alloc(&s, 4);
    ok(z[0] == 0 && z[3] == 0 && s.n == 5, "store buffers are zeroed");
    vt_store_free(&s);
    ok(s.n == 0 && s.buf == NULL, "store freed");
    test_read_once(&f);
    test_read_widen(&f, aligned);
    vt_frame_free(&f);
    return tap_done();
}
