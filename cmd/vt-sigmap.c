/* vt-sigmap - significance maps (where a model looks), as frames or PNG.
 *
 * Inputs become image frames (lib/input.c) preprocessed with the model's
 * settings; each is run through the model alone, and the method's map
 * (lib/sigmap.c) for it becomes one "sigmap" frame on stdout, or a PNG drawn
 * by vt_render (the code vt-convert --to png uses, so both give the same
 * picture), optionally blended over the crop the model saw. A bad input is
 * reported and skipped; the exit status is 1 at the end when any failed. */
#include "frame.h"
#include "input.h"
#include "model.h"
#include "tokens.h"
#include "render.h"
#include "sigmap.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: vt-sigmap -m MODEL [options] [INPUT...]\n"
    "Significance maps (where a model looks) for images (JPEG, PNG, PPM), .npy arrays\n"
    "or image frames; no INPUT or - reads frames from stdin. Writes one sigmap frame\n"
    "per image to stdout, or PNGs.\n"
    "  -m, --model FILE     model file (from vt-convert --arch)\n"
    "      --method M       significance source (the family's default; see\n"
    "                       --list-methods)\n"
    "      --stage N        stage of the map (default: the method's)\n"
    "      --block N        block of the map (default: the method's)\n"
    "      --query Y,X      query token, for methods that take one (pale)\n"
    "  -t, --threads N      threads (online cores)\n"
    "      --max-pixels N   refuse images larger than N pixels (178956970)\n"
    "      --png FILE       draw the map of the one image into FILE\n"
    "      --png-dir DIR    draw DIR/STEM.png for each image\n"
    "      --overlay        draw the map over the center crop the model saw\n"
    "      --alpha A        map opacity for --overlay, 0 to 1 (0.5)\n"
    "      --list-methods   list the methods of every family\n"
    "  -h, --help           this help\n"
    "  -V, --version        version\n";

static const char *prog = "vt-sigmap";

typedef struct job {
    vt_model m;
    vt_input_opts io;
    const vt_sigmap_method *method;
    vt_sigmap_where where;
    int S;
    float *x;               /* [1, 3, S, S] */
    float *logits;          /* [num_classes] */
    const char *png, *png_dir;
    int overlay;
    double alpha;
    int pngs;               /* pictures drawn (--png takes one) */
    int random;
    char sha[65];           /* weights_sha256, computed at the first frame */
    vt_out out;             /* frames on stdout */
    int failed, write_error;
    int pipe_gone;          /* stdout's reader has gone: stop quietly */
} job;

static void report(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", prog, what, vt_error());
}

/* Copy an image frame into x, in the model's normalization (as vt-classify). */
static int take_frame(job *j, const vt_frame *f)
{
    const char *kind = vt_frame_meta(f, "kind");
    if (kind && strcmp(kind, "image") != 0)
        return vt_seterr("a '%s' frame; vt-sigmap takes image frames", kind);
    const vt_tensor *t = vt_frame_image(f, j->S);
    if (!t)
        return -1;
    vt_frame_image_normalized(f, t, &j->m.pre, j->S, j->x);
    return 0;
}

/* The sigmap frame for map[h*w] and labels[h*w] (borrowed; labels NULL
 * for methods without) of image frame f. The model is named twice: `model`
 * (as before) and `arch` with `weights_sha256` (as tokens frames). */
