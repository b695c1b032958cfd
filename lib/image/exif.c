/* exif.c - the EXIF Orientation tag and the eight orientations it names. */
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"
#include "util.h"

#define TAG_ORIENTATION 0x0112
#define TYPE_SHORT 3
#define TYPE_LONG 4

/* Unsigned 16/32-bit reads at p in the TIFF's byte order. */
static unsigned rd16(const uint8_t *p, int big)
{
    return big ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}

static uint32_t rd32(const uint8_t *p, int big)
{
    return big ? (uint32_t)rd16(p, 1) << 16 | rd16(p + 2, 1)
               : (uint32_t)rd16(p + 2, 0) << 16 | rd16(p, 0);
}

/* tiff: the TIFF structure after the "Exif\0\0" prefix. Reads IFD0 only,
 * every offset checked against len. */
int vt_exif_orientation(const uint8_t *tiff, size_t len)
{
    if (len < 8) return 1;
    int big;
    if (tiff[0] == 'I' && tiff[1] == 'I') big = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M') big = 1;
    else return 1;
    if (rd16(tiff + 2, big) != 42) return 1;
    uint32_t ifd = rd32(tiff + 4, big);
    if (ifd > len || len - ifd < 2) return 1;
    unsigned n = rd16(tiff + ifd, big);
    const uint8_t *e = tiff + ifd + 2;
    if ((len - ifd - 2) / 12 < n) n = (unsigned)((len - ifd - 2) / 12);
    for (unsigned i = 0; i < n; i++, e += 12) {
        if (rd16(e, big) != TAG_ORIENTATION) continue;
        unsigned type = rd16(e + 2, big), v;
        if (rd32(e + 4, big) < 1) return 1;
        if (type == TYPE_SHORT) v = rd16(e + 8, big);
        else if (type == TYPE_LONG) v = rd32(e + 8, big);
        else return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* Where output pixel (x, y) of an oriented image comes from in the source
 * (w x h). Orientations as PIL's ImageOps.exif_transpose applies them:
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. */
static void source_of(int orientation, int w, int h, int x, int y, int *sx, int *sy)
{
    switch (orientation) {
    case 2: *sx = w - 1 - x; *sy = y; break;
    case 3: *sx = w - 1 - x; *sy = h - 1 - y; break;
    case 4: *sx = x; *sy = h - 1 - y; break;
    case 5: *sx = y; *sy = x; break;
    case 6: *sx = y; *sy = h - 1 - x; break;
    case 7: *sx = w - 1 - y; *sy = h - 1 - x; break;
    case 8: *sx = w - 1 - y; *sy = x; break;
    default: *sx = x; *sy = y; break;
    }
}

void vt_image_orient(vt_image *img, int orientation)
{
    if (orientation < 2 || orientation > 8 || !img->rgb) return;
    int w = img->w, h = img->h;
    int swap = orientation >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *out = vt_xmalloc((size_t)w * h * 3);
    for (int y = 0; y < oh; y++) {
        uint8_t *dst = out + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++, dst += 3) {
            int sx, sy;
            source_of(orientation, w, h, x, y, &sx, &sy);
            memcpy(dst, img->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = out;
    img->w = ow;
    img->h = oh;
}
