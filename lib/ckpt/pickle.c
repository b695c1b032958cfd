/* pickle.c - a restricted unpickler for what torch.save writes (pickle
 * protocols 2-5). It builds inert values only: a GLOBAL becomes a named
 * reference, calling it (REDUCE, NEWOBJ) either runs one of a few pure
 * handlers (tensor rebuild, OrderedDict) or makes an opaque object that
 * remembers its callable. Nothing is imported or executed.
 *
 * Memory is bounded by the input: each opcode makes at most one value and
 * every length read from the stream is checked against the bytes left. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "util.h"

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static int need(reader *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) return vt_seterr("truncated pickle");
    return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---- values ---- */

static vt_pv *new_value(vt_pk *p, int type)
{
    if (p->nall == p->all_cap) {
        p->all_cap = p->all_cap ? p->all_cap * 2 : 256;
        p->all = vt_xrealloc(p->all, p->all_cap * sizeof *p->all);
    }
    vt_pv *v = vt_xcalloc(1, sizeof *v);
    v->type = (uint8_t)type;
    p->all[p->nall++] = v;
    return v;
}

static int add_item(vt_pv *c, vt_pv *item)
{
    if (item->depth + 1 > VT_PK_MAX_DEPTH) return vt_seterr("pickle nests too deeply");
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->items = vt_xrealloc(c->items, c->cap * sizeof *c->items);
    }
    c->items[c->n++] = item;
    if (item->depth + 1 > c->depth) c->depth = (uint16_t)(item->depth + 1);
    return 0;
}

void vt_pk_free(vt_pk *p)
{
    for (size_t i = 0; i < p->nall; i++) {
        free(p->all[i]->s);
        free(p->all[i]->items);
        free(p->all[i]->lay);
        free(p->all[i]);
    }
    free(p->all);
    free(p->memo);
    free(p->stack);
    free(p->marks);
    memset(p, 0, sizeof *p);
}

/* ---- stack, marks, memo ---- */

static int push(vt_pk *p, vt_pv *v)
{
    if (p->sp == p->stack_cap) {
        if (p->stack_cap >= VT_PK_MAX_STACK) return vt_seterr("pickle stack too deep");
        p->stack_cap = p->stack_cap ? p->stack_cap * 2 : 64;
        p->stack = vt_xrealloc(p->stack, p->stack_cap * sizeof *p->stack);
    }
    p->stack[p->sp++] = v;
    return 0;
}

/* Values above the innermost mark; pops the mark. */
static int pop_mark(vt_pk *p, size_t *base)
{
    if (p->nmarks == 0) return vt_seterr("bad pickle: no MARK");
    *base = p->marks[--p->nmarks];
    return 0;
}

static vt_pv *top(vt_pk *p, size_t k)
{
    size_t floor = p->nmarks ? p->marks[p->nmarks - 1] : 0;
    if (p->sp - floor < k + 1) { vt_seterr("bad pickle: stack underflow"); return NULL; }
    return p->stack[p->sp - 1 - k];
}

static vt_pv *pop(vt_pk *p)
{
    vt_pv *v = top(p, 0);
    if (v) p->sp--;
    return v;
}

static int memo_put(vt_pk *p, uint64_t idx, size_t limit)
{
    vt_pv *v = top(p, 0);
    if (!v) return -1;
    /* torch numbers memo slots densely from 0; a far index is hostile. */
    if (idx >= limit) return vt_seterr("pickle memo index out of range");
    if (idx >= p->memo_cap) {
        size_t cap = p->memo_cap ? p->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        p->memo = vt_xrealloc(p->memo, cap * sizeof *p->memo);
        memset(p->memo + p->memo_cap, 0, (cap - p->memo_cap) * sizeof *p->memo);
        p->memo_cap = cap;
    }
    if (!p->memo[idx]) p->memo_count++;
    p->memo[idx] = v;
    return 0;
}

static int memo_get(vt_pk *p, uint64_t idx)
{
    if (idx >= p->memo_cap || !p->memo[idx]) return vt_seterr("pickle memo index out of range");
    return push(p, p->memo[idx]);
}

/* ---- globals ---- */

typedef struct known { const char *name; int kind; int dtype; } known;

