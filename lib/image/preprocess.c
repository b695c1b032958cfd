/* preprocess.c - timm's eval transform: resize the shorter side, center
 * crop, normalize. Integer expressions follow timm/preprocess_ref.py:
 *   scale = int(S / crop_pct)
 *   w < h: (scale, int(scale * h / w))   else: (int(scale * w / h), scale)
 *   left = int(round((nw - S) / 2.0)), top likewise (half to even). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"
#include "util.h"

void vt_preproc_default(vt_preproc *p)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f};
    static const float std[3] = {0.229f, 0.224f, 0.225f};
    p->size = 224;
    p->crop_pct = 0.875;
    p->interp = VT_INTERP_BICUBIC;
    memcpy(p->mean, mean, sizeof mean);
    memcpy(p->std, std, sizeof std);
}

/* Python's int(round(x / 2.0)) for an integer x: half to even. */
static int round_half(long x)
{
    return (int)nearbyint((double)x / 2.0);
}

/* The S x S crop at (left, top) of src resized to nw x nh, resizing only
 * the part inside the picture; PIL fills the rest with black. */
static int resize_crop(const vt_image *src, long nw, long nh, int left, int top, int S,
                       vt_interp interp, vt_image *crop)
{
    long x0 = left > 0 ? left : 0, y0 = top > 0 ? top : 0;
    long x1 = left + S < nw ? left + S : nw, y1 = top + S < nh ? top + S : nh;
    vt_image_alloc(crop, S, S);
    memset(crop->rgb, 0, (size_t)S * S * 3);
    if (x1 <= x0 || y1 <= y0) return 0;
    vt_image part;
    if (vt_image_resize_window(src, (int)nw, (int)nh, (int)x0, (int)y0, (int)(x1 - x0),
                               (int)(y1 - y0), interp, &part) < 0) {
        vt_image_free(crop);
        return -1;
    }
    for (long y = y0; y < y1; y++)
        memcpy(crop->rgb + ((size_t)(y - top) * S + (x0 - left)) * 3,
               part.rgb + (size_t)(y - y0) * part.w * 3, (size_t)part.w * 3);
    vt_image_free(&part);
    return 0;
}

int vt_preprocess_crop(const vt_image *src, const vt_preproc *p,
                       vt_image *crop, int geom[4])
{
    crop->w = crop->h = 0;
    crop->rgb = NULL;
    if (p->size < 1 || p->size > 65536 || !(p->crop_pct > 0.0))
        return vt_seterr("bad preprocessing size %d or crop_pct %g", p->size, p->crop_pct);
    double fscale = (double)p->size / p->crop_pct;
    if (!(fscale >= 1.0 && fscale < 1e6))
        return vt_seterr("bad preprocessing size %d or crop_pct %g", p->size, p->crop_pct);
    long scale = (long)fscale;
    long w = src->w, h = src->h, nw, nh;
    if (w < 1 || h < 1)
        return vt_seterr("image has no pixels");
    if (w < h) {
        nw = scale;
        nh = (long)((double)(scale * h) / (double)w);
    } else {
        nw = (long)((double)(scale * w) / (double)h);
        nh = scale;
    }
    if (nw < 1 || nh < 1 || nw > (1 << 28) || nh > (1 << 28))
        return vt_seterr("image of %ldx%ld pixels cannot be resized to %ldx%ld", w, h, nw, nh);
    int S = p->size;
    int left = round_half(nw - S), top = round_half(nh - S);
    if (resize_crop(src, nw, nh, left, top, S, p->interp, crop) < 0)
        return -1;
    if (geom) {
        geom[0] = (int)nw;
        geom[1] = (int)nh;
        geom[2] = left;
        geom[3] = top;
    }
    return 0;
}

/* out[c][y][x] = (pix / 255 - mean[c]) / std[c], each step in float32 as
 * numpy does it on float32 arrays. */
void vt_image_normalize(const vt_image *crop, const vt_preproc *p, float *out)
{
    size_t n = (size_t)crop->w * crop->h;
    for (int c = 0; c < 3; c++) {
        float m = p->mean[c], s = p->std[c];
        float *o = out + c * n;
        const uint8_t *px = crop->rgb + c;
        for (size_t i = 0; i < n; i++, px += 3) {
            float a = (float)*px / 255.0f;
            o[i] = (a - m) / s;
        }
    }
}
