/* vt-convert - images and arrays to tensor frames, checkpoints to model
 * files, frames to .npy, PNG or a readable listing. */
#include "ckpt.h"
#include "frame.h"
#include "input.h"
#include "model.h"
#include "npy.h"
#include "render.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: vt-convert [options] INPUT... [-o OUT]\n"
    "       vt-convert CHECKPOINT --arch NAME [--config JSON] [--dtype T] [--ema] -o MODEL\n"
    "       vt-convert --arch NAME --random [--seed N] -o MODEL\n"
    "Inputs: JPEG/PNG/PPM images, .npy arrays, frame files, - for stdin frames.\n"
    "  -o, --output FILE      write FILE atomically (default: stdout)\n"
    "      --to FORMAT        frames (default), npy, png\n"
    "      --info             list frames or checkpoint tensors readably\n"
    "      --tensor NAME      tensor taken by --to npy/png (default: the main one)\n"
    "      --out-dir DIR      with --to png: write DIR/NAME.png per frame\n"
    "  -m, --model FILE       preprocess as MODEL's config says\n"
    "      --size S           crop side (224)\n"
    "      --crop-pct P       resize shorter side to int(S/P) (0.875)\n"
    "      --interp NAME      bicubic (default), bilinear\n"
    "      --mean R,G,B       normalization mean (ImageNet)\n"
    "      --std R,G,B        normalization std (ImageNet)\n"
    "      --exif-rotate      apply the EXIF orientation\n"
    "      --max-pixels N     refuse larger images (178956970)\n"
    "      --arch NAME        make a model file for this arch\n"
    "      --config FILE      hyperparameters as JSON (refgen meta.json works)\n"
    "      --dtype T          model weights f32 (default), f16, bf16\n"
    "      --ema, --no-ema    take the EMA / the raw weights (default: as the authors evaluate)\n"
    "      --random           deterministic random weights (--seed N, 0)\n"
    "      --list-archs       list the known archs\n"
    "  -h, --help             this help\n"
    "  -V, --version          version\n";

enum { OUT_FRAMES, OUT_NPY, OUT_PNG, OUT_INFO };

typedef struct conv {
    int mode;
    const char *output, *out_dir, *tensor;
    vt_out out;             /* OUT_FRAMES */
    int out_open;
    int frames;             /* frames produced so far */
    vt_frame **keep;        /* OUT_NPY / OUT_PNG (to one file): frames kept */
    int nkeep;
    int failed;
    int write_error;        /* the output failed: stop */
    int pipe_gone;          /* stdout's reader has gone: stop quietly */
} conv;

static void fail(conv *c, const char *what)
{
    fprintf(stderr, "vt-convert: %s: %s\n", what, vt_error());
    c->failed = 1;
}

/* The output failed (vt_error() says how): report it under its name, or
 * nothing when stdout's reader has gone. */
static void output_failed(conv *c)
{
    c->write_error = 1;
    if (!c->output && errno == EPIPE)
        c->pipe_gone = 1;
    else
        fprintf(stderr, "vt-convert: %s: %s\n", c->output ? c->output : "stdout", vt_error());
}

/* Text on stdout goes out a frame at a time: a closed pipe stops the run
 * at once, and parallel runs sharing a pipe do not mix their lines. */
static int flush_text(conv *c)
{
    if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
    vt_seterr("write error: %s", strerror(errno));
    output_failed(c);
    return -1;
}

/* ---- --info ---- */

static void list_tensor(const vt_tensor *t)
{
    char shape[128];
    size_t n = (size_t)vt_tensor_numel(t);
    printf("  %-24s %-4s %-16s", t->name, vt_dtype_name(t->dtype), vt_shape_str(t, shape, sizeof shape));
    if (n) {
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (size_t i = 0; i < n; i++) {
            double v = vt_tensor_get(t, i);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
            sum += v;
        }
        printf("  min %.6g  max %.6g  mean %.6g", lo, hi, sum / n);
    }
    printf("\n");
}

