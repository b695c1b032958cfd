/* zip.c - a read-only ZIP reader over a buffer (PKWARE APPNOTE 6.3): the
 * end of central directory record (and its ZIP64 form), the central
 * directory, local headers, stored and deflated entries. Every offset and
 * length is checked against the buffer before it is used. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "internal.h"
#include "util.h"

#define SIG_LOCAL   0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD    0x06054b50u
#define SIG_EOCD64  0x06064b50u
#define SIG_LOC64   0x07064b50u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* Does [off, off+n) lie inside the buffer? */
static int inside(const vt_zip *z, uint64_t off, uint64_t n)
{
    return off <= z->len && n <= z->len - off;
}

/* The EOCD record is the last thing in the file, followed only by a
 * comment of at most 65535 bytes: search that window backwards. */
static long find_eocd(const vt_zip *z)
{
    if (z->len < 22) return -1;
    size_t lo = z->len > 22 + 65535 ? z->len - 22 - 65535 : 0;
    for (size_t i = z->len - 22 + 1; i-- > lo;)
        if (rd32(z->buf + i) == SIG_EOCD && i + 22 + rd16(z->buf + i + 20) == z->len)
            return (long)i;
    return -1;
}

typedef struct cdir { uint64_t count, size, off; } cdir;

static int read_eocd(const vt_zip *z, cdir *cd)
{
    long e = find_eocd(z);
    if (e < 0) return vt_seterr("not a zip archive (no end of central directory)");
    const uint8_t *p = z->buf + e;
    cd->count = rd16(p + 10);
    cd->size = rd32(p + 12);
    cd->off = rd32(p + 16);
    int disk = rd16(p + 4), cd_disk = rd16(p + 6);
    int need64 = cd->count == 0xffff || cd->size == 0xffffffffu ||
                 cd->off == 0xffffffffu || disk == 0xffff || cd_disk == 0xffff;
    /* A ZIP64 locator sits right before the EOCD; torch always writes one. */
    if (e >= 20 && rd32(p - 20) == SIG_LOC64) {
        uint64_t r = rd64(p - 20 + 8);
        if (!inside(z, r, 56) || r > (uint64_t)e - 20 || rd32(z->buf + r) != SIG_EOCD64)
            return vt_seterr("bad zip64 end of central directory locator");
        const uint8_t *q = z->buf + r;
        disk = (int)rd32(q + 16);
        cd_disk = (int)rd32(q + 20);
        cd->count = rd64(q + 32);
        cd->size = rd64(q + 40);
        cd->off = rd64(q + 48);
    } else if (need64) {
        return vt_seterr("zip64 archive without its end of central directory locator");
    }
    if (disk != 0 || cd_disk != 0) return vt_seterr("multi-disk zip archives are not supported");
    if (!inside(z, cd->off, cd->size)) return vt_seterr("zip central directory is outside the file");
    if (cd->count > VT_ZIP_MAX_ENTRIES || cd->count > cd->size / 46)
        return vt_seterr("zip central directory claims too many entries");
    return 0;
}

/* Fields of the ZIP64 extra block (id 1) appear only for the values that
 * are saturated in the fixed header, in this order. */
static int zip64_extra(const uint8_t *x, size_t xlen, vt_zip_entry *e, int want_u,
                       int want_c, int want_o)
{
    while (xlen >= 4) {
        unsigned id = rd16(x), n = rd16(x + 2);
        if (n > xlen - 4) return vt_seterr("zip extra field overruns its header");
        if (id == 1) {
            const uint8_t *v = x + 4;
            size_t need = 8u * (want_u + want_c + want_o);
            if (n < need) return vt_seterr("short zip64 extra field");
            if (want_u) { e->usize = rd64(v); v += 8; }
            if (want_c) { e->csize = rd64(v); v += 8; }
            if (want_o) { e->lho = rd64(v); }
            return 0;
        }
        x += 4 + n;
        xlen -= 4 + n;
    }
    if (want_u || want_c || want_o) return vt_seterr("zip entry lacks its zip64 extra field");
    return 0;
}

static int read_central(const uint8_t **pp, const uint8_t *end,
                        vt_zip_entry *e)
{
    const uint8_t *p = *pp;
    if (end - p < 46 || rd32(p) != SIG_CENTRAL) return vt_seterr("bad zip central directory entry");
    unsigned flags = rd16(p + 8), nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
    if ((size_t)(end - p) < 46u + nlen + xlen + clen)
        return vt_seterr("zip central directory entry overruns the directory");
    if (flags & 1) return vt_seterr("encrypted zip entries are not supported");
    e->method = rd16(p + 10);
    e->crc = rd32(p + 16);
    e->csize = rd32(p + 20);
    e->usize = rd32(p + 24);
    e->lho = rd32(p + 42);
    if (zip64_extra(p + 46 + nlen, xlen, e, e->usize == 0xffffffffu,
                    e->csize == 0xffffffffu, e->lho == 0xffffffffu) < 0)
        return -1;
    if (memchr(p + 46, 0, nlen)) return vt_seterr("zip entry name contains a NUL byte");
    e->name = vt_xmalloc(nlen + 1u);
    memcpy(e->name, p + 46, nlen);
    e->name[nlen] = 0;
    *pp = p + 46 + nlen + xlen + clen;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const vt_zip_entry *)a)->name, ((const vt_zip_entry *)b)->name);
}

