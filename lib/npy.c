/* npy.c - NumPy .npy reading and writing.
 *
 *   "\x93NUMPY" major minor, header length (u16 for 1.x, u32 for 2.x/3.x),
 *   a Python dict literal {'descr': '<f4', 'fortran_order': False,
 *   'shape': (2, 3), } padded so the data starts aligned, then the data. */
#include "npy.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAX_FILE ((size_t)32 << 30)

void vt_tensor_free(vt_tensor *t)
{
    free(t->name);
    if (t->owned) free(t->data);
    memset(t, 0, sizeof *t);
}

static const struct { const char *descr; vt_dtype dtype; } npy_types[] = {
    {"<f4", VT_F32}, {"<f8", VT_F64}, {"<f2", VT_F16}, {"<i8", VT_I64},
    {"<i4", VT_I32}, {"<i2", VT_I16}, {"|i1", VT_I8},  {"|u1", VT_U8},
    {"|b1", VT_BOOL},
};

/* Find 'key': in the header dict and return a pointer just past the colon. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

/* Reorder a column-major (Fortran) array into row-major order in place. */
static void fortran_to_c(vt_tensor *t)
{
    size_t es = vt_dtype_size(t->dtype), n = t->nbytes / (es ? es : 1);
    if (t->ndim < 2 || n < 2) return;
    uint8_t *dst = vt_xmalloc(t->nbytes);
    int64_t idx[VT_MAX_DIM] = {0};
    for (size_t i = 0; i < n; i++) {    /* i walks the C order; idx is its index */
        size_t off = 0, stride = 1;
        for (int d = 0; d < t->ndim; d++) {
            off += (size_t)idx[d] * stride;
            stride *= (size_t)t->shape[d];
        }
        memcpy(dst + i * es, (uint8_t *)t->data + off * es, es);
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    free(t->data);
    t->data = dst;
}

static int parse_npy_header(const char *h, vt_tensor *t, int *fortran)
{
    const char *d = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order"),
               *sh = dict_value(h, "shape");
    if (!d || !fo || !sh) return vt_seterr("bad .npy header");
    if (strncmp(fo, "False", 5) == 0) *fortran = 0;
    else if (strncmp(fo, "True", 4) == 0) *fortran = 1;
    else return vt_seterr("bad .npy header");
    int dt = -1;
    for (size_t i = 0; i < sizeof npy_types / sizeof *npy_types; i++)
        if (d[0] == '\'' && strncmp(d + 1, npy_types[i].descr, 3) == 0 && d[4] == '\'')
            dt = npy_types[i].dtype;
    if (dt < 0) return vt_seterr(".npy dtype %.8s is not supported (need little-endian float, int, uint8 or bool)", d);
    if (*sh++ != '(') return vt_seterr("bad .npy shape");
    t->dtype = dt;
    t->ndim = 0;
    for (;;) {
        while (*sh == ' ') sh++;
        if (*sh == ')') break;
        if (!isdigit((unsigned char)*sh)) return vt_seterr("bad .npy shape");
        if (t->ndim == VT_MAX_DIM) return vt_seterr(".npy has more than %d dimensions", VT_MAX_DIM);
        char *end;
        unsigned long long v = strtoull(sh, &end, 10);
        if (v > (1ull << 40)) return vt_seterr(".npy dimension %llu is too large", v);
        t->shape[t->ndim++] = (int64_t)v;
        sh = end;
        while (*sh == ' ') sh++;
        if (*sh == ',') sh++;
        else if (*sh != ')') return vt_seterr("bad .npy shape");
    }
    return 0;
}

int vt_npy_parse(const uint8_t *buf, size_t len, vt_tensor *t)
{
    memset(t, 0, sizeof *t);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) return vt_seterr("not a .npy file");
    size_t hlen, hoff;
    if (buf[6] == 1) { hlen = buf[8] | (size_t)buf[9] << 8; hoff = 10; }
    else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) return vt_seterr("truncated .npy file");
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hoff = 12;
    } else return vt_seterr(".npy version %d is not supported", buf[6]);
    if (hlen > len - hoff || hlen > (1u << 20)) return vt_seterr("truncated .npy file");
    char *h = vt_xmalloc(hlen + 1);
    memcpy(h, buf + hoff, hlen);
    h[hlen] = 0;
    int fortran = 0;
    int rc = parse_npy_header(h, t, &fortran);
    free(h);
    if (rc < 0) return -1;
    size_t n = vt_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++)
        if (vt_mul_size(n, (size_t)t->shape[i], &n) < 0 || n > NPY_MAX_FILE)
            return vt_seterr(".npy array is too large (a .npy holds at most %zu GiB)",
                             NPY_MAX_FILE >> 30);
    size_t off = hoff + hlen;
    if (n > len - off) return vt_seterr("truncated .npy file (%zu of %zu data bytes)", len - off, n);
    t->nbytes = n;
    t->data = vt_xmalloc(n);
    memcpy(t->data, buf + off, n);
    t->owned = 1;
    if (fortran) fortran_to_c(t);
    return 0;
}

int vt_npy_load(const char *path, vt_tensor *t)
{
    uint8_t *buf;
    size_t len;
    if (vt_read_file(path, NPY_MAX_FILE, &buf, &len) < 0) return -1;
    int rc = vt_npy_parse(buf, len, t);
    free(buf);
    return rc;
}

int vt_npy_write(FILE *f, const vt_tensor *t)
{
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof *npy_types; i++)
        if (npy_types[i].dtype == t->dtype) descr = npy_types[i].descr;
    if (!descr) return vt_seterr("dtype %s has no .npy form", vt_dtype_name(t->dtype));
    char h[512];
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(h + n, sizeof h - n, "%lld,%s", (long long)t->shape[i],
                      i + 1 < t->ndim ? " " : "");
    if (t->ndim > 1) n--;   /* (2, 3) but (5,) */
    n += snprintf(h + n, sizeof h - n, "), }");
    /* Pad with spaces and a newline so the data starts on a 64-byte boundary. */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    memset(h + n, ' ', pad);
    n += pad;
    h[n++] = '\n';
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(n & 0xff), (uint8_t)(n >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(h, 1, n, f) != (size_t)n ||
        fwrite(t->data, 1, t->nbytes, f) != t->nbytes)
        return vt_seterr("write error: %s", strerror(errno));
    return 0;
}
