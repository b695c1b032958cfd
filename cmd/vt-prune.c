/* vt-prune - reduce tokens frames to a budget (lib/prune.c), between the
 * two halves of a split forward pass (vt-classify --until, lib/tokens.h).
 *
 * Each tokens frame is scored by its sigmap frame (paired by name: the
 * sigmap stream of --sigmap, or sigmap frames before it on the same
 * stream), else by the CLS attention it records, else by token norm; then
 * reduced and written. A bad frame is reported and skipped; the exit status
 * is 1 at the end when any failed. */
#include "frame.h"
#include "input.h"
#include "prune.h"
#include "tokens.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: vt-prune (--keep R | --tokens N) [options] [INPUT...]\n"
    "Reduce tokens frames (from vt-classify --until) to a budget and write tokens\n"
    "frames. No INPUT or - reads frames from stdin.\n"
    "      --keep R         keep ceil(R * N) of the N tokens, 0 < R <= 1\n"
    "      --tokens N       keep N tokens\n"
    "      --method M       topk (default), fuse, reallocate, cluster\n"
    "      --sigmap FILE    score by the sigmap frames in FILE (- for stdin), paired\n"
    "                       by name; default: sigmap frames on the input, else the\n"
    "                       CLS attention in the tokens frame, else token norm\n"
    "  -h, --help           this help\n"
    "  -V, --version        version\n";

static const char *prog = "vt-prune";

/* A sigmap frame waiting for its tokens frame. */
typedef struct pending {
    char *name;
    vt_frame f;
} pending;

typedef struct job {
    double keep;            /* --keep, or 0 */
    int tokens;             /* --tokens, or 0 */
    vt_prune_method method;
    const char *sig_path;   /* --sigmap FILE, or NULL */
    FILE *sig_in;           /* its stream, until it ends */
    int sig_seen;           /* a sigmap frame came on the input stream */
    pending *maps;          /* sigmaps read, not yet used */
    int nmaps, cap;
    vt_prune_work *work;
    vt_tokens in, out;
    float *score;           /* [in.n] */
    int score_cap;
    vt_out o;
    int failed, write_error;
} job;

static void report(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, vt_error());
}

/* ---- pairing by name ---------------------------------------------------- */

/* The stem a name pairs by when no name matches exactly: the file name
 * without directories and extension, a "#i" batch suffix kept. */
static char *pair_key(const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *hash = strchr(base, '#');
    size_t len = hash ? (size_t)(hash - base) : strlen(base);
    const char *dot = NULL;
    for (const char *p = base; p < base + len; p++)
        if (*p == '.' && p > base) dot = p;
    size_t keep = dot ? (size_t)(dot - base) : len;
    size_t n = keep + (hash ? strlen(hash) : 0);
    char *k = vt_xmalloc(n + 1);
    memcpy(k, base, keep);
    if (hash) strcpy(k + keep, hash);
    k[n] = 0;
    return k;
}

static int find_map(const job *j, const char *name, int by_stem)
{
    char *key = by_stem ? pair_key(name) : NULL;
    int found = -1;
    for (int i = 0; i < j->nmaps && found < 0; i++) {
        if (!by_stem) {
            if (strcmp(j->maps[i].name, name) == 0) found = i;
        } else {
            char *k = pair_key(j->maps[i].name);
            if (strcmp(k, key) == 0) found = i;
            free(k);
        }
    }
    free(key);
    return found;
}

static void keep_map(job *j, vt_frame *f, const char *name)
{
    if (j->nmaps == j->cap) {
        j->cap = j->cap ? 2 * j->cap : 16;
        j->maps = vt_xrealloc(j->maps, (size_t)j->cap * sizeof *j->maps);
    }
    j->maps[j->nmaps].name = vt_xstrdup(name);
    j->maps[j->nmaps].f = *f;
    j->nmaps++;
}

/* Read --sigmap frames until one is named exactly name (or the stream
 * ends); maps of other names, stem matches included, wait in the table. */
static int read_ahead(job *j, const char *name)
{
    while (j->sig_in) {
        vt_frame f;
        int rc = vt_frame_read(j->sig_in, &f);
        if (rc <= 0) {
            if (rc < 0) {
                report(j->sig_path);
                j->failed = 1;
            }
            if (j->sig_in != stdin) fclose(j->sig_in);
            j->sig_in = NULL;
            break;
        }
        const char *kind = vt_frame_meta(&f, "kind"), *n = vt_frame_meta(&f, "name");
        if (!kind || strcmp(kind, "sigmap") != 0 || !n) {
            vt_seterr("a '%s' frame where sigmap frames were expected", kind ? kind : "?");
            report(j->sig_path);
            j->failed = 1;
            vt_frame_free(&f);
            continue;
        }
        keep_map(j, &f, n);
        if (strcmp(n, name) == 0) return 0;
    }
    return 0;
}

