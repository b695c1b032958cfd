/* render.c - frames as RGB pictures. */
#include "render.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

vt_tensor *vt_main_tensor(const vt_frame *f)
{
    const char *kind = vt_frame_meta(f, "kind");
    vt_tensor *t = kind ? vt_frame_get(f, kind) : NULL;
    return t ? t : (f->ntensors ? &f->tensors[0] : NULL);
}

void vt_upsample_bilinear(const float *src, int h, int w, float *dst, int oh, int ow)
{
    for (int y = 0; y < oh; y++) {
        float sy = ((float)y + 0.5f) * h / oh - 0.5f;
        if (sy < 0) sy = 0;
        int y0 = (int)sy, y1 = y0 + 1 < h ? y0 + 1 : y0;
        float fy = sy - y0;
        for (int x = 0; x < ow; x++) {
            float sx = ((float)x + 0.5f) * w / ow - 0.5f;
            if (sx < 0) sx = 0;
            int x0 = (int)sx, x1 = x0 + 1 < w ? x0 + 1 : x0;
            float fx = sx - x0;
            float top = src[y0 * w + x0] * (1 - fx) + src[y0 * w + x1] * fx;
            float bot = src[y1 * w + x0] * (1 - fx) + src[y1 * w + x1] * fx;
            dst[y * ow + x] = top * (1 - fy) + bot * fy;
        }
    }
}

static uint8_t clamp8(double v)
{
    v = floor(v + 0.5);
    if (!(v > 0)) return 0;   /* NaN too: a hostile frame's pixels are black */
    return v > 255 ? 255 : (uint8_t)v;
}

static int render_image(const vt_frame *f, const vt_tensor *t, vt_image *out)
{
    vt_preproc p;
    vt_preproc_default(&p);
    const char *mean = vt_frame_meta(f, "mean"), *std = vt_frame_meta(f, "std");
    if (mean && vt_parse_floats(mean, 3, p.mean) < 0) return vt_seterr("bad mean metadata");
    if (std && vt_parse_floats(std, 3, p.std) < 0) return vt_seterr("bad std metadata");
    int h = (int)t->shape[1], w = (int)t->shape[2];
    out->w = w;
    out->h = h;
    out->rgb = vt_xmalloc((size_t)w * h * 3);
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < (size_t)w * h; i++) {
            double v = vt_tensor_get(t, c * (size_t)w * h + i);
            out->rgb[i * 3 + c] = clamp8((v * p.std[c] + p.mean[c]) * 255.0);
        }
    return 0;
}

/* The map's values as floats, and lo, hi: the "range" metadata, else the
 * values' min and max. */
static float *map_values(const vt_frame *f, const vt_tensor *t, float *lo, float *hi)
{
    size_t n = (size_t)t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
    float *v = vt_xmalloc(n * sizeof *v);
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        v[i] = (float)vt_tensor_get(t, i);
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
    const char *range = vt_frame_meta(f, "range");
    float r[2];
    if (range && vt_parse_floats(range, 2, r) == 0) { *lo = r[0]; *hi = r[1]; }
    return v;
}

/* Output side: the "size" metadata, else the map's own h x w. */
static void out_size(const vt_frame *f, int h, int w, int *oh, int *ow)
{
    long size = 0;
    const char *s = vt_frame_meta(f, "size");
    *oh = h, *ow = w;
    /* at most the largest crop vt-convert makes (--size 8192): a 100-byte
     * frame must not ask for a gigabyte picture */
    if (s && vt_parse_int(s, 1, 8192, &size) == 0) *oh = *ow = (int)size;
}

static int render_map(const vt_frame *f, const vt_tensor *t, vt_image *out)
{
    int h = (int)t->shape[t->ndim - 2], w = (int)t->shape[t->ndim - 1], oh, ow;
    float lo, hi;
    float *v = map_values(f, t, &lo, &hi);
    out_size(f, h, w, &oh, &ow);
    float *up = v;
    if (oh != h || ow != w) {
        up = vt_xmalloc((size_t)oh * ow * sizeof *up);
        vt_upsample_bilinear(v, h, w, up, oh, ow);
    }
    out->w = ow;
    out->h = oh;
    out->rgb = vt_xmalloc((size_t)ow * oh * 3);
    float scale = hi > lo ? 1.0f / (hi - lo) : 0.0f;
    for (size_t i = 0; i < (size_t)ow * oh; i++) {
        float x = isfinite(up[i]) ? (up[i] - lo) * scale : 0.0f;
        vt_colormap(x < 0 ? 0 : x > 1 ? 1 : x, out->rgb + i * 3);
    }
    if (up != v) free(up);
    free(v);
    return 0;
}

