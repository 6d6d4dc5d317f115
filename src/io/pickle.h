/* A pickle virtual machine for what torch.save writes (MODEL.md section 6).
 *
 * It runs the opcodes of protocols 0-5 that plain data needs and builds a graph of values
 * instead of Python objects. Callables are never run: the few that matter for checkpoints are
 * evaluated by name (collections.OrderedDict and defaultdict -> dict, _codecs.encode(s,
 * "latin1") -> bytes, torch._utils._rebuild_tensor_v2/v3 -> tensor,
 * _rebuild_parameter[_with_state] -> its data, copyreg._reconstructor -> object); any other REDUCE or NEWOBJ becomes an opaque object that keeps
 * its class, arguments and BUILD state, so a pickled config's fields can still be read.
 *
 * Hostile input: every read is bounds-checked and the work is bounded by ml_pickle_limits,
 * so a malformed pickle ends in an error message, never a crash. The value graph can contain
 * cycles (a list appended to itself through the memo): walk it with a depth bound. */
#ifndef METALIGN_PICKLE_H
#define METALIGN_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "io/tensorset.h"

typedef enum ml_pv_type {
    ML_PV_NONE,
    ML_PV_BOOL,   /* u.i is 0 or 1 */
    ML_PV_INT,    /* u.i */
    ML_PV_BIGINT, /* an int that does not fit in int64 (value not kept) */
    ML_PV_FLOAT,  /* u.f */
    ML_PV_STR,    /* u.s: UTF-8 as stored, NUL-terminated; may contain NULs (check len) */
    ML_PV_BYTES,  /* u.s */
    ML_PV_LIST,   /* u.seq; sets and frozensets become lists too */
    ML_PV_TUPLE,  /* u.seq */
    ML_PV_DICT,   /* u.dict, in insertion order */
    ML_PV_GLOBAL, /* u.global: a class or function named by GLOBAL / STACK_GLOBAL */
    ML_PV_PERSID, /* u.persid: what persistent_load would have been asked for */
    ML_PV_TENSOR, /* u.tensor: a torch._utils._rebuild_tensor* call */
    ML_PV_OBJECT, /* u.obj: any other call, kept unevaluated */
} ml_pv_type;

typedef struct ml_pv ml_pv;

typedef struct ml_pv_tensor {
    const ml_pv *storage; /* the PERSID value (torch: ("storage", type, key, location, numel)) */
    const ml_pv *dtype;   /* _rebuild_tensor_v3's dtype argument (a GLOBAL), else NULL */
    int64_t offset;       /* in elements */
    int ndim;
    int64_t shape[ML_MAX_NDIM];
    int64_t stride[ML_MAX_NDIM];
} ml_pv_tensor;

struct ml_pv {
    ml_pv_type type;
    union {
        int64_t i;
        double f;
        struct {
            char *data;
            size_t len;
        } s;
        struct {
            ml_pv **items;
            size_t n, cap;
        } seq;
        struct {
            ml_pv **keys, **vals;
            size_t n, cap;
        } dict;
        struct {
            char *module, *name;
        } global;
        ml_pv *persid;
        ml_pv_tensor *tensor;
        struct {
            ml_pv *cls;   /* usually a GLOBAL */
            ml_pv *args;  /* a TUPLE (NEWOBJ_EX: its positional arguments) */
            ml_pv *state; /* the BUILD argument, or NULL */
        } obj;
    } u;
};

/* Bounds on the work one pickle may cause. Strings are also bounded by the input's length. */
typedef struct ml_pickle_limits {
    size_t max_values; /* values created */
    size_t max_bytes;  /* memory held by values, strings and containers */
    size_t max_stack;  /* entries on the stack plus open MARKs */
    size_t max_memo;   /* memo entries; also the largest memo index */
} ml_pickle_limits;

/* 4 Mi values, 1 GiB, 1 Mi stack entries, 4 Mi memo entries: far above any checkpoint. */
extern const ml_pickle_limits ml_pickle_default_limits;

typedef struct ml_pickle ml_pickle;

/* Runs the pickle in buf up to its STOP. lim NULL means the defaults. Returns NULL with a
 * message "byte <offset> (<OPCODE>): <problem>" on malformed input or an exceeded limit. */
ml_pickle *ml_pickle_load(const void *buf, size_t len, const ml_pickle_limits *lim,
                          ml_err *err);
void ml_pickle_free(ml_pickle *pk);
const ml_pv *ml_pickle_root(const ml_pickle *pk);

const char *ml_pv_type_name(ml_pv_type type); /* "dict", "tensor", ... */

/* v is a STR equal to s (no embedded NUL). */
int ml_pv_is_str(const ml_pv *v, const char *s);
/* v is the GLOBAL module.name. */
int ml_pv_is_global(const ml_pv *v, const char *module, const char *name);
/* The value of the last entry with STR key `key` in a DICT, or NULL. */
const ml_pv *ml_pv_dict_get(const ml_pv *dict, const char *key);
/* An OBJECT's attributes: its BUILD state when that is a DICT, or the first element of a
 * (dict, slots) state tuple; NULL otherwise. */
const ml_pv *ml_pv_object_dict(const ml_pv *obj);

#endif