static const known KNOWN[] = {
    {"torch._utils._rebuild_tensor_v2", G_REBUILD_V2, 0},
    {"torch._utils._rebuild_tensor", G_REBUILD, 0},
    {"torch._utils._rebuild_parameter", G_PARAM, 0},
    {"torch._utils._rebuild_parameter_with_state", G_PARAM, 0},
    {"collections.OrderedDict", G_DICT, 0},
    {"builtins.dict", G_DICT, 0},
    {"torch.FloatStorage", G_STORAGE, VT_F32},
    {"torch.HalfStorage", G_STORAGE, VT_F16},
    {"torch.BFloat16Storage", G_STORAGE, VT_BF16},
    {"torch.DoubleStorage", G_STORAGE, VT_F64},
    {"torch.LongStorage", G_STORAGE, VT_I64},
    {"torch.IntStorage", G_STORAGE, VT_I32},
    {"torch.ShortStorage", G_STORAGE, VT_I16},
    {"torch.CharStorage", G_STORAGE, VT_I8},
    {"torch.ByteStorage", G_STORAGE, VT_U8},
    {"torch.BoolStorage", G_STORAGE, VT_BOOL},
    {"argparse.Namespace", G_INERT, 0},
    {"numpy.core.multiarray.scalar", G_INERT, 0},
    {"numpy._core.multiarray.scalar", G_INERT, 0},
    {"numpy.dtype", G_INERT, 0},
    {"numpy.core.multiarray._reconstruct", G_INERT, 0},
    {"numpy.ndarray", G_INERT, 0},
    {"_codecs.encode", G_INERT, 0},
    {"builtins.set", G_INERT, 0},
    {"builtins.frozenset", G_INERT, 0},
    {"builtins.slice", G_INERT, 0},
    {"builtins.list", G_INERT, 0},
    {"builtins.tuple", G_INERT, 0},
    {"torch.device", G_INERT, 0},
    {"torch.Size", G_INERT, 0},
    {"torch.torch_version.TorchVersion", G_INERT, 0},
};

static int make_global(vt_pk *p, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    vt_pv *g = new_value(p, PV_GLOBAL);
    g->s = vt_xmalloc(mlen + nlen + 2);
    memcpy(g->s, mod, mlen);
    g->s[mlen] = '.';
    memcpy(g->s + mlen + 1, name, nlen);
    g->s[mlen + 1 + nlen] = 0;
    g->slen = mlen + 1 + nlen;
    /* "__builtin__" is protocol 2's name for builtins. */
    const char *full = g->s;
    char alias[64];
    if (mlen == 11 && memcmp(mod, "__builtin__", 11) == 0 && nlen < 40) {
        snprintf(alias, sizeof alias, "builtins.%s", g->s + 12);
        full = alias;
    }
    for (size_t i = 0; i < sizeof KNOWN / sizeof *KNOWN; i++)
        if (strcmp(full, KNOWN[i].name) == 0) {
            g->kind = (uint8_t)KNOWN[i].kind;
            g->i = KNOWN[i].dtype;
        }
    return push(p, g);
}

/* GLOBAL: "module\nname\n". */
static int op_global(vt_pk *p, reader *r)
{
    const uint8_t *a = r->p, *nl1 = memchr(a, '\n', r->end - a);
    if (!nl1) return vt_seterr("truncated pickle");
    const uint8_t *b = nl1 + 1, *nl2 = memchr(b, '\n', r->end - b);
    if (!nl2) return vt_seterr("truncated pickle");
    r->p = nl2 + 1;
    if (memchr(a, 0, nl2 - a)) return vt_seterr("bad pickle: NUL in a global name");
    return make_global(p, (const char *)a, nl1 - a, (const char *)b, nl2 - b);
}

static int op_stack_global(vt_pk *p)
{
    vt_pv *name = pop(p), *mod = name ? pop(p) : NULL;
    if (!mod) return -1;
    if (mod->type != PV_STR || name->type != PV_STR)
        return vt_seterr("bad pickle: STACK_GLOBAL needs two strings");
    if (strlen(mod->s) != mod->slen || strlen(name->s) != name->slen)
        return vt_seterr("bad pickle: NUL in a global name");
    return make_global(p, mod->s, mod->slen, name->s, name->slen);
}

