/* vt-bench - speed, FLOPs, parameters and memory of a model; with --keep,
 * of pruned forward passes beside the unpruned one (lib/prune.c). */
#include "ckpt.h"
#include "input.h"
#include "model.h"
#include "prune.h"
#include "tokens.h"
#include "ops.h"
#include "util.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char usage[] =
    "usage: vt-bench (-m MODEL | --arch NAME [--random])... | --all) [options]\n"
    "Measure a model: parameters, GMACs, latency, throughput and memory.\n"
    "  -m, --model FILE     a model file (-m and --arch repeat: one row each)\n"
    "      --arch NAME      a known arch with random weights (--seed N)\n"
    "      --random         accepted for clarity: --arch always uses random weights\n"
    "      --all            every known arch, each in its own process\n"
    "  -b, --batch B        images per forward pass (1)\n"
    "  -t, --threads T      threads (online cores)\n"
    "  -s, --size S         input side S (the model's own), where the family allows it\n"
    "      --runs N         timed runs (10)\n"
    "      --warmup N       untimed runs first (1)\n"
    "      --peak           also measure the sgemm peak, for the peak fraction\n"
    "      --explain        break the GMACs down per part of the model\n"
    "      --image FILE     run on this image (or .npy, image frame) instead of noise;\n"
    "                       input-dependent models (dge) show the GMACs it cost\n"
    "      --keep R[,R...]  also bench pruned passes: topk keeps ceil(R*N) tokens\n"
    "      --after L        the block the pruned passes cut after (L from 0)\n"
    "      --format F       text (default), json, csv\n"
    "  -h, --help           this help\n"
    "  -V, --version        version\n";

#define MAX_TARGETS 64    /* -m / --arch given together */
#define MAX_KEEP 16

typedef struct bench_opts {
    int batch, threads, runs, warmup, peak, explain, format;
    int size;                   /* input side; 0: the model's own */
    unsigned long seed;
    const char *image;      /* input instead of the fixed noise, or NULL */
    double keep[MAX_KEEP];  /* --keep: pruned passes to bench */
    int nkeep, after;       /* --after */
} bench_opts;

enum { FMT_TEXT, FMT_JSON, FMT_CSV };

typedef struct result {
    const char *name;
    int size;                   /* input side it ran at */
    double params, macs;        /* macs < 0: not known for this family */
    double load_ms, first_ms, min_ms, med_ms, max_ms;
    double peak_gflops;         /* 0: not measured */
    double rss_mb;
    vt_cost cost;
    double spent;               /* MACs per image the last pass cost (mean
                                   over the batch); < 0: the family's cost
                                   does not depend on the input */
    vt_cost spent_cost;         /* of image 0, for --explain */
    /* --keep: every row says how many tokens it ran on; pruned rows how
     * much faster they were than the unpruned pass (row 0) and what the
     * GMACs promised */
    int pruned;                 /* 0: the unpruned pass */
    double keep;
    int tokens;                 /* patch tokens after block `after` */
    double speedup, ideal, realised;
} result;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Deterministic N(0,1) input: the numbers do not matter for speed, but the
 * same input every run keeps data-dependent families comparable. */
static void fill_input(float *x, size_t n)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i += 2) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = ((s >> 11) + 1.0) / 9007199254740993.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (s >> 11) / 9007199254740992.0;
        double r = sqrt(-2 * log(u1));
        x[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
}

/* The machine's sgemm peak with the same OpenBLAS and thread count. */
static double sgemm_peak(int threads)
{
    /* with the kernels the models get: vtkit picks OpenBLAS's kernels when
     * its first thread pool starts (lib/ops/pool.c), not before */
    vt_pool_free(vt_pool_create(1));
    const int n = 2048;
    float *a = vt_xmalloc((size_t)n * n * sizeof *a), *b = vt_xmalloc((size_t)n * n * sizeof *b),
          *c = vt_xmalloc((size_t)n * n * sizeof *c);
    fill_input(a, (size_t)n * n);
    fill_input(b, (size_t)n * n);
    vt_pool_free(vt_pool_create(1));    /* OpenBLAS's kernel choice, as models get it */
    openblas_set_num_threads(threads);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t = vt_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = vt_now() - t;
        if (t < best) best = t;
    }
    openblas_set_num_threads(1);
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / best / 1e9;
}

