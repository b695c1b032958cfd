/* input.c - images, .npy files and frame streams, all as frames. */
#include "input.h"
#include "model.h"
#include "npy.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_INPUT_FILE ((size_t)2 << 30)

vt_input_kind vt_input_sniff(const uint8_t *h, size_t n)
{
    /* Frames first: their first bytes are a header length, which can look
     * like another format's magic (640 = 80 02 .. reads as a pickle, 13648
     * = 50 35 .. as "P5"); a length in range followed by '{' is no image,
     * array, zip or pickle (none of them has '{' at byte 8). */
    if (n >= 9 && h[8] == '{') {
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = len << 8 | h[i];
        if (len >= 2 && len <= VT_MAX_HEADER) return VT_IN_FRAMES;
    }
    if (n >= 3 && h[0] == 0xff && h[1] == 0xd8 && h[2] == 0xff) return VT_IN_IMAGE;
    if (n >= 8 && memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0) return VT_IN_IMAGE;
    if (n >= 2 && h[0] == 'P' && (h[1] == '5' || h[1] == '6')) return VT_IN_IMAGE;
    if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0) return VT_IN_NPY;
    if (n >= 4 && memcmp(h, "PK\x03\x04", 4) == 0) return VT_IN_CHECKPOINT;
    if (n >= 2 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5) return VT_IN_CHECKPOINT;
    return VT_IN_UNKNOWN;
}

void vt_input_opts_default(vt_input_opts *o)
{
    vt_preproc_default(&o->pre);
    vt_decode_opts_default(&o->decode);
}

int vt_input_opts_for_model(vt_input_opts *o, const vt_model *m, long long max_pixels)
{
    vt_input_opts_default(o);
    o->pre = m->pre;
    o->decode.max_pixels = max_pixels;
    if (o->pre.size == m->img_size) return 0;
    o->pre.size = m->img_size;
    return 1;
}

void vt_preproc_to_meta(const vt_preproc *p, vt_frame *f)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%d", p->size);
    vt_frame_set_meta(f, "size", buf);
    snprintf(buf, sizeof buf, "%.17g", p->crop_pct);
    vt_frame_set_meta(f, "crop_pct", buf);
    vt_frame_set_meta(f, "interpolation", vt_interp_name(p->interp));
    snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", p->mean[0], p->mean[1], p->mean[2]);
    vt_frame_set_meta(f, "mean", buf);
    snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", p->std[0], p->std[1], p->std[2]);
    vt_frame_set_meta(f, "std", buf);
}

int vt_preproc_from_meta(const vt_frame *f, vt_preproc *p)
{
    const char *mean = vt_frame_meta(f, "mean"), *std = vt_frame_meta(f, "std");
    if (!mean || !std || vt_parse_floats(mean, 3, p->mean) < 0 ||
        vt_parse_floats(std, 3, p->std) < 0)
        return -1;
    return 0;
}

typedef struct named_ctx {
    vt_named_frame_fn fn;
    void *ctx;
    const char *path;
} named_ctx;

static int call_named(vt_frame *f, void *ctx)
{
    const named_ctx *nc = ctx;
    const char *name = vt_frame_meta(f, "name");
    return nc->fn(f, name && *name ? name : nc->path, nc->ctx);
}

int vt_input_each(const char *prog, char **paths, int n, const vt_input_opts *o,
                  vt_named_frame_fn fn, void *ctx, const int *stop)
{
    static char stdin_name[] = "-";
    char *stdin_only[] = {stdin_name};
    if (n <= 0) {
        paths = stdin_only;
        n = 1;
    }
    int failed = 0;
    for (int i = 0; i < n && !*stop; i++) {
        named_ctx nc = {fn, ctx, paths[i]};
        if (vt_input_frames(paths[i], o, call_named, &nc) < 0 && !*stop) {
            fprintf(stderr, "%s: %s: %s\n", prog, strcmp(paths[i], "-") ? paths[i] : "stdin",
                    vt_error());
            failed++;
        }
    }
    return failed;
}

const vt_tensor *vt_frame_image(const vt_frame *f, int S)
{
    const vt_tensor *t = vt_frame_get(f, "image");
    if (!t && f->ntensors == 1)
        t = &f->tensors[0];
    if (!t) {
        vt_seterr("frame has no image tensor");
        return NULL;
    }
    if (t->dtype != VT_F32) {
        vt_seterr("image tensor is %s, not F32", vt_dtype_name(t->dtype));
        return NULL;
    }
    int batched = t->ndim == 4 && t->shape[0] == 1;
    const int64_t *sh = t->shape + batched;
    if (t->ndim - batched != 3 || sh[0] != 3 || sh[1] != S || sh[2] != S) {
        char b[128];
        vt_seterr("image is %s; the model needs [3,%d,%d]", vt_shape_str(t, b, sizeof b), S, S);
        return NULL;
    }
    return t;
}

void vt_frame_image_normalized(const vt_frame *f, const vt_tensor *t, const vt_preproc *to,
                               int S, float *dst)
{
    size_t plane = (size_t)S * S;
    memcpy(dst, t->data, 3 * plane * sizeof *dst);
    vt_preproc fp = *to;
    if (vt_preproc_from_meta(f, &fp) < 0)
        return;
    for (int c = 0; c < 3; c++) {
        if (fp.mean[c] == to->mean[c] && fp.std[c] == to->std[c])
            continue;
        float *p = dst + c * plane;
        for (size_t i = 0; i < plane; i++)
            p[i] = (p[i] * fp.std[c] + fp.mean[c] - to->mean[c]) / to->std[c];
    }
}