const char *vt_pk_foreign(const vt_pv *v)
{
    for (int hops = 0; v && hops <= VT_PK_MAX_DEPTH + 1; hops++) {
        if (v->type == PV_GLOBAL) return v->kind == G_UNKNOWN ? v->s : NULL;
        if (v->type != PV_OBJECT && v->type != PV_TENSOR && v->type != PV_STORAGE) return NULL;
        v = v->ref;
    }
    return NULL;
}

/* ---- calls ---- */

static int as_int(const vt_pv *v, int64_t *out)
{
    if (v->type == PV_INT && !v->kind) { *out = v->i; return 0; }
    if (v->type == PV_BOOL) { *out = v->i; return 0; }
    return -1;
}

/* A tuple of ints of length ndim into out. */
static int int_tuple(const vt_pv *v, int64_t *out, int *ndim)
{
    if (v->type != PV_TUPLE && v->type != PV_LIST) return vt_seterr("bad tensor size or stride");
    if (v->n > VT_MAX_DIM) return vt_seterr("tensor has more than %d dimensions", VT_MAX_DIM);
    for (size_t i = 0; i < v->n; i++)
        if (as_int(v->items[i], &out[i]) < 0) return vt_seterr("bad tensor size or stride");
    *ndim = (int)v->n;
    return 0;
}

static int refuse_foreign(const vt_pv *v)
{
    const char *g = vt_pk_foreign(v);
    if (g) return vt_seterr("checkpoint needs %s to build a tensor; refusing", g);
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, ...) and the older
 * _rebuild_tensor(storage, offset, size, stride). Layout is checked against
 * the storage later, when its bytes are known. */
static int rebuild_tensor(vt_pk *p, const vt_pv *args)
{
    if (args->n < 4) return vt_seterr("bad _rebuild_tensor arguments");
    vt_pv *st = args->items[0];
    if (refuse_foreign(st) < 0) return -1;
    if (st->type != PV_STORAGE) return vt_seterr("tensor without a storage");
    vt_pk_layout *l = vt_xcalloc(1, sizeof *l);
    int nstride = -1, rc = 0;
    if (as_int(args->items[1], &l->offset) < 0)
        rc = vt_seterr("bad tensor storage offset");
    else if (int_tuple(args->items[2], l->size, &l->ndim) < 0 ||
             int_tuple(args->items[3], l->stride, &nstride) < 0)
        rc = -1;
    else if (nstride != l->ndim)
        rc = vt_seterr("tensor size and stride differ in length");
    if (rc < 0) { free(l); return -1; }
    vt_pv *t = new_value(p, PV_TENSOR);
    t->ref = st;
    t->lay = l;
    return push(p, t);
}

static int call(vt_pk *p, vt_pv *fn, vt_pv *args)
{
    if (args->type != PV_TUPLE) return vt_seterr("bad pickle: call arguments are not a tuple");
    if (fn->type == PV_GLOBAL) {
        switch (fn->kind) {
        case G_REBUILD_V2:
        case G_REBUILD:
            return rebuild_tensor(p, args);
        case G_PARAM:
            if (args->n < 1) return vt_seterr("bad _rebuild_parameter arguments");
            if (refuse_foreign(args->items[0]) < 0) return -1;
            if (args->items[0]->type != PV_TENSOR) return vt_seterr("parameter without a tensor");
            return push(p, args->items[0]);
        case G_DICT:
            if (args->n == 0) return push(p, new_value(p, PV_DICT));
            break;
        case G_STORAGE:
            return vt_seterr("bad pickle: storage constructed directly");
        }
    }
    if (fn->depth + 1 > VT_PK_MAX_DEPTH || args->depth + 1 > VT_PK_MAX_DEPTH)
        return vt_seterr("pickle nests too deeply");
    vt_pv *o = new_value(p, PV_OBJECT);
    o->ref = fn;
    o->depth = (uint16_t)((fn->depth > args->depth ? fn->depth : args->depth) + 1);
    return push(p, o);
}