/* The image of --image, preprocessed for the model (as vt-classify takes
 * it), into every slot of the batch x[batch, 3, S, S]. */
typedef struct image_ctx {
    const vt_model *m;
    const vt_input_opts *io;
    float *x;
    int batch, got;
} image_ctx;

static int take_image(vt_frame *f, void *ctx)
{
    image_ctx *c = ctx;
    int rc = 0;
    if (!c->got) {
        int64_t S = c->m->img_size;
        const vt_tensor *t = vt_frame_get(f, "image");
        if (!t && f->ntensors == 1) t = &f->tensors[0];
        int batched = t && t->ndim == 4 && t->shape[0] == 1;
        const int64_t *sh = t ? t->shape + batched : NULL;
        char b[128];
        if (!t || t->dtype != VT_F32 || t->ndim - batched != 3 || sh[0] != 3 || sh[1] != S ||
            sh[2] != S)
            rc = vt_seterr("not an F32 image [3,%lld,%lld]%s%s", (long long)S, (long long)S,
                           t ? ": " : "", t ? vt_shape_str(t, b, sizeof b) : "");
        size_t n = (size_t)3 * S * S;
        for (int i = 0; rc == 0 && i < c->batch; i++) {
            float *dst = c->x + i * n;
            memcpy(dst, t->data, n * sizeof *dst);
            vt_preproc fp = c->io->pre;
            if (vt_preproc_from_meta(f, &fp) < 0) continue;
            for (int ch = 0; ch < 3; ch++)
                if (fp.mean[ch] != c->m->pre.mean[ch] || fp.std[ch] != c->m->pre.std[ch])
                    for (int64_t k = 0; k < S * S; k++)
                        dst[ch * S * S + k] = (dst[ch * S * S + k] * fp.std[ch] + fp.mean[ch] -
                                               c->m->pre.mean[ch]) / c->m->pre.std[ch];
        }
        c->got = rc == 0;
    }
    vt_frame_free(f);
    free(f);
    return rc;
}

static int load_image(const vt_model *m, const char *path, float *x, int batch)
{
    vt_input_opts io;
    vt_input_opts_for_model(&io, m, VT_DEFAULT_MAX_PIXELS);
    image_ctx c = {m, &io, x, batch, 0};
    if (vt_input_frames(path, &io, take_image, &c) < 0) return -1;
    if (!c.got) return vt_seterr("no image in %s", path);
    return 0;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* A random-weight model file in $TMPDIR, unlinked once mapped. */
static int open_random(const char *arch, const bench_opts *o, const vt_run_opts *ro,
                       vt_model *m, double *load_ms)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/vt-bench-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return vt_seterr("cannot create a temporary file: %s", strerror(errno));
    close(fd);
    /* an arch is built for --size (as the authors' constructors take
     * img_size); a model file is run at it (vt_model_open_sized) */
    cJSON *over = cJSON_CreateObject();
    if (o->size) cJSON_AddNumberToObject(over, "img_size", o->size);
    int rc = vt_make_random_model(arch, over, o->seed, VT_F32, path);
    cJSON_Delete(over);
    double t = vt_now();
    if (rc == 0) rc = vt_model_open(path, ro, m);
    *load_ms = (vt_now() - t) * 1e3;
    unlink(path);
    return rc;
}

static double median(double *ts, int n)
{
    qsort(ts, (size_t)n, sizeof *ts, cmp_double);
    return n % 2 ? ts[n / 2] : (ts[n / 2 - 1] + ts[n / 2]) / 2;
}

