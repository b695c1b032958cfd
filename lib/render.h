/* render.h - frames as pictures: image frames back to RGB, maps through the
 * colormap. vt-convert --to png and vt-sigmap --png share this code so the
 * same frame always gives the same picture. */
#ifndef VT_RENDER_H
#define VT_RENDER_H

#include "frame.h"
#include "image.h"

/* Render a frame's main tensor into RGB pixels:
 *  - an image frame [3,H,W]: de-normalized with the frame's mean/std
 *    metadata (ImageNet's when absent), rounded and clamped to 0..255;
 *  - a 2-D map [H,W] (or [1,H,W]): values scaled to [0,1] by the frame's
 *    "range" metadata ("lo,hi") or the map's min and max, upsampled
 *    bilinearly (half-pixel centres) to the frame's "size" metadata when
 *    present (at most 8192; a larger size is ignored), then coloured with
 *    vt_colormap (viridis);
 *  - a label map (an integer [H,W] tensor called "labels"): each label in
 *    its vt_palette colour, tokens upsampled nearest to the "size"
 *    metadata. When tensor is NULL and the frame's main tensor is a 2-D
 *    map with a "labels" tensor of its shape beside it (vt-sigmap's
 *    semantic frames), the labels are drawn with each token's colour
 *    scaled by 0.25 + 0.75 * its map value scaled to [0,1] by "range".
 * tensor: the tensor to draw, or NULL for the frame's main tensor. */
int vt_render(const vt_frame *f, const char *tensor, vt_image *out);

/* The frame's main tensor: the one named after its kind, else the first. */
vt_tensor *vt_main_tensor(const vt_frame *f);

/* "DIR/<name>.png" (malloc'd): name's extension dropped, a batch suffix
 * "#i" (a .npy's image i) kept as "-i"; vt-convert --out-dir and
 * vt-sigmap --png-dir name their files so. */
char *vt_png_path(const char *dir, const char *name);

/* Map [h,w] -> [oh,ow] bilinear with half-pixel centres (align_corners=False). */
void vt_upsample_bilinear(const float *src, int h, int w, float *dst, int oh, int ow);

#endif
