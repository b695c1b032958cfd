/* vt-classify - classify images (or image frames) with a model file, or
 * run part of the model: --until L writes tokens frames after block L, and
 * tokens frames on the input are continued from the block after theirs
 * (split inference, lib/tokens.h).
 *
 * Inputs become image frames (lib/input.c), preprocessed with the model's
 * own settings; frames are gathered into batches of -b images (tokens
 * frames with the same count and block), run, and reported in input order.
 * A bad input is reported and skipped; the exit status is 1 at the end when
 * any input failed. */
#include "frame.h"
#include "input.h"
#include "model.h"
#include "tokens.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: vt-classify -m MODEL [options] [INPUT...]\n"
    "Classify images (JPEG, PNG, PPM), .npy arrays or image frames; no INPUT or -\n"
    "reads frames from stdin.\n"
    "  -m, --model FILE     model file (from vt-convert --arch)\n"
    "  -k, --top K          classes shown per image (5)\n"
    "  -t, --threads N      threads (online cores)\n"
    "  -b, --batch N        images per forward pass (1)\n"
    "      --format F       text (default), tsv, json\n"
    "      --logits         write one logits frame per image to stdout instead\n"
    "      --until L        stop after block L: write one tokens frame per image\n"
    "      --max-pixels N   refuse images larger than N pixels (178956970)\n"
    "  -h, --help           this help\n"
    "  -V, --version        version\n";

enum { FMT_TEXT, FMT_TSV, FMT_JSON };
enum { HOLD_IMAGES, HOLD_TOKENS };   /* what the waiting batch is */

typedef struct job {
    vt_model m;
    vt_input_opts io;
    int topk, format, logits_out, random;
    int until;              /* --until L, or -1: classify */
    int S;                  /* model input side */
    int batch;              /* images per forward pass */
    int n;                  /* images waiting in x or tin */
    int holds;              /* HOLD_IMAGES or HOLD_TOKENS */
    float *x;               /* [batch, 3, S, S] */
    vt_tokens *tin, *tout;  /* [batch] tokens in (frames) and out (--until) */
    vt_frame *meta;         /* [batch] metadata carried into tokens frames */
    char sha[65];           /* weights_sha256 of the model, once needed */
    float *logits;          /* [batch, num_classes] */
    char **names;           /* [batch] */
    float *prob;            /* [num_classes] */
    int *order;             /* [num_classes] */
    vt_out out;
    int failed, done, progress, write_error;
    int pipe_gone;          /* stdout's reader has gone: stop quietly */
    double t0;
} job;

static const char *prog = "vt-classify";

static void report(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, vt_error());
}

/* ---- output ---------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Name for the output: tabs and newlines would break the line formats. */
static void plain(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '\t' || *s == '\n' ? ' ' : *s, f);
}

static const char *label_of(const job *j, int c, char *buf, size_t len)
{
    if (j->m.labels)
        return j->m.labels[c];
    snprintf(buf, len, "class %d", c);
    return buf;
}

