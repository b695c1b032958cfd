/* pool.c - the thread pool every op runs on (see ops.h for the threading
 * model). The caller is thread 0 and works too; n-1 workers spin briefly
 * between jobs (a forward pass issues a few hundred short jobs) and then
 * sleep on a condition variable so idle pools cost nothing. */
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "util.h"

#define SPIN_ROUNDS 20000

/* OpenBLAS's runtime kernel choice (DYNAMIC_ARCH builds, like Debian's)
 * falls back to its generic "Prescott" SSE3 kernels on CPUs newer than the
 * library (Debian 12's 0.3.21 does not know the Xeon model this project is
 * measured on): sgemm then runs at ~30 instead of ~140 GFLOP/s per core.
 * When the user has not chosen (OPENBLAS_CORETYPE unset) and the CPU can
 * run better kernels, re-run OpenBLAS's own selection with the core type
 * set, as the environment variable would have. Weak symbols: a build
 * against an OpenBLAS without dynamic dispatch simply skips this. */
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
char *openblas_get_corename(void) __attribute__((weak));

static void blas_pick_kernels(void)
{
    if (!gotoblas_dynamic_init || !gotoblas_dynamic_quit || !openblas_get_corename ||
        getenv("OPENBLAS_CORETYPE"))
        return;
    const char *have = openblas_get_corename(), *want = NULL;
    static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                          "Nehalem", "Sandybridge", "Zen", "Haswell", NULL};
    int weak = 0;
    for (int i = 0; generic[i]; i++)
        weak |= have && strcmp(have, generic[i]) == 0;
    if (!weak)
        return;
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
#endif
    if (!want || strcmp(have, want) == 0 ||
        (strcmp(want, "Haswell") == 0 && strcmp(have, "Zen") == 0))
        return;
    setenv("OPENBLAS_CORETYPE", want, 0);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

struct vt_pool {
    int n;                      /* threads in all, caller included */
    pthread_t *th;              /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    atomic_uint gen;            /* job generation, bumped per vt_pool_run */
    atomic_int next;            /* next task index to take */
    atomic_int busy;            /* workers still inside the current job */
    int stop;
    vt_task_fn fn;
    void *ctx;
    int ntasks;
};

typedef struct worker_arg { vt_pool *p; int id; } worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void take_tasks(vt_pool *p, int id)
{
    int t;
    while ((t = atomic_fetch_add(&p->next, 1)) < p->ntasks)
        p->fn(p->ctx, t, id);
}

static void *worker(void *arg)
{
    worker_arg a = *(worker_arg *)arg;
    vt_pool *p = a.p;
    free(arg);
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load(&p->gen) == seen && spins < SPIN_ROUNDS) {
            cpu_relax();
            spins++;
        }
        if (atomic_load(&p->gen) == seen) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !p->stop)
                pthread_cond_wait(&p->work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = atomic_load(&p->gen);
        if (p->stop)
            return NULL;
        take_tasks(p, a.id);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

vt_pool *vt_pool_create(int n)
{
    /* One threading model: our pool only; each thread runs 1-thread BLAS. */
    pthread_once(&blas_once, blas_pick_kernels);
    openblas_set_num_threads(1);
    if (n <= 0)
        n = vt_ncpus();
    if (n > 1024)
        n = 1024;
    vt_pool *p = vt_xcalloc(1, sizeof *p);
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->busy, 0);
    p->th = n > 1 ? vt_xcalloc((size_t)n - 1, sizeof *p->th) : NULL;
    for (int i = 1; i < n; i++) {
        worker_arg *a = vt_xmalloc(sizeof *a);
        a->p = p;
        a->id = i;
        if (pthread_create(&p->th[i - 1], NULL, worker, a) != 0) {
            free(a);
            p->n = i;               /* stop the ones we have */
            vt_pool_free(p);
            vt_seterr("cannot start %d threads", n);
            return NULL;
        }
    }
    return p;
}

void vt_pool_free(vt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int vt_pool_size(const vt_pool *p)
{
    return p ? p->n : 1;
}

void vt_pool_run(vt_pool *p, int ntasks, vt_task_fn fn, void *ctx)
{
    if (ntasks <= 0)
        return;
    if (!p || p->n == 1 || ntasks == 1) {
        for (int t = 0; t < ntasks; t++)
            fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    take_tasks(p, 0);
    int spins = 0;
    while (atomic_load(&p->busy) > 0 && spins < SPIN_ROUNDS) {
        cpu_relax();
        spins++;
    }
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
