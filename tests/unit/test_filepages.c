/* After a model is built and has run, none of its file's pages stay mapped.
 *
 * Load packs the linear weights and copies the small tensors a forward
 * pass reads (vt_weight_f32), then gives the whole mapping back
 * (vt_model_open, and vt_model_forward after the first pass, when F32
 * linears have been packed). Before, norms and biases were read in place,
 * and each read mapped its page and, through fault-around and large
 * page-cache folios, the neighbouring pages of big weights long packed:
 * a DeiT-B BF16 file kept 29 MiB of them, a different amount each run. */
#include "tap.h"
#include "ckpt.h"
#include "model.h"
#include "util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* KiB of the mapping at `base` resident in this process (smaps Rss), or -1
 * when there is no such mapping or no /proc. */
static long mapped_rss_kb(const void *base)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    long kb = -1;
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = lo == (uintptr_t)base;
        else if (in && sscanf(line, "Rss: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

/* Make a random model of arch (config override as JSON, or NULL) in dtype,
 * open it, run one image of zeros and report what of its file is mapped. */
static void check(const char *dir, const char *arch, const char *over, vt_dtype dtype)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%s.safetensors", dir, arch, vt_dtype_name(dtype));
    cJSON *cfg = over ? cJSON_Parse(over) : NULL;
    int rc = vt_make_random_model(arch, cfg, 1, dtype, path);
    cJSON_Delete(cfg);
    if (rc < 0) {
        ok(0, "%s %s: making the model: %s", arch, vt_dtype_name(dtype), vt_error());
        return;
    }
    vt_run_opts o = {.threads = 2, .batch = 1};
    vt_model m;
    if (vt_model_open(path, &o, &m) < 0) {
        ok(0, "%s %s: opening: %s", arch, vt_dtype_name(dtype), vt_error());
        unlink(path);
        return;
    }
    long after_load = mapped_rss_kb(m.weights.map);
    size_t side = (size_t)m.img_size;
    float *x = calloc(3 * side * side, sizeof *x);
    float *logits = calloc((size_t)m.num_classes, sizeof *logits);
    int fw = vt_model_forward(&m, x, 1, logits);
    fw = fw == 0 ? vt_model_forward(&m, x, 1, logits) : fw;
    long after_run = mapped_rss_kb(m.weights.map);
    long file_kb = (long)(m.weights.map_len / 1024);
    /* a page or two of slack: the mapping's first page holds the header,
     * which the metadata accessors may read */
    ok(fw == 0 && after_load >= 0 && after_load <= 8 && after_run >= 0 && after_run <= 8,
       "%s %s (%ld KiB file): %ld KiB of it mapped after load, %ld after two runs", arch,
       vt_dtype_name(dtype), file_kb, after_load, after_run);
    free(x);
    free(logits);
    vt_model_close(&m);
    unlink(path);
}

int main(void)
{
    if (access("/proc/self/smaps", R_OK) != 0) {
        skip("file pages after load", "no /proc/self/smaps");
        return tap_done();
    }
    char dir[] = "/tmp/vt-filepages-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    static const struct { const char *arch, *over; } nets[] = {
        {"deit_tiny_patch16_224", NULL},
        {"swin_tiny_patch4_window7_224", "{\"depths\": [2, 2, 2, 2]}"},
        {"stvit_r_swin_t", NULL},
        {"sgformer_s", NULL},
        {"pale_tiny", NULL},
        {"groupmixformer_m", NULL},
        {"deit_dge_s124_tiny_patch16_256_mixgate", NULL},
        {"pvt_dge_s124_tiny_256_mixgate", NULL},
    };
    for (size_t i = 0; i < sizeof nets / sizeof *nets; i++) {
        check(dir, nets[i].arch, nets[i].over, VT_BF16);
        check(dir, nets[i].arch, nets[i].over, VT_F32);
    }
    rmdir(dir);
    return tap_done();
}
