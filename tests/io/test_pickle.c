/* The pickle VM against CPython's pickler: tests/reference/make_io_fixtures.py pickles one
 * object graph with every protocol (0-5) and writes the canonical dump of what the VM must
 * rebuild; here the VM runs each pickle and dumps its value graph the same way. Then hostile
 * inputs: truncation, underflow, bad memo, cycles, deep nesting and every limit. */
#include <stdint.h>

#include "io/npy.h"
#include "io/textmat.h"
#include "util/buf.h"
#include "io/pickle.h"
#include "unit.h"

static void dump(ml_buf *b, const ml_pv *v, int depth);

static void dump_seq(ml_buf *b, ml_pv *const *items, size_t n, const char *open,
                     const char *close, int depth) {
    ml_buf_puts(b, open);
    for (size_t i = 0; i < n; i++) {
        if (i) ml_buf_puts(b, ", ");
        dump(b, items[i], depth + 1);
    }
    ml_buf_puts(b, close);
}

/* The format of canon() in make_io_fixtures.py. */
static void dump(ml_buf *b, const ml_pv *v, int depth) {
    if (depth > 100) {
        ml_buf_puts(b, "...");
        return;
    }
    switch (v->type) {
    case ML_PV_NONE: ml_buf_puts(b, "None"); break;
    case ML_PV_BOOL: ml_buf_puts(b, v->u.i ? "True" : "False"); break;
    case ML_PV_INT: ml_buf_printf(b, "%lld", (long long)v->u.i); break;
    case ML_PV_BIGINT: ml_buf_puts(b, "bigint"); break;
    case ML_PV_FLOAT: ml_buf_printf(b, "%.17g", v->u.f); break;
    case ML_PV_STR:
        ml_buf_puts(b, "'");
        ml_buf_append(b, v->u.s.data, v->u.s.len);
        ml_buf_puts(b, "'");
        break;
    case ML_PV_BYTES:
        ml_buf_puts(b, "b'");
        for (size_t i = 0; i < v->u.s.len; i++)
            ml_buf_printf(b, "%02x", (unsigned char)v->u.s.data[i]);
        ml_buf_puts(b, "'");
        break;
    case ML_PV_LIST: dump_seq(b, v->u.seq.items, v->u.seq.n, "[", "]", depth); break;
    case ML_PV_TUPLE: dump_seq(b, v->u.seq.items, v->u.seq.n, "(", ")", depth); break;
    case ML_PV_DICT:
        ml_buf_puts(b, "{");
        for (size_t i = 0; i < v->u.dict.n; i++) {
            if (i) ml_buf_puts(b, ", ");
            dump(b, v->u.dict.keys[i], depth + 1);
            ml_buf_puts(b, ": ");
            dump(b, v->u.dict.vals[i], depth + 1);
        }
        ml_buf_puts(b, "}");
        break;
    case ML_PV_GLOBAL: ml_buf_printf(b, "%s.%s", v->u.global.module, v->u.global.name); break;
    case ML_PV_OBJECT:
        ml_buf_puts(b, "obj(");
        dump(b, v->u.obj.cls, depth + 1);
        ml_buf_puts(b, ", ");
        dump(b, v->u.obj.args, depth + 1);
        ml_buf_puts(b, ", ");
        if (v->u.obj.state)
            dump(b, v->u.obj.state, depth + 1);
        else
            ml_buf_puts(b, "None");
        ml_buf_puts(b, ")");
        break;
    case ML_PV_PERSID: ml_buf_puts(b, "persid"); break;
    case ML_PV_TENSOR: ml_buf_puts(b, "tensor"); break;
    }
}

static char *slurp(const char *path, size_t *len) {
    char *d;
    ml_err err;
    if (ml_file_read(path, 1 << 26, &d, len, &err)) {
        printf("# %s\n", err.msg);
        return NULL;
    }
    return d;
}

