/* pool.c - the thread pool every op runs on (see ops.h for the threading
 * model).
 *
 * A job is ntasks tasks taken one at a time from a shared counter. The
 * caller is thread 0 and takes tasks too; workers *join* a job, and the
 * caller waits only for workers that joined. That is what keeps 2 threads
 * from being slower than 1 on a loaded machine: a worker that the kernel
 * has not scheduled yet (another process owns the other core) simply
 * misses the job and the caller runs every task itself, instead of
 * sleeping until the worker gets a time slice to say it has nothing to do
 * (which made small models 10-30x slower at 2 threads than at 1 under
 * load). Joining and closing are one atomic word, so a worker can never
 * join a job the caller has already finished:
 *
 *   state = gen << 32 | CLOSED | joined      (joined: workers inside)
 *
 * The caller publishes a job by storing a new gen (closed = 0, joined = 0),
 * takes tasks until none are left, sets CLOSED, and waits for joined to
 * drop to 0; a worker joins by CAS-incrementing joined of the current gen
 * while CLOSED is clear.
 *
 * Idle workers spin for a short time (a forward pass issues a few hundred
 * jobs back to back, microseconds apart), yielding the core now and then
 * so a spinning worker does not starve the caller when both share one core,
 * and then sleep on a condition variable, so idle pools cost nothing. A
 * caller waiting for a joined worker spins briefly, then sleeps too: the
 * worker may have been preempted mid-task, and a sleeping caller gives it
 * the core back. Jobs whose work is below VT_POOL_MIN_WORK run inline on
 * the caller (vt_pool_run_work): waking a worker costs more than they do. */
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "util.h"

#define CLOSED (1ull << 31)
#define JOINED_MASK (CLOSED - 1)
#define GEN(s) ((s) >> 32)
#define SPIN_IDLE_S 100e-6      /* a worker between jobs, before sleeping */
#define SPIN_WAIT_S 20e-6       /* the caller waiting for joined workers */

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
    pthread_cond_t work, done;  /* new job for sleepers; last joined worker left */
    _Atomic uint64_t state;     /* gen << 32 | CLOSED | joined (see above) */
    atomic_int next;            /* next task index to take */
    atomic_int sleepers;        /* workers blocked on `work` */
    atomic_int stop;
    /* the current job: written before its gen is published */
    vt_task_fn fn;
    void *ctx;
    int ntasks;
    double spin_idle, spin_wait;
    /* read-only ranges (model weights) and packed copies of the linear
     * weights found in them (vt_pool_wpack); touched by the caller only */
    struct { const char *lo; size_t len; } ro[4];
    int nro;
    struct wentry { const void *w; int n, k; size_t bytes; vt_wpack pack; } **wc;
    int nwc, capwc;
    void *scratch;              /* vt_pool_scratch */
    size_t scratch_bytes;
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

/* Spin until gen != seen or `budget` seconds pass; yields the core every
 * few microseconds so an oversubscribed machine still runs the caller. */
static uint64_t spin_for_job(vt_pool *p, uint64_t seen, double budget)
{
    uint64_t s = atomic_load(&p->state);
    if (GEN(s) != seen || budget <= 0)
        return s;
    double t0 = vt_now();
    for (unsigned i = 1;; i++) {
        cpu_relax();
        s = atomic_load(&p->state);
        if (GEN(s) != seen || atomic_load(&p->stop))
            return s;
        if (i % 64 == 0) {
            double t = vt_now() - t0;
            if (t > budget)
                return s;
            if (i % 1024 == 0)
                sched_yield();
        }
    }
}