/* An integer [H,W] tensor called "labels": a label map. */
static int is_labels(const vt_tensor *t)
{
    return t && strcmp(t->name, "labels") == 0 && t->ndim == 2 && t->shape[0] > 0 &&
           t->shape[1] > 0 && t->shape[0] <= 16384 && t->shape[1] <= 16384 &&
           (t->dtype == VT_I32 || t->dtype == VT_I64 || t->dtype == VT_I16 ||
            t->dtype == VT_I8 || t->dtype == VT_U8);
}

/* Labels [H,W] in the categorical palette, each token a block of pixels
 * (nearest: pixel (y, x) shows token (y*H/oh, x*W/ow)), scaled to the
 * "size" metadata. With a weight map wt of the same shape, each colour is
 * multiplied by 0.25 + 0.75 * clamp((wt - lo) / (hi - lo), 0, 1), in
 * double, rounded half up. */
static int render_labels(const vt_frame *f, const vt_tensor *lab, const vt_tensor *wt,
                         vt_image *out)
{
    int h = (int)lab->shape[0], w = (int)lab->shape[1], oh, ow;
    float lo = 0, hi = 0;
    float *v = wt ? map_values(f, wt, &lo, &hi) : NULL;
    out_size(f, h, w, &oh, &ow);
    out->w = ow;
    out->h = oh;
    out->rgb = vt_xmalloc((size_t)ow * oh * 3);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            size_t tok = (size_t)((int64_t)y * h / oh) * w + (size_t)((int64_t)x * w / ow);
            uint8_t *px = out->rgb + ((size_t)y * ow + x) * 3;
            /* labels come from a frame: a value no long holds draws as label 0 */
            double label = vt_tensor_get(lab, tok);
            vt_palette(isfinite(label) && fabs(label) < 1e15 ? (long)label : 0, px);
            if (!v) continue;
            double a = hi > lo && isfinite(v[tok]) ? ((double)v[tok] - lo) / ((double)hi - lo) : 0;
            double k = 0.25 + 0.75 * (a < 0 ? 0 : a > 1 ? 1 : a);
            for (int c = 0; c < 3; c++)
                px[c] = clamp8(px[c] * k);
        }
    free(v);
    return 0;
}

int vt_render(const vt_frame *f, const char *name, vt_image *out)
{
    const vt_tensor *t = name ? vt_frame_get(f, name) : vt_main_tensor(f);
    if (!t) return vt_seterr(name ? "frame has no tensor '%s'" : "frame has no tensors", name);
    memset(out, 0, sizeof *out);
    if (t->dtype == VT_BOOL) return vt_seterr("cannot draw a BOOL tensor");
    if (is_labels(t))
        return render_labels(f, t, NULL, out);
    const vt_tensor *lab = vt_frame_get(f, "labels");
    if (!name && t->ndim == 2 && is_labels(lab) && lab->shape[0] == t->shape[0] &&
        lab->shape[1] == t->shape[1])
        return render_labels(f, lab, t, out);
    if (t->ndim == 3 && t->shape[0] == 3 && t->shape[1] > 0 && t->shape[2] > 0)
        return render_image(f, t, out);
    int maplike = t->ndim == 2 || (t->ndim == 3 && t->shape[0] == 1);
    if (maplike && t->shape[t->ndim - 1] > 0 && t->shape[t->ndim - 2] > 0 &&
        t->shape[t->ndim - 1] <= 16384 && t->shape[t->ndim - 2] <= 16384)
        return render_map(f, t, out);
    char buf[96];
    return vt_seterr("cannot draw a tensor of shape %s (need [3,H,W] or [H,W])",
                     vt_shape_str(t, buf, sizeof buf));
}

char *vt_png_path(const char *dir, const char *name)
{
    char *stem = vt_stem(name), *hash = strchr(name, '#');
    if (hash) {
        char *dot = strrchr(stem, '.');
        char *s2 = vt_stem(stem);
        if (dot) { free(stem); stem = s2; } else free(s2);
    }
    size_t n = strlen(dir) + strlen(stem) + (hash ? strlen(hash) : 0) + 8;
    char *p = vt_xmalloc(n);
    snprintf(p, n, "%s/%s%s.png", dir, stem, hash ? hash : "");
    for (char *q = p + strlen(dir) + 1; *q; q++)
        if (*q == '#') *q = '-';
    free(stem);
    return p;
}