static void check_protocol(int proto) {
    const char *pkl_path = FIXTUREF("io/pickle_p%d.pkl", proto);
    const char *exp_path = FIXTUREF("io/pickle_p%d.expect.txt", proto);
    size_t plen, elen;
    char *pkl = slurp(pkl_path, &plen), *exp = slurp(exp_path, &elen);
    if (!pkl || !exp) {
        free(pkl);
        free(exp);
        REQUIRE_MSG(0, "cannot read the fixture %s", !pkl ? pkl_path : exp_path);
    }
    ml_err err = {""};
    ml_pickle *pk = ml_pickle_load(pkl, plen, NULL, &err);
    CHECK_MSG(pk, "protocol %d: %s", proto, err.msg);
    if (pk) {
        ml_buf b = {0};
        dump(&b, ml_pickle_root(pk), 0);
        CHECK(!b.oom);
        int same = b.len == elen && !memcmp(b.data, exp, elen);
        CHECK_MSG(same, "protocol %d: the dump differs from CPython's", proto);
        if (!same) {
            size_t i = 0;
            while (i < b.len && i < elen && b.data[i] == exp[i]) i++;
            printf("# first difference at byte %zu: got \"%.60s\", expected \"%.60s\"\n", i,
                   b.data + i, exp + i);
        }
        ml_buf_free(&b);
        ml_pickle_free(pk);
    }
    /* Every prefix is a truncated pickle: an error, never a crash. */
    size_t step = plen / 400 + 1;
    for (size_t n = 0; n < plen; n += (plen - n > 64 ? step : 1)) {
        ml_pickle *p = ml_pickle_load(pkl, n, NULL, &err);
        CHECK_MSG(!p, "protocol %d: a %zu-byte prefix parsed", proto, n);
        ml_pickle_free(p);
    }
    free(pkl);
    free(exp);
}

static void test_protocol_0(void) { check_protocol(0); }
static void test_protocol_1(void) { check_protocol(1); }
static void test_protocol_2(void) { check_protocol(2); }
static void test_protocol_3(void) { check_protocol(3); }
static void test_protocol_4(void) { check_protocol(4); }
static void test_protocol_5(void) { check_protocol(5); }

static ml_pickle *load(const char *bytes, size_t n, const ml_pickle_limits *lim, ml_err *err) {
    err->msg[0] = '\0';
    return ml_pickle_load(bytes, n, lim, err);
}

#define LOAD(lit, lim, err) load(lit, sizeof(lit) - 1, lim, err)

static void test_malformed(void) {
    ml_err err;
    static const struct {
        const char *bytes;
        size_t n;
        const char *msg;
    } cases[] = {
#define CASE(lit, msg) {lit, sizeof(lit) - 1, msg}
        CASE("", "without STOP"),
        CASE("\x80\x02", "without STOP"),
        CASE("\x80\x02.", "stack underflow"),
        CASE("\x80\x02h\x05.", "memo index 5 was never stored"),
        CASE("\x80\x02j\xff\xff\xff\xff.", "never stored"),
        CASE("\x80\x06N.", "protocol 6"),
        CASE("\xff", "unknown opcode"),
        CASE("\x80\x02K\x01K\x02u.", "no MARK"),
        CASE("\x80\x02(K\x01t(u.", "cannot set items of a tuple"),
        CASE("\x80\x02(u.", "stack underflow"),
        CASE("\x80\x02}(K\x01u.", "odd number"),
        CASE("\x80\x02K\x01K\x02" "a.", "cannot append to a int"),
        CASE("\x80\x02K\x01K\x02K\x03s.", "cannot set items of a int"),
        CASE("\x80\x02X\x05\x00\x00\x00" "ab.", "truncated"),
        CASE("\x80\x02T\xff\xff\xff\xff.", "negative length"),
        CASE("\x80\x02\x8b\x00\x00\x00\x80.", "negative length"),
        CASE("\x80\x02\x82\x01.", "extension registry"),
        CASE("\x80\x05\x97.", "out-of-band"),
        CASE("\x80\x02K\x01K\x02\x93.", "STACK_GLOBAL needs two strings"),
        CASE("I12x\n.", "malformed integer"),
        CASE("Fnope\n.", "malformed float"),
        CASE("S'abc\n.", "not quoted"),
        CASE("Vab", "no newline"),
        CASE("\x80\x02N}R.", "call arguments are a dict"),
        CASE("\x80\x02\x85.", "stack underflow"),
        CASE("(\x80\x02\x87.", "stack underflow"),
#undef CASE
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ml_pickle *pk = load(cases[i].bytes, cases[i].n, NULL, &err);
        CHECK_MSG(!pk, "case %zu parsed", i);
        CHECK_STR_CONTAINS(err.msg, cases[i].msg);
        CHECK_STR_CONTAINS(err.msg, "byte ");
        ml_pickle_free(pk);
    }
}

