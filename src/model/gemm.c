/* The model's GEMM back ends (model/gemm.h). The OpenBLAS back end is ml_op_matmul's own
 * cblas_sgemm; this file holds what oneDNN needs: the prepared weights and, per workspace,
 * the primitives by shape. */
#include "model/gemm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ML_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

#ifndef ML_GEMM_DEFAULT_ONEDNN
#define ML_GEMM_DEFAULT_ONEDNN 0
#endif

ml_gemm_backend ml_gemm_build_backend(void) {
    return ML_GEMM_DEFAULT_ONEDNN ? ML_GEMM_ONEDNN : ML_GEMM_OPENBLAS;
}

const char *ml_gemm_backend_name(ml_gemm_backend b) {
    return b == ML_GEMM_ONEDNN ? "onednn" : "openblas";
}

#ifndef ML_HAVE_ONEDNN

int ml_gemm_available(ml_gemm_backend b) { return b == ML_GEMM_OPENBLAS; }

const char *ml_gemm_describe(ml_gemm_backend b, char *buf, size_t len) {
    (void)b;
    if (len) buf[0] = '\0';
    return buf;
}

ml_gemm_set *ml_gemm_set_new(ml_gemm_backend b, ml_err *err) {
    return ml_errp(err, "this build has no %s GEMM back end to prepare weights for (build "
                        "with meson -Dgemm=onednn)", ml_gemm_backend_name(b));
}
int ml_gemm_set_add(ml_gemm_set *s, const float *w, int ldw, int OC, int IC, ml_err *err) {
    (void)s, (void)w, (void)ldw, (void)OC, (void)IC;
    return ml_errf(err, "no GEMM back end to prepare weights for");
}
void ml_gemm_set_free(ml_gemm_set *s) { (void)s; }
ml_gemm_backend ml_gemm_set_backend(const ml_gemm_set *s) {
    (void)s;
    return ML_GEMM_OPENBLAS;
}
size_t ml_gemm_set_bytes(const ml_gemm_set *s) { return (void)s, 0; }
int ml_gemm_set_count(const ml_gemm_set *s) { return (void)s, 0; }
unsigned long ml_gemm_set_id(const ml_gemm_set *s) { return (void)s, 0; }
size_t ml_gemm_set_drop_plain(ml_gemm_set *s) { return (void)s, 0; }
int ml_gemm_set_dropped(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC) {
    (void)s, (void)w, (void)ldw, (void)OC, (void)IC;
    return 0;
}
int ml_gemm_unpack(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC, float *out,
                   ml_err *err) {
    (void)s, (void)w, (void)ldw, (void)OC, (void)IC, (void)out;
    return ml_errf(err, "no GEMM back end");
}
ml_gemm_ctx *ml_gemm_ctx_new(const ml_gemm_set *s, ml_err *err) {
    (void)s;
    return ml_errp(err, "no GEMM back end");
}

void ml_gemm_ctx_free(ml_gemm_ctx *c) { (void)c; }
const ml_gemm_set *ml_gemm_ctx_set(const ml_gemm_ctx *c) { return (void)c, NULL; }
long ml_gemm_ctx_fallbacks(const ml_gemm_ctx *c) { return (void)c, 0; }
int ml_gemm_run(ml_gemm_ctx *c, int threads, float *out, const float *inp, const float *w,
                int ldw, const float *bias, int N, int IC, int OC, int accumulate) {
    (void)c, (void)threads, (void)out, (void)inp, (void)w, (void)ldw, (void)bias, (void)N;
    (void)IC, (void)OC, (void)accumulate;
    return -1;
}

#else /* ML_HAVE_ONEDNN */

/* Rows of the primitive the weights' layout is asked of at load. The layout oneDNN 2.6
 * picks for these shapes does not depend on the row count (checked from 1 to 6,400 rows:
 * blocks of 16 input x 64 output features), so one prepared copy serves every call. */
#define ML_GEMM_LAYOUT_ROWS 4096
/* Primitives a workspace keeps: one per (shape, rows, bias, accumulate) it has run. A
 * pass uses a few per shape (the full calls and the last, shorter one); past this, the least
 * recently used slot is reused. */