static void make_frame(const job *j, const vt_frame *f, const char *name, float *map,
                       int32_t *labels, vt_frame *out)
{
    const vt_sigmap_where *w = &j->where;
    vt_frame_init(out);
    int64_t shape[2] = {w->h, w->w};
    vt_frame_add_ref(out, "sigmap", VT_F32, 2, shape, map);
    if (labels)
        vt_frame_add_ref(out, "labels", VT_I32, 2, shape, labels);
    vt_frame_stamp(out, "sigmap", name);
    vt_frame_set_meta(out, "model", j->m.arch);
    vt_frame_set_meta(out, "arch", j->m.arch);
    vt_frame_set_meta(out, "family", j->m.family->name);
    if (j->sha[0])
        vt_frame_set_meta(out, "weights_sha256", j->sha);
    if (j->m.sha256 && *j->m.sha256)
        vt_frame_set_meta(out, "model_sha256", j->m.sha256);
    if (j->random)
        vt_frame_set_meta(out, "random", "1");
    vt_frame_set_meta(out, "method", j->method->name);
    char buf[64];
    snprintf(buf, sizeof buf, "%d", w->stage);
    vt_frame_set_meta(out, "stage", buf);
    snprintf(buf, sizeof buf, "%d", w->block);
    vt_frame_set_meta(out, "block", buf);
    if (w->qy != VT_SIGMAP_DEFAULT) {
        snprintf(buf, sizeof buf, "%d,%d", w->qy, w->qx);
        vt_frame_set_meta(out, "query", buf);
    }
    if (labels) {
        snprintf(buf, sizeof buf, "%d", w->nlabels);
        vt_frame_set_meta(out, "num_labels", buf);
    }
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < (size_t)w->h * w->w; i++) {
        if (map[i] < lo) lo = map[i];
        if (map[i] > hi) hi = map[i];
    }
    if (!(lo <= hi)) lo = hi = 0;   /* all NaN */
    snprintf(buf, sizeof buf, "%.9g,%.9g", lo, hi);   /* floats round-trip */
    vt_frame_set_meta(out, "range", buf);
    snprintf(buf, sizeof buf, "%d", j->S);
    vt_frame_set_meta(out, "size", buf);
    static const char *const geom[] = {"orig_width", "orig_height", "resized", "crop"};
    for (size_t i = 0; i < sizeof geom / sizeof *geom; i++) {
        const char *v = vt_frame_meta(f, geom[i]);
        if (v) vt_frame_set_meta(out, geom[i], v);
    }
}

/* Draw the sigmap frame (over the image frame with --overlay) into path. */
static int draw(const job *j, const vt_frame *sf, const vt_frame *f, const char *path)
{
    vt_image pic, photo = {0, 0, NULL};
    if (vt_render(sf, NULL, &pic) < 0) return -1;     /* as vt-convert --to png */
    if (j->overlay) {
        const vt_tensor *t = vt_frame_get(f, "image");
        if (!t) t = &f->tensors[0];
        if (vt_render(f, t->name, &photo) < 0) { vt_image_free(&pic); return -1; }
        if (photo.w != pic.w || photo.h != pic.h) {
            vt_image_free(&pic);
            vt_image_free(&photo);
            return vt_seterr("image is %dx%d but the map is drawn %dx%d", photo.w, photo.h,
                             pic.w, pic.h);
        }
        double a = j->alpha;
        for (size_t i = 0; i < (size_t)pic.w * pic.h * 3; i++)
            pic.rgb[i] = (uint8_t)floor((1 - a) * photo.rgb[i] + a * pic.rgb[i] + 0.5);
        vt_image_free(&photo);
    }
    vt_out o;
    int rc = vt_out_open(&o, path, 1);
    if (rc == 0) {
        rc = vt_png_write(o.fp, pic.rgb, pic.w, pic.h, 3);
        if (rc == 0) rc = vt_out_commit(&o);
        else vt_out_abort(&o);
    }
    vt_image_free(&pic);
    return rc;
}

/* One image frame: run, map, output. 0, or -1 with vt_error() (*what gets
 * the name to report: the input or the PNG path). */
static int one_image(job *j, const vt_frame *f, const char *name, char **what)
{
    if (take_frame(j, f) < 0) return -1;
    if (j->png && j->pngs > 0)
        return vt_seterr("--png FILE draws one image; use --png-dir DIR for more");
    /* for frames, once per process: it reads the whole model file */
    if (!j->png && !j->png_dir && !j->sha[0] && vt_weights_sha256(&j->m, j->sha) < 0)
        return -1;
    if (vt_model_forward(&j->m, j->x, 1, j->logits) < 0) return -1;
    size_t n = (size_t)j->where.h * j->where.w;
    float *map = vt_xmalloc(n * sizeof *map);
    int32_t *labels = j->method->labels ? vt_xmalloc(n * sizeof *labels) : NULL;
    int rc = j->method->compute(&j->m, 0, &j->where, map);
    if (rc == 0 && labels)
        rc = j->method->labels(&j->m, 0, &j->where, labels);
    if (rc == 0) {
        vt_frame sf;
        make_frame(j, f, name, map, labels, &sf);
        if (j->png || j->png_dir) {
            char *path = j->png ? vt_xstrdup(j->png) : vt_png_path(j->png_dir, name);
            j->pngs++;
            rc = draw(j, &sf, f, path);
            if (rc < 0) *what = path;
            else free(path);
        } else if (vt_frame_write(j->out.fp, &sf) < 0) {
            j->pipe_gone = vt_stdout_failed(prog);
            j->write_error = 1;
        }
        vt_frame_free(&sf);
    }
    free(map);
    free(labels);
    return rc;
}

