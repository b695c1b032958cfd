/* test_image.c - decoding, resizing, PNG output and colormap against the
 * Pillow references in tests/fixtures/images (tests/make-image-fixtures.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "image.h"
#include "npy.h"
#include "tap.h"
#include "util.h"

static char fixdir[4096];

static const char *fixture(const char *name)
{
    static char path[8192];
    snprintf(path, sizeof path, "%s/%s", fixdir, name);
    return path;
}

/* Number of bytes where img differs from the uint8 [h,w,3] reference file
 * (-1 if the shapes differ or it cannot be loaded). */
static long diff_npy(const vt_image *img, const char *npy_name)
{
    vt_tensor t;
    memset(&t, 0, sizeof t);
    if (vt_npy_load(fixture(npy_name), &t)) {
        printf("# cannot load %s: %s\n", npy_name, vt_error());
        return -1;
    }
    long bad = -1;
    if (t.dtype == VT_U8 && t.ndim == 3 && t.shape[0] == img->h &&
        t.shape[1] == img->w && t.shape[2] == 3) {
        const uint8_t *ref = t.data;
        bad = 0;
        for (size_t i = 0; i < (size_t)img->w * img->h * 3; i++)
            bad += ref[i] != img->rgb[i];
    } else {
        printf("# %s: shape mismatch with %dx%d\n", npy_name, img->w, img->h);
    }
    vt_tensor_free(&t);
    return bad;
}

static void test_decode_fixtures(void)
{
    static const char *files[] = {
        "jpeg_baseline.jpg", "jpeg_odd420.jpg", "jpeg_odd444.jpg", "jpeg_progressive.jpg",
        "jpeg_gray.jpg", "jpeg_cmyk.jpg", "jpeg_portrait.jpg",
        "png_rgb.png", "png_l.png", "png_la.png", "png_rgba.png", "png_p.png",
        "png_p4.png", "png_pshort.png", "png_1bit.png", "png_i16.png", "png_rgb16.png",
        "png_la16.png", "png_rgba16_interlaced.png", "png_rgb_interlaced.png",
        "png_gray2.png", "pnm_rgb.ppm", "pnm_gray.pgm", "pnm_rgb_max1000.ppm",
        "pnm_gray_max100.pgm", "pnm_gray_max65535.pgm", "pnm_gray_max300.pgm",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        vt_image img;
        char npy[256];
        snprintf(npy, sizeof npy, "%.*s.npy", (int)(strrchr(files[i], '.') - files[i]), files[i]);
        if (vt_image_load(fixture(files[i]), NULL, &img)) {
            ok(0, "decode %s: %s", files[i], vt_error());
            continue;
        }
        long bad = diff_npy(&img, npy);
        ok(bad == 0, "decode %s (%dx%d) matches PIL (%ld bytes differ)", files[i], img.w, img.h, bad);
        vt_image_free(&img);
    }
}

static void test_resize(void)
{
    static const int sizes[][2] = {{20, 15}, {13, 29}, {64, 41}, {40, 17}, {25, 30}, {7, 5}, {71, 23}};
    static const vt_interp interps[] = {VT_INTERP_BICUBIC, VT_INTERP_BILINEAR, VT_INTERP_NEAREST};
    vt_image src;
    if (vt_image_load(fixture("png_rgb.png"), NULL, &src)) {
        ok(0, "load png_rgb.png: %s", vt_error());
        return;
    }
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (size_t k = 0; k < 3; k++) {
            vt_image dst;
            char npy[128];
            int w = sizes[s][0], h = sizes[s][1];
            snprintf(npy, sizeof npy, "resize_%dx%d_%s.npy", w, h, vt_interp_name(interps[k]));
            if (vt_image_resize(&src, w, h, interps[k], &dst)) {
                ok(0, "resize to %dx%d: %s", w, h, vt_error());
                continue;
            }
            long bad = diff_npy(&dst, npy);
            ok(bad == 0, "resize %dx%d -> %dx%d %s matches PIL (%ld bytes differ)",
               src.w, src.h, w, h, vt_interp_name(interps[k]), bad);
            vt_image_free(&dst);
        }
    }
    vt_image same;
    ok(vt_image_resize(&src, src.w, src.h, VT_INTERP_BICUBIC, &same) == 0 &&
       memcmp(same.rgb, src.rgb, (size_t)src.w * src.h * 3) == 0, "resize to the same size copies");
    vt_image_free(&same);
    ok(vt_image_resize(&src, 0, 5, VT_INTERP_BICUBIC, &same) < 0, "resize to 0 width refused");
    vt_image_free(&src);
}

