/* frame.c - reading and writing tensor frames (safetensors layout).
 *
 *   [u64 LE header length N][N bytes JSON, space padded][data buffer]
 *
 * The reader trusts nothing: header size, tensor count, dtype, every shape
 * and offset are checked, and tensors must tile the data buffer exactly. */
#include "frame.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest data buffer a frame may claim (bigger than any model we run). */
#define VT_MAX_FRAME_DATA ((uint64_t)64 << 30)

static const struct { const char *name; size_t size; } dtypes[VT_DTYPE_COUNT] = {
    [VT_F32] = {"F32", 4}, [VT_F16] = {"F16", 2}, [VT_BF16] = {"BF16", 2},
    [VT_F64] = {"F64", 8}, [VT_I64] = {"I64", 8}, [VT_I32] = {"I32", 4},
    [VT_I16] = {"I16", 2}, [VT_I8] = {"I8", 1},   [VT_U8] = {"U8", 1},
    [VT_BOOL] = {"BOOL", 1},
};

const char *vt_dtype_name(vt_dtype t) { return t < VT_DTYPE_COUNT ? dtypes[t].name : "?"; }
size_t vt_dtype_size(vt_dtype t) { return t < VT_DTYPE_COUNT ? dtypes[t].size : 0; }

int vt_dtype_from_name(const char *s)
{
    for (int i = 0; i < VT_DTYPE_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) return i;
    return -1;
}

int64_t vt_tensor_numel(const vt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float f;
    if (exp == 0) f = ldexpf((float)man, -24);                   /* zero, subnormal */
    else if (exp == 31) f = man ? NAN : INFINITY;
    else f = ldexpf((float)(man | 0x400), (int)exp - 25);
    if (sign) f = -f;
    return f;
}

double vt_tensor_get(const vt_tensor *t, size_t i)
{
    const uint8_t *p = (const uint8_t *)t->data + i * vt_dtype_size(t->dtype);
    switch (t->dtype) {
    case VT_F32: { float v; memcpy(&v, p, 4); return v; }
    case VT_F64: { double v; memcpy(&v, p, 8); return v; }
    case VT_F16: { uint16_t v; memcpy(&v, p, 2); return half_to_float(v); }
    case VT_BF16: { uint16_t v; memcpy(&v, p, 2); uint32_t u = (uint32_t)v << 16; float f; memcpy(&f, &u, 4); return f; }
    case VT_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case VT_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case VT_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case VT_I8: return (int8_t)*p;
    case VT_U8: return *p;
    case VT_BOOL: return *p != 0;
    default: return NAN;
    }
}

const char *vt_shape_str(const vt_tensor *t, char *buf, size_t len)
{
    size_t n = 0;
    n += snprintf(buf + n, len - n, "[");
    for (int i = 0; i < t->ndim && n < len; i++)
        n += snprintf(buf + n, len - n, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
    return buf;
}

/* ---- frame objects ---- */

void vt_frame_init(vt_frame *f) { memset(f, 0, sizeof *f); }

void vt_frame_free(vt_frame *f)
{
    for (int i = 0; i < f->ntensors; i++) {
        free(f->tensors[i].name);
        if (f->tensors[i].owned) free(f->tensors[i].data);
    }
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->tensors);
    free(f->meta_key);
    free(f->meta_val);
    free(f->block);
    if (f->map) {
        vt_map_forget(f->map);
        munmap(f->map, f->map_len);
    }
    vt_frame_init(f);
}

void vt_frame_set_meta(vt_frame *f, const char *key, const char *val)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_key[i], key) == 0) {
            free(f->meta_val[i]);
            f->meta_val[i] = vt_xstrdup(val);
            return;
        }
    if (f->nmeta == f->meta_cap) {
        f->meta_cap = f->meta_cap ? f->meta_cap * 2 : 8;
        f->meta_key = vt_xrealloc(f->meta_key, f->meta_cap * sizeof *f->meta_key);
        f->meta_val = vt_xrealloc(f->meta_val, f->meta_cap * sizeof *f->meta_val);
    }
    f->meta_key[f->nmeta] = vt_xstrdup(key);
    f->meta_val[f->nmeta] = vt_xstrdup(val);
    f->nmeta++;
}