static void list_frame(const vt_frame *f, int index)
{
    const char *name = vt_frame_meta(f, "name"), *kind = vt_frame_meta(f, "kind");
    printf("frame %d: %s (%s)\n", index, name ? name : "?", kind ? kind : "no kind");
    for (int i = 0; i < f->ntensors; i++) list_tensor(&f->tensors[i]);
    for (int i = 0; i < f->nmeta; i++) {
        const char *v = f->meta_val[i];
        int long_val = strlen(v) > 200;
        printf("  %s = %.200s%s\n", f->meta_key[i], v, long_val ? "..." : "");
    }
}

/* ---- per-frame handling ---- */

static const vt_tensor *pick_tensor(const conv *c, const vt_frame *f)
{
    const vt_tensor *t = c->tensor ? vt_frame_get(f, c->tensor) : vt_main_tensor(f);
    if (!t) vt_seterr(c->tensor ? "frame has no tensor '%s'" : "frame has no tensors", c->tensor);
    return t;
}

static int write_png(const vt_frame *f, const char *tensor, const char *path)
{
    vt_image img;
    if (vt_render(f, tensor, &img) < 0) return -1;
    vt_out o;
    int rc = vt_out_open(&o, path, 1);
    if (rc == 0) {
        rc = vt_png_write(o.fp, img.rgb, img.w, img.h, 3);
        if (rc == 0) rc = vt_out_commit(&o);
        else vt_out_abort(&o);
    }
    vt_image_free(&img);
    return rc;
}

static int on_frame(vt_frame *f, void *ctx)
{
    conv *c = ctx;
    int rc = 0;
    c->frames++;
    switch (c->mode) {
    case OUT_INFO:
        list_frame(f, c->frames);
        rc = flush_text(c);
        break;
    case OUT_FRAMES:
        if (vt_frame_write(c->out.fp, f) < 0) {
            output_failed(c);
            rc = -1;
        }
        break;
    case OUT_PNG:
        if (c->out_dir) {
            const char *name = vt_frame_meta(f, "name");
            char *path = vt_png_path(c->out_dir, name && *name ? name : "frame");
            if (write_png(f, c->tensor, path) < 0) {
                fprintf(stderr, "vt-convert: %s: %s\n", path, vt_error());
                c->failed = 1;
            }
            free(path);
            break;
        }
        /* One PNG to -o or stdout, written at the end: keep the frame. */
        __attribute__((fallthrough));
    case OUT_NPY:
        if (!pick_tensor(c, f)) { rc = -1; break; }
        c->keep = vt_xrealloc(c->keep, (c->nkeep + 1) * sizeof *c->keep);
        c->keep[c->nkeep++] = f;
        return 0;
    }
    vt_frame_free(f);
    free(f);
    return rc;
}

/* ---- --to npy ---- */

static int write_npy(conv *c)
{
    if (c->nkeep == 0) return vt_seterr("no frames to write");
    const vt_tensor *first = pick_tensor(c, c->keep[0]);
    vt_tensor out = *first;
    out.owned = 0;
    if (c->nkeep > 1) {
        if (first->ndim == VT_MAX_DIM) return vt_seterr("too many dimensions to stack");
        for (int i = 1; i < c->nkeep; i++) {
            const vt_tensor *t = pick_tensor(c, c->keep[i]);
            if (t->dtype != first->dtype || t->ndim != first->ndim ||
                memcmp(t->shape, first->shape, t->ndim * sizeof *t->shape) != 0)
                return vt_seterr("frames differ in shape or dtype (frame %d); cannot stack them", i + 1);
        }
        out.ndim = first->ndim + 1;
        out.shape[0] = c->nkeep;
        memcpy(out.shape + 1, first->shape, first->ndim * sizeof *first->shape);
        out.nbytes = first->nbytes * c->nkeep;
        out.data = vt_xmalloc(out.nbytes ? out.nbytes : 1);
        for (int i = 0; i < c->nkeep; i++)
            memcpy((uint8_t *)out.data + i * first->nbytes, pick_tensor(c, c->keep[i])->data, first->nbytes);
    }
    vt_out o;
    int rc = vt_out_open(&o, c->output, 1);
    if (rc == 0) {
        rc = vt_npy_write(o.fp, &out);
        if (rc == 0) rc = vt_out_commit(&o);
        else vt_out_abort(&o);
    }
    if (out.data != first->data) free(out.data);
    return rc;
}

