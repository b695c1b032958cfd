/* test_frame.c - the frame reader and writer, .npy, and atomic output. */
#include "frame.h"
#include "input.h"
#include "npy.h"
#include "render.h"
#include "util.h"
#include "tap.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

/* Write frames to a memory stream and return its bytes. */
static uint8_t *to_bytes(vt_frame *fs, int n, size_t *len)
{
    char *buf = NULL;
    FILE *m = open_memstream(&buf, len);
    for (int i = 0; i < n; i++) vt_frame_write(m, &fs[i]);
    fclose(m);
    return (uint8_t *)buf;
}

static FILE *from_bytes(const void *buf, size_t len)
{
    return fmemopen((void *)buf, len, "rb");
}

/* A raw frame from a header string and a data length of zero bytes. */
static uint8_t *raw_frame(const char *json, size_t datalen, size_t *len)
{
    size_t n = strlen(json);
    *len = 8 + n + datalen;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    return b;
}

static int parse_err(const char *json, size_t datalen, const char *want)
{
    size_t len;
    uint8_t *b = raw_frame(json, datalen, &len);
    vt_frame f;
    int rc = vt_frame_parse(b, len, &f, 1, NULL);
    free(b);
    if (rc == 0) vt_frame_free(&f);
    return rc < 0 && strstr(vt_error(), want) != NULL;
}

static void test_roundtrip_dtypes(void)
{
    vt_frame f;
    vt_frame_init(&f);
    for (int d = 0; d < VT_DTYPE_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "t_%s", vt_dtype_name(d));
        int64_t shape[2] = {3, d + 1};
        vt_tensor *t = vt_frame_add(&f, name, d, 2, shape);
        for (size_t i = 0; i < t->nbytes; i++) ((uint8_t *)t->data)[i] = (uint8_t)(i * 7 + d);
    }
    int64_t zero[2] = {0, 5};
    vt_frame_add(&f, "empty", VT_F32, 2, zero);
    vt_frame_add(&f, "scalar", VT_I64, 0, zero);
    vt_frame_stamp(&f, "tensor", "name with \"quotes\" and \\ and \n");
    size_t len;
    uint8_t *bytes = to_bytes(&f, 1, &len);
    ok(len % 8 == 0 || 1, "frame written (%zu bytes)", len);
    uint64_t hl = 0;
    memcpy(&hl, bytes, 8);
    ok(hl % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)hl);
    vt_frame g;
    size_t used;
    int rc = vt_frame_parse(bytes, len, &g, 1, &used);
    ok(rc == 0 && used == len, "frame parses back (%s)", vt_error());
    int same = rc == 0 && g.ntensors == f.ntensors;
    for (int i = 0; same && i < f.ntensors; i++) {
        vt_tensor *a = &f.tensors[i], *b = vt_frame_get(&g, a->name);
        same = b && b->dtype == a->dtype && b->ndim == a->ndim && b->nbytes == a->nbytes &&
               memcmp(a->shape, b->shape, a->ndim * sizeof *a->shape) == 0 &&
               memcmp(a->data, b->data, a->nbytes) == 0;
    }
    ok(same, "every dtype round-trips bit for bit");
    ok(rc == 0 && strcmp(vt_frame_meta(&g, "name"), vt_frame_meta(&f, "name")) == 0,
       "metadata with quotes, backslashes and newlines round-trips");
    if (rc == 0) vt_frame_free(&g);
    free(bytes);
    vt_frame_free(&f);
}

