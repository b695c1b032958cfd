/* resample.c - PIL's Image.resize on RGB8, bit for bit (Pillow 9.4).
 *
 * BILINEAR and BICUBIC are separable convolutions: the kernel is stretched
 * by the downscale factor (antialiasing), each output sample's weights are
 * normalized to sum 1, then turned into 22-bit fixed point. The horizontal
 * pass runs first over just the source rows the vertical pass will use,
 * rounds to uint8, then the vertical pass runs. A pass whose size does not
 * change is skipped. NEAREST is PIL's affine scale: the source coordinate
 * of output column x is (int)(scale/2 + x*scale), accumulated in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"
#include "util.h"

#define PRECISION_BITS (32 - 8 - 2)   /* 22: room for overshoot and sign */

int vt_interp_from_name(const char *s)
{
    if (!s) return -1;
    if (!strcmp(s, "bicubic")) return VT_INTERP_BICUBIC;
    if (!strcmp(s, "bilinear")) return VT_INTERP_BILINEAR;
    if (!strcmp(s, "nearest")) return VT_INTERP_NEAREST;
    return -1;
}

const char *vt_interp_name(vt_interp i)
{
    switch (i) {
    case VT_INTERP_BICUBIC: return "bicubic";
    case VT_INTERP_BILINEAR: return "bilinear";
    case VT_INTERP_NEAREST: return "nearest";
    }
    return "?";
}

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Keys' cubic convolution with a = -0.5, in Horner form. */
static double cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Weights of one axis: output i reads `count[i]` inputs from first[i]
 * with fixed-point weights k[i*ksize ...]. */
typedef struct axis {
    int ksize;
    int *first, *count;
    int32_t *k;
} axis;

static void axis_free(axis *a)
{
    free(a->first);
    free(a->count);
    free(a->k);
}

static int32_t to_fixed(double w)
{
    double s = w * (1 << PRECISION_BITS);
    return (int32_t)(w < 0 ? s - 0.5 : s + 0.5);
}

static void axis_init(axis *a, int in, int out, vt_interp interp)
{
    double (*filter)(double) = interp == VT_INTERP_BICUBIC ? cubic : triangle;
    double support = interp == VT_INTERP_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in / out;
    double fscale = scale < 1.0 ? 1.0 : scale;
    support *= fscale;
    a->ksize = (int)ceil(support) * 2 + 1;
    a->first = vt_xmalloc(sizeof(int) * out);
    a->count = vt_xmalloc(sizeof(int) * out);
    a->k = vt_xcalloc((size_t)out * a->ksize, sizeof(int32_t));
    double inv = 1.0 / fscale;   /* PIL multiplies by the reciprocal */
    double *w = vt_xmalloc(sizeof(double) * a->ksize);
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int n = hi - lo;
        double sum = 0.0;
        for (int t = 0; t < n; t++) {
            w[t] = filter((t + lo - center + 0.5) * inv);
            sum += w[t];
        }
        for (int t = 0; t < n; t++) {
            if (sum != 0.0) w[t] /= sum;
            a->k[(size_t)i * a->ksize + t] = to_fixed(w[t]);
        }
        a->first[i] = lo;
        a->count[i] = n;
    }
    free(w);
}

/* PIL's clip8: the sum carries a rounding half already. */
static uint8_t clip8(int32_t v)
{
    if (v < 0) return 0;
    v >>= PRECISION_BITS;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* src rows [y0, y0+nrows) of width sw -> dst nrows x a->out(width dw). */
static void horizontal_pass(const uint8_t *src, int sw, int y0, int nrows,
                            const axis *a, int dw, uint8_t *dst)
{
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = src + (size_t)(y0 + y) * sw * 3;
        uint8_t *out = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++, out += 3) {
            const int32_t *k = a->k + (size_t)x * a->ksize;
            const uint8_t *p = row + (size_t)a->first[x] * 3;
            int32_t r = 1 << (PRECISION_BITS - 1), g = r, b = r;
            for (int t = 0; t < a->count[x]; t++, p += 3) {
                r += p[0] * k[t];
                g += p[1] * k[t];
                b += p[2] * k[t];
            }
            out[0] = clip8(r), out[1] = clip8(g), out[2] = clip8(b);
        }
    }
}