int vt_image_frame(const vt_image *img, const vt_input_opts *o, const char *name,
                   vt_frame *f)
{
    vt_image crop;
    int geom[4];
    if (vt_preprocess_crop(img, &o->pre, &crop, geom) < 0) return -1;
    int64_t S = o->pre.size, shape[3] = {3, S, S};
    vt_frame_init(f);
    vt_tensor *t = vt_frame_add(f, "image", VT_F32, 3, shape);
    vt_image_normalize(&crop, &o->pre, t->data);
    vt_image_free(&crop);
    vt_frame_stamp(f, "image", name);
    char buf[64];
    snprintf(buf, sizeof buf, "%d", img->w);
    vt_frame_set_meta(f, "orig_width", buf);
    snprintf(buf, sizeof buf, "%d", img->h);
    vt_frame_set_meta(f, "orig_height", buf);
    snprintf(buf, sizeof buf, "%d,%d", geom[0], geom[1]);
    vt_frame_set_meta(f, "resized", buf);
    snprintf(buf, sizeof buf, "%d,%d,%d,%d", geom[2], geom[3], o->pre.size, o->pre.size);
    vt_frame_set_meta(f, "crop", buf);
    vt_preproc_to_meta(&o->pre, f);
    return 0;
}

/* Convert a tensor in place to F32 (image frames are always F32). */
static void to_f32(vt_tensor *t)
{
    if (t->dtype == VT_F32) return;
    size_t n = (size_t)vt_tensor_numel(t);
    float *d = vt_xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = (float)vt_tensor_get(t, i);
    if (t->owned) free(t->data);
    t->data = d;
    t->owned = 1;
    t->dtype = VT_F32;
    t->nbytes = n * sizeof *d;
}

static int npy_frames(const char *name, vt_tensor *a, vt_frame_fn fn, void *ctx)
{
    int img3 = a->ndim == 3 && a->shape[0] == 3;
    int img4 = a->ndim == 4 && a->shape[1] == 3;
    if (!img3 && !img4) {
        vt_frame *f = vt_xmalloc(sizeof *f);
        vt_frame_init(f);
        vt_tensor *t = vt_frame_add_ref(f, "tensor", a->dtype, a->ndim, a->shape, a->data);
        t->owned = 1;
        a->owned = 0;
        vt_frame_stamp(f, "tensor", name);
        return fn(f, ctx);
    }
    to_f32(a);
    int64_t B = img4 ? a->shape[0] : 1;
    const int64_t *shape = img4 ? a->shape + 1 : a->shape;
    size_t each = (size_t)(shape[0] * shape[1] * shape[2]) * sizeof(float);
    for (int64_t b = 0; b < B; b++) {
        char fname[4200];
        if (img4) snprintf(fname, sizeof fname, "%s#%lld", name, (long long)b);
        else snprintf(fname, sizeof fname, "%s", name);
        vt_frame *f = vt_xmalloc(sizeof *f);
        vt_frame_init(f);
        vt_tensor *t = vt_frame_add(f, "image", VT_F32, 3, shape);
        memcpy(t->data, (uint8_t *)a->data + b * each, each);
        vt_frame_stamp(f, "image", fname);
        if (fn(f, ctx) < 0) return -1;
    }
    return 0;
}

static int stream_frames(FILE *in, vt_frame_fn fn, void *ctx)
{
    for (;;) {
        vt_frame *f = vt_xmalloc(sizeof *f);
        int rc = vt_frame_read(in, f);
        if (rc <= 0) { free(f); return rc; }
        if (fn(f, ctx) < 0) return -1;
    }
}

int vt_input_frames(const char *path, const vt_input_opts *o, vt_frame_fn fn, void *ctx)
{
    if (strcmp(path, "-") == 0) return stream_frames(stdin, fn, ctx);
    FILE *in = fopen(path, "rb");
    if (!in) return vt_seterr("%s", strerror(errno));
    struct stat st;
    if (fstat(fileno(in), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(in);
        return vt_seterr("is a directory");
    }
    uint8_t head[16];
    size_t n = fread(head, 1, sizeof head, in);
    if (n == 0) {
        int err = ferror(in);
        fclose(in);
        return vt_seterr(err ? "read error" : "empty file");
    }
    vt_input_kind kind = vt_input_sniff(head, n);
    if (kind == VT_IN_FRAMES) {
        rewind(in);
        int rc = stream_frames(in, fn, ctx);
        fclose(in);
        return rc;
    }
    rewind(in);
    uint8_t *buf;
    size_t len;
    int rc = vt_read_stream(in, MAX_INPUT_FILE, &buf, &len);
    fclose(in);
    if (rc < 0) return -1;
    char *name = vt_basename(path);
    switch (kind) {
    case VT_IN_IMAGE: {
        vt_image img;
        rc = vt_image_decode(buf, len, &o->decode, &img);
        free(buf);
        buf = NULL;
        if (rc == 0) {
            vt_frame *f = vt_xmalloc(sizeof *f);
            rc = vt_image_frame(&img, o, name, f);
            vt_image_free(&img);
            if (rc == 0) rc = fn(f, ctx);
            else free(f);
        }
        break;
    }
    case VT_IN_NPY: {
        vt_tensor a;
        rc = vt_npy_parse(buf, len, &a);
        if (rc == 0) {
            rc = npy_frames(name, &a, fn, ctx);
            vt_tensor_free(&a);
        }
        break;
    }
    case VT_IN_CHECKPOINT:
        rc = vt_seterr("is a checkpoint; convert it with vt-convert --arch NAME");
        break;
    default:
        rc = vt_seterr("not an image (JPEG, PNG, PPM), .npy or frame file");
    }
    free(buf);
    free(name);
    return rc;
}
