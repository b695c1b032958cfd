/* png_write.c - 8-bit PNG output (gray, RGB, RGBA) with libpng. */
#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image/internal.h"
#include "util.h"

typedef struct png_out {
    png_structp png;
    png_infop info;
    char msg[160];
    png_bytep *rows;
} png_out;

static void on_error(png_structp png, png_const_charp msg)
{
    png_out *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static int write_run(png_out *o, FILE *f, const uint8_t *pix, int w, int h, int channels)
{
    static const int color_of[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB,
                                    PNG_COLOR_TYPE_RGB_ALPHA};
    if (setjmp(png_jmpbuf(o->png)))
        return -1;
    png_init_io(o->png, f);
    png_set_IHDR(o->png, o->info, (png_uint_32)w, (png_uint_32)h, 8, color_of[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(o->png, o->info);
    for (int y = 0; y < h; y++)
        o->rows[y] = (png_bytep)(pix + (size_t)y * w * channels);
    png_write_image(o->png, o->rows);
    png_write_end(o->png, NULL);
    return 0;
}

int vt_png_write(FILE *f, const uint8_t *pix, int w, int h, int channels)
{
    if (channels != 1 && channels != 3 && channels != 4)
        return vt_seterr("PNG output needs 1, 3 or 4 channels, not %d", channels);
    if (w < 1 || h < 1 || w > 1000000 || h > 1000000)
        return vt_seterr("cannot write a %dx%d PNG", w, h);
    png_out o;
    memset(&o, 0, sizeof o);
    o.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, on_error, on_warning);
    if (o.png) o.info = png_create_info_struct(o.png);
    if (!o.info) {
        png_destroy_write_struct(&o.png, NULL);
        return vt_seterr("cannot initialize libpng");
    }
    o.rows = vt_xmalloc(sizeof *o.rows * (size_t)h);
    errno = 0;
    int rc = write_run(&o, f, pix, w, h, channels);
    png_destroy_write_struct(&o.png, &o.info);
    free(o.rows);
    if (rc == 0 && (fflush(f) != 0 || ferror(f)))
        rc = -1;
    if (rc)
        return vt_seterr("PNG write error%s%s", errno ? ": " : "", errno ? strerror(errno) : "");
    return 0;
}