static const float *sort_prob;  /* qsort has no context argument */
static int by_prob(const void *a, const void *b)
{
    float pa = sort_prob[*(const int *)a], pb = sort_prob[*(const int *)b];
    if (pa != pb)
        return pa > pb ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

static void print_result(job *j, const char *name, const float *logit)
{
    int C = j->m.num_classes, k = j->topk < C ? j->topk : C;
    double mx = -INFINITY, sum = 0;
    for (int c = 0; c < C; c++)
        mx = logit[c] > mx ? logit[c] : mx;
    for (int c = 0; c < C; c++)
        sum += exp((double)logit[c] - mx);
    for (int c = 0; c < C; c++) {
        j->prob[c] = (float)(exp((double)logit[c] - mx) / sum);
        j->order[c] = c;
    }
    sort_prob = j->prob;
    qsort(j->order, (size_t)C, sizeof *j->order, by_prob);
    FILE *o = stdout;
    char buf[32];
    if (j->format == FMT_JSON) {
        fputs("{\"name\":", o);
        json_string(o, name);
        fputs(",\"top\":[", o);
        for (int r = 0; r < k; r++) {
            int c = j->order[r];
            fprintf(o, "%s{\"rank\":%d,\"class\":%d,\"probability\":%.6g,\"label\":", r ? "," : "",
                    r + 1, c, j->prob[c]);
            json_string(o, label_of(j, c, buf, sizeof buf));
            fputc('}', o);
        }
        fprintf(o, "]%s}\n", j->random ? ",\"random_weights\":true" : "");
        return;
    }
    for (int r = 0; r < k; r++) {
        int c = j->order[r];
        if (j->format == FMT_TSV) {
            plain(o, name);
            fprintf(o, "\t%d\t%d\t%.6f\t", r + 1, c, j->prob[c]);
            plain(o, label_of(j, c, buf, sizeof buf));
            fputc('\n', o);
        } else {
            plain(o, name);
            fputs("  ", o);
            plain(o, label_of(j, c, buf, sizeof buf));
            fprintf(o, "  %.4f%s\n", j->prob[c], j->random ? "  (random weights)" : "");
        }
    }
}

static int write_logits(job *j, const char *name, const float *logit)
{
    vt_frame f;
    vt_frame_init(&f);
    int64_t shape[1] = {j->m.num_classes};
    vt_frame_add_ref(&f, "logits", VT_F32, 1, shape, (void *)logit);
    vt_frame_stamp(&f, "logits", name);
    vt_frame_set_meta(&f, "arch", j->m.arch);
    if (j->m.sha256 && *j->m.sha256)
        vt_frame_set_meta(&f, "model_sha256", j->m.sha256);
    if (j->random)
        vt_frame_set_meta(&f, "random", "1");
    int rc = vt_frame_write(j->out.fp, &f);
    vt_frame_free(&f);
    return rc;
}

static void progress(job *j, int final)
{
    if (!j->progress)
        return;
    double dt = vt_now() - j->t0;
    if (final)
        fprintf(stderr, "\r\033[K");
    else
        fprintf(stderr, "\r%s: %d images, %.1f/s\033[K", prog, j->done,
                dt > 0 ? j->done / dt : 0.0);
    fflush(stderr);
}

static void write_failed(job *j)
{
    j->pipe_gone = vt_stdout_failed(prog);
    j->write_error = 1;
}

/* The weights' SHA-256, computed once (it reads the whole model file). */
static const char *model_sha(job *j)
{
    if (!j->sha[0] && vt_weights_sha256(&j->m, j->sha) < 0)
        return NULL;
    return j->sha;
}

static void write_tokens(job *j, int i)
{
    vt_frame f;
    vt_tokens_to_frame(&j->tout[i], &j->meta[i], j->names[i], &f);
    if (vt_frame_write(j->out.fp, &f) < 0)
        write_failed(j);
    vt_frame_free(&f);
}

/* Run images [i0, i0+n) of the waiting batch. 0, or -1 with vt_error(). */
static int run_part(job *j, int i0, int n)
{
    int C = j->m.num_classes;
    float *logits = j->logits + (size_t)i0 * C;
    if (j->holds == HOLD_TOKENS)
        return vt_model_run_from(&j->m, j->tin + i0, n, j->until, j->tout + i0, logits);
    const float *x = j->x + (size_t)i0 * 3 * j->S * j->S;
    if (j->until >= 0)
        return vt_model_run_until(&j->m, x, n, j->until, j->tout + i0);
    return vt_model_forward(&j->m, x, n, logits);
}

/* Run the waiting images and report them in order. A batch of tokens
 * frames that fails is rerun one frame at a time, so one unfit frame does
 * not take the others with it. Each image's lines go out in one write, so
 * parallel runs sharing a pipe (xargs -P) do not mix their lines. */
static int flush_batch(job *j)
{
    if (j->n == 0)
        return 0;
    int C = j->m.num_classes;
    char *ok = vt_xmalloc((size_t)j->n);
    memset(ok, 1, (size_t)j->n);
    if (run_part(j, 0, j->n) < 0) {
        for (int i = 0; i < j->n; i++) {
            if (j->holds == HOLD_TOKENS && j->n > 1 && run_part(j, i, 1) == 0)
                continue;
            report(j->names[i]);
            ok[i] = 0;
            j->failed = 1;
        }
    }
    for (int i = 0; i < j->n && !j->write_error; i++) {
        if (!ok[i])
            continue;
        const float *l = j->logits + (size_t)i * C;
        if (j->until >= 0) {
            write_tokens(j, i);
        } else if (j->logits_out) {
            if (write_logits(j, j->names[i], l) < 0)
                write_failed(j);
        } else {
            print_result(j, j->names[i], l);
            if (fflush(stdout) != 0 || ferror(stdout))
                write_failed(j);
        }
        j->done++;
    }
    free(ok);
    for (int i = 0; i < j->n; i++) {
        free(j->names[i]);
        vt_frame_free(&j->meta[i]);
    }
    j->n = 0;
    progress(j, 0);
    return j->write_error ? -1 : 0;
}

/* ---- input ----------------------------------------------------------- */

/* Crop geometry an image frame carries on into its tokens frames. */
static void keep_geometry(job *j, const vt_frame *f, vt_frame *meta)
{
    static const char *const keys[] = {"orig_width", "orig_height", "resized", "crop"};
    char buf[32];
    snprintf(buf, sizeof buf, "%d", j->S);
    vt_frame_set_meta(meta, "size", buf);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = vt_frame_meta(f, keys[i]);
        if (v) vt_frame_set_meta(meta, keys[i], v);
    }
}

