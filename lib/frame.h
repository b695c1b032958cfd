/* frame.h - tensor frames: the one format vtkit tools exchange.
 *
 * A frame is a complete .safetensors file: an 8-byte little-endian header
 * length N, N bytes of JSON (space padded to a multiple of 8), then the data
 * buffer. Frames are written back to back on pipes; see vt-frames(5). */
#ifndef VT_FRAME_H
#define VT_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VT_MAX_DIM 8
#define VT_MAX_HEADER (100u * 1000u * 1000u)   /* bytes of JSON header */
#define VT_MAX_TENSORS 10000

typedef enum vt_dtype {
    VT_F32, VT_F16, VT_BF16, VT_F64, VT_I64, VT_I32, VT_I16, VT_I8, VT_U8,
    VT_BOOL, VT_DTYPE_COUNT
} vt_dtype;

const char *vt_dtype_name(vt_dtype t);          /* "F32" ... */
int vt_dtype_from_name(const char *s);          /* -1 if unknown */
size_t vt_dtype_size(vt_dtype t);

typedef struct vt_tensor {
    char *name;
    vt_dtype dtype;
    int ndim;
    int64_t shape[VT_MAX_DIM];
    void *data;         /* nbytes bytes, little-endian, row-major */
    size_t nbytes;
    int owned;          /* data is malloc'd by this tensor */
} vt_tensor;

int64_t vt_tensor_numel(const vt_tensor *t);
/* Element i converted to double (any dtype). */
double vt_tensor_get(const vt_tensor *t, size_t i);
/* "[3,224,224]" into buf. */
const char *vt_shape_str(const vt_tensor *t, char *buf, size_t len);

typedef struct vt_frame {
    vt_tensor *tensors;
    int ntensors, cap;
    char **meta_key, **meta_val;   /* __metadata__, insertion order */
    int nmeta, meta_cap;
    void *block;                   /* data block owned by the frame, or NULL */
    void *map;                     /* mmap'd region, or NULL */
    size_t map_len;
} vt_frame;

void vt_frame_init(vt_frame *f);
void vt_frame_free(vt_frame *f);

/* Metadata (string -> string). set replaces an existing key. */
void vt_frame_set_meta(vt_frame *f, const char *key, const char *val);
const char *vt_frame_meta(const vt_frame *f, const char *key);

/* Add a tensor with zeroed, owned data. */
vt_tensor *vt_frame_add(vt_frame *f, const char *name, vt_dtype dtype,
                        int ndim, const int64_t *shape);
/* Add a tensor that points at caller's data (must outlive the frame). */
vt_tensor *vt_frame_add_ref(vt_frame *f, const char *name, vt_dtype dtype,
                            int ndim, const int64_t *shape, void *data);
vt_tensor *vt_frame_get(const vt_frame *f, const char *name);

/* Read the next frame from a stream. Returns 1 with a frame, 0 at a clean
 * end of stream, -1 on error (vt_error(): "truncated frame", ...). */
int vt_frame_read(FILE *in, vt_frame *f);
/* Parse a frame held in memory; tensors point into buf (which must outlive
 * f) unless copy is set. *used gets the frame's total size. */
int vt_frame_parse(const uint8_t *buf, size_t len, vt_frame *f, int copy,
                   size_t *used);
/* Map a .safetensors file read-only; tensors point into the mapping. */
int vt_frame_map(const char *path, vt_frame *f);
/* Write one frame. Tensors are laid out in their order in f. */
int vt_frame_write(FILE *out, const vt_frame *f);

/* A frame must carry "vt":"1", "kind" and "name" to be a vtkit frame. */
void vt_frame_stamp(vt_frame *f, const char *kind, const char *name);

#endif