static void test_tensor_args(void) {
    ml_err err;
    /* _rebuild_tensor_v2(persid, 0, (2,), (1, 1), ...): 1 size dimension, 2 strides. */
    static const char bad_stride[] = "\x80\x02\x63torch._utils\n_rebuild_tensor_v2\n("
                                     "X\x01\x00\x00\x00kQK\x00K\x02\x85K\x01K\x01\x86\x89}t"
                                     "R.";
    ml_pickle *pk = load(bad_stride, sizeof bad_stride - 1, NULL, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "size has 1 dimensions but its stride 2");
    static const char neg_size[] = "\x80\x02\x63torch._utils\n_rebuild_tensor_v2\n("
                                   "X\x01\x00\x00\x00kQK\x00J\xff\xff\xff\xff\x85K\x01\x85\x89}t"
                                   "R.";
    pk = load(neg_size, sizeof neg_size - 1, NULL, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "size[0] is not a non-negative int");
    static const char not_persid[] = "\x80\x02\x63torch._utils\n_rebuild_tensor_v2\n("
                                     "NK\x00K\x02\x85K\x01\x85\x89}tR.";
    pk = load(not_persid, sizeof not_persid - 1, NULL, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "not a persistent id");
    static const char good[] = "\x80\x02\x63torch._utils\n_rebuild_parameter\n("
                               "\x63torch._utils\n_rebuild_tensor_v2\n("
                               "X\x01\x00\x00\x00kQK\x03K\x02K\x05\x86K\x05K\x01\x86\x89}tR"
                               "\x88}tR.";
    pk = load(good, sizeof good - 1, NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) {
        const ml_pv *t = ml_pickle_root(pk);
        CHECK(t->type == ML_PV_TENSOR);
        if (t->type == ML_PV_TENSOR) {
            CHECK(t->u.tensor->ndim == 2 && t->u.tensor->shape[0] == 2 &&
                  t->u.tensor->shape[1] == 5 && t->u.tensor->stride[0] == 5 &&
                  t->u.tensor->stride[1] == 1 && t->u.tensor->offset == 3);
            CHECK(t->u.tensor->storage->type == ML_PV_PERSID &&
                  ml_pv_is_str(t->u.tensor->storage->u.persid, "k"));
            CHECK(t->u.tensor->dtype == NULL);
        }
        ml_pickle_free(pk);
    }
}

static void test_cycle_and_nesting(void) {
    ml_err err;
    /* A list appended to itself through the memo. */
    ml_pickle *pk = LOAD("\x80\x02]q\x00h\x00" "a.", NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) {
        const ml_pv *r = ml_pickle_root(pk);
        CHECK(r->type == ML_PV_LIST && r->u.seq.n == 1 && r->u.seq.items[0] == r);
        ml_pickle_free(pk);
    }
    /* 200,000 nested lists: the VM and its free are iterative. */
    size_t depth = 200000, n = 2 + depth + (depth - 1) + 1;
    char *deep = malloc(n);
    CHECK(deep != NULL);
    if (!deep) return;
    size_t o = 0;
    deep[o++] = '\x80';
    deep[o++] = 2;
    for (size_t i = 0; i < depth; i++) deep[o++] = ']';
    for (size_t i = 0; i + 1 < depth; i++) deep[o++] = 'a';
    deep[o++] = '.';
    pk = ml_pickle_load(deep, o, NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) {
        const ml_pv *r = ml_pickle_root(pk);
        size_t levels = 1;
        while (r->type == ML_PV_LIST && r->u.seq.n == 1) {
            r = r->u.seq.items[0];
            levels++;
        }
        CHECK(levels == depth);
    }
    ml_pickle_free(pk);
    free(deep);
}

