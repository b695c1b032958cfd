/* vt-bench - speed, FLOPs, parameters and memory of a model. */
#include "ckpt.h"
#include "model.h"
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
    "usage: vt-bench (-m MODEL | --arch NAME [--random] | --all) [options]\n"
    "Measure a model: parameters, GMACs, latency, throughput and memory.\n"
    "  -m, --model FILE     a model file\n"
    "      --arch NAME      a known arch with random weights (--seed N)\n"
    "      --random         accepted for clarity: --arch always uses random weights\n"
    "      --all            every known arch, each in its own process\n"
    "  -b, --batch B        images per forward pass (1)\n"
    "  -t, --threads T      threads (online cores)\n"
    "      --runs N         timed runs (10)\n"
    "      --warmup N       untimed runs first (1)\n"
    "      --peak           also measure the sgemm peak, for the peak fraction\n"
    "      --explain        break the GMACs down per part of the model\n"
    "      --format F       text (default), json, csv\n"
    "  -h, --help           this help\n"
    "  -V, --version        version\n";

typedef struct bench_opts {
    int batch, threads, runs, warmup, peak, explain, format;
    unsigned long seed;
} bench_opts;

enum { FMT_TEXT, FMT_JSON, FMT_CSV };

typedef struct result {
    const char *name;
    double params, macs;        /* macs < 0: not known for this family */
    double load_ms, first_ms, min_ms, med_ms, max_ms;
    double peak_gflops;         /* 0: not measured */
    double rss_mb;
    vt_cost cost;
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

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* A random-weight model file in $TMPDIR, unlinked once mapped. */
static int open_random(const char *arch, unsigned long seed, const vt_run_opts *ro,
                       vt_model *m, double *load_ms)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/vt-bench-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return vt_seterr("cannot create a temporary file: %s", strerror(errno));
    close(fd);
    int rc = vt_make_random_model(arch, NULL, seed, VT_F32, path);
    double t = vt_now();
    if (rc == 0) rc = vt_model_open(path, ro, m);
    *load_ms = (vt_now() - t) * 1e3;
    unlink(path);
    return rc;
}

static int bench_model(const char *model, const char *arch, const bench_opts *o, result *r)
{
    memset(r, 0, sizeof *r);
    vt_run_opts ro = {.threads = o->threads, .batch = o->batch};
    vt_model m;
    int rc;
    if (model) {
        double t = vt_now();
        rc = vt_model_open(model, &ro, &m);
        r->load_ms = (vt_now() - t) * 1e3;
    } else {
        rc = open_random(arch, o->seed, &ro, &m, &r->load_ms);
    }
    if (rc < 0) return -1;
    r->name = model ? model : arch;
    for (int i = 0; i < m.weights.ntensors; i++) r->params += (double)vt_tensor_numel(&m.weights.tensors[i]);
    r->macs = -1;
    if (m.family->cost && m.family->cost(m.config, &r->cost) == 0) r->macs = r->cost.macs;

    size_t n = (size_t)o->batch * 3 * m.img_size * m.img_size;
    float *x = vt_xmalloc(n * sizeof *x);
    float *logits = vt_xmalloc((size_t)o->batch * m.num_classes * sizeof *logits);
    fill_input(x, n);
    int tty = isatty(STDERR_FILENO);
    double *ts = vt_xmalloc(o->runs * sizeof *ts);
    for (int i = 0; i < o->warmup + o->runs && rc == 0; i++) {
        if (tty) fprintf(stderr, "\rvt-bench: %s run %d/%d ", r->name, i + 1, o->warmup + o->runs);
        double t = vt_now();
        rc = vt_model_forward(&m, x, o->batch, logits);
        t = (vt_now() - t) * 1e3;
        if (i == 0) r->first_ms = r->load_ms + t;   /* mapping the model + one pass */
        if (i >= o->warmup) ts[i - o->warmup] = t;
    }
    if (tty) fprintf(stderr, "\r\033[K");
    if (rc == 0) {
        qsort(ts, o->runs, sizeof *ts, cmp_double);
        r->min_ms = ts[0];
        r->med_ms = o->runs % 2 ? ts[o->runs / 2] : (ts[o->runs / 2 - 1] + ts[o->runs / 2]) / 2;
        r->max_ms = ts[o->runs - 1];
    }
    r->rss_mb = peak_rss_mb();
    free(ts);
    free(x);
    free(logits);
    vt_model_close(&m);
    return rc;
}

/* ---- output ---- */

static void print_header(const bench_opts *o)
{
    if (o->format == FMT_TEXT)
        printf("%-34s %5s %3s %9s %7s %8s %9s %9s %9s %9s %8s %8s %8s %6s %8s\n", "model", "batch",
               "thr", "params(M)", "GMACs", "load(ms)", "first(ms)", "min(ms)", "med(ms)",
               "max(ms)", "ms/img", "img/s", "GFLOP/s", "peak%", "RSS(MB)");
    else if (o->format == FMT_CSV)
        printf("model,batch,threads,params,gmacs,load_ms,first_ms,min_ms,median_ms,max_ms,"
               "ms_per_image,images_per_s,gflops,peak_gflops,peak_fraction,peak_rss_mb\n");
}