const char *vt_frame_meta(const vt_frame *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

void vt_frame_stamp(vt_frame *f, const char *kind, const char *name)
{
    vt_frame_set_meta(f, "vt", "1");
    vt_frame_set_meta(f, "kind", kind);
    vt_frame_set_meta(f, "name", name);
}

static vt_tensor *push_tensor(vt_frame *f, const char *name, vt_dtype dtype,
                              int ndim, const int64_t *shape)
{
    if (f->ntensors == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->tensors = vt_xrealloc(f->tensors, f->cap * sizeof *f->tensors);
    }
    vt_tensor *t = &f->tensors[f->ntensors++];
    memset(t, 0, sizeof *t);
    t->name = vt_xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, ndim * sizeof *shape);
    t->nbytes = (size_t)vt_tensor_numel(t) * vt_dtype_size(dtype);
    return t;
}

vt_tensor *vt_frame_add(vt_frame *f, const char *name, vt_dtype dtype,
                        int ndim, const int64_t *shape)
{
    vt_tensor *t = push_tensor(f, name, dtype, ndim, shape);
    t->data = vt_xcalloc(1, t->nbytes);
    t->owned = 1;
    return t;
}

vt_tensor *vt_frame_add_ref(vt_frame *f, const char *name, vt_dtype dtype,
                            int ndim, const int64_t *shape, void *data)
{
    vt_tensor *t = push_tensor(f, name, dtype, ndim, shape);
    t->data = data;
    return t;
}

vt_tensor *vt_frame_get(const vt_frame *f, const char *name)
{
    for (int i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* ---- header parsing ---- */

/* A JSON number that is a whole number in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct span { uint64_t begin, end; int index; } span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

static int parse_metadata(const cJSON *m, vt_frame *f)
{
    if (!cJSON_IsObject(m)) return vt_seterr("__metadata__ is not an object");
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e)) return vt_seterr("metadata value of '%s' is not a string", e->string);
        vt_frame_set_meta(f, e->string, e->valuestring);
    }
    return 0;
}

static int parse_entry(const cJSON *e, vt_frame *f, span *sp)
{
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return vt_seterr("tensor '%s' needs dtype, shape and data_offsets", e->string);
    int dt = vt_dtype_from_name(jd->valuestring);
    if (dt < 0) return vt_seterr("tensor '%s' has unknown dtype '%.20s'", e->string, jd->valuestring);
    int ndim = cJSON_GetArraySize(js);
    if (ndim > VT_MAX_DIM) return vt_seterr("tensor '%s' has %d dimensions (at most %d)", e->string, ndim, VT_MAX_DIM);
    int64_t shape[VT_MAX_DIM];
    uint64_t bytes = vt_dtype_size(dt);
    int i = 0, zero = 0;
    for (const cJSON *d = js->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_uint(d, &v) < 0) return vt_seterr("tensor '%s' has a bad shape", e->string);
        shape[i] = (int64_t)v;
        if (v == 0) zero = 1;
        else if (!zero && bytes > VT_MAX_FRAME_DATA / v)
            return vt_seterr("tensor '%s' is over the size limit (a frame holds at most %llu GiB)", e->string,
                             (unsigned long long)(VT_MAX_FRAME_DATA >> 30));
        else if (!zero) bytes *= v;
    }
    if (zero) bytes = 0;
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || json_uint(cJSON_GetArrayItem(jo, 0), &b) < 0 ||
        json_uint(cJSON_GetArrayItem(jo, 1), &en) < 0 || en < b)
        return vt_seterr("tensor '%s' has bad data_offsets", e->string);
    if (en - b != bytes)
        return vt_seterr("tensor '%s': shape needs %llu bytes but data_offsets give %llu",
                         e->string, (unsigned long long)bytes, (unsigned long long)(en - b));
    sp->begin = b;
    sp->end = en;
    sp->index = f->ntensors;
    push_tensor(f, e->string, dt, ndim, shape);
    return 0;
}

/* Parse the JSON header into f's tensor list (data pointers unset) and
 * return the data buffer length the tensors tile. */
static int parse_header(const char *hdr, size_t n, vt_frame *f, uint64_t *data_len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    if (!root) return vt_seterr("frame header is not valid JSON");
    int rc = -1;
    span *spans = NULL;
    if (!cJSON_IsObject(root)) { vt_seterr("frame header is not a JSON object"); goto out; }
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != 0) {
            vt_seterr("frame header has trailing bytes");
            goto out;
        }
    int count = cJSON_GetArraySize(root);
    spans = vt_xmalloc((count + 1) * sizeof *spans);
    int ns = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string) { vt_seterr("frame header entry without a name"); goto out; }
        for (const cJSON *d = root->child; d != e; d = d->next)
            if (strcmp(d->string, e->string) == 0) { vt_seterr("frame header repeats '%s'", e->string); goto out; }
        if (strcmp(e->string, "__metadata__") == 0) {
            if (parse_metadata(e, f) < 0) goto out;
        } else {
            if (ns == VT_MAX_TENSORS) { vt_seterr("frame has over %d tensors (at most %d)", ns, VT_MAX_TENSORS); goto out; }
            if (parse_entry(e, f, &spans[ns]) < 0) goto out;
            ns++;
        }
    }
    /* Tensors must tile [0, data_len) without gaps or overlaps. */
    qsort(spans, ns, sizeof *spans, cmp_span);
    uint64_t pos = 0;
    for (int i = 0; i < ns; i++) {
        if (spans[i].begin != pos) {
            vt_seterr("tensor '%s' %s", f->tensors[spans[i].index].name,
                      spans[i].begin < pos ? "overlaps another" : "leaves a gap in the data");
            goto out;
        }
        pos = spans[i].end;
        f->tensors[spans[i].index].data = (void *)(uintptr_t)spans[i].begin;  /* offset for now */
    }
    if (pos > VT_MAX_FRAME_DATA) { vt_seterr("frame data of %llu bytes is over the limit", (unsigned long long)pos); goto out; }
    *data_len = pos;
    rc = 0;