/* Bench a model: the unpruned pass into r[0] and, with --keep, a pruned
 * pass per keep into r[1..nkeep]. Passes are interleaved run by run, so a
 * machine whose load drifts slows them alike. */
static int bench_model(const char *model, const char *arch, const bench_opts *o, result *r)
{
    int nconf = 1 + o->nkeep;
    memset(r, 0, (size_t)nconf * sizeof *r);
    vt_run_opts ro = {.threads = o->threads, .batch = o->batch};
    vt_model m;
    int rc;
    double load_ms = 0;
    if (model) {
        double t = vt_now();
        rc = vt_model_open_sized(model, &ro, o->size, &m);
        load_ms = (vt_now() - t) * 1e3;
    } else {
        rc = open_random(arch, o, &ro, &m, &load_ms);
    }
    if (rc < 0) return -1;
    if (o->nkeep && vt_model_split_point(&m, o->after) < 0) {
        vt_model_close(&m);
        return -1;
    }
    double params = 0;
    for (int i = 0; i < m.weights.ntensors; i++) params += (double)vt_tensor_numel(&m.weights.tensors[i]);
    vt_pruned_pass *pp = vt_xcalloc((size_t)nconf, sizeof *pp);
    for (int c = 0; c < nconf; c++) {
        r[c].name = model ? model : arch;
        r[c].params = params;
        r[c].size = m.img_size;
        r[c].load_ms = load_ms;
        r[c].macs = -1;
        r[c].pruned = c > 0;
        r[c].keep = c > 0 ? o->keep[c - 1] : 1;
        if (c > 0) vt_pruned_pass_init(&pp[c], o->batch, o->after, o->keep[c - 1], VT_PRUNE_TOPK);
    }
    if (m.family->cost && m.family->cost(m.config, &r[0].cost) == 0) r[0].macs = r[0].cost.macs;

    size_t n = (size_t)o->batch * 3 * m.img_size * m.img_size;
    float *x = vt_xmalloc(n * sizeof *x);
    float *logits = vt_xmalloc((size_t)o->batch * m.num_classes * sizeof *logits);
    fill_input(x, n);
    if (o->image && load_image(&m, o->image, x, o->batch) < 0) {
        char *msg = vt_xstrdup(vt_error());
        vt_seterr("%s: %s", o->image, msg);
        free(msg);
        rc = -1;
    }
    int tty = isatty(STDERR_FILENO);
    double *ts = vt_xmalloc((size_t)nconf * o->runs * sizeof *ts);
    for (int i = 0; i < o->warmup + o->runs && rc == 0; i++) {
        if (tty) fprintf(stderr, "\rvt-bench: %s run %d/%d ", r[0].name, i + 1, o->warmup + o->runs);
        for (int c = 0; c < nconf && rc == 0; c++) {
            double t = vt_now();
            rc = c == 0 ? vt_model_forward(&m, x, o->batch, logits)
                        : vt_pruned_forward(&m, &pp[c], x, logits, &r[c].tokens);
            t = (vt_now() - t) * 1e3;
            if (i == 0) r[c].first_ms = load_ms + t;   /* mapping the model + one pass */
            if (i >= o->warmup) ts[(size_t)c * o->runs + i - o->warmup] = t;
        }
    }
    if (tty) fprintf(stderr, "\r\033[K");
    double rss = peak_rss_mb();
    for (int c = 0; c < nconf && rc == 0; c++) {
        double *t = ts + (size_t)c * o->runs;
        r[c].med_ms = median(t, o->runs);
        r[c].min_ms = t[0];
        r[c].max_ms = t[o->runs - 1];
        r[c].rss_mb = rss;
        if (c == 0) continue;
        r[0].tokens = pp[c].full[0].n;
        if (m.family->cost_pruned &&
            m.family->cost_pruned(m.config, o->after, r[c].tokens, &r[c].cost) == 0)
            r[c].macs = r[c].cost.macs;
        r[c].speedup = r[0].med_ms / r[c].med_ms;
        r[c].ideal = r[c].macs > 0 && r[0].macs > 0 ? r[0].macs / r[c].macs : NAN;
        r[c].realised = r[c].speedup / r[c].ideal;
    }
    /* Input-dependent cost (dge): what the unpruned pass's images cost. */
    for (int c = 0; c < nconf; c++) r[c].spent = -1;
    if (rc == 0 && m.family->spent) {
        double sum = 0;
        for (int b = 0; b < o->batch && rc == 0; b++) {
            vt_cost c;
            rc = m.family->spent(m.net, b, &c);
            sum += c.macs;
            if (b == 0) r[0].spent_cost = c;
        }
        r[0].spent = sum / o->batch;
    }
    if (o->nkeep) {
        r[0].speedup = r[0].ideal = r[0].realised = 1;
    }
    for (int c = 1; c < nconf; c++) vt_pruned_pass_free(&pp[c]);
    free(pp);
    free(ts);
    free(x);
    free(logits);
    vt_model_close(&m);
    return rc;
}

