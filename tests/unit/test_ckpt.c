/* test_ckpt.c - checkpoint import: SHA-256 vectors, dtype rounding, every
 * fixture of tests/make-ckpt-fixtures.py against the expectation torch
 * wrote, hostile files refused without side effects, the safetensors/.pth
 * round trip through model files, random models, and (with VT_SHARED) every
 * conformance checkpoint. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "tap.h"
#include "ckpt.h"
#include "model.h"
#include "util.h"
#include "../../lib/ckpt/internal.h"

static char fixdir[4096];

static const char *fx(const char *name)
{
    static char buf[4][4096 + 520];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fixdir, name);
    return buf[k];
}

static cJSON *read_json(const char *path)
{
    uint8_t *d;
    size_t n;
    if (vt_read_file(path, 1 << 24, &d, &n) < 0) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)d, n);
    free(d);
    return j;
}

/* ---- SHA-256 ---- */

static void test_sha256(void)
{
    char hex[65];
    vt_sha256_hex("", 0, hex);
    ok(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 empty");
    vt_sha256_hex("abc", 3, hex);
    ok(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 abc");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    vt_sha256_hex(m, strlen(m), hex);
    ok(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "sha256 448 bits");
    const char *m2 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                     "klmnopqrlmnopqrsmnopqrstnopqrstu";
    vt_sha256_hex(m2, strlen(m2), hex);
    ok(!strcmp(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"), "sha256 896 bits");
    /* a million 'a', fed in uneven pieces */
    vt_sha256 s;
    uint8_t d[32], chunk[997];
    memset(chunk, 'a', sizeof chunk);
    vt_sha256_init(&s);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 997 + 1) {
        size_t n = k < left ? k : left;
        vt_sha256_update(&s, chunk, n);
        left -= n;
    }
    vt_sha256_final(&s, d);
    char h2[65];
    for (int i = 0; i < 32; i++) sprintf(h2 + 2 * i, "%02x", d[i]);
    ok(!strcmp(h2, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256 million a");
    FILE *f = fopen("/tmp/vt-test-sha.txt", "w");
    fputs("abc", f);
    fclose(f);
    ok(vt_sha256_file("/tmp/vt-test-sha.txt", hex) == 0 &&
       !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256 file");
    unlink("/tmp/vt-test-sha.txt");
}

/* ---- dtype rounding ---- */

static uint16_t to16(float x, vt_dtype t)
{
    uint16_t h;
    vt_convert_elems(&x, VT_F32, &h, t, 1);
    return h;
}

static float from16(uint16_t h, vt_dtype t)
{
    float x;
    vt_convert_elems(&h, t, &x, VT_F32, 1);
    return x;
}

static void test_dtypes(void)
{
    ok(to16(1.0f, VT_F16) == 0x3c00 && to16(-2.0f, VT_F16) == 0xc000, "f16 exact");
    ok(to16(65504.0f, VT_F16) == 0x7bff && to16(65520.0f, VT_F16) == 0x7c00, "f16 max, overflow to inf");
    ok(to16(1.0f + 0x1p-11f, VT_F16) == 0x3c00, "f16 tie to even (down)");
    ok(to16(1.0f + 3 * 0x1p-11f, VT_F16) == 0x3c02, "f16 tie to even (up)");
    ok(to16(0x1p-24f, VT_F16) == 0x0001 && to16(0x1p-25f, VT_F16) == 0 &&
       to16(0x1.8p-25f, VT_F16) == 0x0001, "f16 subnormals round to nearest even");
    ok((to16(NAN, VT_F16) & 0x7c00) == 0x7c00 && (to16(NAN, VT_F16) & 0x3ff), "f16 nan stays nan");
    ok(from16(0x0001, VT_F16) == 0x1p-24f && from16(0x7bff, VT_F16) == 65504.0f &&
       isinf(from16(0xfc00, VT_F16)), "f16 widening");
    ok(to16(1.0f, VT_BF16) == 0x3f80 && to16(1.0f + 0x1p-8f, VT_BF16) == 0x3f80 &&
       to16(1.0f + 3 * 0x1p-8f, VT_BF16) == 0x3f82, "bf16 round to nearest even");
    ok(from16(0x3f80, VT_BF16) == 1.0f, "bf16 widening");
    int all = 1;    /* every finite half survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++)
        if ((h & 0x7c00) != 0x7c00 && to16(from16((uint16_t)h, VT_F16), VT_F16) != h) all = 0;
    ok(all, "f16 round trip of all finite values");
}

/* ---- good fixtures ---- */

static int same_tensor(const vt_tensor *a, const vt_tensor *b)
{
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return a->nbytes == b->nbytes && (a->nbytes == 0 || !memcmp(a->data, b->data, a->nbytes));
}

/* Every tensor of got equals want, in order; returns the mismatch or -1. */
static int first_mismatch(const vt_frame *got, const vt_frame *want)
{
    int n = got->ntensors > want->ntensors ? got->ntensors : want->ntensors;
    for (int i = 0; i < n; i++)
        if (i >= got->ntensors || i >= want->ntensors ||
            !same_tensor(&got->tensors[i], &want->tensors[i]))
            return i;
    return -1;
}

/* Default loading turns floats into F32 with the same values. */
static int check_f32(const vt_frame *got, const vt_frame *raw)
{
    if (got->ntensors != raw->ntensors) return 0;
    for (int i = 0; i < got->ntensors; i++) {
        const vt_tensor *g = &got->tensors[i], *r = &raw->tensors[i];
        int fl = vt_dtype_is_float(r->dtype);
        if (g->dtype != (fl ? VT_F32 : r->dtype) || strcmp(g->name, r->name)) return 0;
        size_t n = (size_t)vt_tensor_numel(r);
        for (size_t k = 0; k < n; k++) {
            double a = vt_tensor_get(g, k), b = vt_tensor_get(r, k);
            if (fl) b = (float)b;
            if (!(a == b || (isnan(a) && isnan(b)))) return 0;
        }
    }
    return 1;
}

static void check_good(const char *file, const char *suffix, int ema)
{
    char exp_name[512];
    snprintf(exp_name, sizeof exp_name, "%s%s.expect.safetensors", file, suffix);
    vt_frame want, got, conv;
    if (vt_frame_map(fx(exp_name), &want) < 0) {
        ok(0, "%s: expectation %s: %s", file, exp_name, vt_error());
        return;
    }
    vt_ckpt_opts raw = {.ema = ema, .raw = 1};
    int rc = vt_ckpt_load(fx(file), &raw, &got);
    ok(rc == 0, "%s%s loads (%s)", file, suffix, rc ? vt_error() : "ok");
    if (rc == 0) {
        int bad = first_mismatch(&got, &want);
        ok(bad < 0, "%s%s: %d tensors, names, dtypes, shapes and bytes as torch.load (first diff %d: %s)",
           file, suffix, want.ntensors, bad, bad >= 0 && bad < got.ntensors ? got.tensors[bad].name : "-");
        const char *w = vt_frame_meta(&got, "ckpt_wrapper"), *e = vt_frame_meta(&want, "ckpt_wrapper");
        ok(w && e && !strcmp(w, e), "%s%s: wrapper '%s' (want '%s')", file, suffix, w ? w : "?", e ? e : "?");
        vt_ckpt_opts def = {.ema = ema};
        rc = vt_ckpt_load(fx(file), &def, &conv);
        ok(rc == 0 && check_f32(&conv, &want), "%s%s: default load gives F32 with the same values", file, suffix);
        if (rc == 0) vt_frame_free(&conv);
        vt_frame_free(&got);
    }
    vt_frame_free(&want);
}

static void test_good(void)
{
    static const char *files[] = {
        "top.pth", "model.pth", "model_ema.pth", "timm.pth", "module.pth", "state_dict_module.pth",
        "dtypes.pth", "views.pth", "param.pth", "numpy.pth", "proto4.pth", "deflated.pth",
        "zip64.pth", "zip64_local.pth", "flat.safetensors", "module.safetensors", "vit_rt.pth", NULL};
    for (int i = 0; files[i]; i++) check_good(files[i], "", 0);
    check_good("model_ema.pth", ".ema", 1);
    check_good("timm.pth", ".raw", -1);
    check_good("timm.pth", "", 1);      /* EMA is already timm's default */

    /* keep_half keeps F16/BF16, still widens F64 */
    vt_frame f;
    vt_ckpt_opts kh = {.keep_half = 1};
    if (vt_ckpt_load(fx("dtypes.pth"), &kh, &f) == 0) {
        ok(vt_frame_get(&f, "f16")->dtype == VT_F16 && vt_frame_get(&f, "bf16")->dtype == VT_BF16 &&
           vt_frame_get(&f, "f64")->dtype == VT_F32 && vt_frame_get(&f, "i64")->dtype == VT_I64,
           "keep_half: F16/BF16 kept, F64 -> F32, integers kept");
        vt_frame_free(&f);
    } else {
        ok(0, "keep_half load: %s", vt_error());
    }

    /* contiguous F32 tensors of a stored zip are used in place */
    if (vt_ckpt_load(fx("views.pth"), NULL, &f) == 0) {
        const vt_tensor *b = vt_frame_get(&f, "base"), *t = vt_frame_get(&f, "transposed"),
                        *row = vt_frame_get(&f, "row");
        const uint8_t *lo = f.map, *hi = lo + f.map_len;
        ok(b && !b->owned && (uint8_t *)b->data >= lo && (uint8_t *)b->data < hi && row && !row->owned,
           "contiguous tensors point into the mapped checkpoint");
        ok(t && t->owned && vt_tensor_get(t, 1) == 6.0, "a transposed view is gathered by stride");
        vt_frame_free(&f);
    } else {
        ok(0, "views.pth: %s", vt_error());
    }

    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int rc = vt_ckpt_info(fx("dtypes.pth"), NULL, m);
    fclose(m);
    ok(rc == 0 && strstr(buf, "f16\tF16\t[3,5]\n") == buf && strstr(buf, "\nscalar\tF32\t[]\n") &&
       strstr(buf, "\nbool\tBOOL\t[3]\n") && strstr(buf, "\nempty\tF32\t[0,3]\n"),
       "vt_ckpt_info lists name, stored dtype and shape");
    free(buf);

    uint8_t zip[4] = {'P', 'K', 3, 4}, leg[3] = {0x80, 2, 0x8a}, png[4] = {0x89, 'P', 'N', 'G'};
    ok(vt_ckpt_sniff(zip, 4) && vt_ckpt_sniff(leg, 3) && !vt_ckpt_sniff(png, 4), "sniff");
}

/* ---- hostile fixtures ---- */

static void test_hostile(void)
{
    cJSON *j = read_json(fx("hostile.json"));
    if (!j) { ok(0, "hostile.json: %s", vt_error()); return; }
    const char *pwned = cJSON_GetObjectItem(j, "pwned")->valuestring;
    unlink(pwned);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "files")) {
        vt_frame f;
        int rc = vt_ckpt_load(fx(e->string), NULL, &f);
        const char *msg = vt_error();
        ok(rc < 0 && strstr(msg, e->valuestring) && f.ntensors == 0 && !f.map,
           "%s refused: \"%s\" (want \"%s\")", e->string, rc < 0 ? msg : "loaded!", e->valuestring);
        if (rc == 0) vt_frame_free(&f);
    }
    ok(access(pwned, F_OK) != 0, "no hostile pickle executed anything (%s absent)", pwned);
    cJSON_Delete(j);
}

/* Pickles within the byte limit that try to make too much: refused when
 * the bound is crossed, not after allocating for all of it. */
static uint8_t *pickle_of(size_t n, const char *op, size_t oplen, int batch, size_t *len)
{
    /* ] (list) K 1 q 1 (memo 1 = 1), then n items in APPENDS batches */
    size_t cap = 16 + n * (oplen + 2), k = 0;
    uint8_t *b = vt_xmalloc(cap);
    memcpy(b, "\x80\x02]K\x01q\x01" "0", 8);
    k = 8;
    for (size_t i = 0; i < n; i++) {
        if (batch && i % batch == 0) b[k++] = '(';
        memcpy(b + k, op, oplen);
        k += oplen;
        if (batch && (i % batch == (size_t)batch - 1 || i == n - 1)) b[k++] = 'e';
    }
    b[k++] = '.';
    *len = k;
    return b;
}

static void test_pickle_bounds(void)
{
    vt_pk p;
    vt_pv *root;
    size_t len;
    /* a list of 5M references to one int: 10 MB of input, 40 MB of items */
    uint8_t *b = pickle_of(5u << 20, "h\x01", 2, 1 << 16, &len);
    int rc = vt_pk_parse(&p, b, len, &root);
    ok(rc < 0 && strstr(vt_error(), "items") && p.nitems <= VT_PK_MAX_ITEMS + (1 << 16),
       "a 5M-item list is refused at the item bound: %s", vt_error());
    vt_pk_free(&p);
    free(b);
    /* 5M values made and dropped (None, POP): nothing on the stack */
    b = pickle_of(5u << 20, "N0", 2, 0, &len);
    rc = vt_pk_parse(&p, b, len, &root);
    ok(rc < 0 && strstr(vt_error(), "values") && p.nall <= VT_PK_MAX_VALUES + 1,
       "5M values are refused at the value bound: %s", vt_error());
    vt_pk_free(&p);
    free(b);
    /* a pickle over the byte limit is refused before its first opcode */
    size_t big = VT_PK_MAX_BYTES + 1;
    void *m = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ok(m != MAP_FAILED && vt_pk_parse(&p, m, big, &root) < 0 && strstr(vt_error(), "over the limit"),
       "a pickle of 256 MB + 1 is refused: %s", vt_error());
    vt_pk_free(&p);
    if (m != MAP_FAILED) munmap(m, big);
}

/* ---- model files ---- */

static int same_models(const char *a, const char *b, int *ntensors)
{
    vt_frame fa, fb;
    if (vt_frame_map(a, &fa) < 0) return 0;
    if (vt_frame_map(b, &fb) < 0) { vt_frame_free(&fa); return 0; }
    int same = first_mismatch(&fa, &fb) < 0;
    *ntensors = fa.ntensors;
    vt_frame_free(&fa);
    vt_frame_free(&fb);
    return same;
}

static void test_models(void)
{
    cJSON *j = read_json(fx("vit_rt.json"));
    if (!j) { ok(0, "vit_rt.json"); return; }
    const cJSON *cfg = cJSON_GetObjectItem(j, "config"), *sha = cJSON_GetObjectItem(j, "sha256");
    const char *arch = "deit_tiny_patch16_224";
    char tmp[] = "/tmp/vt-ckpt-XXXXXX";
    if (!mkdtemp(tmp)) { ok(0, "mkdtemp"); cJSON_Delete(j); return; }
    char a[64], b[64], c[64], r1[64], r2[64], r3[64];
    snprintf(a, sizeof a, "%s/a.safetensors", tmp);
    snprintf(b, sizeof b, "%s/b.safetensors", tmp);
    snprintf(c, sizeof c, "%s/c.safetensors", tmp);
    snprintf(r1, sizeof r1, "%s/r1.safetensors", tmp);
    snprintf(r2, sizeof r2, "%s/r2.safetensors", tmp);
    snprintf(r3, sizeof r3, "%s/r3.safetensors", tmp);

    /* the loaders agree byte for byte, whatever the order */
    vt_frame p, s;
    if (vt_ckpt_load(fx("vit_rt.pth"), NULL, &p) == 0 && vt_ckpt_load(fx("vit_rt.safetensors"), NULL, &s) == 0) {
        int same = p.ntensors == s.ntensors;
        for (int i = 0; same && i < s.ntensors; i++) {
            vt_tensor *t = vt_frame_get(&p, s.tensors[i].name);
            vt_tensor u = s.tensors[i];
            same = t && same_tensor(t, &u);
        }
        ok(same, "vit_rt: .pth and .safetensors load to byte-identical tensors");
        vt_frame_free(&p);
        vt_frame_free(&s);
    } else {
        ok(0, "vit_rt loads: %s", vt_error());
    }

    int rc1 = vt_convert_checkpoint(fx("vit_rt.pth"), arch, cfg, NULL, a);
    ok(rc1 == 0, "convert vit_rt.pth (%s)", rc1 ? vt_error() : "ok");
    int rc2 = vt_convert_checkpoint(fx("vit_rt.safetensors"), arch, cfg, NULL, b);
    ok(rc2 == 0, "convert vit_rt.safetensors (%s)", rc2 ? vt_error() : "ok");
    int n = 0;
    ok(rc1 == 0 && rc2 == 0 && same_models(a, b, &n) && n == 20,
       "round trip: both give byte-identical model tensors (%d)", n);
    vt_frame m;
    if (rc1 == 0 && vt_frame_map(a, &m) == 0) {
        const char *cs = vt_frame_meta(&m, "config"), *pp = vt_frame_meta(&m, "preprocess");
        ok(!strcmp(vt_frame_meta(&m, "vt"), "1") && !strcmp(vt_frame_meta(&m, "kind"), "model") &&
           !strcmp(vt_frame_meta(&m, "name"), "a.safetensors") && !strcmp(vt_frame_meta(&m, "vt_model"), "1") &&
           !strcmp(vt_frame_meta(&m, "arch"), arch) && !strcmp(vt_frame_meta(&m, "family"), "vit") &&
           !strcmp(vt_frame_meta(&m, "labels"), "none") && !strcmp(vt_frame_meta(&m, "source"), "vit_rt.pth") &&
           !vt_frame_meta(&m, "random"), "model metadata");
        ok(!strcmp(vt_frame_meta(&m, "source_sha256"), cJSON_GetObjectItem(sha, "vit_rt.pth")->valuestring),
           "source_sha256 is the checkpoint's SHA-256");
        ok(cs && strstr(cs, "\"embed_dim\":8") && pp && strstr(pp, "\"size\":32") &&
           strstr(pp, "\"mean\":[0.485,0.456,0.406]") && strstr(pp, "\"interpolation\":\"bicubic\""),
           "config and preprocess JSON (%s)", pp ? pp : "-");
        ok(!strcmp(m.tensors[0].name, "cls_token") && m.tensors[0].dtype == VT_F32, "tensors in params order, F32");
        vt_frame_free(&m);
    }
    vt_convert_opts h = {.dtype = VT_F16};
    int rc = vt_convert_checkpoint(fx("vit_rt.pth"), arch, cfg, &h, c);
    if (rc == 0 && vt_frame_map(c, &m) == 0) {
        vt_frame src;
        vt_ckpt_load(fx("vit_rt.safetensors"), NULL, &src);
        const vt_tensor *t = vt_frame_get(&m, "blocks.0.attn.qkv.weight"),
                        *u = vt_frame_get(&src, "blocks.0.attn.qkv.weight");
        int close = t && u && t->dtype == VT_F16;
        for (int64_t i = 0; close && i < vt_tensor_numel(u); i++)
            close = fabs(vt_tensor_get(t, i) - vt_tensor_get(u, i)) <= fabs(vt_tensor_get(u, i)) * 0x1p-11;
        ok(close, "--dtype f16: F16 tensors within half an ulp");
        vt_frame_free(&src);
        vt_frame_free(&m);
    } else {
        ok(0, "convert f16: %s", vt_error());
    }
    /* strict validation names what is wrong */
    rc = vt_convert_checkpoint(fx("model.pth"), arch, cfg, NULL, c);
    ok(rc < 0 && strstr(vt_error(), "missing") && strstr(vt_error(), "unexpected"),
       "wrong weights refused: %.120s", vt_error());

    ok(vt_make_random_model(arch, cfg, 7, VT_F32, r1) == 0 && vt_make_random_model(arch, cfg, 7, VT_F32, r2) == 0 &&
       vt_make_random_model(arch, cfg, 8, VT_F32, r3) == 0, "random models (%s)", vt_error());
    ok(same_models(r1, r2, &n), "random: same seed, same weights");
    ok(!same_models(r1, r3, &n), "random: another seed, other weights");
    if (vt_frame_map(r1, &m) == 0) {
        const vt_tensor *w = vt_frame_get(&m, "blocks.0.mlp.fc1.weight"), *nw = vt_frame_get(&m, "norm.weight"),
                        *nb = vt_frame_get(&m, "norm.bias");
        double s2 = 0, mx = 0;
        int64_t k = vt_tensor_numel(w);
        for (int64_t i = 0; i < k; i++) {
            double v = vt_tensor_get(w, i);
            s2 += v * v;
            if (fabs(v) > mx) mx = fabs(v);
        }
        double sd = sqrt(s2 / k);
        ok(sd > 0.015 && sd < 0.02 && mx <= 0.04, "random matrices ~ N(0, 0.02) truncated at 2 std (sd %.4f, max %.4f)", sd, mx);
        ok(vt_tensor_get(nw, 0) == 1 && vt_tensor_get(nb, 0) == 0, "random norms 1, biases 0");
        ok(!strcmp(vt_frame_meta(&m, "random"), "1") && !strcmp(vt_frame_meta(&m, "source"), "random seed 7") &&
           strlen(vt_frame_meta(&m, "source_sha256")) == 64, "random metadata");
        vt_frame_free(&m);
    }
    const char *files[] = {a, b, c, r1, r2, r3};
    for (int i = 0; i < 6; i++) unlink(files[i]);
    rmdir(tmp);
    cJSON_Delete(j);
}

/* ---- the conformance checkpoints ---- */

static void test_shared(void)
{
    const char *sh = tap_shared();
    if (!sh) { skip("conformance checkpoints", "VT_SHARED not set"); return; }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/conformance/fixtures", sh);
    DIR *d = opendir(dir);
    if (!d) { skip("conformance checkpoints", "no fixtures"); return; }
    struct dirent *e;
    int loaded = 0, total = 0, converted = 0, vits = 0;
    while ((e = readdir(d))) {
        char ck[8192], meta[8192], out[] = "/tmp/vt-ckpt-shared-XXXXXX";
        snprintf(ck, sizeof ck, "%s/%s/checkpoint.pth", dir, e->d_name);
        if (access(ck, R_OK)) continue;
        total++;
        vt_frame f;
        if (vt_ckpt_load(ck, NULL, &f) == 0) {
            loaded += f.ntensors > 0;
            vt_frame_free(&f);
        } else {
            ok(0, "%s: %s", e->d_name, vt_error());
        }
        if (strncmp(e->d_name, "vit-", 4)) continue;
        vits++;
        snprintf(meta, sizeof meta, "%s/%s/meta.json", dir, e->d_name);
        cJSON *m = read_json(meta);
        int fd = mkstemp(out);
        close(fd);
        if (m && vt_convert_checkpoint(ck, "vit", m, NULL, out) == 0) converted++;
        else ok(0, "%s converts: %s", e->d_name, vt_error());
        unlink(out);
        cJSON_Delete(m);
    }
    closedir(d);
    ok(total > 0 && loaded == total, "every conformance checkpoint loads (%d/%d)", loaded, total);
    ok(converted == vits, "the vit conformance checkpoints convert (%d/%d)", converted, vits);
}

int main(void)
{
    const char *root = getenv("VT_ROOT");
    snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures/ckpt", root ? root : ".");
    test_sha256();
    test_dtypes();
    test_good();
    test_hostile();
    test_pickle_bounds();
    test_models();
    test_shared();
    return tap_done();
}