out:
    free(spans);
    cJSON_Delete(root);
    return rc;
}

static void bind_data(vt_frame *f, uint8_t *base)
{
    for (int i = 0; i < f->ntensors; i++)
        f->tensors[i].data = base + (uintptr_t)f->tensors[i].data;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Read exactly n bytes; returns bytes read (short only at EOF or error). */
static size_t read_full(FILE *in, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t r = fread((uint8_t *)buf + got, 1, n - got, in);
        if (r == 0) break;
        got += r;
    }
    return got;
}

int vt_frame_read(FILE *in, vt_frame *f)
{
    uint8_t lenbuf[8];
    vt_frame_init(f);
    size_t got = read_full(in, lenbuf, 8);
    if (got == 0 && !ferror(in)) return 0;
    if (got < 8) return vt_seterr(ferror(in) ? "read error: %s" : "truncated frame", strerror(errno));
    uint64_t n = le64(lenbuf);
    if (n > VT_MAX_HEADER) return vt_seterr("frame header of %llu bytes is over the limit of %u (not a frame?)", (unsigned long long)n, VT_MAX_HEADER);
    if (n < 2) return vt_seterr("frame header is too short (not a frame?)");
    char *hdr = vt_xmalloc(n);
    if (read_full(in, hdr, n) < n) {
        free(hdr);
        return vt_seterr("truncated frame");
    }
    uint64_t dlen;
    int rc = parse_header(hdr, n, f, &dlen);
    free(hdr);
    if (rc < 0) { vt_frame_free(f); return -1; }
    /* Grow the buffer as bytes arrive so a lying header costs no memory. */
    size_t cap = dlen < (64u << 20) ? dlen : (64u << 20), have = 0;
    uint8_t *buf = vt_xmalloc(cap);
    while (have < dlen) {
        if (have == cap) {
            cap = cap * 2 < dlen ? cap * 2 : dlen;
            buf = vt_xrealloc(buf, cap);
        }
        size_t r = read_full(in, buf + have, cap - have);
        have += r;
        if (r == 0) break;
    }
    if (have < dlen) {
        free(buf);
        vt_frame_free(f);
        return vt_seterr("truncated frame");
    }
    f->block = buf;
    bind_data(f, buf);
    return 1;
}