/* ---- output ---- */

static void print_header(const bench_opts *o)
{
    if (o->format == FMT_TEXT) {
        printf("%-34s %5s %3s %4s %9s %7s %8s %9s %9s %9s %9s %8s %8s %8s %6s %8s", "model",
               "batch", "thr", "size", "params(M)", "GMACs", "load(ms)", "first(ms)", "min(ms)", "med(ms)",
               "max(ms)", "ms/img", "img/s", "GFLOP/s", "peak%", "RSS(MB)");
        if (o->nkeep)
            printf(" %5s %5s %6s %7s %6s %6s", "keep", "after", "tokens", "speedup", "ideal",
                   "real%");
        printf("\n");
    } else if (o->format == FMT_CSV) {
        printf("model,batch,threads,params,gmacs,load_ms,first_ms,min_ms,median_ms,max_ms,"
               "ms_per_image,images_per_s,gflops,peak_gflops,peak_fraction,peak_rss_mb,size,"
               "gmacs_spent%s%s\n",
               o->nkeep ? ",keep,after,tokens,speedup,ideal_speedup,realised" : "",
               o->explain ? ",parts" : "");
    }
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void print_csv_field(const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* --explain in CSV: one field "part=GMACs;part=GMACs;..." (part names hold
 * letters, digits, spaces and '+'). */
static void print_csv_parts(const vt_cost *c)
{
    putchar(',');
    for (int i = 0; i < c->nparts; i++)
        printf("%s%s=%.6g", i ? ";" : "", c->part[i].name, c->part[i].macs / 1e9);
}

static void print_result(const result *r, const bench_opts *o)
{
    double per_img = r->med_ms / o->batch, ips = 1e3 / per_img;
    double gmacs = r->macs >= 0 ? r->macs / 1e9 : NAN;
    double spent = r->spent >= 0 ? r->spent / 1e9 : NAN;
    /* achieved: the work actually done (spent) when the input decides it */
    double work = r->spent >= 0 ? r->spent : r->macs;
    double gflops = work >= 0 ? 2 * work * o->batch / (r->med_ms * 1e-3) / 1e9 : NAN;
    double frac = r->peak_gflops > 0 ? gflops / r->peak_gflops : NAN;
    if (o->format == FMT_TEXT) {
        printf("%-34s %5d %3d %4d %9.2f %7.3f %8.1f %9.1f %9.2f %9.2f %9.2f %8.2f %8.2f %8.1f ",
               r->name, o->batch, o->threads, r->size, r->params / 1e6, gmacs, r->load_ms, r->first_ms,
               r->min_ms, r->med_ms, r->max_ms, per_img, ips, gflops);
        if (isnan(frac)) printf("%6s", "-");
        else printf("%5.1f%%", frac * 100);
        printf(" %8.1f", r->rss_mb);
        if (o->nkeep) {
            if (r->pruned) printf(" %5.3g", r->keep);
            else printf(" %5s", "-");
            printf(" %5d %6d %7.2f %6.2f", o->after, r->tokens, r->speedup, r->ideal);
            if (r->pruned) printf(" %5.1f%%", r->realised * 100);
            else printf(" %6s", "-");
        }
        printf("\n");
        if (o->explain) {
            for (int i = 0; i < r->cost.nparts; i++)
                printf("    %-30s %9.4f GMACs %5.1f%%\n", r->cost.part[i].name, r->cost.part[i].macs / 1e9,
                       100 * r->cost.part[i].macs / r->cost.macs);
        }
        if (!isnan(spent)) {
            printf("    GMACs spent on %s: %.3f of %.3f dense (%.1f%%)%s\n",
                   o->image ? o->image : "the noise input", spent, gmacs, 100 * spent / gmacs,
                   o->batch > 1 ? ", mean over the batch" : "");
            for (int i = 0; o->explain && i < r->spent_cost.nparts; i++)
                printf("    spent %-24s %9.4f GMACs\n", r->spent_cost.part[i].name,
                       r->spent_cost.part[i].macs / 1e9);
        }
    } else if (o->format == FMT_CSV) {
        print_csv_field(r->name);
        printf(",%d,%d,%.0f,%.6g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.1f,%d,",
               o->batch, o->threads, r->params, gmacs, r->load_ms, r->first_ms, r->min_ms,
               r->med_ms, r->max_ms, per_img, ips, gflops, r->peak_gflops, frac, r->rss_mb, r->size);
        if (!isnan(spent)) printf("%.6g", spent);
        if (o->nkeep) {
            char keep[32] = "";     /* empty: the unpruned row */
            if (r->pruned) snprintf(keep, sizeof keep, "%.4g", r->keep);
            printf(",%s,%d,%d,%.4g,%.4g,%.4g", keep, o->after, r->tokens, r->speedup, r->ideal,
                   r->realised);
        }
        if (o->explain) print_csv_parts(&r->cost);
        putchar('\n');
    } else {
        /* JSON has no NaN: unknown numbers are null. */
        char g[32], f[32], p[32], fr[32];
        snprintf(g, sizeof g, isnan(gmacs) ? "null" : "%.6g", gmacs);
        snprintf(f, sizeof f, isnan(gflops) ? "null" : "%.6g", gflops);
        snprintf(p, sizeof p, r->peak_gflops > 0 ? "%.6g" : "null", r->peak_gflops);
        snprintf(fr, sizeof fr, isnan(frac) ? "null" : "%.6g", frac);
        printf("{\"model\":");
        print_json_string(r->name);
        printf(",\"batch\":%d,\"threads\":%d,\"params\":%.0f,\"gmacs\":%s,"
               "\"load_ms\":%.4g,\"first_ms\":%.4g,\"min_ms\":%.4g,\"median_ms\":%.4g,\"max_ms\":%.4g,"
               "\"ms_per_image\":%.4g,\"images_per_s\":%.4g,\"gflops\":%s,\"peak_gflops\":%s,"
               "\"peak_fraction\":%s,\"peak_rss_mb\":%.1f,\"size\":%d",
               o->batch, o->threads, r->params, g, r->load_ms, r->first_ms, r->min_ms,
               r->med_ms, r->max_ms, per_img, ips, f, p, fr, r->rss_mb, r->size);
        if (!isnan(spent)) printf(",\"gmacs_spent\":%.6g", spent);
        if (o->nkeep) {
            char id[32], re[32];
            snprintf(id, sizeof id, isnan(r->ideal) ? "null" : "%.6g", r->ideal);
            snprintf(re, sizeof re, isnan(r->realised) ? "null" : "%.6g", r->realised);
            printf(",\"pruned\":%s,\"keep\":%.6g,\"after\":%d,\"tokens\":%d,\"speedup\":%.6g,"
                   "\"ideal_speedup\":%s,\"realised\":%s",
                   r->pruned ? "true" : "false", r->keep, o->after, r->tokens, r->speedup, id, re);
        }
        if (o->explain) {
            printf(",\"parts\":{");
            for (int i = 0; i < r->cost.nparts; i++)
                printf("%s\"%s\":%.6g", i ? "," : "", r->cost.part[i].name, r->cost.part[i].macs / 1e9);
            printf("}");
        }
        printf("}\n");
    }
    fflush(stdout);
}

static int run_one(const char *model, const char *arch, const bench_opts *o, double peak)
{
    result r[1 + MAX_KEEP];
    if (bench_model(model, arch, o, r) < 0) {
        fprintf(stderr, "vt-bench: %s: %s\n", model ? model : arch, vt_error());
        return 1;
    }
    for (int c = 0; c <= o->nkeep; c++) {
        r[c].peak_gflops = peak;
        print_result(&r[c], o);
    }
    if (ferror(stdout))
        return vt_stdout_failed("vt-bench") ? VT_EXIT_PIPE : 1;
    return 0;
}

/* What to bench: a model file or an arch with random weights. */
typedef struct bench_target {
    const char *model, *arch;
} bench_target;

/* Each target in its own process so peak RSS is that model's alone; one
 * target runs in this process. 1 when any failed. */
static int run_targets(const bench_target *t, int n, const bench_opts *o, double peak)
{
    if (n == 1) return run_one(t[0].model, t[0].arch, o, peak);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "vt-bench: fork: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0) _exit(run_one(t[i].model, t[i].arch, o, peak));
        int st;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == VT_EXIT_PIPE) return VT_EXIT_PIPE;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
    }
    return failed;
}