/* BINPERSID ('storage', storage_type, key, location, numel). */
static int persistent(vt_pk *p)
{
    vt_pv *pid = pop(p);
    if (!pid) return -1;
    if (pid->type != PV_TUPLE || pid->n < 5 || pid->items[0]->type != PV_STR ||
        strcmp(pid->items[0]->s, "storage") != 0)
        return vt_seterr("unsupported persistent id in pickle");
    vt_pv *type = pid->items[1], *key = pid->items[2];
    if (refuse_foreign(type) < 0) return -1;
    if (type->type != PV_GLOBAL || type->kind != G_STORAGE)
        return vt_seterr("unsupported storage type %.80s", type->type == PV_GLOBAL ? type->s : "");
    int64_t numel;
    if (as_int(pid->items[4], &numel) < 0 || numel < 0) return vt_seterr("bad storage size");
    if (key->type != PV_STR || strlen(key->s) != key->slen || key->slen > 200)
        return vt_seterr("bad storage key");
    vt_pv *s = new_value(p, PV_STORAGE);
    s->ref = type;
    s->i = numel;
    s->s = vt_xstrdup(key->s);
    s->slen = key->slen;
    return push(p, s);
}

/* ---- containers ---- */

/* Count n more container items against the bound. */
static int take_items(vt_pk *p, size_t n)
{
    p->nitems += n;
    if (p->nitems > VT_PK_MAX_ITEMS)
        return vt_seterr("pickle holds over %u items in its lists and dicts (not a checkpoint?)",
                         VT_PK_MAX_ITEMS);
    return 0;
}

static int make_tuple(vt_pk *p, size_t base)
{
    if (take_items(p, p->sp - base) < 0) return -1;
    vt_pv *t = new_value(p, PV_TUPLE);
    for (size_t i = base; i < p->sp; i++)
        if (add_item(t, p->stack[i]) < 0) return -1;
    p->sp = base;
    return push(p, t);
}

static int tuple_n(vt_pk *p, size_t n)
{
    size_t floor = p->nmarks ? p->marks[p->nmarks - 1] : 0;
    if (p->sp - floor < n) return vt_seterr("bad pickle: stack underflow");
    return make_tuple(p, p->sp - n);
}

/* Items stack[base..sp) go into container c (list/set: each; dict: pairs);
 * opaque objects (e.g. a defaultdict) swallow them. */
static int fill(vt_pk *p, vt_pv *c, size_t base, int pairs)
{
    size_t n = p->sp - base;
    if (pairs && n % 2) return vt_seterr("bad pickle: odd number of dict items");
    int ok = pairs ? c->type == PV_DICT : (c->type == PV_LIST || c->type == PV_SET);
    if (ok) {
        if (take_items(p, n) < 0) return -1;
        for (size_t i = base; i < p->sp; i++)
            if (add_item(c, p->stack[i]) < 0) return -1;
    } else if (c->type != PV_OBJECT) {
        return vt_seterr("bad pickle: adding items to a %s", pairs ? "non-dict" : "non-list");
    }
    p->sp = base;
    return 0;
}

static int op_fill_mark(vt_pk *p, int pairs)
{
    size_t base = 0;
    if (pop_mark(p, &base) < 0) return -1;
    if (base == 0 || base > p->sp) return vt_seterr("bad pickle: stack underflow");
    vt_pv *c = p->stack[base - 1];
    /* the container is below the mark: it must not sit under an older one */
    if (p->nmarks && p->marks[p->nmarks - 1] > base - 1) return vt_seterr("bad pickle: stack underflow");
    return fill(p, c, base, pairs);
}

static int op_fill_n(vt_pk *p, size_t n, int pairs)
{
    vt_pv *c = top(p, n);
    if (!c) return -1;
    return fill(p, c, p->sp - n, pairs);
}

static int op_container_mark(vt_pk *p, int type)
{
    size_t base = 0;
    if (pop_mark(p, &base) < 0) return -1;
    if (type == PV_TUPLE) return make_tuple(p, base);
    vt_pv *c = new_value(p, type);
    if (fill(p, c, base, type == PV_DICT) < 0) return -1;
    return push(p, c);
}

/* ---- scalars ---- */

static int push_int(vt_pk *p, int64_t v)
{
    vt_pv *x = new_value(p, PV_INT);
    x->i = v;
    return push(p, x);
}

