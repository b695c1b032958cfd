/* test_preprocess.c - vt_preprocess_crop against Pillow + timm's eval
 * transform: every photo in $VT_SHARED/photos against the references in
 * $VT_SHARED/conformance/fixtures/preprocess (made by preprocess_ref.py),
 * and the committed size-32 references in tests/fixtures/images. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "npy.h"
#include "tap.h"
#include "util.h"

/* Compare crop with a uint8 [S,S,3] .npy: max abs diff and % identical.
 * Returns -1 if the reference is missing or has another shape. */
static int compare(const vt_image *crop, const char *npy, int *maxdiff, double *pct)
{
    vt_tensor t;
    memset(&t, 0, sizeof t);
    if (vt_npy_load(npy, &t)) return -1;
    int rc = -1;
    if (t.dtype == VT_U8 && t.ndim == 3 && t.shape[0] == crop->h && t.shape[1] == crop->w &&
        t.shape[2] == 3) {
        const uint8_t *ref = t.data;
        size_t n = (size_t)crop->w * crop->h * 3, same = 0;
        *maxdiff = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs(ref[i] - crop->rgb[i]);
            if (d > *maxdiff) *maxdiff = d;
            same += d == 0;
        }
        *pct = 100.0 * same / n;
        rc = 0;
    }
    vt_tensor_free(&t);
    return rc;
}

static void check_photo(const char *photo, const char *npy, const char *name,
                        const vt_preproc *p)
{
    vt_image img, crop;
    double t0 = vt_now();
    if (vt_image_load(photo, NULL, &img)) {
        ok(0, "%s: decode: %s", name, vt_error());
        return;
    }
    double t1 = vt_now();
    int geom[4];
    if (vt_preprocess_crop(&img, p, &crop, geom)) {
        ok(0, "%s: preprocess: %s", name, vt_error());
        vt_image_free(&img);
        return;
    }
    double t2 = vt_now();
    int maxdiff = -1;
    double pct = 0;
    if (compare(&crop, npy, &maxdiff, &pct)) {
        ok(0, "%s: reference %s missing or of another shape", name, npy);
    } else {
        printf("# %s %dx%d -> %dx%d crop %d,%d: max diff %d, %.3f%% identical "
               "(decode %.1f ms, resize+crop %.1f ms)\n", name, img.w, img.h, geom[0], geom[1],
               geom[2], geom[3], maxdiff, pct, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
        ok(maxdiff <= 1 && pct >= 99.9, "%s matches PIL+timm (max diff %d, %.3f%% identical)",
           name, maxdiff, pct);
    }
    vt_image_free(&crop);
    vt_image_free(&img);
}

static int is_photo(const char *n)
{
    const char *dot = strrchr(n, '.');
    return dot && (!strcmp(dot, ".jpg") || !strcmp(dot, ".jpeg") || !strcmp(dot, ".png"));
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_shared(void)
{
    const char *shared = tap_shared();
    if (!shared) {
        skip("shared photos against preprocess_ref.py", "VT_SHARED not set");
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/photos", shared);
    DIR *d = opendir(dir);
    if (!d) {
        skip("shared photos against preprocess_ref.py", "no $VT_SHARED/photos");
        return;
    }
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024)
        if (is_photo(e->d_name)) names[n++] = vt_xstrdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    ok(n > 0, "found %d shared photos", n);
    vt_preproc p;
    vt_preproc_default(&p);
    for (int i = 0; i < n; i++) {
        char photo[8192], npy[8192];
        char *stem = vt_stem(names[i]);
        snprintf(photo, sizeof photo, "%s/%s", dir, names[i]);
        snprintf(npy, sizeof npy, "%s/conformance/fixtures/preprocess/%s.npy", shared, stem);
        check_photo(photo, npy, names[i], &p);
        free(stem);
        free(names[i]);
    }
}

/* The committed size-32 references (tests/make-image-fixtures.py). */
static void test_committed(void)
{
    static const char *cases[][2] = {
        {"jpeg_baseline", "bicubic"}, {"jpeg_baseline", "bilinear"},
        {"jpeg_odd420", "bicubic"}, {"jpeg_odd420", "bilinear"},
        {"jpeg_portrait", "bicubic"},
    };
    const char *root = getenv("VT_ROOT");
    if (!root || !*root) root = ".";
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char photo[4096], npy[4096], name[256];
        snprintf(photo, sizeof photo, "%s/tests/fixtures/images/%s.jpg", root, cases[i][0]);
        snprintf(npy, sizeof npy, "%s/tests/fixtures/images/preprocess32_%s_%s.npy", root,
                 cases[i][0], cases[i][1]);
        snprintf(name, sizeof name, "%s.jpg (32, %s)", cases[i][0], cases[i][1]);
        vt_preproc p;
        vt_preproc_default(&p);
        p.size = 32;
        p.interp = vt_interp_from_name(cases[i][1]);
        check_photo(photo, npy, name, &p);
    }
}

/* A 1x65535 strip resizes its shorter side to 256, so the whole resized
 * picture would be 256x16776960 (12 GB); only the crop is computed. A
 * strip of one gray value stays that value. */
static void test_strip(void)
{
    vt_image strip;
    strip.w = 1;
    strip.h = 65535;
    strip.rgb = vt_xmalloc((size_t)strip.h * 3);
    memset(strip.rgb, 77, (size_t)strip.h * 3);
    vt_preproc p;
    vt_preproc_default(&p);
    vt_image crop;
    int geom[4];
    int rc = vt_preprocess_crop(&strip, &p, &crop, geom);
    int flat = rc == 0;
    for (size_t i = 0; flat && i < (size_t)224 * 224 * 3; i++) flat = crop.rgb[i] == 77;
    ok(rc == 0 && geom[0] == 256 && geom[1] == 16776960 && flat,
       "1x65535 strip: crop of a 256x16776960 resize without making it (%s)", rc ? vt_error() : "ok");
    if (rc == 0) vt_image_free(&crop);
    vt_image_free(&strip);
}

int main(void)
{
    test_strip();
    test_committed();
    test_shared();
    return tap_done();
}