#define ML_GEMM_CTX_PRIMS 256

typedef struct gemm_w {
    const float *w; /* the matrix as loaded: the key */
    int ldw, OC, IC;
    dnnl_memory_desc_t md; /* the prepared layout */
    dnnl_memory_t mem;     /* owns the prepared copy */
} gemm_w;

struct ml_gemm_set {
    unsigned long id;
    gemm_w *w;
    int n, cap;
    size_t bytes;
    int dropped; /* ml_gemm_set_drop_plain ran */
    char impl[64]; /* the implementation the layout came from, e.g. "brg:avx512_core" */
};

typedef struct prim {
    const gemm_w *w; /* the matrix it was made for: its shape and layout */
    int N, bias, accumulate;
    dnnl_primitive_t p;
    dnnl_memory_t src, dst, b, scratch;
    size_t scratch_bytes;
    unsigned long used; /* the ctx's call counter when last used */
} prim;

struct ml_gemm_ctx {
    const ml_gemm_set *set;
    dnnl_stream_t stream;
    prim prims[ML_GEMM_CTX_PRIMS];
    int n_prims;
    void *scratch; /* shared by this ctx's primitives: one runs at a time */
    size_t scratch_cap;
    unsigned long calls;
    long fallbacks;
};

static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_success;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void make_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static int get_engine(ml_err *err) {
    pthread_once(&engine_once, make_engine);
    if (engine_status != dnnl_success)
        return ml_errf(err, "oneDNN: cannot create the CPU engine (status %d)",
                       (int)engine_status);
    return 0;
}

#define DNNL_TRY(call, what)                                                                 \
    do {                                                                                     \
        dnnl_status_t st_ = (call);                                                          \
        if (st_ != dnnl_success) {                                                           \
            ml_errf(err, "oneDNN: %s failed (status %d)", what, (int)st_);                   \
            goto fail;                                                                       \
        }                                                                                    \
    } while (0)

int ml_gemm_available(ml_gemm_backend b) { (void)b; return 1; }

static char build_impl[64]; /* the last set's implementation, for ml_gemm_describe */

const char *ml_gemm_describe(ml_gemm_backend b, char *buf, size_t len) {
    if (b != ML_GEMM_ONEDNN) {
        if (len) buf[0] = '\0';
        return buf;
    }
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, len, "oneDNN %d.%d.%d%s%s%s", v->major, v->minor, v->patch,
             build_impl[0] ? " (" : "", build_impl, build_impl[0] ? ")" : "");
    return buf;
}

/* out (N, OC) = src (N, IC) @ weights (IC, OC) [+ bias (1, OC)] [+ out]: the primitive
 * descriptor, weights in wmd (any: let oneDNN choose). */
static dnnl_status_t matmul_pd(dnnl_primitive_desc_t *pd, int N, int IC, int OC,
                               const dnnl_memory_desc_t *wmd, int bias, int accumulate) {
    dnnl_memory_desc_t src, dst, b;
    dnnl_dims_t sd = {N, IC}, dd = {N, OC}, bd = {1, OC};
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_f32, dnnl_ab);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&b, 2, bd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t md;
    if (st == dnnl_success) st = dnnl_matmul_desc_init(&md, &src, wmd, bias ? &b : NULL, &dst);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (st == dnnl_success) st = dnnl_primitive_attr_create(&attr);
    /* the scratch memory is the workspace's (one per thread), not the library's */
    if (st == dnnl_success)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && accumulate) {
        st = dnnl_post_ops_create(&po);
        if (st == dnnl_success) st = dnnl_post_ops_append_sum(po, 1.0f);
        if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &md, attr, engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* One reorder between two layouts of the same matrix, src to dst. */
static int reorder(const dnnl_memory_desc_t *from, const void *src, const dnnl_memory_desc_t *to,
                   void *dst, ml_err *err) {
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t a = NULL, b = NULL;
    dnnl_stream_t stream = NULL;
    DNNL_TRY(dnnl_memory_create(&a, from, engine, (void *)src), "reorder memory");
    DNNL_TRY(dnnl_memory_create(&b, to, engine, dst), "reorder memory");
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, NULL), "reorder");
    DNNL_TRY(dnnl_primitive_create(&r, rpd), "reorder");
    DNNL_TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream");
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
    DNNL_TRY(dnnl_primitive_execute(r, stream, 2, args), "reorder");
    DNNL_TRY(dnnl_stream_wait(stream), "reorder");
    dnnl_stream_destroy(stream);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(a);
    dnnl_memory_destroy(b);
    return 0;