int vt_zip_open(vt_zip *z, const uint8_t *buf, size_t len)
{
    memset(z, 0, sizeof *z);
    z->buf = buf;
    z->len = len;
    cdir cd = {0};
    if (read_eocd(z, &cd) < 0) return -1;
    z->ent = vt_xcalloc(cd.count ? cd.count : 1, sizeof *z->ent);
    const uint8_t *p = buf + cd.off, *end = p + cd.size;
    for (uint64_t i = 0; i < cd.count; i++) {
        if (read_central(&p, end, &z->ent[i]) < 0) { vt_zip_close(z); return -1; }
        z->n++;
    }
    qsort(z->ent, z->n, sizeof *z->ent, by_name);
    for (size_t i = 1; i < z->n; i++)
        if (strcmp(z->ent[i - 1].name, z->ent[i].name) == 0) {
            vt_zip_close(z);
            return vt_seterr("zip archive has two entries with the same name");
        }
    return 0;
}

void vt_zip_close(vt_zip *z)
{
    for (size_t i = 0; i < z->n; i++) free(z->ent[i].name);
    free(z->ent);
    memset(z, 0, sizeof *z);
}

long vt_zip_find(const vt_zip *z, const char *name)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(z->ent[mid].name, name);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

static int inflate_entry(const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen,
                         uint32_t crc)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -15) != Z_OK) return vt_seterr("zlib initialisation failed");
    int rc = Z_OK;
    size_t in_left = clen, out_left = ulen;
    s.next_in = (Bytef *)src;
    s.next_out = dst;
    /* zlib counts in uInt: feed and drain in chunks below 4 GiB. */
    while (rc == Z_OK) {
        uInt in_chunk = in_left > 1u << 30 ? 1u << 30 : (uInt)in_left;
        uInt out_chunk = out_left > 1u << 30 ? 1u << 30 : (uInt)out_left;
        s.avail_in = in_chunk;
        s.avail_out = out_chunk;
        rc = inflate(&s, Z_NO_FLUSH);
        in_left -= in_chunk - s.avail_in;
        out_left -= out_chunk - s.avail_out;
        if (rc == Z_BUF_ERROR && (in_left == 0 || out_left == 0)) break;
    }
    inflateEnd(&s);
    if (rc != Z_STREAM_END || out_left != 0) return vt_seterr("corrupt deflated zip entry");
    if (crc32_z(0, dst, ulen) != crc)
        return vt_seterr("zip entry fails its CRC check");
    return 0;
}

int vt_zip_read(const vt_zip *z, size_t i, size_t max, const uint8_t **data,
                size_t *len, uint8_t **owned)
{
    *data = NULL;
    *len = 0;
    *owned = NULL;
    if (i >= z->n) return vt_seterr("no such zip entry");
    const vt_zip_entry *e = &z->ent[i];
    if (!inside(z, e->lho, 30) || rd32(z->buf + e->lho) != SIG_LOCAL)
        return vt_seterr("zip local header is missing or outside the file");
    const uint8_t *h = z->buf + e->lho;
    uint64_t start = e->lho + 30 + rd16(h + 26) + rd16(h + 28);
    if (!inside(z, start, e->csize)) return vt_seterr("zip entry data lies outside the file");
    /* Deflate expands at most ~1032:1; a larger claim is a lie. */
    if (e->method == 8 && e->usize / 1032 > e->csize + 1)
        return vt_seterr("zip entry claims an impossible size");
    if (e->usize > max)
        return vt_seterr("zip entry %.80s is %llu bytes, over the limit of %zu", e->name,
                         (unsigned long long)e->usize, max);
    const uint8_t *src = z->buf + start;
    if (e->method == 0) {
        if (e->csize != e->usize) return vt_seterr("stored zip entry with mismatched sizes");
        *data = src;
        *len = e->usize;
        return 0;
    }
    if (e->method != 8) return vt_seterr("zip compression method %u is not supported", e->method);
    uint8_t *buf = vt_xmalloc(e->usize ? e->usize : 1);
    if (inflate_entry(src, e->csize, buf, e->usize, e->crc) < 0) { free(buf); return -1; }
    *data = buf;
    *len = e->usize;
    *owned = buf;
    return 0;
}