static void print_result(const result *r, const bench_opts *o)
{
    double per_img = r->med_ms / o->batch, ips = 1e3 / per_img;
    double gmacs = r->macs >= 0 ? r->macs / 1e9 : NAN;
    double gflops = r->macs >= 0 ? 2 * r->macs * o->batch / (r->med_ms * 1e-3) / 1e9 : NAN;
    double frac = r->peak_gflops > 0 ? gflops / r->peak_gflops : NAN;
    if (o->format == FMT_TEXT) {
        printf("%-34s %5d %3d %9.2f %7.3f %8.1f %9.1f %9.2f %9.2f %9.2f %8.2f %8.2f %8.1f ",
               r->name, o->batch, o->threads, r->params / 1e6, gmacs, r->load_ms, r->first_ms,
               r->min_ms, r->med_ms, r->max_ms, per_img, ips, gflops);
        if (isnan(frac)) printf("%6s", "-");
        else printf("%5.1f%%", frac * 100);
        printf(" %8.1f\n", r->rss_mb);
        if (o->explain) {
            for (int i = 0; i < r->cost.nparts; i++)
                printf("    %-30s %9.4f GMACs %5.1f%%\n", r->cost.part[i].name, r->cost.part[i].macs / 1e9,
                       100 * r->cost.part[i].macs / r->cost.macs);
        }
    } else if (o->format == FMT_CSV) {
        printf("%s,%d,%d,%.0f,%.6g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.4g,%.1f\n", r->name,
               o->batch, o->threads, r->params, gmacs, r->load_ms, r->first_ms, r->min_ms,
               r->med_ms, r->max_ms, per_img, ips, gflops, r->peak_gflops, frac, r->rss_mb);
    } else {
        /* JSON has no NaN: unknown numbers are null. */
        char g[32], f[32], p[32], fr[32];
        snprintf(g, sizeof g, isnan(gmacs) ? "null" : "%.6g", gmacs);
        snprintf(f, sizeof f, isnan(gflops) ? "null" : "%.6g", gflops);
        snprintf(p, sizeof p, r->peak_gflops > 0 ? "%.6g" : "null", r->peak_gflops);
        snprintf(fr, sizeof fr, isnan(frac) ? "null" : "%.6g", frac);
        printf("{\"model\":\"%s\",\"batch\":%d,\"threads\":%d,\"params\":%.0f,\"gmacs\":%s,"
               "\"load_ms\":%.4g,\"first_ms\":%.4g,\"min_ms\":%.4g,\"median_ms\":%.4g,\"max_ms\":%.4g,"
               "\"ms_per_image\":%.4g,\"images_per_s\":%.4g,\"gflops\":%s,\"peak_gflops\":%s,"
               "\"peak_fraction\":%s,\"peak_rss_mb\":%.1f",
               r->name, o->batch, o->threads, r->params, g, r->load_ms, r->first_ms, r->min_ms,
               r->med_ms, r->max_ms, per_img, ips, f, p, fr, r->rss_mb);
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
    result r;
    if (bench_model(model, arch, o, &r) < 0) {
        fprintf(stderr, "vt-bench: %s: %s\n", model ? model : arch, vt_error());
        return 1;
    }
    r.peak_gflops = peak;
    print_result(&r, o);
    return 0;
}

/* Each arch in its own process so peak RSS is that model's alone. */
static int run_all(const bench_opts *o, double peak)
{
    int failed = 0;
    const vt_family *const *fams = vt_families();
    for (int i = 0; fams[i]; i++)
        for (int j = 0; fams[i]->archs[j]; j++) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) {
                fprintf(stderr, "vt-bench: fork: %s\n", strerror(errno));
                return 1;
            }
            if (pid == 0) {
                _exit(run_one(NULL, fams[i]->archs[j], o, peak));
            }
            int st;
            waitpid(pid, &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
        }
    return failed;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "vt-bench: %s\nTry 'vt-bench --help'.\n", msg);
    return 2;
}

int main(int argc, char **argv)
{
    enum { O_ARCH = 256, O_RANDOM, O_ALL, O_RUNS, O_WARMUP, O_PEAK, O_EXPLAIN, O_FORMAT, O_SEED };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"arch", required_argument, 0, O_ARCH},
        {"random", no_argument, 0, O_RANDOM}, {"all", no_argument, 0, O_ALL},
        {"batch", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"runs", required_argument, 0, O_RUNS}, {"warmup", required_argument, 0, O_WARMUP},
        {"peak", no_argument, 0, O_PEAK},     {"explain", no_argument, 0, O_EXPLAIN},
        {"format", required_argument, 0, O_FORMAT}, {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    bench_opts o = {.batch = 1, .threads = vt_ncpus(), .runs = 10, .warmup = 1};
    const char *model = NULL, *arch = NULL;
    int all = 0, opt;
    long v;
    while ((opt = getopt_long(argc, argv, "m:b:t:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case O_ARCH: arch = optarg; break;
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
        case O_PEAK: o.peak = 1; break;
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
    if (!!model + !!arch + all != 1) return usage_error("give one of -m MODEL, --arch NAME or --all");
    if (arch && !vt_family_find(arch)) {
        fprintf(stderr, "vt-bench: unknown arch '%s' (see vt-convert --list-archs)\n", arch);
        return 2;
    }
    double peak = o.peak ? sgemm_peak(o.threads) : 0;
    print_header(&o);
    if (all) return run_all(&o, peak);
    return run_one(model, arch, &o, peak);
}
