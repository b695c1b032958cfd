/* pnm.c - binary PGM (P5) and PPM (P6), read the way PIL 9.4 reads them.
 *
 * Header: magic, width, height, maxval as whitespace-separated tokens with
 * '#' comments running to the end of the line; exactly one whitespace byte
 * after maxval, then the samples (1 byte each, or 2 big-endian bytes when
 * maxval > 255). PIL rescales samples to 0..255 by round(v / maxval * 255)
 * (round half to even), except that 16-bit gray becomes PIL's 32-bit "I"
 * mode (scaled to 0..65535) whose conversion to RGB clips at 255. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/internal.h"
#include "util.h"

#define MAX_TOKEN 10   /* PIL's limit on header token length */

typedef struct cursor {
    const uint8_t *p;
    size_t len, pos;
} cursor;

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* One header number; leaves the cursor after the whitespace that ended it. */
static int read_number(cursor *c, long *out)
{
    char tok[MAX_TOKEN + 2];
    int n = 0;
    while (n <= MAX_TOKEN) {
        if (c->pos >= c->len) break;
        int ch = c->p[c->pos++];
        if (is_space(ch)) {
            if (n == 0) continue;
            break;
        }
        if (ch == '#') {
            while (c->pos < c->len && c->p[c->pos] != '\n' && c->p[c->pos] != '\r')
                c->pos++;
            if (c->pos < c->len) c->pos++;
            continue;
        }
        tok[n++] = (char)ch;
    }
    if (n == 0) return vt_seterr("truncated PPM header");
    if (n > MAX_TOKEN) return vt_seterr("bad PPM header: number too long");
    long v = 0;
    for (int i = 0; i < n; i++) {
        if (tok[i] < '0' || tok[i] > '9') return vt_seterr("bad PPM header: not a number");
        v = v * 10 + (tok[i] - '0');
    }
    *out = v;
    return 0;
}

/* lut[v] = the 8-bit value PIL ends up with for sample v (v up to 65535). */
static void build_lut(uint8_t *lut, size_t n, long maxval, int gray16)
{
    for (size_t v = 0; v < n; v++) {
        double r;
        if (gray16) {   /* to 0..65535, then clipped to 0..255 */
            r = maxval == 65535 ? (double)v : fmin(65535.0, nearbyint((double)v / maxval * 65535.0));
        } else {
            r = fmin(255.0, nearbyint((double)v / maxval * 255.0));
        }
        lut[v] = (uint8_t)(r >= 255.0 ? 255 : r);
    }
}

static void convert(const uint8_t *in, vt_image *img, int bands, int bytes, const uint8_t *lut)
{
    size_t npix = (size_t)img->w * img->h;
    uint8_t *out = img->rgb;
    for (size_t i = 0; i < npix; i++, out += 3) {
        for (int b = 0; b < bands; b++, in += bytes) {
            unsigned v = bytes == 1 ? in[0] : (unsigned)in[0] << 8 | in[1];
            out[b] = lut[v];
        }
        if (bands == 1) out[1] = out[2] = out[0];
    }
}

int vt_pnm_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                  vt_image *img)
{
    if (len < 3 || buf[0] != 'P' || (buf[1] != '5' && buf[1] != '6') || !is_space(buf[2]))
        return vt_seterr("only binary PGM and PPM (P5, P6) are supported");
    int bands = buf[1] == '6' ? 3 : 1;
    cursor c = { buf, len, 3 };
    long w, h, maxval;
    if (read_number(&c, &w) || read_number(&c, &h) || read_number(&c, &maxval))
        return -1;
    if (maxval < 1 || maxval > 65535)
        return vt_seterr("bad PPM header: maxval must be 1 to 65535");
    if (vt_image_check_size(w, h, o))
        return -1;
    int bytes = maxval > 255 ? 2 : 1;
    size_t need = (size_t)w * (size_t)h * bands * bytes;   /* < 2^31 * 6 */
    if (len - c.pos < need)
        return vt_seterr("truncated PPM data");
    size_t nlut = bytes == 2 ? 65536 : 256;
    uint8_t *lut = vt_xmalloc(nlut);
    build_lut(lut, nlut, maxval, bands == 1 && maxval > 255);
    vt_image_alloc(img, (int)w, (int)h);
    convert(buf + c.pos, img, bands, bytes, lut);
    free(lut);
    return 0;
}
