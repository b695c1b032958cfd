/* resample.c - pooling and interpolation with PyTorch's semantics. */
#include <math.h>
#include <stdint.h>

#include "ops.h"

void vt_mean_rows(float *out, const float *x, int n, int c)
{
    for (int j = 0; j < c; j++)
        out[j] = 0;
    for (int i = 0; i < n; i++)
        vt_add(out, x + (size_t)i * c, (size_t)c);
    for (int j = 0; j < c; j++)
        out[j] /= (float)n;
}

void vt_avgpool2d(float *out, const float *x, int c, int h, int w, int k, int s)
{
    int ho = (h - k) / s + 1, wo = (w - k) / s + 1;
    for (int ci = 0; ci < c; ci++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float acc = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        acc += x[((size_t)ci * h + oy * s + ky) * w + ox * s + kx];
                out[((size_t)ci * ho + oy) * wo + ox] = acc / (float)(k * k);
            }
}

/* torch's area_pixel_compute_scale for a given output size */
static float px_scale(int in, int out, int align_corners)
{
    if (align_corners)
        return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    return (float)in / (float)out;
}

static float src_index(float scale, int dst, int align_corners, int cubic)
{
    if (align_corners)
        return scale * dst;
    float s = scale * ((float)dst + 0.5f) - 0.5f;
    return !cubic && s < 0 ? 0.0f : s;
}

void vt_interp_nearest(float *out, const float *x, int c, int h, int w,
                       int oh, int ow)
{
    float sy = (float)h / oh, sx = (float)w / ow;
    for (int ci = 0; ci < c; ci++)
        for (int oy = 0; oy < oh; oy++) {
            int iy = (int)floorf(oy * sy);
            iy = iy < h - 1 ? iy : h - 1;
            for (int ox = 0; ox < ow; ox++) {
                int ix = (int)floorf(ox * sx);
                ix = ix < w - 1 ? ix : w - 1;
                out[((size_t)ci * oh + oy) * ow + ox] = x[((size_t)ci * h + iy) * w + ix];
            }
        }
}

void vt_interp_bilinear(float *out, const float *x, int c, int h, int w,
                        int oh, int ow, int align_corners)
{
    float sy = px_scale(h, oh, align_corners), sx = px_scale(w, ow, align_corners);
    for (int oy = 0; oy < oh; oy++) {
        float fy = src_index(sy, oy, align_corners, 0);
        int y0 = (int)fy;
        int y1 = y0 + (y0 < h - 1);
        float ly = fy - y0, hy = 1 - ly;
        for (int ox = 0; ox < ow; ox++) {
            float fx = src_index(sx, ox, align_corners, 0);
            int x0 = (int)fx;
            int x1 = x0 + (x0 < w - 1);
            float lx = fx - x0, hx = 1 - lx;
            for (int ci = 0; ci < c; ci++) {
                const float *p = x + (size_t)ci * h * w;
                out[((size_t)ci * oh + oy) * ow + ox] =
                    hy * (hx * p[y0 * w + x0] + lx * p[y0 * w + x1]) +
                    ly * (hx * p[y1 * w + x0] + lx * p[y1 * w + x1]);
            }
        }
    }
}

/* Keys' cubic convolution kernel with parameter a. */
static double cubic(double t, double a)
{
    t = fabs(t);
    if (t <= 1)
        return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2)
        return (((t - 5) * t + 8) * t - 4) * a;
    return 0;
}

#define MAXT 64   /* taps per output sample: downscaling up to 16x */

/* Taps of output index i along an axis in -> out: the first input index,
 * the count, and the weights (PyTorch's F.interpolate, mode='bicubic').
 * Without antialias: Keys a = -0.75 at floor(src)-1 .. +2, indices clamped
 * to the edge. With antialias (torch's _upsample_bicubic2d_aa, PIL's
 * filter): a = -0.5, support widened by the scale when downscaling, window
 * clipped to the image and weights renormalized. */
static int bicubic_taps(int in, int out, int i, int align_corners,
                        int antialias, int *idx, float *wt)
{
    if (!antialias) {
        float sc = px_scale(in, out, align_corners);
        float s = src_index(sc, i, align_corners, 1);
        int f = (int)floorf(s);
        float t = s - f;
        for (int k = 0; k < 4; k++) {
            int j = f - 1 + k;
            idx[k] = j < 0 ? 0 : j > in - 1 ? in - 1 : j;
            wt[k] = (float)cubic(t - (k - 1), -0.75);
        }
        return 4;
    }
    double scale = (double)in / out;
    double support = scale >= 1 ? 2.0 * scale : 2.0;
    double inv = scale >= 1 ? 1.0 / scale : 1.0;
    double center = scale * (i + 0.5);
    int x0 = (int)(center - support + 0.5);
    int x1 = (int)(center + support + 0.5);
    x0 = x0 < 0 ? 0 : x0;
    x1 = x1 > in ? in : x1;
    int n = x1 - x0 < MAXT ? x1 - x0 : MAXT;
    double tot = 0, w[MAXT];
    for (int k = 0; k < n; k++) {
        w[k] = cubic((k + x0 - center + 0.5) * inv, -0.5);
        tot += w[k];
    }
    for (int k = 0; k < n; k++) {
        idx[k] = x0 + k;
        wt[k] = (float)(tot != 0 ? w[k] / tot : 0);
    }
    return n;
}

void vt_interp_bicubic(float *out, const float *x, int c, int h, int w,
                       int oh, int ow, int align_corners, int antialias)
{
    int iy[MAXT], ix[MAXT];
    float wy[MAXT], wx[MAXT];
    for (int oy = 0; oy < oh; oy++) {
        int ny = bicubic_taps(h, oh, oy, align_corners, antialias, iy, wy);
        for (int ox = 0; ox < ow; ox++) {
            int nx = bicubic_taps(w, ow, ox, align_corners, antialias, ix, wx);
            for (int ci = 0; ci < c; ci++) {
                const float *p = x + (size_t)ci * h * w;
                float acc = 0;
                for (int a = 0; a < ny; a++) {
                    float r = 0;
                    for (int b = 0; b < nx; b++)
                        r += wx[b] * p[(size_t)iy[a] * w + ix[b]];
                    acc += wy[a] * r;
                }
                out[((size_t)ci * oh + oy) * ow + ox] = acc;
            }
        }
    }
}
