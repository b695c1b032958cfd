/* ckpt.h - reading official checkpoints without Python: PyTorch's zip
 * format through a restricted unpickler that never executes anything, and
 * .safetensors files. */
#ifndef VT_CKPT_H
#define VT_CKPT_H

#include <cjson/cJSON.h>
#include "frame.h"

typedef struct vt_ckpt_opts {
    int ema;            /* > 0 prefer EMA weights (model_ema, state_dict_ema),
                           < 0 prefer the raw ones, 0 what the authors'
                           evaluation loads (timm: EMA; DeiT/vtpack: model) */
    int keep_half;      /* keep F16/BF16 tensors as they are (else F32) */
    int raw;            /* no conversion: every tensor in its stored dtype */
} vt_ckpt_opts;

/* Load the state dict of a checkpoint (.pth zip or .safetensors, found by
 * content) into f: one tensor per entry, named as in the state dict with
 * wrappers (model, state_dict, model_ema, module, ...) and "module."
 * prefixes removed; floating tensors converted to F32 unless keep_half/raw.
 * f maps the file (f->map): tensors that need no conversion or gathering
 * point into it, the others own their data. Metadata gets "ckpt_wrapper"
 * (the keys it was found under joined by '.', "" at the top). f is
 * initialized here and left empty on error; o may be NULL. Legacy (pre-1.6)
 * torch.save files are refused with a message saying so. */
int vt_ckpt_load(const char *path, const vt_ckpt_opts *o, vt_frame *f);

/* List the state dict, one line per tensor "name\tDTYPE\t[d0,d1,...]" in
 * state-dict order, DTYPE as stored (F32, F16, BF16, F64, I64, ...). */
int vt_ckpt_info(const char *path, const vt_ckpt_opts *o, FILE *out);

/* True when the file looks like a checkpoint (zip, legacy pickle) rather
 * than an image or a frame stream. */
int vt_ckpt_sniff(const uint8_t *head, size_t len);

/* ---- model files ---- */

typedef struct vt_convert_opts {
    int ema;            /* which weights to read, as in vt_ckpt_opts */
    vt_dtype dtype;     /* VT_F32 (0, default), VT_F16 or VT_BF16 for every
                           floating tensor (round to nearest even) */
} vt_convert_opts;

/* Checkpoint -> model file: config from vt_config_make(arch, config_over),
 * weights validated against the family's params() like
 * load_state_dict(strict=True), written atomically in params order with the
 * model metadata (arch, family, config, preprocess, labels, source,
 * source_sha256). o may be NULL. */
int vt_convert_checkpoint(const char *ckpt_path, const char *arch,
                          const cJSON *config_over, const vt_convert_opts *o,
                          const char *out_path);

/* A model file with deterministic random weights from seed: matrices and
 * tokens ~ N(0, 0.02) truncated at 2 std, norm weights 1, biases 0.
 * Metadata "random":"1", "source":"random seed N". */
int vt_make_random_model(const char *arch, const cJSON *config_over,
                         unsigned long seed, vt_dtype dtype, const char *out_path);

/* ---- SHA-256 (FIPS 180-4) ---- */

typedef struct vt_sha256 {
    uint32_t h[8];
    uint64_t len;       /* bytes hashed */
    uint8_t buf[64];
    size_t nbuf;
} vt_sha256;

void vt_sha256_init(vt_sha256 *s);
void vt_sha256_update(vt_sha256 *s, const void *data, size_t n);
void vt_sha256_final(vt_sha256 *s, uint8_t digest[32]);
/* Lower-case hex digest of data / of a file's contents (read in chunks). */
void vt_sha256_hex(const void *data, size_t n, char hex[65]);
int vt_sha256_file(const char *path, char hex[65]);

#endif