fail:
    if (stream) dnnl_stream_destroy(stream);
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (a) dnnl_memory_destroy(a);
    if (b) dnnl_memory_destroy(b);
    return -1;
}

ml_gemm_set *ml_gemm_set_new(ml_gemm_backend b, ml_err *err) {
    if (b != ML_GEMM_ONEDNN)
        return ml_errp(err, "the %s back end needs no prepared weights",
                       ml_gemm_backend_name(b));
    if (get_engine(err) != 0) return NULL;
    ml_gemm_set *s = calloc(1, sizeof *s);
    if (!s) return ml_errp(err, "out of memory");
    static unsigned long last_id;
    s->id = __atomic_add_fetch(&last_id, 1, __ATOMIC_RELAXED);
    return s;
}

static const gemm_w *find(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC) {
    for (int i = 0; i < s->n; i++) {
        const gemm_w *e = &s->w[i];
        if (e->w == w && e->ldw == ldw && e->OC == OC && e->IC == IC) return e;
    }
    return NULL;
}

int ml_gemm_set_add(ml_gemm_set *s, const float *w, int ldw, int OC, int IC, ml_err *err) {
    if (!w || OC < 1 || IC < 1 || ldw < IC)
        return ml_errf(err, "GEMM weights: %d x %d with row stride %d cannot be prepared", OC,
                       IC, ldw);
    if (find(s, w, ldw, OC, IC)) return 0;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        gemm_w *g = realloc(s->w, sizeof *g * (size_t)cap);
        if (!g) return ml_errf(err, "out of memory");
        s->w = g;
        s->cap = cap;
    }
    gemm_w *e = &s->w[s->n];
    memset(e, 0, sizeof *e);
    dnnl_primitive_desc_t pd = NULL;
    /* w (OC, IC) row-major is the weights (IC, OC) with strides (1, ldw) */
    dnnl_memory_desc_t wplain, wany;
    dnnl_dims_t wd = {IC, OC}, ws = {1, ldw};
    DNNL_TRY(dnnl_memory_desc_init_by_strides(&wplain, 2, wd, dnnl_f32, ws), "weights layout");
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_f32, dnnl_format_tag_any),
             "weights layout");
    DNNL_TRY(matmul_pd(&pd, ML_GEMM_LAYOUT_ROWS, IC, OC, &wany, 0, 0), "matmul descriptor");
    e->md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
        impl) {
        snprintf(s->impl, sizeof s->impl, "%s", impl);
        snprintf(build_impl, sizeof build_impl, "%s", impl);
    }
    DNNL_TRY(dnnl_memory_create(&e->mem, &e->md, engine, DNNL_MEMORY_ALLOCATE),
             "memory for the prepared weights");
    void *prepared = NULL;
    DNNL_TRY(dnnl_memory_get_data_handle(e->mem, &prepared), "memory for the prepared weights");
    if (reorder(&wplain, w, &e->md, prepared, err) != 0) goto fail;
    e->w = w;
    e->ldw = ldw;
    e->OC = OC;
    e->IC = IC;
    s->bytes += dnnl_memory_desc_get_size(&e->md);
    s->n++;
    dnnl_primitive_desc_destroy(pd);
    return 0;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (e->mem) dnnl_memory_destroy(e->mem);
    e->mem = NULL;
    return ml_err_prefix(err, "preparing a %d x %d weight matrix for oneDNN", OC, IC);
}

void ml_gemm_set_free(ml_gemm_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) dnnl_memory_destroy(s->w[i].mem);
    free(s->w);
    free(s);
}