/* --all: every arch of every family; with --keep, of every family that
 * continues a pruned token set (a model named on its own is still tried,
 * and refused). */
static int run_all(const bench_opts *o, double peak)
{
    int n = 0;
    const vt_family *const *fams = vt_families();
    for (int i = 0; fams[i]; i++)
        for (int j = 0; fams[i]->archs[j]; j++) n++;
    bench_target *t = vt_xcalloc((size_t)n, sizeof *t);
    n = 0;
    for (int i = 0; fams[i]; i++) {
        if (o->nkeep && !(fams[i]->split_point && fams[i]->split_subsets)) continue;
        for (int j = 0; fams[i]->archs[j]; j++) t[n++].arch = fams[i]->archs[j];
    }
    int rc = run_targets(t, n, o, peak);
    free(t);
    return rc;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "vt-bench: %s\nTry 'vt-bench --help'.\n", msg);
    return 2;
}

int main(int argc, char **argv)
{
    enum { O_ARCH = 256, O_RANDOM, O_ALL, O_RUNS, O_WARMUP, O_PEAK, O_EXPLAIN, O_FORMAT, O_SEED,
           O_IMAGE, O_KEEP, O_AFTER };
    /* short options: -m -b -t -s -h -V */
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"arch", required_argument, 0, O_ARCH},
        {"random", no_argument, 0, O_RANDOM}, {"all", no_argument, 0, O_ALL},
        {"batch", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"runs", required_argument, 0, O_RUNS}, {"warmup", required_argument, 0, O_WARMUP},
        {"peak", no_argument, 0, O_PEAK},     {"explain", no_argument, 0, O_EXPLAIN},
        {"format", required_argument, 0, O_FORMAT}, {"seed", required_argument, 0, O_SEED},
        {"image", required_argument, 0, O_IMAGE},
        {"keep", required_argument, 0, O_KEEP}, {"after", required_argument, 0, O_AFTER},
        {"size", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    bench_opts o = {.batch = 1, .threads = vt_ncpus(), .runs = 10, .warmup = 1, .after = -1};
    bench_target targets[MAX_TARGETS];
    int ntargets = 0, all = 0, opt;
    long v;
    while ((opt = getopt_long(argc, argv, "m:b:t:s:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
        case O_ARCH:
            if (ntargets == MAX_TARGETS) return usage_error("at most 64 models (-m, --arch)");
            targets[ntargets++] = (bench_target){opt == 'm' ? optarg : NULL,
                                                 opt == 'm' ? NULL : optarg};
            break;
        case O_RANDOM: break;
        case O_ALL: all = 1; break;
        case 'b':
            if (vt_parse_int(optarg, 1, 4096, &v) < 0) return usage_error(vt_error());
            o.batch = (int)v;
            break;
        case 't':
            if (vt_parse_int(optarg, 1, 1024, &v) < 0) return usage_error(vt_error());
            o.threads = (int)v;
            break;
        case 's':
            if (vt_parse_int(optarg, 1, 8192, &v) < 0) return usage_error(vt_error());
            o.size = (int)v;
            break;
        case O_RUNS:
            if (vt_parse_int(optarg, 1, 1000000, &v) < 0) return usage_error(vt_error());
            o.runs = (int)v;
            break;
        case O_WARMUP:
            if (vt_parse_int(optarg, 0, 1000000, &v) < 0) return usage_error(vt_error());
            o.warmup = (int)v;
            break;
        case O_SEED:
            if (vt_parse_int(optarg, 0, 1L << 62, &v) < 0) return usage_error(vt_error());
            o.seed = (unsigned long)v;
            break;
        case O_KEEP: {
            char *list = vt_xstrdup(optarg), *save = NULL;
            o.nkeep = 0;
            for (char *k = strtok_r(list, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
                double r;
                if (o.nkeep == MAX_KEEP || vt_parse_float(k, &r) < 0 || !(r > 0 && r <= 1)) {
                    free(list);
                    return usage_error("--keep takes up to 16 fractions above 0, at most 1");
                }
                o.keep[o.nkeep++] = r;
            }
            free(list);
            if (!o.nkeep) return usage_error("--keep takes up to 16 fractions above 0, at most 1");
            break;
        }
        case O_AFTER:
            if (vt_parse_int(optarg, 0, 100000, &v) < 0) return usage_error("--after takes a block number");
            o.after = (int)v;
            break;
        case O_PEAK: o.peak = 1; break;
        case O_IMAGE: o.image = optarg; break;
        case O_EXPLAIN: o.explain = 1; break;
        case O_FORMAT:
            if (strcmp(optarg, "text") == 0) o.format = FMT_TEXT;
            else if (strcmp(optarg, "json") == 0) o.format = FMT_JSON;
            else if (strcmp(optarg, "csv") == 0) o.format = FMT_CSV;
            else return usage_error("--format takes text, json or csv");
            break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("vt-bench (vtkit) %s\n", VT_VERSION); return 0;
        default: fputs("Try 'vt-bench --help'.\n", stderr); return 2;
        }
    }
    if (optind != argc) return usage_error("unexpected argument");
    if (!ntargets == !all) return usage_error("give -m MODEL or --arch NAME (one or more), or --all");
    if (!o.nkeep != (o.after < 0)) return usage_error("--keep and --after go together");
    for (int i = 0; i < ntargets; i++)
        if (targets[i].arch && !vt_family_find(targets[i].arch)) {
            fprintf(stderr, "vt-bench: unknown arch '%s' (see vt-convert --list-archs)\n",
                    targets[i].arch);
            return 2;
        }
    vt_ignore_sigpipe();
    double peak = o.peak ? sgemm_peak(o.threads) : 0;
    print_header(&o);
    if (all) return run_all(&o, peak);
    return run_targets(targets, ntargets, &o, peak);
}