static int finish_png(conv *c)
{
    if (c->out_dir) return 0;
    if (c->nkeep == 0) return vt_seterr("no frames to draw");
    if (c->nkeep > 1) return vt_seterr("%d frames make %d pictures; use --out-dir DIR", c->nkeep, c->nkeep);
    return write_png(c->keep[0], c->tensor, c->output);
}

/* ---- model files ---- */

static cJSON *load_json(const char *path)
{
    uint8_t *buf;
    size_t len;
    if (vt_read_file(path, 64 << 20, &buf, &len) < 0) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (!j) vt_seterr("not valid JSON");
    return j;
}

static void list_archs(void)
{
    const vt_family *const *fams = vt_families();
    for (int i = 0; fams[i]; i++)
        for (int j = 0; fams[i]->archs[j]; j++)
            printf("%-40s %s\n", fams[i]->archs[j], fams[i]->name);
}

static int parse_dtype(const char *s, vt_dtype *d)
{
    if (strcmp(s, "f32") == 0) *d = VT_F32;
    else if (strcmp(s, "f16") == 0) *d = VT_F16;
    else if (strcmp(s, "bf16") == 0) *d = VT_BF16;
    else return vt_seterr("--dtype must be f32, f16 or bf16, not '%s'", s);
    return 0;
}

/* ---- options ---- */

enum {
    O_TO = 256, O_INFO, O_TENSOR, O_OUTDIR, O_SIZE, O_CROP, O_INTERP, O_MEAN, O_STD,
    O_EXIF, O_MAXPIX, O_ARCH, O_CONFIG, O_DTYPE, O_EMA, O_NOEMA, O_RANDOM, O_SEED, O_LIST
};

static const struct option longopts[] = {
    {"output", required_argument, 0, 'o'},  {"to", required_argument, 0, O_TO},
    {"info", no_argument, 0, O_INFO},       {"tensor", required_argument, 0, O_TENSOR},
    {"out-dir", required_argument, 0, O_OUTDIR}, {"model", required_argument, 0, 'm'},
    {"size", required_argument, 0, O_SIZE}, {"crop-pct", required_argument, 0, O_CROP},
    {"interp", required_argument, 0, O_INTERP}, {"mean", required_argument, 0, O_MEAN},
    {"std", required_argument, 0, O_STD},   {"exif-rotate", no_argument, 0, O_EXIF},
    {"max-pixels", required_argument, 0, O_MAXPIX}, {"arch", required_argument, 0, O_ARCH},
    {"config", required_argument, 0, O_CONFIG}, {"dtype", required_argument, 0, O_DTYPE},
    {"ema", no_argument, 0, O_EMA},         {"no-ema", no_argument, 0, O_NOEMA},
    {"random", no_argument, 0, O_RANDOM},
    {"seed", required_argument, 0, O_SEED}, {"list-archs", no_argument, 0, O_LIST},
    {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0},
};

static int usage_error(const char *msg)
{
    fprintf(stderr, "vt-convert: %s\nTry 'vt-convert --help'.\n", msg);
    return 2;
}

/* Preprocessing from a model file's metadata, without loading the net. */
static int model_preproc(const char *path, vt_preproc *p)
{
    vt_frame f;
    if (vt_frame_map(path, &f) < 0) return -1;
    const char *cfg = vt_frame_meta(&f, "config"), *pre = vt_frame_meta(&f, "preprocess");
    int rc = 0;
    cJSON *jc = cfg ? cJSON_Parse(cfg) : NULL, *jp = pre ? cJSON_Parse(pre) : NULL;
    if (!jc && !jp) rc = vt_seterr("not a vtkit model file");
    if (jc) vt_config_preproc(jc, p);
    if (jp) {
        vt_config_preproc(jp, p);
        p->size = vt_cfg_int(jp, "size", p->size);
    }
    cJSON_Delete(jc);
    cJSON_Delete(jp);
    vt_frame_free(&f);
    return rc;
}

