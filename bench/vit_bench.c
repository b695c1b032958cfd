/* vit_bench.c - time a vtkit model's forward pass (built by bench/deit.sh).
 *   vit_bench MODEL BATCH ITERS THREADS GFLOP_PER_IMAGE
 *   vit_bench --peak THREADS      sgemm peak: THREADS concurrent 1-thread
 *                                 1024^3 products on our pool
 * Prints one line: key=value pairs. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model.h"
#include "ops.h"
#include "util.h"

static double rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct peak_ctx { float *a, *b, *c; int n; } peak_ctx;
static void peak_task(void *ctx, int task, int thread)
{
    peak_ctx *p = ctx;
    (void)thread;
    size_t nn = (size_t)p->n * p->n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->n, p->n, p->n, 1, p->a + task * nn,
                p->n, p->b + task * nn, p->n, 0, p->c + task * nn, p->n);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--peak") == 0) {
        int T = atoi(argv[2]), n = 1024;
        vt_pool *pool = vt_pool_create(T);
        size_t nn = (size_t)n * n * T;
        peak_ctx p = {calloc(nn, 4), calloc(nn, 4), calloc(nn, 4), n};
        for (size_t i = 0; i < nn; i++) p.a[i] = p.b[i] = (float)(i % 7) * 0.1f;
        vt_pool_run(pool, T, peak_task, &p);
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t = vt_now();
            vt_pool_run(pool, T, peak_task, &p);
            t = vt_now() - t;
            best = t < best ? t : best;
        }
        printf("peak_gflops=%.1f threads=%d\n", 2.0 * n * n * n * T / best / 1e9, T);
        return 0;
    }
    if (argc != 6) {
        fprintf(stderr, "usage: vit_bench MODEL BATCH ITERS THREADS GFLOP | --peak THREADS\n");
        return 2;
    }
    int batch = atoi(argv[2]), iters = atoi(argv[3]), threads = atoi(argv[4]);
    double gflop = atof(argv[5]);
    double t0 = vt_now();
    vt_run_opts o = {threads, batch};
    vt_model m;
    if (vt_model_open(argv[1], &o, &m) < 0) {
        fprintf(stderr, "vit_bench: %s: %s\n", argv[1], vt_error());
        return 1;
    }
    size_t S = (size_t)m.img_size, n = (size_t)batch * 3 * S * S;
    float *x = malloc(n * sizeof *x), *logits = malloc((size_t)batch * m.num_classes * 4);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    vt_model_forward(&m, x, batch, logits);       /* warm-up, also first-image cost */
    double first = vt_now() - t0;
    double *t = malloc(iters * sizeof *t);
    for (int i = 0; i < iters; i++) {
        double s = vt_now();
        vt_model_forward(&m, x, batch, logits);
        t[i] = vt_now() - s;
    }
    qsort(t, iters, sizeof *t, cmp);
    double med = t[iters / 2];
    printf("impl=vtkit batch=%d threads=%d ms_per_image=%.2f images_per_s=%.2f gflops=%.1f "
           "rss_mb=%.1f open_and_first_ms=%.1f\n", batch, threads, med * 1e3 / batch,
           batch / med, gflop * batch / med, rss_mb(), first * 1e3);
    vt_model_close(&m);
    return 0;
}
