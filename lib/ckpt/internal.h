/* internal.h - the layers under vt_ckpt_load, shared by the lib/ckpt sources, the
 * unit test and the fuzz harnesses: a ZIP reader over memory, a restricted
 * unpickler that builds inert values, and the step from a pickle to tensors. */
#ifndef VT_CKPT_INTERNAL_H
#define VT_CKPT_INTERNAL_H

#include "ckpt.h"

/* ---- zip.c ---- */

typedef struct vt_zip_entry {
    char *name;             /* NUL-terminated copy */
    uint64_t lho;           /* local header offset */
    uint64_t csize, usize;  /* compressed and uncompressed sizes */
    uint32_t crc;
    uint16_t method;        /* 0 stored, 8 deflated */
} vt_zip_entry;

typedef struct vt_zip {
    const uint8_t *buf;
    size_t len;
    vt_zip_entry *ent;      /* sorted by name */
    size_t n;
} vt_zip;

#define VT_ZIP_MAX_ENTRIES (1u << 20)

/* Read the central directory of the archive in buf[0..len). */
int vt_zip_open(vt_zip *z, const uint8_t *buf, size_t len);
void vt_zip_close(vt_zip *z);
/* Index of the entry named name, or -1. */
long vt_zip_find(const vt_zip *z, const char *name);
/* The bytes of entry i: stored entries point into the archive (*owned
 * NULL); deflated ones are inflated into *owned (malloc'd, caller frees).
 * Entries larger than max bytes are refused. */
int vt_zip_read(const vt_zip *z, size_t i, size_t max, const uint8_t **data,
                size_t *len, uint8_t **owned);

/* ---- pickle.c ---- */

enum {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_BYTES, PV_TUPLE, PV_LIST,
    PV_DICT, PV_SET, PV_GLOBAL, PV_OBJECT, PV_STORAGE, PV_TENSOR
};

/* What a whitelisted global stands for (PV_GLOBAL's kind). */
enum {
    G_UNKNOWN,          /* anything else: named, inert, never a tensor */
    G_INERT,            /* known harmless (Namespace, numpy scalars, ...) */
    G_REBUILD_V2,       /* torch._utils._rebuild_tensor_v2 */
    G_REBUILD,          /* torch._utils._rebuild_tensor */
    G_PARAM,            /* torch._utils._rebuild_parameter(_with_state) */
    G_DICT,             /* collections.OrderedDict, builtins.dict */
    G_STORAGE           /* torch.<X>Storage; dtype in the value's i */
};

typedef struct vt_pk_layout {
    int ndim;
    int64_t offset;
    int64_t size[VT_MAX_DIM], stride[VT_MAX_DIM];
} vt_pk_layout;

typedef struct vt_pv vt_pv;
struct vt_pv {
    uint8_t type;
    uint8_t kind;           /* PV_GLOBAL: G_*; PV_INT: 1 when too big */
    uint16_t depth;         /* nesting depth, bounded */
    int64_t i;              /* int, bool; storage numel; G_STORAGE dtype */
    double f;
    char *s;                /* str, bytes, global "module.name", storage key */
    size_t slen;
    vt_pv **items;          /* tuple, list, set; dict as key,value pairs */
    size_t n, cap;
    vt_pv *ref;             /* object: its callable; tensor: its storage;
                               storage: its type (a PV_GLOBAL) */
    vt_pk_layout *lay;      /* tensor */
};

#define VT_PK_MAX_DEPTH 100         /* nesting of containers and calls */
#define VT_PK_MAX_STACK (1u << 20)  /* stack entries */
#define VT_PK_MAX_MARKS (1u << 16)  /* open MARKs */
/* A torch.save pickle holds structure only (tensor bytes are separate zip
 * entries): a few values per tensor. These bound the memory a hostile
 * pickle can make (a list of a billion memo references is 2 GB of input
 * but would be 8 GB of items). */