size_t ml_gemm_set_drop_plain(ml_gemm_set *s) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    size_t given = 0;
    for (int i = 0; s && i < s->n; i++) {
        const gemm_w *e = &s->w[i];
        if (e->ldw != e->IC) continue; /* a strided slice's range holds other columns */
        uintptr_t a = (uintptr_t)e->w, b = a + sizeof(float) * (size_t)e->OC * (size_t)e->IC;
        a = (a + page - 1) & ~(page - 1);
        b &= ~(page - 1);
        if (b > a && madvise((void *)a, b - a, MADV_DONTNEED) == 0) given += b - a;
    }
    if (s) s->dropped = 1;
    return given;
}

int ml_gemm_set_dropped(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC) {
    if (!s || !s->dropped || OC < 1) return 0;
    /* any matrix overlapping a dropped range may have lost pages */
    const float *end = w + (size_t)(OC - 1) * (size_t)ldw + (size_t)IC;
    for (int i = 0; i < s->n; i++) {
        const gemm_w *e = &s->w[i];
        if (e->ldw != e->IC) continue;
        const float *eb = e->w, *ee = e->w + (size_t)e->OC * (size_t)e->IC;
        if (w < ee && eb < end) return 1;
    }
    return 0;
}

int ml_gemm_unpack(const ml_gemm_set *s, const float *w, int ldw, int OC, int IC, float *out,
                   ml_err *err) {
    const gemm_w *e = s ? find(s, w, ldw, OC, IC) : NULL;
    if (!e)
        return ml_errf(err, "a %d x %d matrix that was not prepared cannot be unpacked", OC, IC);
    dnnl_memory_desc_t plain;
    dnnl_dims_t wd = {IC, OC}, ws = {1, IC};
    void *data = NULL;
    if (dnnl_memory_desc_init_by_strides(&plain, 2, wd, dnnl_f32, ws) != dnnl_success ||
        dnnl_memory_get_data_handle(e->mem, &data) != dnnl_success || !data)
        return ml_errf(err, "oneDNN: the prepared weights cannot be read back");
    return reorder(&e->md, data, &plain, out, err);
}

ml_gemm_backend ml_gemm_set_backend(const ml_gemm_set *s) {
    (void)s;
    return ML_GEMM_ONEDNN;
}

size_t ml_gemm_set_bytes(const ml_gemm_set *s) { return s ? s->bytes : 0; }
int ml_gemm_set_count(const ml_gemm_set *s) { return s ? s->n : 0; }
unsigned long ml_gemm_set_id(const ml_gemm_set *s) { return s ? s->id : 0; }

ml_gemm_ctx *ml_gemm_ctx_new(const ml_gemm_set *s, ml_err *err) {
    ml_gemm_ctx *c = calloc(1, sizeof *c);
    if (!c) return ml_errp(err, "out of memory");
    c->set = s;
    if (dnnl_stream_create(&c->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        free(c);
        return ml_errp(err, "oneDNN: cannot create a stream");
    }
    return c;
}

static void prim_free(prim *p) {
    if (p->p) dnnl_primitive_destroy(p->p);
    if (p->src) dnnl_memory_destroy(p->src);
    if (p->dst) dnnl_memory_destroy(p->dst);
    if (p->b) dnnl_memory_destroy(p->b);
    if (p->scratch) dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof *p);
}

void ml_gemm_ctx_free(ml_gemm_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->n_prims; i++) prim_free(&c->prims[i]);
    dnnl_stream_destroy(c->stream);
    free(c->scratch);
    free(c);
}

const ml_gemm_set *ml_gemm_ctx_set(const ml_gemm_ctx *c) { return c ? c->set : NULL; }
long ml_gemm_ctx_fallbacks(const ml_gemm_ctx *c) { return c ? c->fallbacks : 0; }

/* The memory a primitive's argument `what` is described by, with no data yet. */
static dnnl_status_t arg_memory(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd,
                                dnnl_query_t what, int index) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, index);
    return dnnl_memory_create(m, md, engine, DNNL_MEMORY_NONE);
}

