/* sigmap.h - significance maps: where a model looks, per family.
 *
 * The one table of significance sources. Each family registers its methods
 * here (lib/sigmap.c): a family name, a method name, a one-line definition,
 * and two functions: one that resolves and checks the options (stage,
 * block, query token) against the model before any forward pass (giving the
 * map's size, and asking the model to keep what the map needs), and one
 * that computes the [h, w] map (at token resolution, row-major) for one
 * image of the model's last forward pass; methods that also assign each
 * token a label (a cluster, a semantic token) have a third, optional one
 * giving that label map. vt-sigmap(1) documents every method; the man
 * page's table and this one must agree. */
#ifndef VT_SIGMAP_H
#define VT_SIGMAP_H

#include <stdint.h>

#include "model.h"

#define VT_SIGMAP_DEFAULT (-1)   /* an option not given */

/* What the user asked for (vt-sigmap --stage, --block, --query); every
 * field VT_SIGMAP_DEFAULT when not given. */
typedef struct vt_sigmap_opts {
    int stage, block;
    int qy, qx;         /* query token: row and column on the map's grid */
} vt_sigmap_opts;

/* Where a map comes from, after resolution. */
typedef struct vt_sigmap_where {
    int stage, block;   /* as the family numbers them (metadata values) */
    int h, w;           /* map size (tokens) */
    int qy, qx;         /* the query token of methods that take one, else
                           VT_SIGMAP_DEFAULT */
    int nlabels;        /* methods with labels: labels are 0..nlabels-1 */
} vt_sigmap_where;

typedef struct vt_sigmap_method {
    const char *family;     /* vt_family name: "sgformer", "vit" */
    const char *name;       /* --method value: "sgformer", "cls", ... */
    const char *summary;    /* one line for --list-methods */
    int is_default;         /* the family's default method */
    /* Not available in this build: the reason (methods listed for the
     * record, e.g. vit rollout); the functions below are NULL then. */
    const char *unavailable;
    /* Fill *w from the options (w arrives with qy = qx =
     * VT_SIGMAP_DEFAULT), or vt_seterr() and return -1. Called after
     * vt_model_open, before any forward pass; may switch on what the
     * model must keep for the map. Use vt_sigmap_resolve(). */
    int (*resolve)(const vt_model *m, const vt_sigmap_opts *o, vt_sigmap_where *w);
    /* out[h*w] for image `image` of the last forward pass. 0 or -1. */
    int (*compute)(const vt_model *m, int image, const vt_sigmap_where *w,
                   float *out);
    /* Optional (NULL for most methods): the label map out[h*w] of the same
     * image, which the map (then a per-token weight of it) goes with. */
    int (*labels)(const vt_model *m, int image, const vt_sigmap_where *w,
                  int32_t *out);
} vt_sigmap_method;

/* The table, ended by an entry with family NULL. */
const vt_sigmap_method *vt_sigmap_methods(void);

/* The method `name` of the model's family, or its default when name is
 * NULL. NULL with vt_error() set (unknown method, a method that is not
 * available yet, a family without significance maps). */
const vt_sigmap_method *vt_sigmap_find(const vt_model *m, const char *name);

/* e->resolve, and a query token given to a method that takes none is an
 * error. 0, or -1 with vt_error(). */
int vt_sigmap_resolve(const vt_model *m, const vt_sigmap_method *e, const vt_sigmap_opts *o,
                      vt_sigmap_where *w);

#endif