#define VT_PK_MAX_VALUES (1u << 22)   /* values made */
#define VT_PK_MAX_ITEMS (1u << 22)    /* items in all containers together */
#define VT_PK_MAX_BYTES ((size_t)256 << 20)   /* data.pkl */

typedef struct vt_pk {
    vt_pv **all;            /* every value made, freed together */
    size_t nall, all_cap;
    vt_pv **memo;
    size_t memo_cap, memo_count;
    vt_pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    size_t nitems;          /* container items so far */
} vt_pk;

/* Unpickle buf into inert values; *root is valid until vt_pk_free. */
int vt_pk_parse(vt_pk *p, const uint8_t *buf, size_t len, vt_pv **root);
void vt_pk_free(vt_pk *p);
/* The unknown global that an object (or a tensor's storage) came from, or
 * NULL when v owes nothing to one. */
const char *vt_pk_foreign(const vt_pv *v);

/* ---- unwrap.c ---- */

/* Find the state dict in a checkpoint's root value: at the top, or under
 * model / state_dict / state_dict_ema / model_ema / module (nested at most
 * three deep). ema > 0 prefers EMA weights, ema < 0 the raw ones, 0 what the
 * authors' evaluation loads (timm's state_dict_ema, DeiT's model). wrapper
 * gets the keys followed, joined by '.', "" at the top. */
int vt_ckpt_unwrap(const vt_pv *root, int ema, const vt_pv **dict,
                   char *wrapper, size_t wlen);

/* ---- pth.c ---- */

/* Bytes of storage `key`: *in_map says they lie in the frame's mapping and
 * stay valid (tensors may point at them), else they live until the load
 * finishes. Returns 0 or -1 with vt_seterr. */
typedef int (*vt_storage_fn)(void *ctx, const char *key, const uint8_t **data,
                             size_t *len, int *in_map);

/* Unpickle a checkpoint's data.pkl, find its state dict and add one tensor
 * per entry to f (which may already hold a mapping). */
int vt_ckpt_from_pickle(const uint8_t *pkl, size_t len, vt_storage_fn fn,
                        void *ctx, const vt_ckpt_opts *o, vt_frame *f);

/* Load a torch.save zip held in buf (mapped by the caller into f->map, or
 * any buffer that outlives f). */
int vt_ckpt_load_zip(const uint8_t *buf, size_t len, const vt_ckpt_opts *o,
                     vt_frame *f);
/* Release the mapped pages of converted source bytes (madvise). */
void vt_ckpt_drop_pages(const vt_frame *f, const void *p, size_t n);
/* name without a leading "module." (DataParallel's prefix). */
const char *vt_ckpt_strip_module(const char *name);
/* Error when two tensors of f share a name. */
int vt_ckpt_check_unique(const vt_frame *f);

/* ---- safetensors.c ---- */

/* Convert f's floating tensors as o asks (F16/BF16/F64 -> F32 unless
 * keep_half/raw) and strip "module." prefixes. */
int vt_ckpt_fix_frame(vt_frame *f, const vt_ckpt_opts *o);

/* ---- convert helpers (dtype.c) ---- */

/* Convert n elements from src (dtype st) to dst (dtype dt); any pair of
 * float dtypes, or same dtype (copy). Float -> F16/BF16 rounds to nearest
 * even. */
void vt_convert_elems(const void *src, vt_dtype st, void *dst, vt_dtype dt,
                      size_t n);
int vt_dtype_is_float(vt_dtype t);
/* Whether a half-precision model file holds tensor t in half precision:
 * the weights of linear layers only (2-D, named *.weight); see convert.c. */
int vt_half_in_model(const vt_tensor *t);

/* ---- convert.c ---- */

struct vt_family;
/* Stamp out (tensors in place) with the model metadata and write it
 * atomically to out_path. source/sha describe where the weights came from. */
int vt_write_model(vt_frame *out, const cJSON *cfg, const struct vt_family *fam,
                   const char *source, const char *sha, int random,
                   const char *out_path);

#endif
