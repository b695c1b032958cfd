/* fuzz_frames.c - libFuzzer harness: frame streams as the tools read them
 * from pipes (vt_frame_read over a FILE), the in-memory parser, drawing a
 * frame (vt-convert --to png), and a write-back check: every frame that
 * reads must write out and read back identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "frame.h"
#include "input.h"
#include "render.h"

static volatile double sink;   /* keeps the reads */

static void same_or_die(const vt_frame *a, const vt_frame *b)
{
    if (a->ntensors != b->ntensors || a->nmeta != b->nmeta) abort();
    for (int i = 0; i < a->nmeta; i++)
        if (strcmp(a->meta_key[i], b->meta_key[i]) || strcmp(a->meta_val[i], b->meta_val[i]))
            abort();
    for (int i = 0; i < a->ntensors; i++) {
        const vt_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim ||
            memcmp(x->shape, y->shape, x->ndim * sizeof *x->shape) || x->nbytes != y->nbytes ||
            (x->nbytes && memcmp(x->data, y->data, x->nbytes)))
            abort();
    }
}

static void write_back(const vt_frame *f)
{
    char *buf = NULL;
    size_t len = 0, used = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m || vt_frame_write(m, f) < 0 || fclose(m) != 0) abort();
    vt_frame g;
    if (vt_frame_parse((const uint8_t *)buf, len, &g, 0, &used) < 0 || used != len) abort();
    same_or_die(f, &g);
    vt_frame_free(&g);
    free(buf);
}

/* What --info and --to png do with a frame. */
static void look_at(const vt_frame *f)
{
    char shape[128];
    for (int i = 0; i < f->ntensors; i++) {
        const vt_tensor *t = &f->tensors[i];
        vt_shape_str(t, shape, sizeof shape);
        size_t n = (size_t)vt_tensor_numel(t);
        for (size_t k = 0; k < n && k < 4096; k++) sink += vt_tensor_get(t, k);
    }
    vt_image img;
    if (vt_render(f, NULL, &img) == 0) vt_image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_input_sniff(data, size);
    if (size == 0) return 0;
    FILE *in = fmemopen((void *)data, size, "rb");
    if (!in) return 0;
    vt_frame f;
    for (int n = 0; n < 64 && vt_frame_read(in, &f) == 1; n++) {
        write_back(&f);
        look_at(&f);
        vt_frame_free(&f);
    }
    fclose(in);
    size_t off = 0, used;
    while (off < size && vt_frame_parse(data + off, size - off, &f, size & 1, &used) == 0) {
        vt_frame_free(&f);
        off += used;
    }
    return 0;
}
