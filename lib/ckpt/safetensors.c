/* safetensors.c - timm / Hugging Face .safetensors weights: the file is
 * already a frame (vt_frame_map); only dtypes and prefixes need fixing. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "util.h"

static vt_dtype want(vt_dtype st, const vt_ckpt_opts *o)
{
    if (o->raw) return st;
    if (st == VT_F64) return VT_F32;
    if ((st == VT_F16 || st == VT_BF16) && !o->keep_half) return VT_F32;
    return st;
}

int vt_ckpt_fix_frame(vt_frame *f, const vt_ckpt_opts *o)
{
    for (int i = 0; i < f->ntensors; i++) {
        vt_tensor *t = &f->tensors[i];
        const char *bare = vt_ckpt_strip_module(t->name);
        if (bare != t->name) {
            char *n = vt_xstrdup(bare);
            free(t->name);
            t->name = n;
        }
        vt_dtype dt = want(t->dtype, o);
        if (dt == t->dtype) continue;
        size_t n = (size_t)vt_tensor_numel(t), bytes;
        if (vt_mul_size(n, vt_dtype_size(dt), &bytes) < 0) return vt_seterr("tensor too large");
        void *d = vt_xmalloc(bytes ? bytes : 1);
        vt_convert_elems(t->data, t->dtype, d, dt, n);
        if (t->owned) free(t->data);
        else vt_ckpt_drop_pages(f, t->data, t->nbytes);
        t->data = d;
        t->owned = 1;
        t->dtype = dt;
        t->nbytes = bytes;
    }
    return vt_ckpt_check_unique(f);
}