/* A window of a resize equals the same pixels of the whole resize, for
 * up- and downscaling, every interpolation, windows at edges and inside. */
static void test_resize_window(void)
{
    static const int sizes[][2] = {{20, 15}, {13, 29}, {64, 41}, {200, 3}, {2, 150}, {50, 33}};
    static const vt_interp interps[] = {VT_INTERP_BICUBIC, VT_INTERP_BILINEAR, VT_INTERP_NEAREST};
    vt_image src;
    if (vt_image_load(fixture("png_rgb.png"), NULL, &src)) {
        ok(0, "load png_rgb.png: %s", vt_error());
        return;
    }
    int checked = 0, wrong = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        for (size_t k = 0; k < 3; k++) {
            vt_image full;
            if (vt_image_resize(&src, w, h, interps[k], &full)) continue;
            for (int trial = 0; trial < 12; trial++) {
                int cw = 1 + (trial * 7 + 3) % w, ch = 1 + (trial * 5 + 1) % h;
                int x0 = (trial * 11) % (w - cw + 1), y0 = (trial * 13) % (h - ch + 1);
                vt_image part;
                if (vt_image_resize_window(&src, w, h, x0, y0, cw, ch, interps[k], &part)) {
                    wrong++;
                    continue;
                }
                for (int y = 0; y < ch; y++)
                    wrong += memcmp(part.rgb + (size_t)y * cw * 3,
                                    full.rgb + ((size_t)(y0 + y) * w + x0) * 3, (size_t)cw * 3) != 0;
                checked++;
                vt_image_free(&part);
            }
            vt_image_free(&full);
        }
    }
    ok(checked == 6 * 3 * 12 && wrong == 0, "resize windows equal the whole resize (%d windows, %d wrong)",
       checked, wrong);
    vt_image part;
    ok(vt_image_resize_window(&src, 10, 10, 5, 0, 6, 10, VT_INTERP_BICUBIC, &part) < 0,
       "window past the edge refused: %s", vt_error());
    vt_image_free(&src);
}

static void test_exif(void)
{
    for (int o = 1; o <= 8; o++) {
        char jpg[64], npy[64];
        snprintf(jpg, sizeof jpg, "exif_orient%d.jpg", o);
        snprintf(npy, sizeof npy, "exif_orient%d.npy", o);
        vt_decode_opts opts;
        vt_decode_opts_default(&opts);
        opts.exif_rotate = 1;
        vt_image img;
        if (vt_image_load(fixture(jpg), &opts, &img)) {
            ok(0, "decode %s: %s", jpg, vt_error());
            continue;
        }
        long bad = diff_npy(&img, npy);
        ok(bad == 0, "EXIF orientation %d as ImageOps.exif_transpose (%dx%d, %ld differ)",
           o, img.w, img.h, bad);
        vt_image_free(&img);
        if (vt_image_load(fixture(jpg), NULL, &img) == 0) {
            ok(img.w == 12 && img.h == 8, "orientation %d ignored by default", o);
            vt_image_free(&img);
        }
    }
}

static int read_fixture(const char *name, uint8_t **buf, size_t *len)
{
    return vt_read_file(fixture(name), 1 << 24, buf, len);
}

/* Decoding buf must fail with an error containing `want`. */
static void expect_error(const uint8_t *buf, size_t len, const char *want, const char *what)
{
    vt_image img;
    double t0 = vt_now();
    int rc = vt_image_decode(buf, len, NULL, &img);
    double dt = vt_now() - t0;
    ok(rc < 0 && strstr(vt_error(), want) && img.rgb == NULL && dt < 1.0,
       "%s refused: \"%s\" (%.3f s)", what, rc < 0 ? vt_error() : "accepted", dt);
    if (rc == 0) vt_image_free(&img);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v;
}