/* Take a tokens frame into slot j->n (flushing a batch it cannot join
 * first). 0, or -1 with vt_error(). */
static int take_tokens(job *j, const vt_frame *f)
{
    const char *sha = model_sha(j);
    if (!sha || vt_tokens_check_identity(f, &j->m, sha) < 0)
        return -1;
    vt_tokens *t = &j->tin[j->n];
    if (vt_tokens_from_frame(f, t) < 0)
        return -1;
    if (j->until >= 0 && t->block >= j->until)
        return vt_seterr("tokens are after block %d; --until %d is not later", t->block,
                         j->until);
    if (j->n > 0 && (j->holds != HOLD_TOKENS || t->n != j->tin[0].n ||
                     t->block != j->tin[0].block)) {
        int at = j->n;
        if (flush_batch(j) < 0)
            return 0;   /* a write error: main stops */
        vt_tokens swap = j->tin[0];
        j->tin[0] = j->tin[at];
        j->tin[at] = swap;
    }
    j->holds = HOLD_TOKENS;
    vt_frame_init(&j->meta[j->n]);
    for (int i = 0; i < f->nmeta; i++)
        vt_frame_set_meta(&j->meta[j->n], f->meta_key[i], f->meta_val[i]);
    return 0;
}

/* Take an image frame into the batch. 0, or -1 with vt_error(). */
static int take_frame(job *j, const vt_frame *f)
{
    const char *kind = vt_frame_meta(f, "kind");
    if (kind && strcmp(kind, "tokens") == 0)
        return take_tokens(j, f);
    if (kind && strcmp(kind, "image") != 0)
        return vt_seterr("a '%s' frame; vt-classify takes image and tokens frames", kind);
    const vt_tensor *t = vt_frame_image(f, j->S);
    if (!t)
        return -1;
    if (j->n > 0 && j->holds != HOLD_IMAGES && flush_batch(j) < 0)
        return 0;   /* a write error: main stops */
    j->holds = HOLD_IMAGES;
    vt_frame_init(&j->meta[j->n]);
    if (j->until >= 0) {
        const char *sha = model_sha(j);
        if (!sha)
            return -1;
        vt_tokens_identity(&j->m, sha, &j->meta[j->n]);
        keep_geometry(j, f, &j->meta[j->n]);
    }
    vt_frame_image_normalized(f, t, &j->m.pre, j->S, j->x + (size_t)j->n * 3 * j->S * j->S);
    return 0;
}

static int on_frame(vt_frame *f, const char *name, void *ctx)
{
    job *j = ctx;
    if (take_frame(j, f) < 0) {
        report(name);
        j->failed = 1;
    } else if (!j->write_error) {
        j->names[j->n++] = vt_xstrdup(name);
    }
    vt_frame_free(f);
    free(f);
    if (j->write_error || (j->n == j->batch && flush_batch(j) < 0))
        return -1;
    return 0;
}

/* ---- main ------------------------------------------------------------ */