static void *worker(void *arg)
{
    worker_arg a = *(worker_arg *)arg;
    vt_pool *p = a.p;
    free(arg);
    uint64_t seen = 0;
    for (;;) {
        uint64_t s = spin_for_job(p, seen, p->spin_idle);
        if (GEN(s) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (GEN(atomic_load(&p->state)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        s = atomic_load(&p->state);
        seen = GEN(s);
        /* join the job unless the caller has closed it */
        while (!(s & CLOSED) && GEN(s) == seen &&
               !atomic_compare_exchange_weak(&p->state, &s, s + 1))
            ;
        if ((s & CLOSED) || GEN(s) != seen)
            continue;
        take_tasks(p, a.id);
        s = atomic_fetch_sub(&p->state, 1);
        if ((s & CLOSED) && (s & JOINED_MASK) == 1) {
            /* the caller may be asleep waiting for us */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static double env_seconds(const char *name, double dflt)
{
    const char *v = getenv(name);
    return v && *v ? atof(v) * 1e-6 : dflt;
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
    p->spin_idle = env_seconds("VT_POOL_SPIN_US", SPIN_IDLE_S);
    p->spin_wait = env_seconds("VT_POOL_WAIT_US", SPIN_WAIT_S);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->state, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
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
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    for (int i = 0; i < p->nwc; i++) {
        vt_wpack_free(&p->wc[i]->pack);
        free(p->wc[i]);
    }
    free(p->wc);
    free(p->scratch);
    free(p->th);
    free(p);
}

void vt_pool_readonly(vt_pool *p, const void *base, size_t len)
{
    if (p && base && len && p->nro < (int)(sizeof p->ro / sizeof *p->ro)) {
        p->ro[p->nro].lo = base;
        p->ro[p->nro++].len = len;
    }
}

/* The cached pack of key w[n,k], or NULL. A pointer inside a pack put
 * under another key (vt_pool_wpack_put: the bytes of a BF16 or F16 weight
 * in the file) that is not that key is a caller's bug: those bytes are no
 * F32 weight, and multiplying by them would give wrong numbers quietly. */
static const vt_wpack *cached(const vt_pool *p, const void *w, int n, int k)
{
    const char *c = w;
    /* a few hundred weights per model, looked up a few hundred times per
     * forward pass: a linear scan costs microseconds */
    for (int i = 0; i < p->nwc; i++) {
        const struct wentry *e = p->wc[i];
        if (e->w == w && e->n == n && e->k == k)
            return &e->pack;
        if (e->bytes && c >= (const char *)e->w && c < (const char *)e->w + e->bytes) {
            fprintf(stderr, "vtkit: internal error: a %dx%d weight read at byte %td of a "
                    "%dx%d one packed from another dtype\n", n, k, c - (const char *)e->w,
                    e->n, e->k);
            abort();
        }
    }
    return NULL;
}

static struct wentry *new_entry(vt_pool *p)
{
    if (p->nwc == p->capwc) {
        p->capwc = p->capwc ? 2 * p->capwc : 64;
        p->wc = vt_xrealloc(p->wc, (size_t)p->capwc * sizeof *p->wc);
    }
    return vt_xcalloc(1, sizeof(struct wentry));
}

const vt_wpack *vt_pool_wpack(vt_pool *p, const float *w, int n, int k)
{
    if (!p)
        return NULL;
    const vt_wpack *hit = cached(p, w, n, k);
    if (hit)
        return hit;
    const char *c = (const char *)w;
    size_t bytes = (size_t)n * k * sizeof *w;
    int inside = 0;
    for (int i = 0; i < p->nro && !inside; i++)
        inside = c >= p->ro[i].lo && bytes <= p->ro[i].len &&
                 (size_t)(c - p->ro[i].lo) <= p->ro[i].len - bytes;
    if (!inside)
        return NULL;
    struct wentry *e = new_entry(p);
    if (vt_wpack_init_pool(p, &e->pack, w, n, k) < 0) {
        free(e);
        return NULL;
    }
    e->w = w, e->n = n, e->k = k;
    p->wc[p->nwc++] = e;
    return &e->pack;
}

const vt_wpack *vt_pool_wpack_put(vt_pool *p, const void *key, vt_wpack *pk, size_t key_bytes)
{
    if (!p || cached(p, key, pk->n, pk->k)) {
        vt_wpack_free(pk);
        vt_seterr(p ? "a weight packed twice" : "no pool to keep a packed weight");
        return NULL;
    }
    struct wentry *e = new_entry(p);
    e->w = key, e->n = pk->n, e->k = pk->k, e->bytes = key_bytes;
    e->pack = *pk;
    p->wc[p->nwc++] = e;
    return &e->pack;
}

const vt_wpack *vt_pool_wpack_find(const vt_pool *p, const void *key, int n, int k)
{
    return p ? cached(p, key, n, k) : NULL;
}

int vt_pool_wpack_load(vt_pool *p, const float *w, int n, int k)
{
    if (!p || vt_pool_wpack(p, w, n, k))
        return 0;
    vt_wpack own;
    if (vt_wpack_init_pool(p, &own, w, n, k) < 0)
        return -1;
    return vt_pool_wpack_put(p, w, &own, 0) ? 0 : -1;
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
    /* previous job: closed with nobody inside, so this is the only writer */
    uint64_t gen = GEN(atomic_load(&p->state)) + 1;
    atomic_store(&p->state, (gen & 0xffffffffu) << 32);
    /* seq_cst store above, load here: either we see a sleeper or it sees
     * the new gen before it waits */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        if (ntasks - 1 >= p->n - 1)
            pthread_cond_broadcast(&p->work);
        else
            for (int i = 0; i < ntasks - 1; i++)
                pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
    }
    take_tasks(p, 0);
    uint64_t s = atomic_fetch_or(&p->state, CLOSED);
    if (!(s & JOINED_MASK))
        return;
    /* joined workers are finishing their last task */
    double t0 = vt_now();
    for (unsigned i = 1; atomic_load(&p->state) & JOINED_MASK; i++) {
        cpu_relax();
        if (i % 64 == 0 && vt_now() - t0 > p->spin_wait) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->state) & JOINED_MASK)
                pthread_cond_wait(&p->done, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
}

void vt_pool_run_work(vt_pool *p, int ntasks, vt_task_fn fn, void *ctx, double work)
{
    vt_pool_run(work < VT_POOL_MIN_WORK ? NULL : p, ntasks, fn, ctx);
}

void *vt_pool_scratch(vt_pool *p, size_t bytes)
{
    if (!p)
        return NULL;
    if (bytes > p->scratch_bytes) {
        free(p->scratch);
        p->scratch_bytes = 0;
        if (posix_memalign(&p->scratch, 64, bytes) != 0) {
            p->scratch = NULL;
            return NULL;
        }
        p->scratch_bytes = bytes;
    }
    return p->scratch;
}