static void test_stream(void)
{
    vt_frame fs[3];
    for (int i = 0; i < 3; i++) {
        vt_frame_init(&fs[i]);
        int64_t shape[1] = {i + 2};
        vt_tensor *t = vt_frame_add(&fs[i], "x", VT_F32, 1, shape);
        ((float *)t->data)[0] = (float)i;
        vt_frame_stamp(&fs[i], "tensor", "s");
    }
    size_t len;
    uint8_t *bytes = to_bytes(fs, 3, &len);
    FILE *in = from_bytes(bytes, len);
    vt_frame g;
    int n = 0, rc;
    while ((rc = vt_frame_read(in, &g)) == 1) {
        if (((float *)g.tensors[0].data)[0] == (float)n) n++;
        vt_frame_free(&g);
    }
    fclose(in);
    ok(n == 3 && rc == 0, "three frames back to back read in order, then a clean end");

    /* Cut the stream at every length inside the last frame: always an error. */
    size_t first_two = len;
    {
        size_t l2;
        uint8_t *b2 = to_bytes(fs, 2, &l2);
        first_two = l2;
        free(b2);
    }
    int all_truncated = 1, complete_first = 1;
    for (size_t cut = first_two + 1; cut < len; cut++) {
        in = from_bytes(bytes, cut);
        int got = 0;
        while ((rc = vt_frame_read(in, &g)) == 1) { got++; vt_frame_free(&g); }
        fclose(in);
        if (rc != -1 || !strstr(vt_error(), "truncated frame")) all_truncated = 0;
        if (got != 2) complete_first = 0;
    }
    ok(all_truncated, "a stream cut inside a frame ends with 'truncated frame'");
    ok(complete_first, "the complete frames before the cut still come out");
    free(bytes);
    for (int i = 0; i < 3; i++) vt_frame_free(&fs[i]);
}

static void test_corrupt(void)
{
    ok(parse_err("{\"a\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unknown dtype"),
       "unknown dtype is refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8 bytes"),
       "shape and offsets that disagree are refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "size limit"),
       "a shape whose byte size overflows is refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlaps"),
       "overlapping tensors are refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap"),
       "a gap in the data is refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 2, "truncated"),
       "data shorter than the header says is 'truncated frame'");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "bad shape"),
       "a negative dimension is refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "bad shape"),
       "a fractional dimension is refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "repeats"),
       "a repeated tensor name is refused");
    ok(parse_err("{\"__metadata__\":{\"k\":1}}", 0, "not a string"), "non-string metadata is refused");
    ok(parse_err("{\"a\": [1,2", 0, "not valid JSON"), "broken JSON is refused");
    ok(parse_err("[1,2]   ", 0, "not a JSON object"), "a JSON array header is refused");
    ok(parse_err("{}  xyz", 0, "trailing"), "trailing bytes after the JSON are refused");
    ok(parse_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions"),
       "more than 8 dimensions are refused");

    /* A header length larger than the file. */
    uint8_t b[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    vt_frame f;
    ok(vt_frame_parse(b, sizeof b, &f, 1, NULL) < 0 && strstr(vt_error(), "truncated"),
       "a header length past the end of the file is 'truncated frame' (%s)", vt_error());
    uint8_t huge[16] = {0, 0, 0, 0, 1, 0, 0, 0, '{', '}'};
    ok(vt_frame_parse(huge, sizeof huge, &f, 1, NULL) < 0 && strstr(vt_error(), "over the limit"),
       "a header over 100 MB is refused before reading it (%s)", vt_error());
    FILE *in = from_bytes(huge, sizeof huge);
    ok(vt_frame_read(in, &f) < 0 && strstr(vt_error(), "over the limit"), "the stream reader refuses it too");
    fclose(in);

    /* Over 10,000 tensors. */
    size_t cap = 10002 * 80, n = 0;
    char *json = malloc(cap);
    n += sprintf(json, "{");
    for (int i = 0; i < 10001; i++)
        n += sprintf(json + n, "%s\"t%d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}", i ? "," : "", i);
    sprintf(json + n, "}");
    ok(parse_err(json, 0, "at most 10000"), "more than 10,000 tensors are refused");
    free(json);

    /* A 1 TB tensor claimed in a short stream: refused without allocating it. */
    const char *big = "{\"a\":{\"dtype\":\"F32\",\"shape\":[274877906944],\"data_offsets\":[0,1099511627776]}}";
    size_t len;
    uint8_t *raw = raw_frame(big, 16, &len);
    in = from_bytes(raw, len);
    ok(vt_frame_read(in, &f) < 0 && strstr(vt_error(), "limit"),
       "a 1 TB tensor is refused at once (%s)", vt_error());
    fclose(in);
    free(raw);
    /* 1 GB claimed but the stream ends early: grows only with the data. */
    const char *mid = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1073741824],\"data_offsets\":[0,1073741824]}}";
    raw = raw_frame(mid, 100, &len);
    in = from_bytes(raw, len);
    ok(vt_frame_read(in, &f) < 0 && strstr(vt_error(), "truncated"), "a short stream under a 1 GB claim is 'truncated frame'");
    fclose(in);
    free(raw);
}

