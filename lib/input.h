/* input.h - what the tools accept as input: image files (preprocessed to
 * image frames), .npy arrays, and frame streams (files or stdin "-"). */
#ifndef VT_INPUT_H
#define VT_INPUT_H

#include "frame.h"
#include "image.h"

typedef enum vt_input_kind {
    VT_IN_UNKNOWN, VT_IN_IMAGE, VT_IN_NPY, VT_IN_FRAMES, VT_IN_CHECKPOINT
} vt_input_kind;

/* Guess what a file is from its first bytes. */
vt_input_kind vt_input_sniff(const uint8_t *head, size_t len);

typedef struct vt_input_opts {
    vt_preproc pre;
    vt_decode_opts decode;
} vt_input_opts;

void vt_input_opts_default(vt_input_opts *o);

/* Options to read images for model m: its preprocessing, cropping to the
 * side the model takes, and a decode limit of max_pixels. 1 when m's
 * preprocessing named another crop (the model's side wins; callers say
 * so), else 0. */
struct vt_model;
int vt_input_opts_for_model(vt_input_opts *o, const struct vt_model *m, long long max_pixels);

/* Called once per frame an input yields; the callee owns *f (must free it).
 * Return <0 to stop. */
typedef int (*vt_frame_fn)(vt_frame *f, void *ctx);

/* Turn one input into frames, in order: an image becomes one "image" frame
 * [3,S,S]; a .npy [3,H,W] one image frame, [B,3,H,W] B frames "NAME#i",
 * anything else one "tensor" frame; a frame file or "-" (stdin) yields its
 * frames. Returns 0, or -1 with vt_error() after the frames that were
 * complete were already passed on (a truncated stream). */
int vt_input_frames(const char *path, const vt_input_opts *o, vt_frame_fn fn, void *ctx);

/* Called per frame with its name: its "name" metadata, else the path of
 * the input it came from. The callee owns *f; return <0 to stop. */
typedef int (*vt_named_frame_fn)(vt_frame *f, const char *name, void *ctx);

/* The commands' input loop: paths[0..n) (n 0: "-", stdin) in order
 * through vt_input_frames. An input that fails is reported on stderr as
 * "prog: NAME: reason" (NAME "stdin" for "-") and the next one is still
 * read, unless *stop is set (the callee's own write failure, reported by
 * it), which also ends the loop. Returns how many inputs failed. */
int vt_input_each(const char *prog, char **paths, int n, const vt_input_opts *o,
                  vt_named_frame_fn fn, void *ctx, const int *stop);

/* Preprocess a decoded image into an image frame named name. */
int vt_image_frame(const vt_image *img, const vt_input_opts *o, const char *name,
                   vt_frame *f);

/* Record the preprocessing in a frame's metadata / read it back. */
void vt_preproc_to_meta(const vt_preproc *p, vt_frame *f);
int vt_preproc_from_meta(const vt_frame *f, vt_preproc *p);

/* The image of image frame f for a model taking [3, S, S] (a leading batch
 * of one allowed): its "image" tensor, or its only one; NULL with the
 * reason when it is missing, not F32 or of another shape. */
const vt_tensor *vt_frame_image(const vt_frame *f, int S);

/* dst[3, S, S] = image t [3, S, S] of frame f (from vt_frame_image) in the
 * normalization `to` (a model's): a frame whose metadata records another
 * mean or std is brought to `to`'s (the crop itself cannot be redone). */
void vt_frame_image_normalized(const vt_frame *f, const vt_tensor *t, const vt_preproc *to,
                               int S, float *dst);

#endif
