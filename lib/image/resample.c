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

/* Weights of one axis: output o0 + i reads `count[i]` inputs from first[i]
 * with fixed-point weights k[i*ksize ...]. Only the n outputs of a window
 * are computed; each output's weights depend on its own index alone, so a
 * window is bit-identical to the same outputs of the whole axis. */
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

static void axis_init(axis *a, int in, int out, int o0, int n, vt_interp interp)
{
    double (*filter)(double) = interp == VT_INTERP_BICUBIC ? cubic : triangle;
    double support = interp == VT_INTERP_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in / out;
    double fscale = scale < 1.0 ? 1.0 : scale;
    support *= fscale;
    a->ksize = (int)ceil(support) * 2 + 1;
    a->first = vt_xmalloc(sizeof(int) * n);
    a->count = vt_xmalloc(sizeof(int) * n);
    a->k = vt_xcalloc((size_t)n * a->ksize, sizeof(int32_t));
    double inv = 1.0 / fscale;   /* PIL multiplies by the reciprocal */
    double *w = vt_xmalloc(sizeof(double) * a->ksize);
    for (int i = 0; i < n; i++) {
        double center = (o0 + i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        int cnt = hi - lo;
        double sum = 0.0;
        for (int t = 0; t < cnt; t++) {
            w[t] = filter((t + lo - center + 0.5) * inv);
            sum += w[t];
        }
        for (int t = 0; t < cnt; t++) {
            if (sum != 0.0) w[t] /= sum;
            a->k[(size_t)i * a->ksize + t] = to_fixed(w[t]);
        }
        a->first[i] = lo;
        a->count[i] = cnt;
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

/* The window [x0, x0+dst->w) x [y0, y0+dst->h) of src resized to w x h. */
static void resize_convolve(const vt_image *src, int w, int h, int x0, int y0,
                            vt_image *dst, vt_interp interp)
{
    int cw = dst->w, ch = dst->h;
    axis ax = {0}, ay = {0};
    int need_h = w != src->w, need_v = h != src->h;
    /* the source rows the window's vertical pass reads */
    int r0 = y0, r1 = y0 + ch;
    if (need_v) {
        axis_init(&ay, src->h, h, y0, ch, interp);
        r0 = ay.first[0];
        r1 = ay.first[ch - 1] + ay.count[ch - 1];
    }
    uint8_t *rows = need_v ? vt_xmalloc((size_t)cw * (r1 - r0) * 3) : dst->rgb;
    if (need_h) {
        axis_init(&ax, src->w, w, x0, cw, interp);
        horizontal_pass(src->rgb, src->w, r0, r1 - r0, &ax, cw, rows);
    } else {
        for (int y = r0; y < r1; y++)
            memcpy(rows + (size_t)(y - r0) * cw * 3, src->rgb + ((size_t)y * src->w + x0) * 3,
                   (size_t)cw * 3);
    }
    if (need_v) {
        vertical_pass(rows, cw, r0, &ay, ch, dst->rgb);
        free(rows);
    }
    axis_free(&ax);
    axis_free(&ay);
}

/* PIL's source coordinates for nearest: accumulated in double from output
 * 0, so a window starting at o0 walks there first to round the same. */
static int *nearest_coords(int in, int out, int o0, int n)
{
    int *c = vt_xmalloc(sizeof(int) * n);
    double s = (double)in / out, o = s * 0.5;
    for (int i = 0; i < o0; i++) o += s;
    for (int i = 0; i < n; i++, o += s)
        c[i] = o < 0.0 ? -1 : (int)o;
    return c;
}

static void resize_nearest(const vt_image *src, int w, int h, int x0, int y0, vt_image *dst)
{
    int *xs = nearest_coords(src->w, w, x0, dst->w), *ys = nearest_coords(src->h, h, y0, dst->h);
    for (int y = 0; y < dst->h; y++) {
        uint8_t *out = dst->rgb + (size_t)y * dst->w * 3;
        for (int x = 0; x < dst->w; x++, out += 3) {
            if (ys[y] < 0 || ys[y] >= src->h || xs[x] < 0 || xs[x] >= src->w)
                memset(out, 0, 3);   /* PIL fills what maps outside */
            else
                memcpy(out, src->rgb + ((size_t)ys[y] * src->w + xs[x]) * 3, 3);
        }
    }
    free(xs);
    free(ys);
}

int vt_image_resize_window(const vt_image *src, int w, int h, int x0, int y0, int cw,
                           int ch, vt_interp interp, vt_image *dst)
{
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (!src->rgb || src->w < 1 || src->h < 1)
        return vt_seterr("resize of an empty image");
    if (w < 1 || h < 1)
        return vt_seterr("resize to %dx%d: width and height must be positive", w, h);
    if (w > (1 << 28) || h > (1 << 28))
        return vt_seterr("resize to %dx%d is too large", w, h);
    if (x0 < 0 || y0 < 0 || cw < 1 || ch < 1 || cw > w - x0 || ch > h - y0)
        return vt_seterr("resize window %dx%d at %d,%d is outside %dx%d", cw, ch, x0, y0, w, h);
    size_t n;
    if (vt_mul_size((size_t)cw, (size_t)ch, &n) || vt_mul_size(n, 3, &n))
        return vt_seterr("resize to %dx%d is too large", cw, ch);
    if (interp != VT_INTERP_BICUBIC && interp != VT_INTERP_BILINEAR &&
        interp != VT_INTERP_NEAREST)
        return vt_seterr("unknown interpolation");
    dst->w = cw;
    dst->h = ch;
    dst->rgb = vt_xmalloc(n);
    if (interp == VT_INTERP_NEAREST && (w != src->w || h != src->h))
        resize_nearest(src, w, h, x0, y0, dst);
    else
        resize_convolve(src, w, h, x0, y0, dst, interp);
    return 0;
}

int vt_image_resize(const vt_image *src, int w, int h, vt_interp interp,
                    vt_image *dst)
{
    return vt_image_resize_window(src, w, h, 0, 0, w, h, interp, dst);
}
