/* The pickle VM of include/metalign/pickle.h. Modelled on CPython's _pickle.c Unpickler:
 * a value stack, a separate stack of MARK positions and a memo, one small function per
 * opcode family. Every value is registered in ml_pickle.values so freeing never walks the
 * (possibly cyclic) graph. */
#include "io/pickle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ml_pickle_limits ml_pickle_default_limits = {
    .max_values = (size_t)1 << 22,
    .max_bytes = (size_t)1 << 30,
    .max_stack = (size_t)1 << 20,
    .max_memo = (size_t)1 << 22,
};

struct ml_pickle {
    ml_pv **values;
    size_t n_values, cap_values;
    size_t bytes;
    ml_pv *root;
    ml_pickle_limits lim;
};

/* The memo: open addressing from a 32-bit index to a value; a slot with val NULL is empty. */
typedef struct memo_slot {
    uint32_t key;
    ml_pv *val;
} memo_slot;

typedef struct vm {
    const unsigned char *buf;
    size_t len, pos;
    size_t op_pos; /* offset of the opcode being run, for messages */
    unsigned char op;
    ml_pickle *pk;
    ml_pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    memo_slot *memo;
    size_t memo_n, memo_cap;
    ml_err *err;
} vm;

/* ---------------------------------------------------------------------------------------- */
/* errors */

static const char *op_name(unsigned char op) {
    switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
}