/* src (rows counted from the first row the axis uses, `shift`) of width w
 * -> dst dh rows. Accumulates whole rows so the inner loop vectorizes. */
static void vertical_pass(const uint8_t *src, int w, int shift, const axis *a,
                          int dh, uint8_t *dst)
{
    size_t n = (size_t)w * 3;
    int32_t *acc = vt_xmalloc(n * sizeof *acc);
    for (int y = 0; y < dh; y++) {
        const int32_t *k = a->k + (size_t)y * a->ksize;
        for (size_t i = 0; i < n; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < a->count[y]; t++) {
            const uint8_t *row = src + (size_t)(a->first[y] - shift + t) * n;
            int32_t kt = k[t];
            for (size_t i = 0; i < n; i++) acc[i] += row[i] * kt;
        }
        uint8_t *out = dst + (size_t)y * n;
        for (size_t i = 0; i < n; i++) out[i] = clip8(acc[i]);
    }
    free(acc);
}

static void resize_convolve(const vt_image *src, vt_image *dst, vt_interp interp)
{
    int w = dst->w, h = dst->h;
    axis ax = {0}, ay = {0};
    int need_h = w != src->w, need_v = h != src->h;
    const uint8_t *cur = src->rgb;
    uint8_t *tmp = NULL;
    int cur_w = src->w, shift = 0;
    if (need_v) axis_init(&ay, src->h, h, interp);
    if (need_h) {
        axis_init(&ax, src->w, w, interp);
        /* only the source rows the vertical pass reads */
        int y0 = 0, y1 = src->h;
        if (need_v) {
            y0 = ay.first[0];
            y1 = ay.first[h - 1] + ay.count[h - 1];
        }
        uint8_t *out = need_v ? (tmp = vt_xmalloc((size_t)w * (y1 - y0) * 3)) : dst->rgb;
        horizontal_pass(src->rgb, src->w, y0, y1 - y0, &ax, w, out);
        cur = out;
        cur_w = w;
        shift = y0;
    }
    if (need_v)
        vertical_pass(cur, cur_w, shift, &ay, h, dst->rgb);
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
}

static void resize_nearest(const vt_image *src, vt_image *dst)
{
    int w = dst->w, h = dst->h;
    int *xs = vt_xmalloc(sizeof(int) * w);
    double sx = (double)src->w / w, sy = (double)src->h / h;
    double xo = sx * 0.5, yo = sy * 0.5;
    for (int x = 0; x < w; x++, xo += sx)
        xs[x] = xo < 0.0 ? -1 : (int)xo;
    for (int y = 0; y < h; y++, yo += sy) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *out = dst->rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, out += 3) {
            if (yi < 0 || yi >= src->h || xs[x] < 0 || xs[x] >= src->w)
                memset(out, 0, 3);   /* PIL fills what maps outside */
            else
                memcpy(out, src->rgb + ((size_t)yi * src->w + xs[x]) * 3, 3);
        }
    }
    free(xs);
}

int vt_image_resize(const vt_image *src, int w, int h, vt_interp interp,
                    vt_image *dst)
{
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (!src->rgb || src->w < 1 || src->h < 1)
        return vt_seterr("resize of an empty image");
    if (w < 1 || h < 1)
        return vt_seterr("resize to %dx%d: width and height must be positive", w, h);
    size_t n;
    if (vt_mul_size((size_t)w, (size_t)h, &n) || vt_mul_size(n, 3, &n) ||
        w > (1 << 28) || h > (1 << 28))
        return vt_seterr("resize to %dx%d is too large", w, h);
    if (interp != VT_INTERP_BICUBIC && interp != VT_INTERP_BILINEAR &&
        interp != VT_INTERP_NEAREST)
        return vt_seterr("unknown interpolation");
    dst->w = w;
    dst->h = h;
    dst->rgb = vt_xmalloc(n);
    if (w == src->w && h == src->h)
        memcpy(dst->rgb, src->rgb, n);
    else if (interp == VT_INTERP_NEAREST)
        resize_nearest(src, dst);
    else
        resize_convolve(src, dst, interp);
    return 0;
}
