/* ckpt.h - reading official checkpoints without Python: PyTorch's zip
 * format through a restricted unpickler that never executes anything, and
 * .safetensors files. */
#ifndef VT_CKPT_H
#define VT_CKPT_H

#include "frame.h"

typedef struct vt_ckpt_opts {
    int ema;            /* prefer EMA weights (model_ema, state_dict_ema) */
    int keep_half;      /* keep F16/BF16 tensors as they are (else F32) */
    int raw;            /* no conversion: every tensor in its stored dtype */
} vt_ckpt_opts;

/* Load the state dict of a checkpoint (.pth zip or .safetensors, found by
 * content) into f: one owned tensor per entry, named as in the state dict
 * with wrappers (model, state_dict, model_ema, module, ...) and "module."
 * prefixes removed; floating tensors converted to F32 unless keep_half/raw.
 * Metadata gets "ckpt_wrapper" (the key it was found under, "" at top). */
int vt_ckpt_load(const char *path, const vt_ckpt_opts *o, vt_frame *f);

/* True when the file looks like a checkpoint (zip, legacy pickle) rather
 * than an image or a frame stream. */
int vt_ckpt_sniff(const uint8_t *head, size_t len);

#endif