/* The pending sigmap of tokens frame `name`, taken out of the table (the
 * caller frees it): 1; 0 when there is none to score by (then the tokens'
 * own scores are used); -1 when one was expected and is missing. */
static int take_map(job *j, const char *name, vt_frame *out)
{
    /* exact name first, read ahead for it; only then the stem */
    int i = find_map(j, name, 0);
    if (i < 0 && j->sig_in) {
        read_ahead(j, name);
        i = find_map(j, name, 0);
    }
    if (i < 0) i = find_map(j, name, 1);
    if (i < 0) {
        if (j->sig_path)
            return vt_seterr("no sigmap frame named %s in %s", name,
                             strcmp(j->sig_path, "-") ? j->sig_path : "stdin");
        if (j->sig_seen)
            return vt_seterr("no sigmap frame named %s before it on the stream", name);
        return 0;
    }
    *out = j->maps[i].f;
    free(j->maps[i].name);
    j->maps[i] = j->maps[--j->nmaps];
    return 1;
}

/* ---- one tokens frame --------------------------------------------------- */

static int score_tokens(job *j, const vt_frame *f, const char *name, vt_score_source *src)
{
    if (j->in.n > j->score_cap) {
        free(j->score);
        j->score_cap = j->in.n;
        j->score = vt_xmalloc((size_t)j->score_cap * sizeof *j->score);
    }
    vt_frame sm;
    int has = take_map(j, name, &sm);
    if (has < 0) return -1;
    if (!has) {
        *src = vt_score_tokens(&j->in, j->score);
        return 0;
    }
    const vt_tensor *t = vt_frame_get(&sm, "sigmap");
    const char *ms = vt_frame_meta(&sm, "weights_sha256"), *ts = vt_frame_meta(f, "weights_sha256");
    int rc;
    if (!t || t->dtype != VT_F32 || t->ndim != 2)
        rc = vt_seterr("its sigmap frame has no F32 [h,w] 'sigmap' tensor");
    else
        rc = vt_score_sigmap(&j->in, t->data, (int)t->shape[0], (int)t->shape[1], j->score);
    /* a map on the tokens' grid can still be another model's */
    if (rc == 0 && ms && ts && strcmp(ms, ts) != 0)
        rc = vt_seterr("its sigmap is from another model (weights %.12s...; the tokens' are "
                       "%.12s...)", ms, ts);
    vt_frame_free(&sm);
    *src = VT_SCORE_SIGMAP;
    return rc;
}

static int prune_frame(job *j, const vt_frame *f, const char *name)
{
    if (vt_tokens_from_frame(f, &j->in) < 0) return -1;
    vt_score_source src;
    if (score_tokens(j, f, name, &src) < 0) return -1;
    int budget = vt_budget_tokens(j->keep, j->tokens, j->in.n);
    if (vt_prune(j->work, &j->in, j->score, budget, j->method, &j->out) < 0) return -1;

    /* metadata carried over, and this reduction appended to the history */
    vt_frame meta, of;
    vt_frame_init(&meta);
    for (int i = 0; i < f->nmeta; i++)
        vt_frame_set_meta(&meta, f->meta_key[i], f->meta_val[i]);
    const char *prev = vt_frame_meta(f, "pruned");
    size_t len = (prev ? strlen(prev) : 0) + 64;
    char *hist = vt_xmalloc(len);
    snprintf(hist, len, "%s%s%s:%d/%d:%s", prev ? prev : "", prev ? ";" : "",
             vt_prune_method_name(j->method), j->out.n, j->in.n, vt_score_name(src));
    vt_frame_set_meta(&meta, "pruned", hist);
    free(hist);
    vt_tokens_to_frame(&j->out, &meta, name, &of);
    if (vt_frame_write(j->o.fp, &of) < 0) {
        fprintf(stderr, "%s: write error: %s\n", prog, vt_error());
        j->write_error = 1;
    }
    vt_frame_free(&of);
    vt_frame_free(&meta);
    return 0;
}

static int on_frame(vt_frame *f, const char *name, void *ctx)
{
    job *j = ctx;
    const char *kind = vt_frame_meta(f, "kind");
    if (kind && strcmp(kind, "sigmap") == 0) {
        j->sig_seen = 1;
        keep_map(j, f, name);   /* the table owns the frame now */
        free(f);
        return 0;
    }
    int rc = kind && strcmp(kind, "tokens") == 0
                 ? prune_frame(j, f, name)
                 : vt_seterr("a '%s' frame; vt-prune takes tokens and sigmap frames",
                             kind ? kind : "?");
    if (rc < 0 && !j->write_error) {
        report(name);
        j->failed = 1;
    }
    vt_frame_free(f);
    free(f);
    return j->write_error ? -1 : 0;
}