/* LONG1/LONG4: little-endian two's complement of n bytes. */
static int push_long(vt_pk *p, const uint8_t *b, uint64_t n)
{
    vt_pv *x = new_value(p, PV_INT);
    if (n > 8) {
        x->kind = 1;    /* too big for int64: kept as an inert big number */
    } else if (n > 0) {
        uint64_t u = le(b, (int)n);
        if (n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
        x->i = (int64_t)u;
    }
    return push(p, x);
}

static int push_bytes(vt_pk *p, int type, const uint8_t *b, uint64_t n)
{
    vt_pv *x = new_value(p, type);
    x->s = vt_xmalloc(n + 1);
    memcpy(x->s, b, n);
    x->s[n] = 0;
    x->slen = n;
    return push(p, x);
}

/* Opcodes with a length prefix of w bytes, then that many bytes. */
static int op_sized(vt_pk *p, reader *r, int w, int type)
{
    if (need(r, w) < 0) return -1;
    uint64_t n = le(r->p, w);
    r->p += w;
    if (n > (uint64_t)(r->end - r->p)) return vt_seterr("pickle string longer than the file");
    const uint8_t *b = r->p;
    r->p += n;
    if (type == PV_INT) return push_long(p, b, n);
    return push_bytes(p, type, b, n);
}

static int op_float(vt_pk *p, reader *r)
{
    if (need(r, 8) < 0) return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | r->p[i];   /* big-endian */
    r->p += 8;
    vt_pv *x = new_value(p, PV_FLOAT);
    memcpy(&x->f, &u, 8);
    return push(p, x);
}

/* ---- the loop ---- */

static int step(vt_pk *p, reader *r, int op, size_t memo_limit)
{
    vt_pv *a, *b;
    size_t base = 0;
    switch (op) {
    case 0x80: /* PROTO */
        if (need(r, 1) < 0) return -1;
        if (r->p[0] > 5) return vt_seterr("pickle protocol %d is not supported", r->p[0]);
        r->p++;
        return 0;
    case 0x95: /* FRAME: a hint only */
        if (need(r, 8) < 0) return -1;
        r->p += 8;
        return 0;
    case '(': /* MARK */
        if (p->nmarks == VT_PK_MAX_MARKS) return vt_seterr("pickle nests too deeply");
        if (p->nmarks == p->marks_cap) {
            p->marks_cap = p->marks_cap ? p->marks_cap * 2 : 16;
            p->marks = vt_xrealloc(p->marks, p->marks_cap * sizeof *p->marks);
        }
        p->marks[p->nmarks++] = p->sp;
        return 0;
    case '0': /* POP */
        return pop(p) ? 0 : -1;
    case '1': /* POP_MARK */
        if (pop_mark(p, &base) < 0) return -1;
        p->sp = base;
        return 0;
    case '2': /* DUP */
        return (a = top(p, 0)) ? push(p, a) : -1;
    case 'c': return op_global(p, r);
    case 0x93: return op_stack_global(p);
    case 'q': /* BINPUT */
        if (need(r, 1) < 0) return -1;
        return memo_put(p, *r->p++, memo_limit);
    case 'r': /* LONG_BINPUT */
        if (need(r, 4) < 0) return -1;
        r->p += 4;
        return memo_put(p, le(r->p - 4, 4), memo_limit);
    case 0x94: /* MEMOIZE: the next slot is the memo's size */
        return memo_put(p, p->memo_count, memo_limit);
    case 'h': /* BINGET */
        if (need(r, 1) < 0) return -1;
        return memo_get(p, *r->p++);
    case 'j': /* LONG_BINGET */
        if (need(r, 4) < 0) return -1;
        r->p += 4;
        return memo_get(p, le(r->p - 4, 4));
    case '}': return push(p, new_value(p, PV_DICT));
    case ']': return push(p, new_value(p, PV_LIST));
    case ')': return push(p, new_value(p, PV_TUPLE));
    case 0x8f: return push(p, new_value(p, PV_SET));    /* EMPTY_SET */
    case 'd': return op_container_mark(p, PV_DICT);
    case 'l': return op_container_mark(p, PV_LIST);
    case 't': return op_container_mark(p, PV_TUPLE);
    case 0x91: return op_container_mark(p, PV_SET);     /* FROZENSET */
    case 0x85: return tuple_n(p, 1);
    case 0x86: return tuple_n(p, 2);
    case 0x87: return tuple_n(p, 3);
    case 's': return op_fill_n(p, 2, 1);                /* SETITEM */
    case 'u': return op_fill_mark(p, 1);                /* SETITEMS */
    case 'a': return op_fill_n(p, 1, 0);                /* APPEND */
    case 'e': return op_fill_mark(p, 0);                /* APPENDS */
    case 0x90: return op_fill_mark(p, 0);               /* ADDITEMS */
    case 'J':
        if (need(r, 4) < 0) return -1;
        r->p += 4;
        return push_int(p, (int32_t)(uint32_t)le(r->p - 4, 4));
    case 'K':
        if (need(r, 1) < 0) return -1;
        return push_int(p, *r->p++);
    case 'M':
        if (need(r, 2) < 0) return -1;
        r->p += 2;
        return push_int(p, (int64_t)le(r->p - 2, 2));
    case 0x8a: return op_sized(p, r, 1, PV_INT);        /* LONG1 */
    case 0x8b: return op_sized(p, r, 4, PV_INT);        /* LONG4 */
    case 'G': return op_float(p, r);
    case 0x8c: return op_sized(p, r, 1, PV_STR);        /* SHORT_BINUNICODE */
    case 'X': return op_sized(p, r, 4, PV_STR);         /* BINUNICODE */
    case 0x8d: return op_sized(p, r, 8, PV_STR);        /* BINUNICODE8 */
    case 'U': return op_sized(p, r, 1, PV_STR);         /* SHORT_BINSTRING */
    case 'T': return op_sized(p, r, 4, PV_STR);         /* BINSTRING */
    case 'C': return op_sized(p, r, 1, PV_BYTES);       /* SHORT_BINBYTES */
    case 'B': return op_sized(p, r, 4, PV_BYTES);       /* BINBYTES */
    case 0x8e: return op_sized(p, r, 8, PV_BYTES);      /* BINBYTES8 */
    case 0x96: return op_sized(p, r, 8, PV_BYTES);      /* BYTEARRAY8 */
    case 'N': return push(p, new_value(p, PV_NONE));
    case 0x88:
    case 0x89:
        a = new_value(p, PV_BOOL);
        a->i = op == 0x88;
        return push(p, a);
    case 'R': /* REDUCE */
        if (!(b = pop(p)) || !(a = pop(p))) return -1;
        return call(p, a, b);
    case 0x81: /* NEWOBJ */
        if (!(b = pop(p)) || !(a = pop(p))) return -1;
        return call(p, a, b);
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs */
        if (!pop(p) || !(b = pop(p)) || !(a = pop(p))) return -1;
        return call(p, a, b);
    case 'b': /* BUILD: state is dropped; objects stay inert */
        if (!pop(p)) return -1;
        return top(p, 0) ? 0 : -1;
    case 'Q': return persistent(p);
    default:
        return vt_seterr("unsupported pickle opcode 0x%02x", op);
    }
}

int vt_pk_parse(vt_pk *p, const uint8_t *buf, size_t len, vt_pv **root)
{
    memset(p, 0, sizeof *p);
    *root = NULL;
    reader r = {buf, buf + len};
    size_t memo_limit = len + 64;
    if (len > VT_PK_MAX_BYTES)
        return vt_seterr("pickle of %zu bytes is over the limit of %zu", len, VT_PK_MAX_BYTES);
    while (r.p < r.end) {
        int op = *r.p++;
        /* each opcode makes at most one value */
        if (p->nall > VT_PK_MAX_VALUES)
            return vt_seterr("pickle makes over %u values (not a checkpoint?)", VT_PK_MAX_VALUES);
        if (op == '.') {    /* STOP */
            if (p->nmarks) return vt_seterr("bad pickle: MARK left open");
            if (p->sp != 1) return vt_seterr("bad pickle: %zu values left at STOP", p->sp);
            *root = p->stack[0];
            return 0;
        }
        if (step(p, &r, op, memo_limit) < 0) return -1;
    }
    return vt_seterr("truncated pickle (no STOP)");
}