__attribute__((format(printf, 2, 3))) static int fail(vm *m, const char *fmt, ...) {
    char msg[ML_ERR_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = op_name(m->op);
    if (name)
        ml_errf(m->err, "byte %zu (%s): %s", m->op_pos, name, msg);
    else
        ml_errf(m->err, "byte %zu (opcode 0x%02x): %s", m->op_pos, m->op, msg);
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* values */

/* Counts bytes against the limit before they are allocated. */
static int account(vm *m, size_t n) {
    ml_pickle *pk = m->pk;
    if (n > pk->lim.max_bytes - pk->bytes)
        return fail(m, "the pickle needs more than %zu bytes of memory (limit); it is not a "
                       "checkpoint this loader can read", pk->lim.max_bytes);
    pk->bytes += n;
    return 0;
}

static ml_pv *pv_new(vm *m, ml_pv_type type) {
    ml_pickle *pk = m->pk;
    if (pk->n_values >= pk->lim.max_values) {
        fail(m, "more than %zu values (limit)", pk->lim.max_values);
        return NULL;
    }
    if (pk->n_values == pk->cap_values) {
        size_t cap = pk->cap_values ? 2 * pk->cap_values : 256;
        if (account(m, (cap - pk->cap_values) * sizeof *pk->values)) return NULL;
        ml_pv **v = realloc(pk->values, cap * sizeof *v);
        if (!v) {
            fail(m, "out of memory");
            return NULL;
        }
        pk->values = v;
        pk->cap_values = cap;
    }
    if (account(m, sizeof(ml_pv))) return NULL;
    ml_pv *v = calloc(1, sizeof *v);
    if (!v) {
        fail(m, "out of memory");
        return NULL;
    }
    v->type = type;
    pk->values[pk->n_values++] = v;
    return v;
}

static void pv_free(ml_pv *v) {
    switch (v->type) {
    case ML_PV_STR:
    case ML_PV_BYTES: free(v->u.s.data); break;
    case ML_PV_LIST:
    case ML_PV_TUPLE: free(v->u.seq.items); break;
    case ML_PV_DICT:
        free(v->u.dict.keys);
        free(v->u.dict.vals);
        break;
    case ML_PV_GLOBAL:
        free(v->u.global.module);
        free(v->u.global.name);
        break;
    case ML_PV_TENSOR: free(v->u.tensor); break;
    default: break;
    }
    free(v);
}

static char *copy_bytes(vm *m, const void *data, size_t len) {
    if (len == SIZE_MAX || account(m, len + 1)) return NULL;
    char *s = malloc(len + 1);
    if (!s) {
        fail(m, "out of memory");
        return NULL;
    }
    if (len) memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

static ml_pv *pv_bytes(vm *m, ml_pv_type type, const void *data, size_t len) {
    char *s = copy_bytes(m, data, len);
    if (!s) return NULL;
    ml_pv *v = pv_new(m, type);
    if (!v) {
        free(s);
        return NULL;
    }
    v->u.s.data = s;
    v->u.s.len = len;
    return v;
}

static ml_pv *pv_int(vm *m, int64_t i) {
    ml_pv *v = pv_new(m, ML_PV_INT);
    if (v) v->u.i = i;
    return v;
}

static ml_pv *pv_global(vm *m, const char *module, size_t mlen, const char *name, size_t nlen) {
    char *mod = copy_bytes(m, module, mlen);
    char *nam = mod ? copy_bytes(m, name, nlen) : NULL;
    ml_pv *v = nam ? pv_new(m, ML_PV_GLOBAL) : NULL;
    if (!v) {
        free(mod);
        free(nam);
        return NULL;
    }
    v->u.global.module = mod;
    v->u.global.name = nam;
    return v;
}

/* Grows *arr (of elem-byte entries, *cap of them) so that one more fits. */
static int grow(vm *m, void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 0;
    size_t ncap = *cap ? 2 * *cap : 4;
    if (account(m, (ncap - *cap) * elem)) return -1;
    void *a = realloc(*arr, ncap * elem);
    if (!a) return fail(m, "out of memory");
    *arr = a;
    *cap = ncap;
    return 0;
}

static int seq_push(vm *m, ml_pv *seq, ml_pv *item) {
    if (grow(m, (void **)&seq->u.seq.items, &seq->u.seq.cap, seq->u.seq.n,
             sizeof *seq->u.seq.items))
        return -1;
    seq->u.seq.items[seq->u.seq.n++] = item;
    return 0;
}

/* Appends without looking for an equal key: keys are arbitrary values and a pickler writes
 * each key once; readers take the last match (ml_pv_dict_get), as Python's dict would. */
static int dict_set(vm *m, ml_pv *d, ml_pv *key, ml_pv *val) {
    size_t cap = d->u.dict.cap;
    if (grow(m, (void **)&d->u.dict.keys, &cap, d->u.dict.n, sizeof(ml_pv *))) return -1;
    size_t cap2 = d->u.dict.cap;
    if (grow(m, (void **)&d->u.dict.vals, &cap2, d->u.dict.n, sizeof(ml_pv *))) return -1;
    d->u.dict.cap = cap;
    d->u.dict.keys[d->u.dict.n] = key;
    d->u.dict.vals[d->u.dict.n] = val;
    d->u.dict.n++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* stack, marks, memo */

static int push(vm *m, ml_pv *v) {
    if (!v) return -1;
    if (m->sp + m->n_marks >= m->pk->lim.max_stack)
        return fail(m, "stack deeper than %zu entries (limit)", m->pk->lim.max_stack);
    if (grow(m, (void **)&m->stack, &m->stack_cap, m->sp, sizeof *m->stack)) return -1;
    m->stack[m->sp++] = v;
    return 0;
}

/* The stack entries above the innermost MARK are not visible below it. */
static size_t stack_floor(const vm *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static ml_pv *pop(vm *m) {
    if (m->sp <= stack_floor(m)) {
        fail(m, "stack underflow (corrupt pickle)");
        return NULL;
    }
    return m->stack[--m->sp];
}

static ml_pv *top(vm *m) {
    if (m->sp <= stack_floor(m)) {
        fail(m, "stack underflow (corrupt pickle)");
        return NULL;
    }
    return m->stack[m->sp - 1];
}

static int push_mark(vm *m) {
    if (m->sp + m->n_marks >= m->pk->lim.max_stack)
        return fail(m, "stack deeper than %zu entries (limit)", m->pk->lim.max_stack);
    if (grow(m, (void **)&m->marks, &m->marks_cap, m->n_marks, sizeof *m->marks)) return -1;
    m->marks[m->n_marks++] = m->sp;
    return 0;
}

/* Pops the innermost MARK; *start is where its items begin on the stack. */
static int pop_mark(vm *m, size_t *start) {
    if (!m->n_marks) return fail(m, "no MARK on the stack (corrupt pickle)");
    *start = m->marks[--m->n_marks];
    return 0;
}

static size_t memo_hash(uint32_t key, size_t cap) {
    return (size_t)((key * 2654435761u) & (uint32_t)(cap - 1));
}

static int memo_put(vm *m, uint64_t idx, ml_pv *v) {
    if (idx >= m->pk->lim.max_memo)
        return fail(m, "memo index %llu is above the limit of %zu", (unsigned long long)idx,
                    m->pk->lim.max_memo);
    if (2 * (m->memo_n + 1) > m->memo_cap) {
        size_t ncap = m->memo_cap ? 2 * m->memo_cap : 64;
        if (account(m, ncap * sizeof(memo_slot))) return -1;
        memo_slot *t = calloc(ncap, sizeof *t);
        if (!t) return fail(m, "out of memory");
        for (size_t i = 0; i < m->memo_cap; i++) {
            if (!m->memo[i].val) continue;
            size_t h = memo_hash(m->memo[i].key, ncap);
            while (t[h].val) h = (h + 1) & (ncap - 1);
            t[h] = m->memo[i];
        }
        m->pk->bytes -= m->memo_cap * sizeof(memo_slot);
        free(m->memo);
        m->memo = t;
        m->memo_cap = ncap;
    }
    size_t h = memo_hash((uint32_t)idx, m->memo_cap);
    while (m->memo[h].val && m->memo[h].key != (uint32_t)idx) h = (h + 1) & (m->memo_cap - 1);
    if (!m->memo[h].val) m->memo_n++;
    m->memo[h].key = (uint32_t)idx;
    m->memo[h].val = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx) {
    if (m->memo_cap && idx <= UINT32_MAX) {
        size_t h = memo_hash((uint32_t)idx, m->memo_cap);
        while (m->memo[h].val) {
            if (m->memo[h].key == (uint32_t)idx) return push(m, m->memo[h].val);
            h = (h + 1) & (m->memo_cap - 1);
        }
    }
    return fail(m, "memo index %llu was never stored (corrupt pickle)", (unsigned long long)idx);
}

/* ---------------------------------------------------------------------------------------- */
/* reading the input */

static int need(vm *m, size_t n) {
    if (m->len - m->pos < n)
        return fail(m, "truncated: %zu more bytes expected, %zu left", n, m->len - m->pos);
    return 0;
}

static uint64_t rd_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Reads an n-byte little-endian unsigned argument. */
static int arg_u(vm *m, int n, uint64_t *out) {
    if (need(m, (size_t)n)) return -1;
    *out = rd_le(m->buf + m->pos, n);
    m->pos += (size_t)n;
    return 0;
}

/* A text argument ending in '\n' (protocol 0); the newline is consumed, not returned. */
static int arg_line(vm *m, const char **line, size_t *len) {
    const unsigned char *start = m->buf + m->pos;
    const unsigned char *nl = memchr(start, '\n', m->len - m->pos);
    if (!nl) return fail(m, "truncated: the line argument has no newline");
    *line = (const char *)start;
    *len = (size_t)(nl - start);
    m->pos += *len + 1;
    return 0;
}

/* Reads a length-prefixed payload: len_bytes little-endian bytes of length, then the data. */
static int arg_payload(vm *m, int len_bytes, int len_signed, const unsigned char **data,
                       size_t *n) {
    uint64_t l = 0;
    if (arg_u(m, len_bytes, &l)) return -1;
    if (len_signed && len_bytes == 4 && (l & 0x80000000u))
        return fail(m, "negative length (corrupt pickle)");
    if (l > m->len - m->pos)
        return fail(m, "truncated: a %llu-byte payload but only %zu bytes left",
                    (unsigned long long)l, m->len - m->pos);
    *data = m->buf + m->pos;
    *n = (size_t)l;
    m->pos += (size_t)l;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* opcodes: numbers and strings */

/* LONG1 / LONG4 payload: little-endian two's complement. */
static ml_pv *long_from_bytes(vm *m, const unsigned char *p, size_t n) {
    if (n == 0) return pv_int(m, 0);
    int neg = (p[n - 1] & 0x80) != 0;
    /* Bytes beyond the eighth must be pure sign extension for the value to fit. */
    for (size_t i = 8; i < n; i++)
        if (p[i] != (neg ? 0xff : 0x00)) return pv_new(m, ML_PV_BIGINT);
    if (n > 8 && ((p[7] & 0x80) != 0) != neg) return pv_new(m, ML_PV_BIGINT);
    size_t k = n < 8 ? n : 8;
    uint64_t u = rd_le(p, (int)k);
    if (neg && k < 8) u |= ~(uint64_t)0 << (8 * k);
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return pv_int(m, i);
}

/* Decimal text of INT / LONG (protocol 0): "I01" and "I00" are True and False. */
static int op_text_int(vm *m, int is_long) {
    const char *line = NULL;
    size_t n = 0;
    if (arg_line(m, &line, &n)) return -1;
    if (!is_long && n == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1')) {
        ml_pv *v = pv_new(m, ML_PV_BOOL);
        if (v) v->u.i = line[1] == '1';
        return push(m, v);
    }
    if (is_long && n && line[n - 1] == 'L') n--;
    char tmp[32];
    if (n == 0) return fail(m, "empty integer");
    size_t i = (line[0] == '-' || line[0] == '+') ? 1 : 0;
    if (i == n) return fail(m, "malformed integer");
    for (size_t j = i; j < n; j++)
        if (line[j] < '0' || line[j] > '9') return fail(m, "malformed integer");
    if (n >= sizeof tmp) return push(m, pv_new(m, ML_PV_BIGINT));
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno == ERANGE) return push(m, pv_new(m, ML_PV_BIGINT));
    return push(m, pv_int(m, v));
}

static int op_text_float(vm *m) {
    const char *line = NULL;
    size_t n = 0;
    if (arg_line(m, &line, &n)) return -1;
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return fail(m, "malformed float");
    memcpy(tmp, line, n);
    tmp[n] = '\0';
    char *end;
    double d = strtod(tmp, &end);
    if (*end) return fail(m, "malformed float \"%s\"", tmp);
    ml_pv *v = pv_new(m, ML_PV_FLOAT);
    if (v) v->u.f = d;
    return push(m, v);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* STRING: a quoted Python 2 repr, with the common escapes. The result is never longer than
 * the input, so it is decoded in place into a copy. */
static int op_text_string(vm *m) {
    const char *line = NULL;
    size_t n = 0;
    if (arg_line(m, &line, &n)) return -1;
    if (n < 2 || (line[0] != '\'' && line[0] != '"') || line[n - 1] != line[0])
        return fail(m, "the STRING argument is not quoted");
    char *out = copy_bytes(m, line + 1, n - 2);
    if (!out) return -1;
    size_t o = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        char c = line[i];
        if (c != '\\' || i + 2 >= n) {
            out[o++] = c;
            continue;
        }
        char e = line[++i];
        int h1, h2;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'x':
            if (i + 3 < n && (h1 = hexval(line[i + 1])) >= 0 && (h2 = hexval(line[i + 2])) >= 0) {
                out[o++] = (char)(h1 * 16 + h2);
                i += 2;
            } else {
                out[o++] = '\\';
                out[o++] = e;
            }
            break;
        default:
            out[o++] = '\\';
            out[o++] = e;
            break;
        }
    }
    out[o] = '\0';
    ml_pv *v = pv_new(m, ML_PV_STR);
    if (!v) {
        free(out);
        return -1;
    }
    v->u.s.data = out;
    v->u.s.len = o;
    return push(m, v);
}

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* UNICODE: raw-unicode-escape, i.e. latin-1 bytes plus \uXXXX and \UXXXXXXXX. Each input
 * byte yields at most 2 output bytes and each escape (6 or 10 bytes) at most 4. */
static int op_text_unicode(vm *m) {
    const char *line = NULL;
    size_t n = 0;
    if (arg_line(m, &line, &n)) return -1;
    if (n > (SIZE_MAX - 1) / 2 || account(m, 2 * n + 1)) return -1;
    char *out = malloc(2 * n + 1);
    if (!out) return fail(m, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        int digits = 0;
        if (c == '\\' && i + 1 < n) digits = line[i + 1] == 'u' ? 4 : line[i + 1] == 'U' ? 8 : 0;
        if (digits && i + 1 + (size_t)digits < n) {
            uint32_t cp = 0;
            int ok = 1;
            for (int k = 0; k < digits; k++) {
                int h = hexval(line[i + 2 + k]);
                if (h < 0) ok = 0;
                cp = cp * 16 + (uint32_t)(h < 0 ? 0 : h);
            }
            if (ok) {
                if (cp > 0x10ffff) {
                    free(out);
                    return fail(m, "code point U+%X is out of range", cp);
                }
                o += utf8_put(out + o, cp);
                i += 1 + (size_t)digits;
                continue;
            }
        }
        o += utf8_put(out + o, c);
    }
    out[o] = '\0';
    ml_pv *v = pv_new(m, ML_PV_STR);
    if (!v) {
        free(out);
        return -1;
    }
    v->u.s.data = out;
    v->u.s.len = o;
    return push(m, v);
}

/* ---------------------------------------------------------------------------------------- */
/* opcodes: containers */

/* Moves the items above the innermost MARK into a new LIST or TUPLE. */
static int op_seq_from_mark(vm *m, ml_pv_type type) {
    size_t start = 0;
    if (pop_mark(m, &start)) return -1;
    ml_pv *v = pv_new(m, type);
    if (!v) return -1;
    for (size_t i = start; i < m->sp; i++)
        if (seq_push(m, v, m->stack[i])) return -1;
    m->sp = start;
    return push(m, v);
}

static int op_tuple_n(vm *m, size_t n) {
    if (m->sp - stack_floor(m) < n) return fail(m, "stack underflow (corrupt pickle)");
    ml_pv *v = pv_new(m, ML_PV_TUPLE);
    if (!v) return -1;
    for (size_t i = m->sp - n; i < m->sp; i++)
        if (seq_push(m, v, m->stack[i])) return -1;
    m->sp -= n;
    return push(m, v);
}

/* APPEND(S) / ADDITEMS onto the value below the items. Python would call the target's
 * append(); for an opaque object that call is not made and the items are dropped. */
static int append_items(vm *m, size_t start) {
    if (start <= stack_floor(m) || start > m->sp)
        return fail(m, "stack underflow (corrupt pickle)");
    ml_pv *target = m->stack[start - 1];
    if (target->type == ML_PV_LIST) {
        for (size_t i = start; i < m->sp; i++)
            if (seq_push(m, target, m->stack[i])) return -1;
    } else if (target->type != ML_PV_OBJECT) {
        return fail(m, "cannot append to a %s (corrupt pickle)", ml_pv_type_name(target->type));
    }
    m->sp = start;
    return 0;
}

static int set_items(vm *m, size_t start) {
    if (start <= stack_floor(m) || start > m->sp)
        return fail(m, "stack underflow (corrupt pickle)");
    if ((m->sp - start) % 2) return fail(m, "odd number of items for a dict (corrupt pickle)");
    ml_pv *target = m->stack[start - 1];
    if (target->type == ML_PV_DICT) {
        for (size_t i = start; i < m->sp; i += 2)
            if (dict_set(m, target, m->stack[i], m->stack[i + 1])) return -1;
    } else if (target->type != ML_PV_OBJECT) {
        return fail(m, "cannot set items of a %s (corrupt pickle)",
                    ml_pv_type_name(target->type));
    }
    m->sp = start;
    return 0;
}

static int op_dict_from_mark(vm *m) {
    size_t start = 0;
    if (pop_mark(m, &start)) return -1;
    if ((m->sp - start) % 2) return fail(m, "odd number of items for a dict (corrupt pickle)");
    ml_pv *d = pv_new(m, ML_PV_DICT);
    if (!d) return -1;
    for (size_t i = start; i < m->sp; i += 2)
        if (dict_set(m, d, m->stack[i], m->stack[i + 1])) return -1;
    m->sp = start;
    return push(m, d);
}

/* ---------------------------------------------------------------------------------------- */
/* opcodes: calls */

static int is_call(const ml_pv *f, const char *module, const char *name) {
    return ml_pv_is_global(f, module, name);
}

/* A (shape or stride) tuple of non-negative ints. */
static int int_tuple(vm *m, const ml_pv *v, const char *what, int64_t *out, int *n) {
    if (v->type != ML_PV_TUPLE && v->type != ML_PV_LIST)
        return fail(m, "tensor %s is a %s, not a tuple", what, ml_pv_type_name(v->type));
    if (v->u.seq.n > ML_MAX_NDIM)
        return fail(m, "tensor %s has %zu dimensions; at most %d are supported", what,
                    v->u.seq.n, ML_MAX_NDIM);
    for (size_t i = 0; i < v->u.seq.n; i++) {
        const ml_pv *e = v->u.seq.items[i];
        if (e->type != ML_PV_INT || e->u.i < 0)
            return fail(m, "tensor %s[%zu] is not a non-negative int", what, i);
        out[i] = e->u.i;
    }
    *n = (int)v->u.seq.n;
    return 0;
}

/* _rebuild_tensor(storage, offset, size, stride), _v2(..., requires_grad, hooks[, metadata]),
 * _v3(..., requires_grad, hooks, dtype[, metadata]). */
static ml_pv *rebuild_tensor(vm *m, const ml_pv *args, int v3) {
    size_t n = args->u.seq.n;
    if (n < (v3 ? 7u : 4u)) {
        fail(m, "_rebuild_tensor called with %zu arguments (corrupt pickle)", n);
        return NULL;
    }
    ml_pv **a = args->u.seq.items;
    if (a[0]->type != ML_PV_PERSID) {
        fail(m, "tensor storage is a %s, not a persistent id", ml_pv_type_name(a[0]->type));
        return NULL;
    }
    if (a[1]->type != ML_PV_INT || a[1]->u.i < 0) {
        fail(m, "tensor storage offset is not a non-negative int");
        return NULL;
    }
    if (account(m, sizeof(ml_pv_tensor))) return NULL;
    ml_pv_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        fail(m, "out of memory");
        return NULL;
    }
    int nstride = 0;
    if (int_tuple(m, a[2], "size", t->shape, &t->ndim) ||
        int_tuple(m, a[3], "stride", t->stride, &nstride)) {
        free(t);
        return NULL;
    }
    if (nstride != t->ndim) {
        fail(m, "tensor size has %d dimensions but its stride %d", t->ndim, nstride);
        free(t);
        return NULL;
    }
    t->storage = a[0];
    t->offset = a[1]->u.i;
    t->dtype = v3 ? a[6] : NULL;
    ml_pv *v = pv_new(m, ML_PV_TENSOR);
    if (!v) {
        free(t);
        return NULL;
    }
    v->u.tensor = t;
    return v;
}

static ml_pv *new_object(vm *m, ml_pv *cls, ml_pv *args) {
    ml_pv *v = pv_new(m, ML_PV_OBJECT);
    if (!v) return NULL;
    v->u.obj.cls = cls;
    v->u.obj.args = args;
    return v;
}

/* Fills a dict from OrderedDict's optional argument: a list (or tuple) of (key, value) pairs. */
static int dict_from_pairs(vm *m, ml_pv *d, const ml_pv *args) {
    if (args->u.seq.n == 0) return 0;
    const ml_pv *items = args->u.seq.items[0];
    if (items->type != ML_PV_LIST && items->type != ML_PV_TUPLE) return 0;
    for (size_t i = 0; i < items->u.seq.n; i++) {
        const ml_pv *p = items->u.seq.items[i];
        if ((p->type == ML_PV_TUPLE || p->type == ML_PV_LIST) && p->u.seq.n == 2)
            if (dict_set(m, d, p->u.seq.items[0], p->u.seq.items[1])) return -1;
    }
    return 0;
}

/* _codecs.encode(s, "latin1"): how protocols 0-2 pickle a Python 3 bytes object (numpy
 * scalars' raw bytes among them). s is UTF-8 here; each code point must be below 256. */
static ml_pv *latin1_bytes(vm *m, const ml_pv *str) {
    const unsigned char *u = (const unsigned char *)str->u.s.data;
    size_t n = str->u.s.len, k = 0;
    unsigned char *out = malloc(n ? n : 1);
    if (!out) {
        fail(m, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; k++) {
        if (u[i] < 0x80) {
            out[k] = u[i++];
        } else if ((u[i] & 0xE0) == 0xC0 && u[i] <= 0xC3 && i + 1 < n &&
                   (u[i + 1] & 0xC0) == 0x80) {
            out[k] = (unsigned char)(((u[i] & 0x03) << 6) | (u[i + 1] & 0x3F));
            i += 2;
        } else {
            free(out);
            fail(m, "_codecs.encode: the string is not latin-1 text (corrupt pickle)");
            return NULL;
        }
    }
    ml_pv *v = pv_bytes(m, ML_PV_BYTES, out, k);
    free(out);
    return v;
}

/* What REDUCE / NEWOBJ push: known callables evaluated by name, the rest kept opaque. */
static ml_pv *call(vm *m, ml_pv *f, ml_pv *args) {
    if (args->type != ML_PV_TUPLE) {
        fail(m, "call arguments are a %s, not a tuple", ml_pv_type_name(args->type));
        return NULL;
    }
    if (f->type != ML_PV_GLOBAL) return new_object(m, f, args);
    const char *mod = f->u.global.module;
    if (is_call(f, "collections", "OrderedDict") || is_call(f, "builtins", "dict") ||
        is_call(f, "__builtin__", "dict")) {
        ml_pv *d = pv_new(m, ML_PV_DICT);
        if (!d || dict_from_pairs(m, d, args)) return NULL;
        return d;
    }
    if (is_call(f, "collections", "defaultdict")) return pv_new(m, ML_PV_DICT);
    if (is_call(f, "_codecs", "encode") && args->u.seq.n == 2 &&
        args->u.seq.items[0]->type == ML_PV_STR &&
        (ml_pv_is_str(args->u.seq.items[1], "latin1") ||
         ml_pv_is_str(args->u.seq.items[1], "latin-1")))
        return latin1_bytes(m, args->u.seq.items[0]);
    if (!strcmp(mod, "torch._utils")) {
        const char *name = f->u.global.name;
        if (!strcmp(name, "_rebuild_tensor_v2") || !strcmp(name, "_rebuild_tensor"))
            return rebuild_tensor(m, args, 0);
        if (!strcmp(name, "_rebuild_tensor_v3")) return rebuild_tensor(m, args, 1);
        if (!strcmp(name, "_rebuild_parameter") ||
            !strcmp(name, "_rebuild_parameter_with_state")) {
            if (args->u.seq.n < 1) {
                fail(m, "%s called without arguments (corrupt pickle)", name);
                return NULL;
            }
            return args->u.seq.items[0];
        }
    }
    /* Protocol 0/1 objects: copyreg._reconstructor(cls, base, state) makes an instance of
     * cls that BUILD then fills. */
    if ((is_call(f, "copyreg", "_reconstructor") || is_call(f, "copy_reg", "_reconstructor")) &&
        args->u.seq.n >= 1) {
        ml_pv *empty = pv_new(m, ML_PV_TUPLE);
        return empty ? new_object(m, args->u.seq.items[0], empty) : NULL;
    }
    return new_object(m, f, args);
}

static int op_reduce(vm *m) {
    ml_pv *args = pop(m);
    ml_pv *f = args ? pop(m) : NULL;
    if (!f) return -1;
    return push(m, call(m, f, args));
}

static int op_newobj(vm *m, int ex) {
    if (ex && !pop(m)) return -1; /* keyword arguments: no evaluated class takes any */
    return op_reduce(m);
}

/* INST module\nname\n and OBJ (protocol 0/1): the class and its arguments above a MARK. */
static int op_inst(vm *m, ml_pv *cls) {
    size_t start = 0;
    if (pop_mark(m, &start)) return -1;
    size_t first = start;
    if (!cls) {
        if (start >= m->sp) return fail(m, "OBJ without a class (corrupt pickle)");
        cls = m->stack[start];
        first = start + 1;
    }
    ml_pv *args = pv_new(m, ML_PV_TUPLE);
    if (!args) return -1;
    for (size_t i = first; i < m->sp; i++)
        if (seq_push(m, args, m->stack[i])) return -1;
    m->sp = start;
    return push(m, call(m, cls, args));
}

static int op_build(vm *m) {
    ml_pv *state = pop(m);
    ml_pv *obj = state ? top(m) : NULL;
    if (!obj) return -1;
    /* Other targets (an OrderedDict's _metadata, a parameter's state) are not needed. */
    if (obj->type == ML_PV_OBJECT) obj->u.obj.state = state;
    return 0;
}

static int valid_name(const char *s, size_t n) {
    if (n == 0 || memchr(s, '\0', n)) return 0;
    return 1;
}

static int op_global(vm *m) {
    const char *mod = NULL, *name = NULL;
    size_t ml = 0, nl = 0;
    if (arg_line(m, &mod, &ml) || arg_line(m, &name, &nl)) return -1;
    if (!valid_name(mod, ml) || !valid_name(name, nl)) return fail(m, "malformed global name");
    return push(m, pv_global(m, mod, ml, name, nl));
}

static int op_stack_global(vm *m) {
    ml_pv *name = pop(m);
    ml_pv *mod = name ? pop(m) : NULL;
    if (!mod) return -1;
    if (mod->type != ML_PV_STR || name->type != ML_PV_STR ||
        !valid_name(mod->u.s.data, mod->u.s.len) || !valid_name(name->u.s.data, name->u.s.len))
        return fail(m, "STACK_GLOBAL needs two strings (corrupt pickle)");
    return push(m, pv_global(m, mod->u.s.data, mod->u.s.len, name->u.s.data, name->u.s.len));
}

static int op_persid(vm *m, ml_pv *pid) {
    if (!pid) return -1;
    ml_pv *v = pv_new(m, ML_PV_PERSID);
    if (!v) return -1;
    v->u.persid = pid;
    return push(m, v);
}

static int op_text_memo(vm *m, int put) {
    const char *line = NULL;
    size_t n = 0;
    if (arg_line(m, &line, &n)) return -1;
    if (n == 0 || n > 10) return fail(m, "malformed memo index");
    uint64_t idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (line[i] < '0' || line[i] > '9') return fail(m, "malformed memo index");
        idx = idx * 10 + (uint64_t)(line[i] - '0');
    }
    if (!put) return memo_get(m, idx);
    ml_pv *v = top(m);
    return v ? memo_put(m, idx, v) : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* the loop */

static int push_payload(vm *m, ml_pv_type type, int len_bytes, int len_signed) {
    const unsigned char *d = NULL;
    size_t n = 0;
    if (arg_payload(m, len_bytes, len_signed, &d, &n)) return -1;
    return push(m, pv_bytes(m, type, d, n));
}

static int push_bool(vm *m, int b) {
    ml_pv *v = pv_new(m, ML_PV_BOOL);
    if (v) v->u.i = b;
    return push(m, v);
}

static int step(vm *m, int *done) {
    uint64_t u = 0;
    size_t start = 0;
    ml_pv *v;
    m->op_pos = m->pos;
    m->op = m->buf[m->pos++];
    switch (m->op) {
    case 0x80: /* PROTO */
        if (arg_u(m, 1, &u)) return -1;
        if (u > 5) return fail(m, "pickle protocol %llu is newer than 5", (unsigned long long)u);
        return 0;
    case 0x95: return arg_u(m, 8, &u); /* FRAME: framing only matters to stream readers */
    case 0x98: return top(m) ? 0 : -1; /* READONLY_BUFFER */
    case '.':
        if (!(v = pop(m))) return -1;
        m->pk->root = v;
        *done = 1;
        return 0;
    case '(': return push_mark(m);
    case '0':
        if (m->n_marks && m->sp == m->marks[m->n_marks - 1]) return pop_mark(m, &start);
        return pop(m) ? 0 : -1;
    case '1':
        if (pop_mark(m, &start)) return -1;
        m->sp = start;
        return 0;
    case '2': return (v = top(m)) ? push(m, v) : -1;
    case 'N': return push(m, pv_new(m, ML_PV_NONE));
    case 0x88: return push_bool(m, 1);
    case 0x89: return push_bool(m, 0);
    case 'I': return op_text_int(m, 0);
    case 'L': return op_text_int(m, 1);
    case 'J':
        if (arg_u(m, 4, &u)) return -1;
        return push(m, pv_int(m, (int32_t)(uint32_t)u));
    case 'K':
        if (arg_u(m, 1, &u)) return -1;
        return push(m, pv_int(m, (int64_t)u));
    case 'M':
        if (arg_u(m, 2, &u)) return -1;
        return push(m, pv_int(m, (int64_t)u));
    case 0x8a:
    case 0x8b: {
        const unsigned char *d = NULL;
        size_t n = 0;
        if (arg_payload(m, m->op == 0x8a ? 1 : 4, 1, &d, &n)) return -1;
        return push(m, long_from_bytes(m, d, n));
    }
    case 'F': return op_text_float(m);
    case 'G': {
        if (need(m, 8)) return -1;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | m->buf[m->pos + (size_t)i];
        m->pos += 8;
        if (!(v = pv_new(m, ML_PV_FLOAT))) return -1;
        memcpy(&v->u.f, &bits, sizeof v->u.f);
        return push(m, v);
    }
    case 'S': return op_text_string(m);
    case 'V': return op_text_unicode(m);
    case 'T': return push_payload(m, ML_PV_STR, 4, 1);
    case 'U': return push_payload(m, ML_PV_STR, 1, 0);
    case 'X': return push_payload(m, ML_PV_STR, 4, 0);
    case 0x8c: return push_payload(m, ML_PV_STR, 1, 0);
    case 0x8d: return push_payload(m, ML_PV_STR, 8, 0);
    case 'B': return push_payload(m, ML_PV_BYTES, 4, 0);
    case 'C': return push_payload(m, ML_PV_BYTES, 1, 0);
    case 0x8e:
    case 0x96: return push_payload(m, ML_PV_BYTES, 8, 0);
    case ')': return push(m, pv_new(m, ML_PV_TUPLE));
    case 't': return op_seq_from_mark(m, ML_PV_TUPLE);
    case 0x85: return op_tuple_n(m, 1);
    case 0x86: return op_tuple_n(m, 2);
    case 0x87: return op_tuple_n(m, 3);
    case ']':
    case 0x8f: return push(m, pv_new(m, ML_PV_LIST));
    case 'l':
    case 0x91: return op_seq_from_mark(m, ML_PV_LIST);
    case 'a': return append_items(m, m->sp ? m->sp - 1 : 0);
    case 'e':
    case 0x90: return pop_mark(m, &start) ? -1 : append_items(m, start);
    case '}': return push(m, pv_new(m, ML_PV_DICT));
    case 'd': return op_dict_from_mark(m);
    case 's': return m->sp < 2 ? fail(m, "stack underflow (corrupt pickle)")
                               : set_items(m, m->sp - 2);
    case 'u': return pop_mark(m, &start) ? -1 : set_items(m, start);
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 0x81: return op_newobj(m, 0);
    case 0x92: return op_newobj(m, 1);
    case 'b': return op_build(m);
    case 'i': {
        const char *mod = NULL, *name = NULL;
        size_t ml = 0, nl = 0;
        if (arg_line(m, &mod, &ml) || arg_line(m, &name, &nl)) return -1;
        if (!valid_name(mod, ml) || !valid_name(name, nl))
            return fail(m, "malformed class name");
        ml_pv *cls = pv_global(m, mod, ml, name, nl);
        return cls ? op_inst(m, cls) : -1;
    }
    case 'o': return op_inst(m, NULL);
    case 'p': return op_text_memo(m, 1);
    case 'g': return op_text_memo(m, 0);
    case 'q':
    case 'r':
        if (arg_u(m, m->op == 'q' ? 1 : 4, &u)) return -1;
        return (v = top(m)) ? memo_put(m, u, v) : -1;
    case 0x94: return (v = top(m)) ? memo_put(m, m->memo_n, v) : -1;
    case 'h':
    case 'j':
        if (arg_u(m, m->op == 'h' ? 1 : 4, &u)) return -1;
        return memo_get(m, u);
    case 'P': {
        const char *line = NULL;
        size_t n = 0;
        if (arg_line(m, &line, &n)) return -1;
        return op_persid(m, pv_bytes(m, ML_PV_STR, line, n));
    }
    case 'Q': return op_persid(m, pop(m));
    case 0x82:
    case 0x83:
    case 0x84: return fail(m, "extension registry codes (copyreg.add_extension) are not supported");
    case 0x97: return fail(m, "out-of-band buffers (protocol 5) are not supported");
    default: return fail(m, "unknown opcode; this is not a pickle, or a corrupt one");
    }
}

ml_pickle *ml_pickle_load(const void *buf, size_t len, const ml_pickle_limits *lim,
                          ml_err *err) {
    ml_pickle *pk = calloc(1, sizeof *pk);
    if (!pk) {
        ml_errf(err, "out of memory");
        return NULL;
    }
    pk->lim = lim ? *lim : ml_pickle_default_limits;
    vm m = {.buf = buf, .len = len, .pk = pk, .err = err};
    int done = 0, rc = 0;
    while (!done && rc == 0) {
        if (m.pos >= m.len) {
            m.op_pos = m.pos;
            rc = ml_errf(err, "byte %zu: the pickle ends without STOP (truncated)", m.pos);
            break;
        }
        rc = step(&m, &done);
    }
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (rc) {
        ml_pickle_free(pk);
        return NULL;
    }
    return pk;
}

void ml_pickle_free(ml_pickle *pk) {
    if (!pk) return;
    for (size_t i = 0; i < pk->n_values; i++) pv_free(pk->values[i]);
    free(pk->values);
    free(pk);
}

const ml_pv *ml_pickle_root(const ml_pickle *pk) { return pk->root; }

/* ---------------------------------------------------------------------------------------- */
/* readers */

const char *ml_pv_type_name(ml_pv_type type) {
    switch (type) {
    case ML_PV_NONE: return "None";
    case ML_PV_BOOL: return "bool";
    case ML_PV_INT: return "int";
    case ML_PV_BIGINT: return "big int";
    case ML_PV_FLOAT: return "float";
    case ML_PV_STR: return "str";
    case ML_PV_BYTES: return "bytes";
    case ML_PV_LIST: return "list";
    case ML_PV_TUPLE: return "tuple";
    case ML_PV_DICT: return "dict";
    case ML_PV_GLOBAL: return "global";
    case ML_PV_PERSID: return "persistent id";
    case ML_PV_TENSOR: return "tensor";
    case ML_PV_OBJECT: return "object";
    }
    return "?";
}

int ml_pv_is_str(const ml_pv *v, const char *s) {
    return v && v->type == ML_PV_STR && strlen(s) == v->u.s.len && !strcmp(v->u.s.data, s);
}

int ml_pv_is_global(const ml_pv *v, const char *module, const char *name) {
    return v && v->type == ML_PV_GLOBAL && !strcmp(v->u.global.module, module) &&
           !strcmp(v->u.global.name, name);
}

const ml_pv *ml_pv_dict_get(const ml_pv *dict, const char *key) {
    if (!dict || dict->type != ML_PV_DICT) return NULL;
    for (size_t i = dict->u.dict.n; i-- > 0;)
        if (ml_pv_is_str(dict->u.dict.keys[i], key)) return dict->u.dict.vals[i];
    return NULL;
}

const ml_pv *ml_pv_object_dict(const ml_pv *obj) {
    if (!obj || obj->type != ML_PV_OBJECT || !obj->u.obj.state) return NULL;
    const ml_pv *s = obj->u.obj.state;
    if (s->type == ML_PV_DICT) return s;
    if (s->type == ML_PV_TUPLE && s->u.seq.n == 2 && s->u.seq.items[0]->type == ML_PV_DICT)
        return s->u.seq.items[0];
    return NULL;
}
