/* decode.c - format dispatch by magic bytes, size limits, loading files. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"
#include "util.h"

/* Whole files larger than this are refused before reading them. */
#define MAX_FILE_BYTES ((size_t)1 << 31)

void vt_decode_opts_default(vt_decode_opts *o)
{
    o->exif_rotate = 0;
    o->max_pixels = VT_DEFAULT_MAX_PIXELS;
}

int vt_image_check_size(long long w, long long h, const vt_decode_opts *o)
{
    long long limit = o && o->max_pixels > 0 ? o->max_pixels : VT_DEFAULT_MAX_PIXELS;
    if (w <= 0 || h <= 0)
        return vt_seterr("image has no pixels (%lldx%lld)", w, h);
    /* w and h come from 16- or 32-bit header fields, so w*h cannot overflow
     * a long long; the int limit keeps later int arithmetic safe. */
    if (w > INT_MAX / 4 || h > INT_MAX / 4 || w * h > limit)
        return vt_seterr("image is %lldx%lld pixels, over the limit of %lld (--max-pixels)",
                         w, h, limit);
    return 0;
}

void vt_image_alloc(vt_image *img, int w, int h)
{
    size_t n;
    if (vt_mul_size((size_t)w, (size_t)h, &n) || vt_mul_size(n, 3, &n))
        n = SIZE_MAX;   /* unreachable after vt_image_check_size; xmalloc fails */
    img->w = w;
    img->h = h;
    img->rgb = vt_xmalloc(n);
}

static int is_jpeg(const uint8_t *b, size_t n)
{
    return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}

static int is_png(const uint8_t *b, size_t n)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    return n >= 8 && memcmp(b, sig, 8) == 0;
}

static int is_pnm(const uint8_t *b, size_t n)
{
    return n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6';
}

int vt_image_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                    vt_image *img)
{
    vt_decode_opts defaults;
    if (!o) {
        vt_decode_opts_default(&defaults);
        o = &defaults;
    }
    img->w = img->h = 0;
    img->rgb = NULL;
    if (len == 0)
        return vt_seterr("empty file");
    if (is_jpeg(buf, len))
        return vt_jpeg_decode(buf, len, o, img);
    if (is_png(buf, len))
        return vt_png_decode(buf, len, o, img);
    if (is_pnm(buf, len))
        return vt_pnm_decode(buf, len, o, img);
    return vt_seterr("not a JPEG, PNG or PPM file");
}

int vt_image_load(const char *path, const vt_decode_opts *o, vt_image *img)
{
    uint8_t *buf;
    size_t len;
    img->w = img->h = 0;
    img->rgb = NULL;
    if (vt_read_file(path, MAX_FILE_BYTES, &buf, &len))
        return -1;
    int rc = vt_image_decode(buf, len, o, img);
    free(buf);
    return rc;
}

void vt_image_free(vt_image *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}