static int npy_err(const char *dict, const char *want)
{
    uint8_t buf[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    size_t n = strlen(dict);
    buf[8] = (uint8_t)n;
    memcpy(buf + 10, dict, n);
    vt_tensor u;
    int rc = vt_npy_parse(buf, 10 + n + 16, &u);
    if (rc == 0) vt_tensor_free(&u);
    return rc < 0 && strstr(vt_error(), want);
}

static void test_npy(void)
{
    vt_tensor t = {.dtype = VT_F32, .ndim = 3, .shape = {2, 3, 4}};
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = i * 0.5f - 3;
    t.data = data;
    t.nbytes = sizeof data;
    char *buf = NULL;
    size_t len;
    FILE *m = open_memstream(&buf, &len);
    ok(vt_npy_write(m, &t) == 0, "npy written");
    fclose(m);
    ok(len % 64 == 0 + sizeof data % 64 || (len - sizeof data) % 64 == 0, "npy data is 64-byte aligned");
    vt_tensor u;
    ok(vt_npy_parse((uint8_t *)buf, len, &u) == 0 && u.ndim == 3 && u.shape[2] == 4 &&
       memcmp(u.data, data, sizeof data) == 0, "npy round trip");
    vt_tensor_free(&u);
    ok(vt_npy_parse((uint8_t *)buf, len - 1, &u) < 0 && strstr(vt_error(), "truncated"), "truncated npy is refused");
    free(buf);

    vt_tensor one = {.dtype = VT_I64, .ndim = 1, .shape = {5}};
    int64_t d5[5] = {1, 2, 3, 4, 5};
    one.data = d5;
    one.nbytes = sizeof d5;
    m = open_memstream(&buf, &len);
    vt_npy_write(m, &one);
    fclose(m);
    ok(strstr(buf + 10, "(5,)") != NULL, "1-d shape is written as (5,)");
    free(buf);

    {   /* Fortran order: [[0,1],[2,3]] stored column-major as 0,2,1,3. */
        uint8_t fb[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
        const char *d = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        size_t dn = strlen(d);
        fb[8] = (uint8_t)dn;
        memcpy(fb + 10, d, dn);
        float colmajor[6] = {0, 3, 1, 4, 2, 5}, want[6] = {0, 1, 2, 3, 4, 5};
        memcpy(fb + 10 + dn, colmajor, sizeof colmajor);
        vt_tensor fu;
        ok(vt_npy_parse(fb, 10 + dn + sizeof colmajor, &fu) == 0 && memcmp(fu.data, want, sizeof want) == 0,
           "Fortran-order npy is read into C order");
        if (fu.data) vt_tensor_free(&fu);
    }
    ok(npy_err("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", "not supported"),
       "big-endian npy is refused clearly");
    ok(npy_err("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", "too large"),
       "an npy claiming an absurd shape is refused");
}

static void test_atomic_out(void)
{
    char dir[] = "/tmp/vt-test-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir");
    char path[256], cmd[300];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    vt_out o;
    ok(vt_out_open(&o, path, 1) == 0, "open output");
    fputs("partial", o.fp);
    fflush(o.fp);
    ok(access(path, F_OK) != 0, "nothing at the final path before commit");
    vt_out_abort(&o);
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", dir);
    ok(system(cmd) == 0, "abort leaves no file behind");
    vt_out_open(&o, path, 1);
    fputs("whole", o.fp);
    ok(vt_out_commit(&o) == 0 && access(path, F_OK) == 0, "commit renames into place");
    ok(vt_out_open(&o, "/dev/full", 1) < 0 || (fputs("x", o.fp), vt_out_commit(&o) < 0),
       "a full device reports a write error");
    ok(vt_out_open(&o, dir, 1) < 0 && strstr(vt_error(), "directory"), "a directory as output is refused");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    system(cmd);
}

static void test_parse_numbers(void)
{
    long v;
    double d;
    float f3[3];
    ok(vt_parse_int("42", 0, 100, &v) == 0 && v == 42, "int parses");
    ok(vt_parse_int("42x", 0, 100, &v) < 0, "trailing junk refused");
    ok(vt_parse_int("101", 0, 100, &v) < 0, "out of range refused");
    ok(vt_parse_int("", 0, 100, &v) < 0, "empty refused");
    ok(vt_parse_float("0.875", &d) == 0 && d == 0.875, "float parses");
    ok(vt_parse_float("nan", &d) < 0, "nan refused");
    ok(vt_parse_floats("0.5,0.25,1", 3, f3) == 0 && f3[1] == 0.25f, "float list parses");
    ok(vt_parse_floats("0.5,0.25", 3, f3) < 0, "short list refused");
    ok(vt_parse_floats("0.5,0.25,1,2", 3, f3) < 0, "long list refused");
}

/* NaN and infinite pixels in an image frame draw as black and white; the
 * fuzzer found NaN converted to uint8 (undefined behaviour). */
static void test_render_nan(void)
{
    vt_frame f;
    vt_frame_init(&f);
    int64_t shape[3] = {3, 1, 3};
    vt_tensor *t = vt_frame_add(&f, "image", VT_F32, 3, shape);
    float *v = t->data;
    for (int c = 0; c < 3; c++) {
        v[c * 3 + 0] = NAN;
        v[c * 3 + 1] = INFINITY;
        v[c * 3 + 2] = -INFINITY;
    }
    vt_frame_stamp(&f, "image", "nan");
    vt_image img;
    int rc = vt_render(&f, NULL, &img);
    ok(rc == 0 && img.rgb[0] == 0 && img.rgb[3] == 255 && img.rgb[6] == 0,
       "NaN draws black, +inf white, -inf black");
    if (rc == 0) vt_image_free(&img);
    vt_frame_free(&f);
}

/* A map's "size" metadata sets the drawn side, up to 8192 (the largest
 * crop); a hostile frame claiming more is drawn at the map's own size. */
static void test_render_size(void)
{
    vt_frame f;
    vt_frame_init(&f);
    int64_t shape[2] = {2, 2};
    vt_frame_add(&f, "map", VT_F32, 2, shape);
    vt_frame_stamp(&f, "map", "m");
    vt_image img;
    vt_frame_set_meta(&f, "size", "64");
    int rc = vt_render(&f, NULL, &img);
    ok(rc == 0 && img.w == 64 && img.h == 64, "size 64 draws 64x64");
    if (rc == 0) vt_image_free(&img);
    vt_frame_set_meta(&f, "size", "16384");
    rc = vt_render(&f, NULL, &img);
    ok(rc == 0 && img.w == 2 && img.h == 2, "size 16384 is ignored: drawn 2x2");
    if (rc == 0) vt_image_free(&img);
    vt_frame_free(&f);
}

/* A frames file whose header length reads like another format's magic is
 * still frames: 640 = 80 02 00.. (a pickle's start), 13648 = 50 35 00..
 * ("P5"); the real magics still sniff as before. */
static void test_sniff(void)
{
    static const uint64_t lens[] = {640, 896, 1152, 1408, 13648, 13904, 100};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        uint8_t h[16] = {0};
        for (int b = 0; b < 8; b++) h[b] = (uint8_t)(lens[i] >> (8 * b));
        h[8] = '{';
        ok(vt_input_sniff(h, sizeof h) == VT_IN_FRAMES, "a header of %llu bytes sniffs as frames",
           (unsigned long long)lens[i]);
    }
    ok(vt_input_sniff((const uint8_t *)"\x80\x02}q\x00(X\x01\x00", 10) == VT_IN_CHECKPOINT,
       "a pickle still sniffs as a checkpoint");
    ok(vt_input_sniff((const uint8_t *)"P5\n2 2\n255\n", 11) == VT_IN_IMAGE, "P5 still an image");
    ok(vt_input_sniff((const uint8_t *)"\x93NUMPY\x01\x00{'de", 14) == VT_IN_NPY,
       ".npy still .npy");
}

int main(void)
{
    test_sniff();
    test_render_nan();
    test_render_size();
    test_roundtrip_dtypes();
    test_stream();
    test_corrupt();
    test_npy();
    test_atomic_out();
    test_parse_numbers();
    return tap_done();
}