static int on_frame(vt_frame *f, const char *name, void *ctx)
{
    job *j = ctx;
    char *what = NULL;
    if (one_image(j, f, name, &what) < 0 && !j->write_error) {
        report(what ? what : name);
        j->failed = 1;
    }
    free(what);
    vt_frame_free(f);
    free(f);
    return j->write_error ? -1 : 0;
}

static void list_methods(void)
{
    for (const vt_sigmap_method *e = vt_sigmap_methods(); e->family; e++)
        printf("%-10s %-16s %s%s%s\n", e->family, e->name, e->summary,
               e->is_default ? " (default)" : "", e->unavailable ? " (not available yet)" : "");
}

static int parse_opt_int(const char *opt, const char *s, long min, long max, int *out)
{
    long v;
    if (vt_parse_int(s, min, max, &v) < 0) {
        fprintf(stderr, "%s: %s: expected a number from %ld to %ld, got '%s'\n", prog, opt,
                min, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* --query Y,X: two token coordinates */
static int parse_query(const char *s, vt_sigmap_opts *o)
{
    char y[32];
    const char *comma = strchr(s, ',');
    size_t n = comma ? (size_t)(comma - s) : sizeof y;
    long vy, vx;
    if (n < sizeof y) {
        memcpy(y, s, n);
        y[n] = 0;
    }
    if (n >= sizeof y || vt_parse_int(y, 0, 100000, &vy) < 0 ||
        vt_parse_int(comma + 1, 0, 100000, &vx) < 0) {
        fprintf(stderr, "%s: --query: expected Y,X (token row and column from 0), got '%s'\n",
                prog, s);
        return -1;
    }
    o->qy = (int)vy;
    o->qx = (int)vx;
    return 0;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "%s: %s; try --help\n", prog, msg);
    return 2;
}

enum { O_METHOD = 256, O_STAGE, O_BLOCK, O_QUERY, O_PNG, O_PNGDIR, O_OVERLAY, O_ALPHA, O_LIST,
       O_MAXPIX };

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"method", required_argument, 0, O_METHOD},
        {"stage", required_argument, 0, O_STAGE}, {"block", required_argument, 0, O_BLOCK},
        {"query", required_argument, 0, O_QUERY},
        {"threads", required_argument, 0, 't'}, {"png", required_argument, 0, O_PNG},
        {"png-dir", required_argument, 0, O_PNGDIR}, {"overlay", no_argument, 0, O_OVERLAY},
        {"alpha", required_argument, 0, O_ALPHA}, {"list-methods", no_argument, 0, O_LIST},
        {"max-pixels", required_argument, 0, O_MAXPIX},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0},
    };
    const char *model = NULL, *method = NULL, *png = NULL, *png_dir = NULL;
    vt_sigmap_opts so = {VT_SIGMAP_DEFAULT, VT_SIGMAP_DEFAULT, VT_SIGMAP_DEFAULT,
                         VT_SIGMAP_DEFAULT};
    int threads = 0, overlay = 0;
    int alpha_set = 0, opt;
    double alpha = 0.5;
    long max_pixels = VT_DEFAULT_MAX_PIXELS;
    while ((opt = getopt_long(argc, argv, "m:t:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case O_METHOD: method = optarg; break;
        case O_STAGE: if (parse_opt_int("--stage", optarg, 0, 1000, &so.stage) < 0) return 2; break;
        case O_BLOCK: if (parse_opt_int("--block", optarg, 0, 100000, &so.block) < 0) return 2; break;
        case O_QUERY: if (parse_query(optarg, &so) < 0) return 2; break;
        case 't': if (parse_opt_int("-t", optarg, 1, 1024, &threads) < 0) return 2; break;
        case O_PNG: png = optarg; break;
        case O_PNGDIR: png_dir = optarg; break;
        case O_OVERLAY: overlay = 1; break;
        case O_ALPHA:
            if (vt_parse_float(optarg, &alpha) < 0 || !(alpha >= 0 && alpha <= 1)) {
                fprintf(stderr, "%s: --alpha: expected a number from 0 to 1, got '%s'\n", prog,
                        optarg);
                return 2;
            }
            alpha_set = 1;
            break;
        case O_MAXPIX:
            if (vt_parse_int(optarg, 1, 1L << 40, &max_pixels) < 0) {
                fprintf(stderr, "%s: --max-pixels: expected a number from 1 to %ld, got '%s'\n",
                        prog, 1L << 40, optarg);
                return 2;
            }
            break;
        case O_LIST: list_methods(); return 0;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("vt-sigmap (vtkit) %s\n", VT_VERSION); return 0;
        default:
            fprintf(stderr, "%s: try --help\n", prog);
            return 2;
        }
    }
    if (!model) return usage_error("no model (-m MODEL)");
    if (png && png_dir) return usage_error("--png and --png-dir exclude each other");
    if (png && argc - optind > 1)
        return usage_error("--png FILE draws one image; use --png-dir DIR for several inputs");
    if (overlay && !png && !png_dir) return usage_error("--overlay goes with --png or --png-dir");
    if (alpha_set && !overlay) return usage_error("--alpha goes with --overlay");
    if (png && !*png) return usage_error("--png: empty file name");
    if (png_dir && !*png_dir) return usage_error("--png-dir: empty directory name");
    struct stat st;
    if (png_dir) {
        int bad = stat(png_dir, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
        if (bad) {
            fprintf(stderr, "%s: --png-dir %s: %s\n", prog, png_dir, strerror(bad));
            return 2;
        }
    }
    int to_frames = !png && !png_dir;
    if (optind == argc && isatty(0)) return usage_error("no inputs, and stdin is a terminal");
    if (to_frames && isatty(1))
        return usage_error("sigmap frames are binary and stdout is a terminal (redirect it, "
                           "or use --png)");

    vt_ignore_sigpipe();
    job *j = vt_xcalloc(1, sizeof *j);
    int status = 1;
    vt_run_opts ro = {threads > 0 ? threads : vt_ncpus(), 1};
    if (vt_model_open(model, &ro, &j->m) < 0) {
        report(model);
        free(j);
        return 1;
    }
    j->method = vt_sigmap_find(&j->m, method);
    if (!j->method || vt_sigmap_resolve(&j->m, j->method, &so, &j->where) < 0) {
        report(model);
        status = 2;
        goto done;
    }
    j->random = vt_model_random(&j->m);
    if (vt_input_opts_for_model(&j->io, &j->m, max_pixels))
        fprintf(stderr, "%s: %s: preprocessing crops %d but the model takes %d\n", prog, model,
                j->m.pre.size, j->m.img_size);
    j->S = j->io.pre.size;
    j->png = png;
    j->png_dir = png_dir;
    j->overlay = overlay;
    j->alpha = alpha;
    j->x = vt_xmalloc((size_t)3 * j->S * j->S * sizeof *j->x);
    j->logits = vt_xmalloc((size_t)(j->m.num_classes > 0 ? j->m.num_classes : 1) *
                           sizeof *j->logits);
    if (to_frames && vt_out_open(&j->out, NULL, 1) < 0) {
        fprintf(stderr, "%s: %s\n", prog, vt_error());
        status = 2;
        goto done;
    }

    if (vt_input_each(prog, argv + optind, argc - optind, &j->io, on_frame, j, &j->write_error))
        j->failed = 1;
    if (png && j->pngs == 0 && !j->failed && !j->write_error) {
        fprintf(stderr, "%s: %s: no image to draw\n", prog, png);
        j->failed = 1;
    }
    if (to_frames && !j->write_error && vt_out_commit(&j->out) < 0) {
        j->pipe_gone = vt_stdout_failed(prog);
        j->write_error = 1;
    }
    status = j->pipe_gone ? VT_EXIT_PIPE : j->failed || j->write_error ? 1 : 0;
done:
    free(j->x);
    free(j->logits);
    vt_model_close(&j->m);
    free(j);
    return status;
}
