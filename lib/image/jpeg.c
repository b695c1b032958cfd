/* jpeg.c - JPEG decoding with libjpeg(-turbo), as PIL does it.
 *
 * PIL keeps libjpeg's defaults (JDCT_ISLOW, fancy upsampling), asks for
 * RGB from 3-component files, gray from 1-component ones and CMYK from
 * 4-component ones (YCCK converted by libjpeg), always assuming Adobe's
 * inverted CMYK. Errors longjmp out of libjpeg into jpeg_run(). */
#include <ctype.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "image/internal.h"
#include "util.h"

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
    const vt_decode_opts *opts;
    uint8_t *row;           /* one decoded scanline, components per pixel */
    vt_image img;
} jpeg_job;

static jpeg_job *job_of(j_common_ptr c)
{
    /* err is a member of the job; recover the job from it. */
    return (jpeg_job *)((char *)c->err - offsetof(jpeg_job, err));
}

static void on_error_exit(j_common_ptr c)
{
    jpeg_job *j = job_of(c);
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

/* libjpeg reports running out of data as a warning and pads with an EOI;
 * PIL refuses such files ("image file is truncated"), so we do too. Other
 * warnings (corrupt entropy data) are ignored as PIL ignores them. */
static void on_emit_message(j_common_ptr c, int level)
{
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
        job_of(c)->truncated = 1;
        longjmp(job_of(c)->jb, 1);
    }
}

static void on_output_message(j_common_ptr c) { (void)c; }

/* PIL's MULDIV255: a*b/255 rounded, with shifts. */
static int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* Adobe CMYK is stored inverted; PIL inverts it back, then computes
 * R = (255-K') - C'(255-K')/255 on the inverted values C' = 255-C etc. */
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, int w)
{
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = in[3];              /* 255 - (255 - K) */
        for (int c = 0; c < 3; c++) {
            int v = nk - muldiv255(255 - in[c], nk);
            out[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static void gray_row_to_rgb(const uint8_t *in, uint8_t *out, int w)
{
    for (int x = 0; x < w; x++, out += 3)
        out[0] = out[1] = out[2] = in[x];
}

/* The EXIF orientation from the first APP1 "Exif\0" marker, or 1. */
static int saved_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 ||
            memcmp(m->data, "Exif\0", 5) != 0)
            continue;
        if (m->data[5] != 0) return 1;
        return vt_exif_orientation(m->data + 6, m->data_length - 6);
    }
    return 1;
}

static int pick_color_space(j_decompress_ptr cinfo)
{
    if (cinfo->data_precision != 8)
        return vt_seterr("cannot handle %d-bit JPEG", cinfo->data_precision);
    switch (cinfo->num_components) {
    case 1: cinfo->out_color_space = JCS_GRAYSCALE; return 0;
    case 3: cinfo->out_color_space = JCS_RGB; return 0;
    case 4: cinfo->out_color_space = JCS_CMYK; return 0;
    }
    return vt_seterr("cannot handle %d-component JPEG", cinfo->num_components);
}

/* All state lives in *j (not in this frame) so it survives the longjmp. */
static int jpeg_run(jpeg_job *j, const uint8_t *buf, size_t len, int *orientation)
{
    j_decompress_ptr cinfo = &j->cinfo;
    if (setjmp(j->jb))
        return -2;
    jpeg_mem_src(cinfo, buf, (unsigned long)len);
    if (j->opts->exif_rotate)
        jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(cinfo, TRUE);
    if (vt_image_check_size(cinfo->image_width, cinfo->image_height, j->opts))
        return -1;
    if (pick_color_space(cinfo))
        return -1;
    *orientation = j->opts->exif_rotate ? saved_orientation(cinfo) : 1;
    jpeg_start_decompress(cinfo);
    int w = (int)cinfo->output_width, n = cinfo->output_components;
    vt_image_alloc(&j->img, w, (int)cinfo->output_height);
    j->row = vt_xmalloc((size_t)w * n);
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *out = j->img.rgb + (size_t)cinfo->output_scanline * w * 3;
        JSAMPROW rows[1] = { n == 3 ? out : j->row };
        jpeg_read_scanlines(cinfo, rows, 1);
        if (n == 1) gray_row_to_rgb(j->row, out, w);
        else if (n == 4) cmyk_row_to_rgb(j->row, out, w);
    }
    /* No jpeg_finish_decompress: like PIL, a missing EOI after the last
     * scanline is not an error. */
    return 0;
}

int vt_jpeg_decode(const uint8_t *buf, size_t len, const vt_decode_opts *o,
                   vt_image *img)
{
    jpeg_job *j = vt_xcalloc(1, sizeof *j);
    int orientation = 1;
    j->opts = o;
    j->cinfo.err = jpeg_std_error(&j->err);
    j->err.error_exit = on_error_exit;
    j->err.emit_message = on_emit_message;
    j->err.output_message = on_output_message;
    jpeg_create_decompress(&j->cinfo);
    int rc = jpeg_run(j, buf, len, &orientation);
    jpeg_destroy_decompress(&j->cinfo);
    free(j->row);
    if (rc == -2) {
        if (j->truncated) {
            vt_seterr("truncated JPEG data");
        } else {
            /* "Bogus marker" -> "bogus marker", but keep "IDAT: ..." */
            if (islower((unsigned char)j->msg[1]))
                j->msg[0] = (char)tolower((unsigned char)j->msg[0]);
            vt_seterr("bad JPEG data: %s", j->msg);
        }
    }
    if (rc) {
        free(j->img.rgb);
        free(j);
        return -1;
    }
    *img = j->img;
    free(j);
    vt_image_orient(img, orientation);
    return 0;
}
