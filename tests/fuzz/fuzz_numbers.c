/* fuzz_numbers.c - libFuzzer harness: the command-line number parsers
 * (vt_parse_int, vt_parse_float, vt_parse_floats) and the metadata lists
 * read back from frames. A number that parses must be in range and survive
 * printing and parsing again. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "input.h"
#include "util.h"

static void check_int(const char *s, long min, long max)
{
    long v;
    if (vt_parse_int(s, min, max, &v) < 0) return;
    if (v < min || v > max) abort();
    char back[32];
    long again;
    snprintf(back, sizeof back, "%ld", v);
    if (vt_parse_int(back, min, max, &again) < 0 || again != v) abort();
}

static void check_float(const char *s)
{
    double v;
    if (vt_parse_float(s, &v) < 0) return;
    if (!isfinite(v)) abort();
    char back[40];
    double again;
    snprintf(back, sizeof back, "%.17g", v);
    if (vt_parse_float(back, &again) < 0 || again != v) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    /* the ranges the tools use: -t, -b, -k, --size, --max-pixels, --seed */
    check_int(s, 1, 1024);
    check_int(s, 1, 4096);
    check_int(s, 1, 8192);
    check_int(s, 1, 1L << 40);
    check_int(s, 0, 1L << 62);
    check_int(s, 0, 1000);
    check_float(s);
    float f[3];
    vt_parse_floats(s, 3, f);
    vt_parse_floats(s, 2, f);
    /* mean/std/range metadata of a frame */
    vt_frame fr;
    vt_frame_init(&fr);
    vt_frame_set_meta(&fr, "mean", s);
    vt_frame_set_meta(&fr, "std", s);
    vt_preproc p;
    vt_preproc_default(&p);
    vt_preproc_from_meta(&fr, &p);
    vt_frame_free(&fr);
    free(s);
    return 0;
}
