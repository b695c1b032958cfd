/* image_harness.h - the body shared by fuzz_jpeg, fuzz_png and fuzz_pnm:
 * decode as the tools do (vt_image_decode dispatches on the magic bytes,
 * checks --max-pixels before allocating, EXIF rotation on odd sizes), then
 * preprocess the picture to a small crop, since odd shapes (1xN, huge
 * aspect ratios) reach the resampler only through a decoder. */
#include <stdlib.h>
#include "image.h"

static int fuzz_image(const uint8_t *data, size_t size)
{
    vt_decode_opts o;
    vt_decode_opts_default(&o);
    o.max_pixels = 1 << 20;   /* every seed fits; keeps runs fast */
    o.exif_rotate = size & 1;
    vt_image img;
    if (vt_image_decode(data, size, &o, &img) < 0) return 0;
    vt_preproc p;
    vt_preproc_default(&p);
    p.size = 4 + (int)(size % 29);
    p.crop_pct = (size & 2) ? 0.875 : 1.0;
    p.interp = (size & 4) ? VT_INTERP_BILINEAR : VT_INTERP_BICUBIC;
    vt_image crop;
    if (vt_preprocess_crop(&img, &p, &crop, NULL) == 0) {
        float *x = malloc(sizeof(float) * 3 * p.size * p.size);
        vt_image_normalize(&crop, &p, x);
        free(x);
        vt_image_free(&crop);
    }
    vt_image_free(&img);
    return 0;
}
