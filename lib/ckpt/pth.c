/* pth.c - PyTorch checkpoints (torch.save's zip format, torch >= 1.6):
 * <archive>/data.pkl is the pickle, <archive>/data/<key> the storages,
 * <archive>/byteorder their byte order. Tensors are views (offset, size,
 * stride) into storages; each is checked against its storage, then either
 * used in place from the mapping (contiguous, same dtype, aligned) or
 * gathered and converted into its own buffer. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include "internal.h"
#include "util.h"

/* Give back the pages of [p, p+n) when they lie in f's mapping: the bytes
 * were converted and are not needed again (a later view of the same
 * storage faults them back in from the file). Keeps peak RSS near one copy
 * of the weights when every tensor is converted. */
void vt_ckpt_drop_pages(const vt_frame *f, const void *p, size_t n)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + n;
    uintptr_t mlo = (uintptr_t)f->map, mhi = mlo + f->map_len;
    if (!f->map || !p || lo < mlo || hi > mhi) return;
    vt_drop_pages(p, n);
}

/* ---- tensors from layouts ---- */

/* The dtype a stored tensor becomes. */
static vt_dtype out_dtype(vt_dtype st, const vt_ckpt_opts *o)
{
    if (o->raw) return st;
    if (st == VT_F64) return VT_F32;
    if ((st == VT_F16 || st == VT_BF16) && !o->keep_half) return VT_F32;
    return st;
}

/* Elements of l must lie inside a storage of `avail` elements; numel gets
 * the tensor's element count. */
static int check_layout(const vt_pk_layout *l, uint64_t avail, uint64_t *numel,
                        uint64_t *last_out)
{
    const uint64_t lim = (uint64_t)1 << 62;
    uint64_t n = 1, last;
    if (l->offset < 0) return vt_seterr("negative storage offset");
    last = (uint64_t)l->offset;
    for (int d = 0; d < l->ndim; d++) {
        if (l->size[d] < 0 || l->stride[d] < 0) return vt_seterr("negative size or stride");
        uint64_t s = (uint64_t)l->size[d], st = (uint64_t)l->stride[d];
        if (s && n > lim / s) return vt_seterr("absurd tensor shape");
        n *= s;
        if (s > 1) {
            if (st > lim / (s - 1)) return vt_seterr("absurd tensor stride");
            last += (s - 1) * st;
            if (last > lim) return vt_seterr("absurd tensor stride");
        }
    }
    if (n > 0 && last >= avail)
        return vt_seterr("tensor elements fall outside its storage");
    *numel = n;
    *last_out = last;
    return 0;
}

static int is_contiguous(const vt_pk_layout *l)
{
    int64_t expect = 1;
    for (int d = l->ndim - 1; d >= 0; d--) {
        if (l->size[d] != 1 && l->stride[d] != expect) return 0;
        expect *= l->size[d];
    }
    return 1;
}

/* Copy a strided view into dst (row-major), converting dtype: runs along a
 * unit-stride last dimension at once, else element by element. */
static void gather(const uint8_t *src, vt_dtype st, const vt_pk_layout *l, uint8_t *dst,
                   vt_dtype dt)
{
    size_t ss = vt_dtype_size(st), ds = vt_dtype_size(dt);
    if (l->ndim == 0) {
        vt_convert_elems(src + l->offset * ss, st, dst, dt, 1);
        return;
    }
    int last = l->ndim - 1;
    int64_t idx[VT_MAX_DIM] = {0};
    size_t run = (size_t)l->size[last];
    for (;;) {
        int64_t off = l->offset;
        for (int d = 0; d < last; d++) off += idx[d] * l->stride[d];
        if (l->stride[last] == 1 || run <= 1) {
            vt_convert_elems(src + off * ss, st, dst, dt, run);
        } else {
            for (size_t i = 0; i < run; i++)
                vt_convert_elems(src + (off + (int64_t)i * l->stride[last]) * ss, st,
                                 dst + i * ds, dt, 1);
        }
        dst += run * ds;
        int d = last - 1;
        while (d >= 0 && ++idx[d] == l->size[d]) idx[d--] = 0;
        if (d < 0) break;
    }
}

