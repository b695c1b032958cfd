/* internal.h - shared by the image subsystem's files; not a public API. */
#ifndef VT_IMAGE_INTERNAL_H
#define VT_IMAGE_INTERNAL_H

#include "image.h"

/* Format decoders: buf holds the whole file; img is filled on success. */
int vt_jpeg_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                   vt_image *img);
int vt_png_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                  vt_image *img);
int vt_pnm_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                  vt_image *img);

/* Refuse a header's w x h before anything is allocated: 0 or -1. */
int vt_image_check_size(long long w, long long h, const vt_decode_opts *o);
/* Allocate img->rgb for w x h (sizes already checked). */
void vt_image_alloc(vt_image *img, int w, int h);

#endif