/* ---- main ---------------------------------------------------------------- */

static int usage_error(const char *msg)
{
    fprintf(stderr, "%s: %s; try --help\n", prog, msg);
    return 2;
}

enum { O_KEEP = 256, O_TOKENS, O_METHOD, O_SIGMAP };

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"keep", required_argument, 0, O_KEEP}, {"tokens", required_argument, 0, O_TOKENS},
        {"method", required_argument, 0, O_METHOD}, {"sigmap", required_argument, 0, O_SIGMAP},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    job j;
    memset(&j, 0, sizeof j);
    j.method = VT_PRUNE_TOPK;
    int opt, m;
    long v;
    opterr = 0;     /* one line of our own */
    while ((opt = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        switch (opt) {
        case O_KEEP:
            if (vt_parse_float(optarg, &j.keep) < 0 || !(j.keep > 0 && j.keep <= 1)) {
                fprintf(stderr, "%s: --keep: expected a fraction above 0, at most 1, got '%s'\n",
                        prog, optarg);
                return 2;
            }
            break;
        case O_TOKENS:
            if (vt_parse_int(optarg, 1, 1L << 24, &v) < 0) {
                fprintf(stderr, "%s: --tokens: expected a count from 1, got '%s'\n", prog, optarg);
                return 2;
            }
            j.tokens = (int)v;
            break;
        case O_METHOD:
            if ((m = vt_prune_method_from_name(optarg)) < 0) {
                fprintf(stderr, "%s: --method: expected topk, fuse, reallocate or cluster, got "
                        "'%s'\n", prog, optarg);
                return 2;
            }
            j.method = (vt_prune_method)m;
            break;
        case O_SIGMAP: j.sig_path = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("vt-prune (vtkit) %s\n", VT_VERSION); return 0;
        default:
            fprintf(stderr, "%s: unknown option or missing value '%s'; try --help\n", prog,
                    argv[optind - 1]);
            return 2;
        }
    }
    if (!j.keep == !j.tokens) return usage_error("give one budget: --keep R or --tokens N");
    if (j.sig_path && strcmp(j.sig_path, "-") == 0) {
        if (optind == argc) return usage_error("--sigmap - reads stdin; give the tokens as INPUT files");
        for (int i = optind; i < argc; i++)
            if (strcmp(argv[i], "-") == 0)
                return usage_error("--sigmap - and INPUT - both read stdin");
    }
    if (optind == argc && isatty(0)) return usage_error("no inputs, and stdin is a terminal");
    if (isatty(1)) return usage_error("tokens frames are binary and stdout is a terminal");
    if (j.sig_path) {
        j.sig_in = strcmp(j.sig_path, "-") == 0 ? stdin : fopen(j.sig_path, "rb");
        if (!j.sig_in) {
            fprintf(stderr, "%s: %s: %s\n", prog, j.sig_path, strerror(errno));
            return 1;
        }
    }
    if (vt_out_open(&j.o, NULL, 1) < 0) {
        fprintf(stderr, "%s: %s\n", prog, vt_error());
        return 2;
    }
    j.work = vt_prune_work_new();
    vt_input_opts io;
    vt_input_opts_default(&io);
    if (vt_input_each(prog, argv + optind, argc - optind, &io, on_frame, &j, &j.write_error))
        j.failed = 1;
    /* Sigmaps on the input stream that no tokens frame after them used:
     * their tokens frames came first (and were scored without them). */
    if (!j.sig_path)
        for (int i = 0; i < j.nmaps && !j.write_error; i++) {
            fprintf(stderr, "%s: %s: sigmap not used: no tokens frame of that name came after "
                    "it\n", prog, j.maps[i].name);
            j.failed = 1;
        }
    if (!j.write_error && vt_out_commit(&j.o) < 0) {
        fprintf(stderr, "%s: write error: %s\n", prog, vt_error());
        j.write_error = 1;
    }
    for (int i = 0; i < j.nmaps; i++) {
        free(j.maps[i].name);
        vt_frame_free(&j.maps[i].f);
    }
    free(j.maps);
    if (j.sig_in && j.sig_in != stdin) fclose(j.sig_in);
    vt_prune_work_free(j.work);
    vt_tokens_free(&j.in);
    vt_tokens_free(&j.out);
    free(j.score);
    return j.failed || j.write_error ? 1 : 0;
}