int main(int argc, char **argv)
{
    conv c = {.mode = OUT_FRAMES};
    vt_input_opts in;
    vt_input_opts_default(&in);
    const char *arch = NULL, *config = NULL, *model = NULL;
    int ema = 0, random = 0, set_size = 0;
    long seed = 0, lv;
    double dv;
    vt_dtype dtype = VT_F32;
    int set_dtype = 0;
    vt_preproc cli = in.pre;
    int set_crop = 0, set_interp = 0, set_mean = 0, set_std = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "o:m:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'o': c.output = optarg; break;
        case 'm': model = optarg; break;
        case O_TO:
            if (strcmp(optarg, "frames") == 0) c.mode = OUT_FRAMES;
            else if (strcmp(optarg, "npy") == 0) c.mode = OUT_NPY;
            else if (strcmp(optarg, "png") == 0) c.mode = OUT_PNG;
            else return usage_error("--to takes frames, npy or png");
            break;
        case O_INFO: c.mode = OUT_INFO; break;
        case O_TENSOR: c.tensor = optarg; break;
        case O_OUTDIR: c.out_dir = optarg; break;
        case O_SIZE:
            if (vt_parse_int(optarg, 1, 8192, &lv) < 0) return usage_error(vt_error());
            cli.size = (int)lv;
            set_size = 1;
            break;
        case O_CROP:
            if (vt_parse_float(optarg, &dv) < 0 || dv <= 0 || dv > 1)
                return usage_error("--crop-pct must be a number in (0, 1]");
            cli.crop_pct = dv;
            set_crop = 1;
            break;
        case O_INTERP: {
            int i = vt_interp_from_name(optarg);
            if (i < 0 || i == VT_INTERP_NEAREST) return usage_error("--interp takes bicubic or bilinear");
            cli.interp = i;
            set_interp = 1;
            break;
        }
        case O_MEAN:
            if (vt_parse_floats(optarg, 3, cli.mean) < 0) return usage_error(vt_error());
            set_mean = 1;
            break;
        case O_STD:
            if (vt_parse_floats(optarg, 3, cli.std) < 0) return usage_error(vt_error());
            if (cli.std[0] == 0 || cli.std[1] == 0 || cli.std[2] == 0) return usage_error("--std must not be 0");
            set_std = 1;
            break;
        case O_EXIF: in.decode.exif_rotate = 1; break;
        case O_MAXPIX:
            if (vt_parse_int(optarg, 1, 1L << 40, &lv) < 0) return usage_error(vt_error());
            in.decode.max_pixels = lv;
            break;
        case O_ARCH: arch = optarg; break;
        case O_CONFIG: config = optarg; break;
        case O_DTYPE:
            if (parse_dtype(optarg, &dtype) < 0) return usage_error(vt_error());
            set_dtype = 1;
            break;
        case O_EMA: ema = 1; break;
        case O_NOEMA: ema = -1; break;
        case O_RANDOM: random = 1; break;
        case O_SEED:
            if (vt_parse_int(optarg, 0, 1L << 62, &seed) < 0) return usage_error(vt_error());
            break;
        case O_LIST: list_archs(); return 0;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': printf("vt-convert (vtkit) %s\n", VT_VERSION); return 0;
        default: fputs("Try 'vt-convert --help'.\n", stderr); return 2;
        }
    }

    if (arch) {   /* model files */
        cJSON *over = NULL;
        if (config && !(over = load_json(config))) {
            fprintf(stderr, "vt-convert: %s: %s\n", config, vt_error());
            return 1;
        }
        int rc;
        const char *what;
        if (random) {
            if (optind != argc) return usage_error("--random takes no input file");
            what = c.output ? c.output : "-";
            rc = vt_make_random_model(arch, over, (unsigned long)seed, dtype, c.output);
        } else {
            if (optind + 1 != argc) return usage_error("--arch converts exactly one checkpoint");
            what = argv[optind];
            vt_convert_opts co = {.ema = ema, .dtype = dtype};
            rc = vt_convert_checkpoint(argv[optind], arch, over, &co, c.output);
        }
        cJSON_Delete(over);
        if (rc < 0) {
            fprintf(stderr, "vt-convert: %s: %s\n", what, vt_error());
            return 1;
        }
        return 0;
    }
    if (random || config || set_dtype || (ema && c.mode != OUT_INFO))
        return usage_error("--random, --config, --dtype and --ema go with --arch "
                           "(--ema also with --info)");

    if (model && model_preproc(model, &in.pre) < 0) {
        fprintf(stderr, "vt-convert: %s: %s\n", model, vt_error());
        return 1;
    }
    /* Options given on the command line win over the model's config. */
    if (set_size) in.pre.size = cli.size;
    if (set_crop) in.pre.crop_pct = cli.crop_pct;
    if (set_interp) in.pre.interp = cli.interp;
    if (set_mean) memcpy(in.pre.mean, cli.mean, sizeof cli.mean);
    if (set_std) memcpy(in.pre.std, cli.std, sizeof cli.std);
    if (c.out_dir && c.mode != OUT_PNG) return usage_error("--out-dir goes with --to png");
    if (c.out_dir && c.output) return usage_error("use either -o or --out-dir");
    vt_ignore_sigpipe();

    if (c.mode == OUT_FRAMES) {
        if (vt_out_open(&c.out, c.output, 1) < 0) {
            fprintf(stderr, "vt-convert: %s: %s\n", c.output ? c.output : "stdout", vt_error());
            return 1;
        }
        c.out_open = 1;
    } else if ((c.mode == OUT_NPY || (c.mode == OUT_PNG && !c.out_dir)) &&
               !c.output && isatty(STDOUT_FILENO)) {
        return usage_error("refusing to write binary data to a terminal (use -o FILE or a pipe)");
    }

    static char *stdin_only[] = {"-"};
    char **inputs = optind < argc ? argv + optind : stdin_only;
    int ninputs = optind < argc ? argc - optind : 1;
    for (int i = 0; i < ninputs && !c.write_error; i++) {
        const char *path = inputs[i];
        if (c.mode == OUT_INFO && strcmp(path, "-") != 0) {
            uint8_t head[16];
            FILE *f = fopen(path, "rb");
            size_t n = f ? fread(head, 1, sizeof head, f) : 0;
            if (f) fclose(f);
            if (vt_input_sniff(head, n) == VT_IN_CHECKPOINT) {
                vt_ckpt_opts co = {.ema = ema, .raw = 1};
                printf("checkpoint: %s\n", path);
                if (vt_ckpt_info(path, &co, stdout) < 0 && !ferror(stdout)) fail(&c, path);
                flush_text(&c);
                continue;
            }
        }
        /* A failed write is the output's fault, already reported. */
        if (vt_input_frames(path, &in, on_frame, &c) < 0 && !c.write_error)
            fail(&c, strcmp(path, "-") == 0 ? "stdin" : path);
    }

    if (c.mode == OUT_FRAMES) {
        if (c.write_error || (c.frames == 0 && c.failed)) vt_out_abort(&c.out);
        else if (vt_out_commit(&c.out) < 0) output_failed(&c);
    } else if (c.mode == OUT_NPY && c.nkeep) {
        if (write_npy(&c) < 0) output_failed(&c);
    } else if (c.mode == OUT_PNG && (c.nkeep || !c.failed)) {
        if (finish_png(&c) < 0) output_failed(&c);
    } else if (c.mode == OUT_INFO && !c.write_error) {
        flush_text(&c);
    }
    int rc = c.pipe_gone ? VT_EXIT_PIPE : c.failed || c.write_error ? 1 : 0;
    for (int i = 0; i < c.nkeep; i++) {
        vt_frame_free(c.keep[i]);
        free(c.keep[i]);
    }
    free(c.keep);
    return rc;
}
