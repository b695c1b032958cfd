/* image.h - image decoding (JPEG, PNG, PPM/PGM), PIL-exact resampling,
 * timm's eval preprocessing, PNG writing and colormaps. */
#ifndef VT_IMAGE_H
#define VT_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VT_DEFAULT_MAX_PIXELS (178956970LL)   /* PIL's MAX_IMAGE_PIXELS * 2 */

typedef struct vt_image {
    int w, h;
    uint8_t *rgb;       /* h*w*3 bytes, row-major RGB */
} vt_image;

typedef struct vt_decode_opts {
    int exif_rotate;    /* apply the EXIF Orientation tag (JPEG) */
    long long max_pixels;  /* refuse larger images before allocating */
} vt_decode_opts;

void vt_decode_opts_default(vt_decode_opts *o);

/* Decode a JPEG, PNG or PPM/PGM (P5/P6) by its magic bytes into RGB, the way
 * PIL's Image.open(...).convert("RGB") does (alpha dropped, gray expanded,
 * 16-bit reduced as PIL does, CMYK/YCCK converted as PIL does).
 * Returns 0 or -1 with vt_error() set. */
int vt_image_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                    vt_image *img);
int vt_image_load(const char *path, const vt_decode_opts *o, vt_image *img);
void vt_image_free(vt_image *img);

/* EXIF Orientation (1..8) from the TIFF data of a JPEG APP1 segment (after
 * its "Exif\0\0" prefix); 1 when absent or malformed. */
int vt_exif_orientation(const uint8_t *tiff, size_t len);
/* Apply an EXIF orientation in place, as PIL's ImageOps.exif_transpose. */
void vt_image_orient(vt_image *img, int orientation);

typedef enum vt_interp { VT_INTERP_BICUBIC, VT_INTERP_BILINEAR, VT_INTERP_NEAREST } vt_interp;
int vt_interp_from_name(const char *s);          /* -1 if unknown */
const char *vt_interp_name(vt_interp i);

/* PIL's Image.resize(..., resample) with its antialiased filters: horizontal
 * pass then vertical pass, 8-bit rounding between them, bit-exact. */
int vt_image_resize(const vt_image *src, int w, int h, vt_interp interp,
                    vt_image *dst);
/* The cw x ch window at (x0, y0) of that resize, bit-identical to cropping
 * the whole result, in memory and time that follow the window: a 1x65535
 * strip resized for a 224 crop would otherwise take 12 GB. */
int vt_image_resize_window(const vt_image *src, int w, int h, int x0, int y0,
                           int cw, int ch, vt_interp interp, vt_image *dst);

/* timm's eval transform. */
typedef struct vt_preproc {
    int size;           /* crop side S */
    double crop_pct;    /* resize shorter side to int(S / crop_pct) */
    vt_interp interp;
    float mean[3], std[3];
} vt_preproc;

void vt_preproc_default(vt_preproc *p);   /* 224, 0.875, bicubic, ImageNet */

/* Resize shorter side and center crop: crop gets S x S uint8 pixels.
 * geom (optional) gets {resized_w, resized_h, crop_left, crop_top}. */
int vt_preprocess_crop(const vt_image *src, const vt_preproc *p,
                       vt_image *crop, int geom[4]);
/* Crop pixels to a normalized planar float tensor out[3][S][S]. */
void vt_image_normalize(const vt_image *crop, const vt_preproc *p, float *out);

/* Write an 8-bit PNG (channels 1, 3 or 4) to a stream. 0 or -1. */
int vt_png_write(FILE *f, const uint8_t *pix, int w, int h, int channels);

/* Perceptual colormap (viridis): t in [0,1] -> RGB. */
void vt_colormap(float t, uint8_t rgb[3]);
/* Inverse for tests: nearest colormap entry index 0..255 for rgb. */
int vt_colormap_inverse(const uint8_t rgb[3]);
/* Categorical palette for label maps: label -> one of VT_PALETTE_SIZE
 * fixed colours (label mod VT_PALETTE_SIZE; listed in vt-sigmap(1)). */
#define VT_PALETTE_SIZE 36
void vt_palette(long label, uint8_t rgb[3]);

#endif