static int parse_count(const char *opt, const char *s, long max, int *out)
{
    long v;
    if (vt_parse_int(s, 1, max, &v) < 0) {
        fprintf(stderr, "%s: %s: expected a number from 1 to %ld, got '%s'\n", prog, opt, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"top", required_argument, 0, 'k'},
        {"threads", required_argument, 0, 't'}, {"batch", required_argument, 0, 'b'},
        {"format", required_argument, 0, 'F'}, {"logits", no_argument, 0, 'L'},
        {"until", required_argument, 0, 'U'},
        {"max-pixels", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    const char *model = NULL;
    int topk = 5, threads = 0, batch = 1, format = FMT_TEXT, logits_out = 0, until = -1, opt;
    long max_pixels = VT_DEFAULT_MAX_PIXELS;
    while ((opt = getopt_long(argc, argv, "m:k:t:b:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'k': if (parse_count("-k", optarg, 1000000, &topk) < 0) return 2; break;
        case 't': if (parse_count("-t", optarg, 1024, &threads) < 0) return 2; break;
        case 'b': if (parse_count("-b", optarg, 4096, &batch) < 0) return 2; break;
        case 'F':
            if (strcmp(optarg, "text") == 0) format = FMT_TEXT;
            else if (strcmp(optarg, "tsv") == 0) format = FMT_TSV;
            else if (strcmp(optarg, "json") == 0) format = FMT_JSON;
            else {
                fprintf(stderr, "%s: --format: expected text, tsv or json, got '%s'\n", prog, optarg);
                return 2;
            }
            break;
        case 'L': logits_out = 1; break;
        case 'U': {
            long v;
            if (vt_parse_int(optarg, 0, 100000, &v) < 0) {
                fprintf(stderr, "%s: --until: expected a block number, got '%s'\n", prog, optarg);
                return 2;
            }
            until = (int)v;
            break;
        }
        case 'P':
            if (vt_parse_int(optarg, 1, 1L << 40, &max_pixels) < 0) {
                fprintf(stderr, "%s: --max-pixels: expected a number from 1 to %ld, got '%s'\n",
                        prog, 1L << 40, optarg);
                return 2;
            }
            break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("vt-classify (vtkit) %s\n", VT_VERSION); return 0;
        default:
            fprintf(stderr, "%s: try --help\n", prog);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "%s: no model (-m MODEL); try --help\n", prog);
        return 2;
    }
    if (until >= 0 && logits_out) {
        fprintf(stderr, "%s: --until writes tokens frames; it does not go with --logits\n", prog);
        return 2;
    }
    vt_ignore_sigpipe();

    job *j = vt_xcalloc(1, sizeof *j);
    vt_run_opts ro = {threads > 0 ? threads : vt_ncpus(), batch};
    if (vt_model_open(model, &ro, &j->m) < 0) {
        report(model);
        free(j);
        return 1;
    }
    if (until >= 0 && vt_model_split_point(&j->m, until) < 0) {
        report(model);
        vt_model_close(&j->m);
        free(j);
        return 2;
    }
    j->random = vt_model_random(&j->m);
    if (j->random && until < 0)
        fprintf(stderr, "%s: note: %s has random weights; its predictions mean nothing\n",
                prog, model);
    if (vt_input_opts_for_model(&j->io, &j->m, max_pixels))
        fprintf(stderr, "%s: %s: preprocessing crops %d but the model takes %d\n", prog, model,
                j->m.pre.size, j->m.img_size);
    j->S = j->io.pre.size;
    j->topk = topk;
    j->format = format;
    j->logits_out = logits_out;
    j->until = until;
    j->batch = batch;
    j->tin = vt_xcalloc((size_t)batch, sizeof *j->tin);
    j->tout = vt_xcalloc((size_t)batch, sizeof *j->tout);
    j->meta = vt_xcalloc((size_t)batch, sizeof *j->meta);
    int C = j->m.num_classes;
    j->x = vt_xmalloc((size_t)batch * 3 * j->S * j->S * sizeof *j->x);
    j->logits = vt_xmalloc((size_t)batch * C * sizeof *j->logits);
    j->names = vt_xcalloc((size_t)batch, sizeof *j->names);
    j->prob = vt_xmalloc((size_t)C * sizeof *j->prob);
    j->order = vt_xmalloc((size_t)C * sizeof *j->order);
    j->progress = isatty(2) && !isatty(1);   /* never mixed into results */
    j->t0 = vt_now();
    int status = 0;
    if ((logits_out || until >= 0) && vt_out_open(&j->out, NULL, 1) < 0) {
        fprintf(stderr, "%s: %s\n", prog, vt_error());
        status = 2;
        goto done;
    }

    if (optind == argc && isatty(0)) {
        fprintf(stderr, "%s: no inputs, and stdin is a terminal; try --help\n", prog);
        status = 2;
        goto done;
    }
    if (vt_input_each(prog, argv + optind, argc - optind, &j->io, on_frame, j, &j->write_error))
        j->failed = 1;
    if (!j->write_error)
        flush_batch(j);
    progress(j, 1);
    if ((logits_out || until >= 0) && !j->write_error && vt_out_commit(&j->out) < 0)
        write_failed(j);
    if (!logits_out && until < 0 && fclose(stdout) != 0 && !j->write_error)
        write_failed(j);
    status = j->pipe_gone ? VT_EXIT_PIPE : j->failed || j->write_error ? 1 : 0;
done:
    for (int i = 0; i < j->n; i++) {
        free(j->names[i]);
        vt_frame_free(&j->meta[i]);
    }
    for (int i = 0; i < batch; i++) {
        vt_tokens_free(&j->tin[i]);
        vt_tokens_free(&j->tout[i]);
    }
    free(j->tin);
    free(j->tout);
    free(j->meta);
    free(j->x);
    free(j->logits);
    free(j->names);
    free(j->prob);
    free(j->order);
    vt_model_close(&j->m);
    free(j);
    return status;
}