int vt_frame_parse(const uint8_t *buf, size_t len, vt_frame *f, int copy, size_t *used)
{
    vt_frame_init(f);
    if (len < 8) return vt_seterr(len ? "truncated frame" : "empty file");
    uint64_t n = le64(buf);
    if (n > VT_MAX_HEADER) return vt_seterr("frame header of %llu bytes is over the limit of %u (not a frame?)", (unsigned long long)n, VT_MAX_HEADER);
    if (n < 2) return vt_seterr("frame header is too short (not a frame?)");
    if (n > len - 8) return vt_seterr("truncated frame (header length %llu is past the end of the data)", (unsigned long long)n);
    uint64_t dlen;
    if (parse_header((const char *)buf + 8, n, f, &dlen) < 0) { vt_frame_free(f); return -1; }
    if (dlen > len - 8 - n) { vt_frame_free(f); return vt_seterr("truncated frame"); }
    const uint8_t *data = buf + 8 + n;
    if (copy) {
        f->block = vt_xmalloc(dlen);
        memcpy(f->block, data, dlen);
        data = f->block;
    }
    bind_data(f, (uint8_t *)data);
    if (used) *used = 8 + n + dlen;
    return 0;
}

int vt_frame_map(const char *path, vt_frame *f)
{
    vt_frame_init(f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vt_seterr("%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); return vt_seterr("%s", strerror(errno)); }
    if (S_ISDIR(st.st_mode)) { close(fd); return vt_seterr("is a directory"); }
    if (st.st_size == 0) { close(fd); return vt_seterr("empty file"); }
    void *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return vt_seterr("cannot map: %s", strerror(errno));
    size_t used;
    if (vt_frame_parse(m, st.st_size, f, 0, &used) < 0) {
        munmap(m, st.st_size);
        return -1;
    }
    if (used != (size_t)st.st_size) {
        vt_frame_free(f);
        munmap(m, st.st_size);
        return vt_seterr("trailing bytes after the tensor data");
    }
    f->map = m;
    f->map_len = st.st_size;
    vt_map_note(m, f->map_len);     /* read-only: its pages may be dropped */
    return 0;
}

/* ---- writing ---- */

typedef struct strbuf { char *s; size_t n, cap; } strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = vt_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_printf(strbuf *b, const char *fmt, ...) VT_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_json_string(strbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') { sb_put(b, "\\", 1); sb_put(b, (const char *)p, 1); }
        else if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
        else sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

int vt_frame_write(FILE *out, const vt_frame *f)
{
    strbuf h = {0};
    sb_put(&h, "{", 1);
    if (f->nmeta) {
        sb_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < f->nmeta; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_string(&h, f->meta_key[i]);
            sb_put(&h, ":", 1);
            sb_json_string(&h, f->meta_val[i]);
        }
        sb_put(&h, "}", 1);
    }
    uint64_t off = 0;
    for (int i = 0; i < f->ntensors; i++) {
        const vt_tensor *t = &f->tensors[i];
        if (f->nmeta || i) sb_put(&h, ",", 1);
        sb_json_string(&h, t->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", vt_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    sb_put(&h, "}", 1);
    while (h.n % 8) sb_put(&h, " ", 1);
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    int bad = fwrite(lenbuf, 1, 8, out) != 8 || fwrite(h.s, 1, h.n, out) != h.n;
    free(h.s);
    for (int i = 0; i < f->ntensors && !bad; i++)
        bad = fwrite(f->tensors[i].data, 1, f->tensors[i].nbytes, out) != f->tensors[i].nbytes;
    if (bad) return vt_seterr("write error: %s", strerror(errno));
    return 0;
}
