/* png.c - PNG decoding with libpng, to the pixels PIL's convert("RGB")
 * gives: alpha dropped (no compositing), gray replicated, palette looked up
 * in PIL's palette (missing entries are PIL's gray ramp), 16-bit samples
 * cut to their high byte, except 16-bit gray, which PIL holds as 32-bit
 * "I" and clips to 0..255 when converting to RGB. Low bit depths scale by
 * bit replication (x85 for 2-bit, x17 for 4-bit, x255 for 1-bit).
 * Errors longjmp out of libpng into png_run(). */
#include <ctype.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image/internal.h"
#include "util.h"

typedef struct png_job {
    png_structp png;
    png_infop info;
    const uint8_t *buf;
    size_t len, pos;
    int truncated;
    char msg[160];
    const vt_decode_opts *opts;
    uint8_t pal[256][3];
    uint8_t *raw;           /* decoded rows: one row, or all when interlaced */
    png_bytep *rows;
    vt_image img;
} png_job;

static void on_read(png_structp png, png_bytep dst, size_t n)
{
    png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos) {
        j->truncated = 1;
        png_error(png, "truncated");
    }
    memcpy(dst, j->buf + j->pos, n);
    j->pos += n;
}

static void on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

/* PIL's palette: a gray ramp overwritten by the PLTE entries. */
static void load_palette(png_job *j)
{
    png_colorp plte = NULL;
    int n = 0;
    for (int i = 0; i < 256; i++)
        j->pal[i][0] = j->pal[i][1] = j->pal[i][2] = (uint8_t)i;
    if (png_get_PLTE(j->png, j->info, &plte, &n) != PNG_INFO_PLTE) return;
    for (int i = 0; i < n && i < 256; i++) {
        j->pal[i][0] = plte[i].red;
        j->pal[i][1] = plte[i].green;
        j->pal[i][2] = plte[i].blue;
    }
}

/* in: one row as libpng gives it with packing on (samples < 8 bits one per
 * byte); out: w RGB pixels. */
static void row_to_rgb(const png_job *j, const uint8_t *in, uint8_t *out, int w,
                       int color, int depth)
{
    int step = depth == 16 ? 2 : 1;   /* bytes per sample */
    static const uint8_t gray_scale[17] = {0, 255, 85, 0, 17, 0, 0, 0, 1,
                                           0, 0, 0, 0, 0, 0, 0, 0};
    for (int x = 0; x < w; x++, out += 3) {
        switch (color) {
        case PNG_COLOR_TYPE_GRAY:
            if (depth == 16) out[0] = in[0] ? 255 : in[1];
            else out[0] = (uint8_t)(in[0] * gray_scale[depth]);
            out[1] = out[2] = out[0];
            in += step;
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            out[0] = out[1] = out[2] = in[0];
            in += 2 * step;
            break;
        case PNG_COLOR_TYPE_PALETTE:
            memcpy(out, j->pal[in[0]], 3);
            in += 1;
            break;
        case PNG_COLOR_TYPE_RGB:
            out[0] = in[0], out[1] = in[step], out[2] = in[2 * step];
            in += 3 * step;
            break;
        default:   /* RGBA */
            out[0] = in[0], out[1] = in[step], out[2] = in[2 * step];
            in += 4 * step;
            break;
        }
    }
}

static int png_run(png_job *j)
{
    png_uint_32 w, h;
    int depth, color, interlace;
    if (setjmp(png_jmpbuf(j->png)))
        return -2;
    png_set_read_fn(j->png, j, on_read);
    /* PIL checks every chunk's CRC and refuses a mismatch. */
    png_set_crc_action(j->png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(j->png, j->info);
    png_get_IHDR(j->png, j->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if (vt_image_check_size(w, h, j->opts))
        return -1;
    if (depth < 8)
        png_set_packing(j->png);
    if (interlace != PNG_INTERLACE_NONE)
        png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    if (color == PNG_COLOR_TYPE_PALETTE)
        load_palette(j);
    size_t rowbytes = png_get_rowbytes(j->png, j->info);
    vt_image_alloc(&j->img, (int)w, (int)h);
    if (interlace == PNG_INTERLACE_NONE) {
        j->raw = vt_xmalloc(rowbytes);
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(j->png, j->raw, NULL);
            row_to_rgb(j, j->raw, j->img.rgb + (size_t)y * w * 3, (int)w, color, depth);
        }
        return 0;
    }
    size_t total;
    if (vt_mul_size(rowbytes, h, &total))
        return vt_seterr("PNG image too large");
    j->raw = vt_xmalloc(total);
    j->rows = vt_xmalloc(h * sizeof *j->rows);
    for (png_uint_32 y = 0; y < h; y++)
        j->rows[y] = j->raw + (size_t)y * rowbytes;
    png_read_image(j->png, j->rows);
    for (png_uint_32 y = 0; y < h; y++)
        row_to_rgb(j, j->rows[y], j->img.rgb + (size_t)y * w * 3, (int)w, color, depth);
    return 0;
}

/* libpng reads past IHDR before reporting it; check the size first so a
 * header claiming huge dimensions is refused at once. */
static int check_ihdr(const uint8_t *buf, size_t len, const vt_decode_opts *o)
{
    if (len < 24 || memcmp(buf + 12, "IHDR", 4) != 0)
        return 0;   /* libpng reports the problem */
    long long w = (long long)buf[16] << 24 | buf[17] << 16 | buf[18] << 8 | buf[19];
    long long h = (long long)buf[20] << 24 | buf[21] << 16 | buf[22] << 8 | buf[23];
    return vt_image_check_size(w, h, o);
}

int vt_png_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                  vt_image *img)
{
    if (check_ihdr(buf, len, o))
        return -1;
    png_job *j = vt_xcalloc(1, sizeof *j);
    j->buf = buf;
    j->len = len;
    j->opts = o;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, on_error, on_warning);
    if (j->png) j->info = png_create_info_struct(j->png);
    int rc = j->info ? png_run(j) : (vt_seterr("cannot initialize libpng"), -1);
    png_destroy_read_struct(&j->png, j->info ? &j->info : NULL, NULL);
    free(j->raw);
    free(j->rows);
    if (rc == -2) {
        if (j->truncated) {
            vt_seterr("truncated PNG data");
        } else {
            /* "Bogus marker" -> "bogus marker", but keep "IDAT: ..." */
            if (islower((unsigned char)j->msg[1]))
                j->msg[0] = (char)tolower((unsigned char)j->msg[0]);
            vt_seterr("bad PNG data: %s", j->msg);
        }
    }
    if (rc) {
        free(j->img.rgb);
        free(j);
        return -1;
    }
    *img = j->img;
    free(j);
    return 0;
}