static int make_prim(ml_gemm_ctx *c, prim *p, const gemm_w *w, int N, int bias,
                     int accumulate, ml_err *err) {
    dnnl_primitive_desc_t pd = NULL;
    memset(p, 0, sizeof *p);
    DNNL_TRY(matmul_pd(&pd, N, w->IC, w->OC, &w->md, bias, accumulate), "matmul descriptor");
    DNNL_TRY(dnnl_primitive_create(&p->p, pd), "matmul primitive");
    DNNL_TRY(arg_memory(&p->src, pd, dnnl_query_src_md, 0), "matmul memory");
    DNNL_TRY(arg_memory(&p->dst, pd, dnnl_query_dst_md, 0), "matmul memory");
    if (bias) DNNL_TRY(arg_memory(&p->b, pd, dnnl_query_weights_md, 1), "matmul memory");
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (p->scratch_bytes)
        DNNL_TRY(dnnl_memory_create(&p->scratch, smd, engine, DNNL_MEMORY_NONE), "scratch");
    dnnl_primitive_desc_destroy(pd);
    if (p->scratch_bytes > c->scratch_cap) {
        size_t cap = (p->scratch_bytes + 4095) & ~(size_t)4095;
        void *s = aligned_alloc(64, cap);
        if (!s) {
            ml_errf(err, "out of memory for oneDNN's scratch memory (%zu bytes)", cap);
            goto fail;
        }
        free(c->scratch);
        c->scratch = s;
        c->scratch_cap = cap;
    }
    p->w = w;
    p->N = N;
    p->bias = bias;
    p->accumulate = accumulate;
    return 0;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    prim_free(p);
    return -1;
}

/* The ctx's primitive for this call, made on first use; the least recently used slot goes
 * when all are taken. */
static prim *get_prim(ml_gemm_ctx *c, const gemm_w *w, int N, int bias, int accumulate) {
    prim *lru = NULL;
    for (int i = 0; i < c->n_prims; i++) {
        /* a primitive takes its weights when it runs: one serves every matrix of the shape
         * (the 6 layers' fc1, say) */
        prim *p = &c->prims[i];
        if (p->N == N && p->w->OC == w->OC && p->w->IC == w->IC && p->bias == bias &&
            p->accumulate == accumulate && dnnl_memory_desc_equal(&p->w->md, &w->md))
            return p;
        if (!lru || p->used < lru->used) lru = p;
    }
    prim *p = c->n_prims < ML_GEMM_CTX_PRIMS ? &c->prims[c->n_prims] : lru;
    if (p == lru) prim_free(p);
    ml_err err;
    if (make_prim(c, p, w, N, bias, accumulate, &err) != 0) return NULL;
    if (p == &c->prims[c->n_prims]) c->n_prims++;
    return p;
}

int ml_gemm_run(ml_gemm_ctx *c, int threads, float *out, const float *inp, const float *w,
                int ldw, const float *bias, int N, int IC, int OC, int accumulate) {
    const gemm_w *e = c && N > 0 ? find(c->set, w, ldw, OC, IC) : NULL;
    prim *p = e ? get_prim(c, e, N, bias != NULL, accumulate) : NULL;
    if (!p) {
        if (c) c->fallbacks++;
        return -1;
    }
    p->used = ++c->calls;
    /* oneDNN runs on the calling thread's OpenMP team: as many threads as the pass uses */
    if (threads < 1) threads = 1;
    if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
    dnnl_exec_arg_t args[5];
    int n = 0;
    int ok = dnnl_memory_set_data_handle(p->src, (void *)inp) == dnnl_success &&
             dnnl_memory_set_data_handle(p->dst, out) == dnnl_success;
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->src};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, e->mem};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->dst};
    if (bias) {
        ok = ok && dnnl_memory_set_data_handle(p->b, (void *)bias) == dnnl_success;
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->b};
    }
    if (p->scratch) {
        ok = ok && dnnl_memory_set_data_handle(p->scratch, c->scratch) == dnnl_success;
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    if (!ok) {
        c->fallbacks++;
        return -1;
    }
    /* A primitive that was made for these shapes does not fail on valid pointers; if it
     * did, out may be half written, so the caller cannot fall back. */
    if (dnnl_primitive_execute(p->p, c->stream, n, args) != dnnl_success ||
        dnnl_stream_wait(c->stream) != dnnl_success)
        return -2;
    return 0;
}

#endif /* ML_HAVE_ONEDNN */