static void test_errors(void)
{
    uint8_t *buf;
    size_t len;
    expect_error((const uint8_t *)"", 0, "empty", "empty file");
    expect_error((const uint8_t *)"hello, world\n", 13, "not a JPEG, PNG or PPM", "garbage");
    if (read_fixture("jpeg_baseline.jpg", &buf, &len) == 0) {
        expect_error(buf, len / 2, "truncated JPEG", "JPEG cut in half");
        expect_error(buf, 200, "JPEG", "JPEG cut in its header");
        /* Claim 65000x65000 in the SOF0 header. */
        for (size_t i = 0; i + 9 < len; i++) {
            if (buf[i] == 0xFF && buf[i + 1] == 0xC0) {
                buf[i + 5] = buf[i + 7] = 0xFD;
                buf[i + 6] = buf[i + 8] = 0xE8;
                break;
            }
        }
        expect_error(buf, len, "over the limit", "JPEG claiming 65000x65000");
        free(buf);
    }
    if (read_fixture("jpeg_progressive.jpg", &buf, &len) == 0) {
        expect_error(buf, len * 2 / 3, "truncated JPEG", "progressive JPEG cut short");
        free(buf);
    }
    if (read_fixture("png_rgb.png", &buf, &len) == 0) {
        expect_error(buf, len - 30, "PNG", "truncated PNG");
        buf[len / 2] ^= 0x55;   /* inside IDAT: zlib or the CRC notices */
        expect_error(buf, len, "PNG", "PNG with a corrupt IDAT");
        buf[len / 2] ^= 0x55;
        buf[30] ^= 1;           /* IHDR's CRC */
        expect_error(buf, len, "CRC", "PNG with a bad CRC");
        free(buf);
    }
    /* A valid PNG header (IHDR with a correct CRC) claiming 100000x100000. */
    uint8_t png[8 + 25];
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    memcpy(png + 8, "\0\0\0\x0dIHDR", 8);
    put32(png + 16, 100000);
    put32(png + 20, 100000);
    memcpy(png + 24, "\x08\x02\0\0\0", 5);
    put32(png + 29, (uint32_t)crc32(0, png + 12, 17));
    expect_error(png, sizeof png, "over the limit", "PNG claiming 100000x100000");
    static const char ppm_huge[] = "P6\n100000 100000\n255\n";
    expect_error((const uint8_t *)ppm_huge, sizeof ppm_huge - 1, "over the limit",
                 "PPM claiming 100000x100000");
    static const char ppm_short[] = "P6\n# c\n4 4\n255\nabcdef";
    expect_error((const uint8_t *)ppm_short, sizeof ppm_short - 1, "truncated PPM", "short PPM");
    static const char ppm_ascii[] = "P3\n1 1\n255\n1 2 3\n";
    expect_error((const uint8_t *)ppm_ascii, sizeof ppm_ascii - 1, "P5, P6", "ASCII PPM");
    static const char ppm_bad[] = "P6\n1 x\n255\nabc";
    expect_error((const uint8_t *)ppm_bad, sizeof ppm_bad - 1, "PPM header", "PPM bad number");
    static const char ppm_max[] = "P5\n1 1\n70000\nab";
    expect_error((const uint8_t *)ppm_max, sizeof ppm_max - 1, "maxval", "PPM maxval 70000");

    vt_decode_opts small;
    vt_decode_opts_default(&small);
    small.max_pixels = 100;
    vt_image img;
    ok(vt_image_load(fixture("png_rgb.png"), &small, &img) < 0 &&
       strstr(vt_error(), "over the limit of 100"), "max_pixels option: %s", vt_error());
    ok(vt_image_load(fixture("no-such-file.png"), NULL, &img) < 0, "missing file: %s", vt_error());
}

/* Flip random bytes in each fixture: decoding may fail but must not crash
 * (meaningful under the sanitizers). */
static void test_mutations(void)
{
    static const char *files[] = {"jpeg_baseline.jpg", "jpeg_progressive.jpg", "jpeg_cmyk.jpg",
                                  "png_p.png", "png_rgba16_interlaced.png", "pnm_rgb_max1000.ppm",
                                  "exif_orient6.jpg"};
    unsigned seed = 12345;
    int decoded = 0, refused = 0;
    vt_decode_opts opts;
    vt_decode_opts_default(&opts);
    opts.exif_rotate = 1;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        uint8_t *orig, *buf;
        size_t len;
        if (read_fixture(files[f], &orig, &len)) continue;
        buf = vt_xmalloc(len);
        for (int trial = 0; trial < 150; trial++) {
            memcpy(buf, orig, len);
            for (int k = 0; k < 1 + trial % 4; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % len;
                buf[at] ^= (uint8_t)(1u << (seed >> 28 & 7));
            }
            size_t n = trial % 5 == 0 ? (seed >> 4) % len : len;
            vt_image img;
            if (vt_image_decode(buf, n, &opts, &img) == 0) {
                decoded++;
                vt_image_free(&img);
            } else {
                refused++;
            }
        }
        free(buf);
        free(orig);
    }
    ok(decoded + refused == 7 * 150, "mutated files: %d decoded, %d refused, no crash",
       decoded, refused);
}