static void test_limits(void) {
    ml_err err;
    ml_pickle_limits lim = ml_pickle_default_limits;
    char buf[4096];
    size_t o = 0;
    buf[o++] = '\x80';
    buf[o++] = 2;
    buf[o++] = '(';
    for (int i = 0; i < 100; i++) buf[o++] = ']';
    buf[o++] = 'l';
    buf[o++] = '.';
    ml_pickle *pk = ml_pickle_load(buf, o, &lim, &err);
    CHECK_MSG(pk, "%s", err.msg);
    ml_pickle_free(pk);

    lim.max_values = 50;
    pk = ml_pickle_load(buf, o, &lim, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "more than 50 values");

    lim = ml_pickle_default_limits;
    lim.max_stack = 50;
    pk = ml_pickle_load(buf, o, &lim, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "stack deeper than 50");

    lim = ml_pickle_default_limits;
    lim.max_memo = 100;
    pk = LOAD("\x80\x02Nr\xc8\x00\x00\x00.", &lim, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "memo index 200 is above the limit of 100");

    lim = ml_pickle_default_limits;
    lim.max_bytes = 2000;
    o = 0;
    buf[o++] = '\x80';
    buf[o++] = 2;
    buf[o++] = 'X';
    uint32_t len = 3000;
    memcpy(buf + o, &len, 4);
    o += 4;
    memset(buf + o, 'x', len);
    o += len;
    buf[o++] = '.';
    pk = ml_pickle_load(buf, o, &lim, &err);
    CHECK(!pk);
    CHECK_STR_CONTAINS(err.msg, "more than 2000 bytes");
    pk = ml_pickle_load(buf, o, NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) CHECK(ml_pickle_root(pk)->u.s.len == 3000);
    ml_pickle_free(pk);
}

static void test_readers(void) {
    ml_err err;
    /* {"a": 1, "a": 2}: the last entry wins, as in Python. */
    ml_pickle *pk = LOAD("\x80\x02}(X\x01\x00\x00\x00" "aK\x01X\x01\x00\x00\x00" "aK\x02u.",
                         NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) {
        const ml_pv *v = ml_pv_dict_get(ml_pickle_root(pk), "a");
        CHECK(v && v->type == ML_PV_INT && v->u.i == 2);
        CHECK(ml_pv_dict_get(ml_pickle_root(pk), "b") == NULL);
        ml_pickle_free(pk);
    }
    /* An object with a (dict, slots) state, and one with a dict state. */
    pk = LOAD("\x80\x02\x63m\nC\n)\x81}X\x01\x00\x00\x00hK\x0cs}\x86" "b.", NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) {
        const ml_pv *o = ml_pickle_root(pk);
        CHECK(o->type == ML_PV_OBJECT && ml_pv_is_global(o->u.obj.cls, "m", "C"));
        const ml_pv *h = ml_pv_dict_get(ml_pv_object_dict(o), "h");
        CHECK(h && h->type == ML_PV_INT && h->u.i == 12);
        ml_pickle_free(pk);
    }
    /* A string with an embedded NUL is not equal to its C prefix. */
    pk = LOAD("\x80\x02X\x03\x00\x00\x00" "a\x00" "b.", NULL, &err);
    CHECK_MSG(pk, "%s", err.msg);
    if (pk) {
        CHECK(!ml_pv_is_str(ml_pickle_root(pk), "a"));
        CHECK(ml_pickle_root(pk)->u.s.len == 3);
        ml_pickle_free(pk);
    }
}

int main(void) {
    RUN(test_protocol_0);
    RUN(test_protocol_1);
    RUN(test_protocol_2);
    RUN(test_protocol_3);
    RUN(test_protocol_4);
    RUN(test_protocol_5);
    RUN(test_malformed);
    RUN(test_tensor_args);
    RUN(test_cycle_and_nesting);
    RUN(test_limits);
    RUN(test_readers);
    return UT_DONE();
}