const char *vt_ckpt_strip_module(const char *name)
{
    return strncmp(name, "module.", 7) == 0 ? name + 7 : name;
}

static int add_tensor(vt_frame *f, const char *name, const vt_pv *tv, vt_storage_fn fn,
                      void *ctx, const vt_ckpt_opts *o)
{
    const vt_pv *sv = tv->ref;
    const vt_pk_layout *l = tv->lay;
    vt_dtype st = (vt_dtype)sv->ref->i, dt = out_dtype(st, o);
    size_t es = vt_dtype_size(st);
    const uint8_t *data;
    size_t len;
    int in_map = 0;
    if (fn(ctx, sv->s, &data, &len, &in_map) < 0) return -1;
    if ((uint64_t)sv->i > len / es) return vt_seterr("storage %.40s is shorter than its size", sv->s);
    uint64_t numel = 0, last = 0;
    if (check_layout(l, (uint64_t)sv->i, &numel, &last) < 0) return -1;
    /* Broadcast views (stride 0) may exceed their storage; within reason. */
    if (numel > ((uint64_t)len * 2 + (16u << 20)) / vt_dtype_size(dt))
        return vt_seterr("absurd tensor shape");
    if (numel == 0) {
        vt_frame_add(f, name, dt, l->ndim, l->size);
        return 0;
    }
    const uint8_t *first = data + (size_t)l->offset * es;
    if (is_contiguous(l) && dt == st && in_map && (uintptr_t)first % es == 0) {
        vt_frame_add_ref(f, name, dt, l->ndim, l->size, (void *)first);
        return 0;
    }
    vt_tensor *t = vt_frame_add(f, name, dt, l->ndim, l->size);
    gather(data, st, l, t->data, dt);
    if (in_map) vt_ckpt_drop_pages(f, first, (last + 1 - (uint64_t)l->offset) * es);
    return 0;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Two keys may collide once "module." is gone. */
int vt_ckpt_check_unique(const vt_frame *f)
{
    char **names = vt_xmalloc((f->ntensors + 1) * sizeof *names);
    for (int i = 0; i < f->ntensors; i++) names[i] = f->tensors[i].name;
    qsort(names, f->ntensors, sizeof *names, by_str);
    int rc = 0;
    for (int i = 1; i < f->ntensors && rc == 0; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = vt_seterr("state dict has %.80s twice", names[i]);
    free(names);
    return rc;
}

int vt_ckpt_from_pickle(const uint8_t *pkl, size_t len, vt_storage_fn fn, void *ctx,
                        const vt_ckpt_opts *o, vt_frame *f)
{
    vt_pk p;
    vt_pv *root;
    const vt_pv *sd;
    char wrapper[128];
    int rc = -1;
    if (vt_pk_parse(&p, pkl, len, &root) < 0) goto out;
    if (vt_ckpt_unwrap(root, o->ema, &sd, wrapper, sizeof wrapper) < 0) goto out;
    if (sd->n / 2 > VT_MAX_TENSORS) {
        vt_seterr("state dict has more than %d tensors", VT_MAX_TENSORS);
        goto out;
    }
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        const vt_pv *k = sd->items[i], *v = sd->items[i + 1];
        const char *g = vt_pk_foreign(v);
        if (g) {
            vt_seterr("checkpoint needs %s to build a tensor; refusing", g);
            goto out;
        }
        if (strlen(k->s) != k->slen || k->slen == 0 || k->slen > 1000) {
            vt_seterr("bad tensor name in state dict");
            goto out;
        }
        if (add_tensor(f, vt_ckpt_strip_module(k->s), v, fn, ctx, o) < 0) {
            char why[200];
            snprintf(why, sizeof why, "%s", vt_error());
            vt_seterr("tensor %.80s: %s", k->s, why);
            goto out;
        }
    }
    if (vt_ckpt_check_unique(f) < 0) goto out;
    vt_frame_set_meta(f, "ckpt_wrapper", wrapper);
    rc = 0;
out:
    vt_pk_free(&p);
    return rc;
}

/* ---- the zip container ---- */

typedef struct zip_ctx {
    vt_zip z;
    char *prefix;           /* "<archive>/" */
    const uint8_t **data;   /* per entry, once read */
    size_t *len;
    uint8_t **owned;        /* inflated entries */
} zip_ctx;

#define MAX_ENTRY ((size_t)1 << 40)

static int zip_storage(void *vctx, const char *key, const uint8_t **data, size_t *len,
                       int *in_map)
{
    zip_ctx *c = vctx;
    size_t n = strlen(c->prefix) + strlen(key) + 6;
    char *name = vt_xmalloc(n);
    snprintf(name, n, "%sdata/%s", c->prefix, key);
    long i = vt_zip_find(&c->z, name);
    free(name);
    if (i < 0) return vt_seterr("storage data/%.40s is missing from the archive", key);
    if (!c->data[i] && vt_zip_read(&c->z, i, MAX_ENTRY, &c->data[i], &c->len[i], &c->owned[i]) < 0)
        return -1;
    if (!c->data[i]) c->data[i] = (const uint8_t *)"";    /* empty, but read */
    *data = c->data[i];
    *len = c->len[i];
    *in_map = c->owned[i] == NULL;
    return 0;
}

/* The archive's folder: the entry "<name>/data.pkl" with the shortest name. */
static int find_prefix(zip_ctx *c)
{
    long best = -1;
    for (size_t i = 0; i < c->z.n; i++) {
        const char *nm = c->z.ent[i].name, *slash = strchr(nm, '/');
        if (slash && strcmp(slash + 1, "data.pkl") == 0 &&
            (best < 0 || strlen(nm) < strlen(c->z.ent[best].name)))
            best = (long)i;
    }
    if (best < 0) return vt_seterr("zip archive holds no data.pkl (not a torch.save file)");
    const char *nm = c->z.ent[best].name;
    size_t n = strchr(nm, '/') - nm + 1;
    c->prefix = vt_xmalloc(n + 1);
    memcpy(c->prefix, nm, n);
    c->prefix[n] = 0;
    return 0;
}

static int read_named(zip_ctx *c, const char *leaf, size_t max, const uint8_t **data,
                      size_t *len, uint8_t **owned)
{
    size_t n = strlen(c->prefix) + strlen(leaf) + 1;
    char *name = vt_xmalloc(n);
    snprintf(name, n, "%s%s", c->prefix, leaf);
    long i = vt_zip_find(&c->z, name);
    free(name);
    if (i < 0) return 1;
    return vt_zip_read(&c->z, i, max, data, len, owned);
}

static int check_byteorder(zip_ctx *c)
{
    const uint8_t *d;
    size_t n;
    uint8_t *owned = NULL;
    int rc = read_named(c, "byteorder", 64, &d, &n, &owned);
    if (rc != 0) return rc < 0 ? -1 : 0;    /* absent: torch wrote little */
    if (n >= 6 && memcmp(d, "little", 6) == 0 && (n == 6 || (n == 7 && d[6] == '\n'))) rc = 0;
    else if (n >= 3 && memcmp(d, "big", 3) == 0) rc = vt_seterr("big-endian checkpoints are not supported");
    else rc = vt_seterr("bad byteorder record in checkpoint");
    free(owned);
    return rc;
}

int vt_ckpt_load_zip(const uint8_t *buf, size_t len, const vt_ckpt_opts *o, vt_frame *f)
{
    zip_ctx c;
    memset(&c, 0, sizeof c);
    const uint8_t *pkl;
    size_t plen;
    uint8_t *pkl_owned = NULL;
    int rc = -1;
    if (vt_zip_open(&c.z, buf, len) < 0) return -1;
    c.data = vt_xcalloc(c.z.n + 1, sizeof *c.data);
    c.len = vt_xcalloc(c.z.n + 1, sizeof *c.len);
    c.owned = vt_xcalloc(c.z.n + 1, sizeof *c.owned);
    if (find_prefix(&c) < 0 || check_byteorder(&c) < 0) goto out;
    /* the pickle's size is checked here, before it is inflated */
    if (read_named(&c, "data.pkl", VT_PK_MAX_BYTES, &pkl, &plen, &pkl_owned) != 0) goto out;
    rc = vt_ckpt_from_pickle(pkl, plen, zip_storage, &c, o, f);
out:
    free(pkl_owned);
    for (size_t i = 0; i < c.z.n; i++) free(c.owned[i]);
    free(c.owned);
    free(c.data);
    free(c.len);
    free(c.prefix);
    vt_zip_close(&c.z);
    return rc;
}

/* ---- files ---- */

static int is_zip(const uint8_t *h, size_t n)
{
    return n >= 4 && h[0] == 'P' && h[1] == 'K' &&
           ((h[2] == 3 && h[3] == 4) || (h[2] == 5 && h[3] == 6));
}

/* torch.save before 1.6 starts with a pickled magic number (LONG1). */
static int is_legacy(const uint8_t *h, size_t n)
{
    return n >= 3 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5 && h[2] == 0x8a;
}

int vt_ckpt_sniff(const uint8_t *head, size_t len)
{
    return is_zip(head, len) || is_legacy(head, len);
}

/* Could this be a safetensors file? (length prefix, then '{') */
static int looks_safetensors(const uint8_t *h, size_t n)
{
    if (n < 9) return 0;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | h[i];
    return h[8] == '{' && hl <= n - 8;
}

int vt_ckpt_load(const char *path, const vt_ckpt_opts *o, vt_frame *f)
{
    static const vt_ckpt_opts defaults;
    if (!o) o = &defaults;
    vt_frame_init(f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vt_seterr("%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); return vt_seterr("%s", strerror(errno)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return vt_seterr("not a regular file"); }
    if (st.st_size == 0) { close(fd); return vt_seterr("empty file"); }
    size_t len = (size_t)st.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return vt_seterr("cannot map: %s", strerror(errno));
    const uint8_t *buf = m;
    if (is_zip(buf, len)) {
        f->map = m;         /* the frame owns the mapping from here */
        f->map_len = len;
        if (vt_ckpt_load_zip(buf, len, o, f) < 0) { vt_frame_free(f); return -1; }
        return 0;
    }
    int legacy = is_legacy(buf, len), st_like = looks_safetensors(buf, len);
    munmap(m, len);
    if (legacy) return vt_seterr("legacy (pre-1.6) torch.save format; re-save with torch >= 1.6");
    if (!st_like) return vt_seterr("not a checkpoint (neither a PyTorch zip nor safetensors)");
    if (vt_frame_map(path, f) < 0) return -1;
    if (vt_ckpt_fix_frame(f, o) < 0) { vt_frame_free(f); return -1; }
    vt_frame_set_meta(f, "ckpt_wrapper", "");
    return 0;
}

int vt_ckpt_info(const char *path, const vt_ckpt_opts *o, FILE *out)
{
    vt_ckpt_opts raw = o ? *o : (vt_ckpt_opts){0};
    raw.raw = 1;
    vt_frame f;
    if (vt_ckpt_load(path, &raw, &f) < 0) return -1;
    char shape[160];
    for (int i = 0; i < f.ntensors; i++) {
        const vt_tensor *t = &f.tensors[i];
        fprintf(out, "%s\t%s\t%s\n", t->name, vt_dtype_name(t->dtype),
                vt_shape_str(t, shape, sizeof shape));
    }
    vt_frame_free(&f);
    if (ferror(out)) return vt_seterr("write error");
    return 0;
}