static void test_png_write(void)
{
    uint8_t pix[7 * 5 * 4];
    for (size_t i = 0; i < sizeof pix; i++) pix[i] = (uint8_t)(i * 29 + 7);
    for (int ch = 1; ch <= 4; ch++) {
        if (ch == 2) continue;
        FILE *f = tmpfile();
        if (!f) { ok(0, "tmpfile"); return; }
        int rc = vt_png_write(f, pix, 7, 5, ch);
        long len = ftell(f);
        uint8_t *buf = vt_xmalloc(len > 0 ? (size_t)len : 1);
        rewind(f);
        size_t got = fread(buf, 1, (size_t)len, f);
        fclose(f);
        vt_image img;
        int match = 0;
        if (rc == 0 && got == (size_t)len && vt_image_decode(buf, got, NULL, &img) == 0) {
            match = img.w == 7 && img.h == 5;
            for (int i = 0; match && i < 35; i++)
                for (int c = 0; c < 3; c++)
                    match &= img.rgb[i * 3 + c] == pix[i * ch + (ch == 1 ? 0 : c)];
            vt_image_free(&img);
        }
        ok(match, "PNG write/read round trip, %d channel(s)", ch);
        free(buf);
    }
    FILE *full = fopen("/dev/full", "wb");
    if (full) {
        ok(vt_png_write(full, pix, 7, 5, 3) < 0, "PNG write to a full disk fails: %s", vt_error());
        fclose(full);
    } else {
        skip("PNG write error", "no /dev/full");
    }
    ok(vt_png_write(stdout, pix, 7, 5, 2) < 0, "2-channel PNG refused");
}

static void test_colormap(void)
{
    uint8_t c[3];
    vt_colormap(0.0f, c);
    ok(c[0] == 68 && c[1] == 1 && c[2] == 84, "viridis(0) = #440154");
    vt_colormap(1.0f, c);
    ok(c[0] == 253 && c[1] == 231 && c[2] == 37, "viridis(1) = #fde725");
    vt_colormap(0.5f, c);
    ok(c[0] == 33 && c[1] == 145 && c[2] == 140, "viridis(0.5) = #21918c");
    int all = 1;
    for (int i = 0; i < 256; i++) {
        uint8_t back[3];
        vt_colormap(i / 255.0f, c);
        int j = vt_colormap_inverse(c);
        vt_colormap(j / 255.0f, back);
        /* 8-bit viridis repeats two colours (entries 112/113, 129/130) */
        all &= abs(j - i) <= 1 && memcmp(back, c, 3) == 0;
    }
    ok(all, "colormap inverse recovers every entry");
    vt_colormap(-3.0f, c);
    ok(vt_colormap_inverse(c) == 0, "colormap clamps below 0");
    vt_colormap(7.0f, c);
    ok(vt_colormap_inverse(c) == 255, "colormap clamps above 1");
}

static void test_names_and_normalize(void)
{
    ok(vt_interp_from_name("bicubic") == VT_INTERP_BICUBIC &&
       vt_interp_from_name("bilinear") == VT_INTERP_BILINEAR &&
       vt_interp_from_name("nearest") == VT_INTERP_NEAREST &&
       vt_interp_from_name("lanczos") == -1, "interpolation names");
    vt_preproc p;
    vt_preproc_default(&p);
    ok(p.size == 224 && p.crop_pct == 0.875 && p.interp == VT_INTERP_BICUBIC,
       "default preprocessing 224, 0.875, bicubic");
    uint8_t rgb[2 * 1 * 3] = {0, 128, 255, 10, 20, 30};
    vt_image img = {2, 1, rgb};
    float out[6];
    vt_image_normalize(&img, &p, out);
    float want0 = (0.0f / 255.0f - 0.485f) / 0.229f;
    float want3 = (255.0f / 255.0f - 0.406f) / 0.225f;   /* channel 2, pixel 0 */
    float want4 = (20.0f / 255.0f - 0.456f) / 0.224f;    /* channel 1, pixel 1 */
    ok(out[0] == want0 && out[4] == want3 && out[3] == want4, "normalize is planar float32");
}

int main(void)
{
    const char *root = getenv("VT_ROOT");
    snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures/images", root && *root ? root : ".");
    test_decode_fixtures();
    test_resize();
    test_resize_window();
    test_exif();
    test_errors();
    test_mutations();
    test_png_write();
    test_colormap();
    test_names_and_normalize();
    return tap_done();
}
