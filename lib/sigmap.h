/* sigmap.h - significance maps: where a model looks, per family.
 *
 * The one table of significance sources. Each family registers its methods
 * here (lib/sigmap.c): a family name, a method name, a one-line definition,
 * and two functions: one that resolves and checks the stage/block options
 * against the model before any forward pass (giving the map's size), and
 * one that computes the [h, w] map (at token resolution, row-major) for one
 * image of the model's last forward pass. vt-sigmap(1) documents every
 * method; the man page's table and this one must agree. */
#ifndef VT_SIGMAP_H
#define VT_SIGMAP_H

#include "model.h"

#define VT_SIGMAP_DEFAULT (-1)   /* --stage / --block not given */

/* Where a map comes from, after resolution. */
typedef struct vt_sigmap_where {
    int stage, block;   /* as the family numbers them (metadata values) */
    int h, w;           /* map size (tokens) */
} vt_sigmap_where;

typedef struct vt_sigmap_method {
    const char *family;     /* vt_family name: "sgformer", "vit" */
    const char *name;       /* --method value: "sgformer", "cls", ... */
    const char *summary;    /* one line for --list-methods */
    int is_default;         /* the family's default method */
    /* Not available in this build: the reason (methods listed for the
     * record, e.g. vit rollout); the functions below are NULL then. */
    const char *unavailable;
    /* stage/block are the options (VT_SIGMAP_DEFAULT when absent). Fill
     * *w or vt_seterr() and return -1. Called after vt_model_open, before
     * any forward pass. */
    int (*resolve)(const vt_model *m, int stage, int block, vt_sigmap_where *w);
    /* out[h*w] for image `image` of the last forward pass. 0 or -1. */
    int (*compute)(const vt_model *m, int image, const vt_sigmap_where *w,
                   float *out);
} vt_sigmap_method;

/* The table, ended by an entry with family NULL. */
const vt_sigmap_method *vt_sigmap_methods(void);

/* The method `name` of the model's family, or its default when name is
 * NULL. NULL with vt_error() set (unknown method, a method that is not
 * available yet, a family without significance maps). */
const vt_sigmap_method *vt_sigmap_find(const vt_model *m, const char *name);

#endif
