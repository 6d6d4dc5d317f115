/* torch.save checkpoints (zip format, PyTorch >= 1.6; MODEL.md section 6).
 *
 * The archive holds <prefix>/data.pkl, a pickle whose tensors name their storages by
 * persistent id ("storage", torch.FloatStorage, key, location, numel), and one entry
 * <prefix>/data/<key> of raw little-endian bytes per storage. Only the pickle is read here:
 * the state dict's tensors are registered with their storage entries, which
 * ml_tensorset_read_f32 reads later. Everything else in the pickle (optimizer state, numpy
 * scalars, counters) is ignored, except a config object's scalar fields (numpy scalars
 * included) and its class, which become metadata: the head count is not in the weights, and
 * the later generation's MetaLearnerConfig governs its pass (MODEL.md section 7). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "io/pickle.h"
#include "io/tensorset_build.h"
#include "io/torch_ckpt.h"

/* data.pkl of a checkpoint is KBs (a state dict) to MBs (with optimizer state). */
#define PICKLE_MAX_BYTES ((zip_uint64_t)256 << 20)

typedef struct ckpt {
    ml_tensorset *ts;
    zip_t *zip;
    char *prefix;   /* "archive" */
    char *pkl_name; /* "archive/data.pkl", for messages */
} ckpt;

/* ---------------------------------------------------------------------------------------- */
/* the archive */

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int has_entry(zip_t *z, const char *prefix, const char *rest) {
    char name[1024];
    snprintf(name, sizeof name, "%s/%s", prefix, rest);
    return zip_name_locate(z, name, 0) >= 0;
}

/* Finds the single <prefix>/data.pkl; the prefix is the archive's name (torch uses the file
 * name at save time, "archive" by default). */
static int find_prefix(ckpt *c, ml_err *err) {
    zip_int64_t n = zip_get_num_entries(c->zip, 0);
    int npy = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(c->zip, (zip_uint64_t)i, 0);
        if (!name) continue;
        npy |= ends_with(name, ".npy");
        const char *slash = strchr(name, '/');
        if (!slash || slash == name || strcmp(slash, "/data.pkl")) continue;
        if (c->prefix)
            return ml_errf(err, "the zip holds two pickles, %s/data.pkl and %s; a torch.save "
                                "checkpoint has one",
                           c->prefix, name);
        c->prefix = strndup(name, (size_t)(slash - name));
        c->pkl_name = strdup(name);
        if (!c->prefix || !c->pkl_name) return ml_errf(err, "out of memory");
    }
    if (!c->prefix) {
        if (npy)
            return ml_errf(err, "this zip holds .npy arrays: it is an .npz array archive, not "
                                "a PyTorch checkpoint");
        return ml_errf(err, "a zip archive without <name>/data.pkl: not a torch.save "
                            "checkpoint");
    }
    if (has_entry(c->zip, c->prefix, "constants.pkl"))
        return ml_errf(err, "this is a TorchScript archive (torch.jit.save), which is not "
                            "supported; save the weights with torch.save(model.state_dict(), "
                            "path)");
    return 0;
}

/* Reads a whole (small) entry into a malloc'd buffer; NULL *data when it does not exist. */
static int read_entry(ckpt *c, const char *name, zip_uint64_t max, unsigned char **data,
                      size_t *len, ml_err *err) {
    *data = NULL;
    *len = 0;
    zip_int64_t idx = zip_name_locate(c->zip, name, 0);
    if (idx < 0) return 0;
    zip_stat_t st;
    if (zip_stat_index(c->zip, (zip_uint64_t)idx, 0, &st) || !(st.valid & ZIP_STAT_SIZE))
        return ml_errf(err, "%s: unreadable zip entry", name);
    if (st.size > max)
        return ml_errf(err, "%s: %llu bytes, more than the %llu this loader reads", name,
                       (unsigned long long)st.size, (unsigned long long)max);
    unsigned char *buf = malloc(st.size ? st.size : 1);
    zip_file_t *zf = buf ? zip_fopen_index(c->zip, (zip_uint64_t)idx, 0) : NULL;
    if (!zf) {
        free(buf);
        return ml_errf(err, "%s: cannot open the entry: %s", name,
                       buf ? zip_strerror(c->zip) : "out of memory");
    }
    zip_uint64_t got = 0;
    while (got < st.size) {
        zip_int64_t r = zip_fread(zf, buf + got, st.size - got);
        if (r <= 0) break;
        got += (zip_uint64_t)r;
    }
    int bad = got != st.size;
    char why[256];
    snprintf(why, sizeof why, "%s", zip_file_strerror(zf));
    zip_fclose(zf);
    if (bad) {
        free(buf);
        return ml_errf(err, "%s: cannot read the entry: %s", name, why);
    }
    *data = buf;
    *len = st.size;
    return 0;
}

/* <prefix>/byteorder (PyTorch 2) must say little: storages are read as little-endian. */
static int check_byteorder(ckpt *c, ml_err *err) {
    char name[1024];
    snprintf(name, sizeof name, "%s/byteorder", c->prefix);
    unsigned char *d;
    size_t n;
    if (read_entry(c, name, 64, &d, &n, err)) return -1;
    if (!d) return 0;
    while (n && (d[n - 1] == '\n' || d[n - 1] == '\r' || d[n - 1] == ' ')) n--;
    int little = n == 6 && !memcmp(d, "little", 6);
    free(d);
    if (!little)
        return ml_errf(err, "%s: the checkpoint was saved on a big-endian machine, which is not "
                            "supported; re-save it on a little-endian one",
                       name);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* storages and tensors */

static const struct {
    const char *name;
    ml_dtype dtype;
} storage_types[] = {
    {"FloatStorage", ML_F32},        {"DoubleStorage", ML_F64},
    {"HalfStorage", ML_F16},         {"BFloat16Storage", ML_BF16},
    {"LongStorage", ML_I64},         {"IntStorage", ML_I32},
    {"ShortStorage", ML_I16},        {"CharStorage", ML_I8},
    {"ByteStorage", ML_U8},          {"BoolStorage", ML_BOOL},
    {"ComplexFloatStorage", ML_C64}, {"ComplexDoubleStorage", ML_C128},
    {"UntypedStorage", ML_U8},
};

/* torch.float32 etc., the dtype argument of _rebuild_tensor_v3. */
static const struct {
    const char *name;
    ml_dtype dtype;
} torch_dtypes[] = {
    {"float32", ML_F32}, {"float", ML_F32},      {"float64", ML_F64},    {"double", ML_F64},
    {"float16", ML_F16}, {"half", ML_F16},       {"bfloat16", ML_BF16},  {"int64", ML_I64},
    {"long", ML_I64},    {"int32", ML_I32},      {"int", ML_I32},        {"int16", ML_I16},
    {"short", ML_I16},   {"int8", ML_I8},        {"uint8", ML_U8},       {"bool", ML_BOOL},
    {"complex64", ML_C64}, {"cfloat", ML_C64},   {"complex128", ML_C128}, {"cdouble", ML_C128},
};

static int storage_dtype(const ml_pv *cls, ml_dtype *dt) {
    if (!cls || cls->type != ML_PV_GLOBAL) return -1;
    const char *mod = cls->u.global.module;
    if (strcmp(mod, "torch") && strcmp(mod, "torch.storage")) return -1;
    for (size_t i = 0; i < sizeof storage_types / sizeof *storage_types; i++)
        if (!strcmp(cls->u.global.name, storage_types[i].name)) {
            *dt = storage_types[i].dtype;
            return 0;
        }
    return -1;
}

static int torch_dtype(const ml_pv *g, ml_dtype *dt) {
    if (!g || g->type != ML_PV_GLOBAL || strcmp(g->u.global.module, "torch")) return -1;
    for (size_t i = 0; i < sizeof torch_dtypes / sizeof *torch_dtypes; i++)
        if (!strcmp(g->u.global.name, torch_dtypes[i].name)) {
            *dt = torch_dtypes[i].dtype;
            return 0;
        }
    return -1;
}

static const char *pv_cstr(const ml_pv *v) {
    if (!v || v->type != ML_PV_STR || strlen(v->u.s.data) != v->u.s.len) return NULL;
    return v->u.s.data;
}

/* The storage a tensor's persistent id names, registered on first use; its index in
 * ts->storages. Several tensors (views) may share one storage. */
static int storage_for(ckpt *c, const char *tname, const ml_pv *persid, size_t *index,
                       ml_err *err) {
    const ml_pv *pid = persid->u.persid;
    if (pid->type != ML_PV_TUPLE || pid->u.seq.n < 5 || !ml_pv_is_str(pid->u.seq.items[0], "storage"))
        return ml_errf(err, "tensor %s: its storage is not a (\"storage\", type, key, location, "
                            "numel) persistent id",
                       tname);
    ml_pv **f = pid->u.seq.items;
    ml_dtype dt;
    if (storage_dtype(f[1], &dt))
        return ml_errf(err, "tensor %s: storage type %s%s%s is not supported", tname,
                       f[1]->type == ML_PV_GLOBAL ? f[1]->u.global.module : "(not a class)",
                       f[1]->type == ML_PV_GLOBAL ? "." : "",
                       f[1]->type == ML_PV_GLOBAL ? f[1]->u.global.name : "");
    const char *key = pv_cstr(f[2]);
    if (!key || !*key || strchr(key, '/'))
        return ml_errf(err, "tensor %s: malformed storage key", tname);
    if (f[4]->type != ML_PV_INT || f[4]->u.i < 0)
        return ml_errf(err, "tensor %s: storage %s: its size is not a non-negative int", tname,
                       key);
    int64_t nbytes;
    if (__builtin_mul_overflow(f[4]->u.i, (int64_t)ml_dtype_size(dt), &nbytes))
        return ml_errf(err, "tensor %s: storage %s: implausible size", tname, key);
    for (size_t i = 0; i < c->ts->n_storages; i++) {
        const ml_storage *s = &c->ts->storages[i];
        if (strcmp(s->key, key)) continue;
        if (s->dtype != dt || s->nbytes != nbytes)
            return ml_errf(err, "tensor %s: storage %s is described twice, differently", tname,
                           key);
        *index = i;
        return 0;
    }
    char name[1024];
    snprintf(name, sizeof name, "%s/data/%s", c->prefix, key);
    zip_int64_t idx = zip_name_locate(c->zip, name, 0);
    if (idx < 0)
        return ml_errf(err, "tensor %s: its storage entry %s is missing from the archive",
                       tname, name);
    zip_stat_t st;
    if (zip_stat_index(c->zip, (zip_uint64_t)idx, 0, &st) || !(st.valid & ZIP_STAT_SIZE))
        return ml_errf(err, "%s: unreadable zip entry", name);
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
        return ml_errf(err, "%s: the entry is encrypted", name);
    if ((st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method != ZIP_CM_STORE &&
        st.comp_method != ZIP_CM_DEFLATE)
        return ml_errf(err, "%s: compression method %d is not supported (torch.save stores "
                            "its entries)",
                       name, (int)st.comp_method);
    if (st.size != (zip_uint64_t)nbytes)
        return ml_errf(err,
                       "%s: the entry has %llu bytes but the pickle says %lld %s elements "
                       "(%lld bytes); the checkpoint is corrupt",
                       name, (unsigned long long)st.size, (long long)f[4]->u.i,
                       ml_dtype_name(dt), (long long)nbytes);
    ml_storage s = {.key = (char *)key, .dtype = dt, .nbytes = nbytes, .src_offset = -1,
                    .zip_index = idx};
    return ml_tensorset_add_storage(c->ts, &s, index, err);
}

/* The view must lie inside its storage: (offset + sum((size_i - 1) * stride_i) + 1) elements. */
static int check_view(const char *tname, const ml_tensor *t, const ml_storage *s,
                      ml_err *err) {
    int64_t hi = t->offset, es = (int64_t)ml_dtype_size(t->dtype), end;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 0) return 0;
        int64_t span;
        if (__builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &span) ||
            __builtin_add_overflow(hi, span, &hi))
            return ml_errf(err, "tensor %s: its size and stride overflow", tname);
    }
    if (__builtin_add_overflow(hi, 1, &end) || __builtin_mul_overflow(end, es, &end) ||
        end > s->nbytes)
        return ml_errf(err,
                       "tensor %s: the view (offset %lld, up to element %lld of %s) lies "
                       "outside its storage %s of %lld bytes; the checkpoint is corrupt",
                       tname, (long long)t->offset, (long long)hi, ml_dtype_name(t->dtype),
                       s->key, (long long)s->nbytes);
    return 0;
}

static int add_tensor(ckpt *c, const char *name, const ml_pv_tensor *pt, ml_err *err) {
    ml_tensor t = {.name = (char *)name, .ndim = pt->ndim, .offset = pt->offset};
    memcpy(t.shape, pt->shape, sizeof t.shape);
    memcpy(t.stride, pt->stride, sizeof t.stride);
    if (storage_for(c, name, pt->storage, &t.storage, err)) return -1;
    const ml_storage *s = &c->ts->storages[t.storage];
    t.dtype = s->dtype;
    if (pt->dtype && torch_dtype(pt->dtype, &t.dtype))
        return ml_errf(err, "tensor %s: unsupported dtype", name);
    if (check_view(name, &t, s, err)) return -1;
    return ml_tensorset_add_tensor(c->ts, &t, err);
}

/* ---------------------------------------------------------------------------------------- */
/* the pickle's layout */

/* A tensor this loader cannot read: rebuilt by another torch._utils function (quantized,
 * sparse, meta, ...). */
static int is_special_tensor(const ml_pv *v) {
    return v->type == ML_PV_OBJECT && v->u.obj.cls->type == ML_PV_GLOBAL &&
           !strcmp(v->u.obj.cls->u.global.module, "torch._utils");
}

static int dict_has_tensor(const ml_pv *d) {
    for (size_t i = 0; d && d->type == ML_PV_DICT && i < d->u.dict.n; i++)
        if (d->u.dict.vals[i]->type == ML_PV_TENSOR || is_special_tensor(d->u.dict.vals[i]))
            return 1;
    return 0;
}

/* model_state_dict (the seed's container), state_dict (later code), model, or the top level
 * itself (a bare state dict). */
static const ml_pv *find_state_dict(const ml_pv *root, const char **where) {
    static const char *const keys[] = {"model_state_dict", "state_dict", "model"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const ml_pv *v = ml_pv_dict_get(root, keys[i]);
        if (v && v->type == ML_PV_DICT && dict_has_tensor(v)) {
            *where = keys[i];
            return v;
        }
    }
    *where = NULL;
    return dict_has_tensor(root) ? root : NULL;
}

static int no_state_dict(ckpt *c, const ml_pv *root, ml_err *err) {
    if (root->type == ML_PV_OBJECT && root->u.obj.cls->type == ML_PV_GLOBAL)
        return ml_errf(err, "%s: the pickle holds a %s.%s object, not a state dict (a whole "
                            "pickled model?); save model.state_dict() instead",
                       c->pkl_name, root->u.obj.cls->u.global.module,
                       root->u.obj.cls->u.global.name);
    if (root->type != ML_PV_DICT)
        return ml_errf(err, "%s: the pickle holds a %s, not a state dict", c->pkl_name,
                       ml_pv_type_name(root->type));
    char keys[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < root->u.dict.n && o < sizeof keys - 64; i++) {
        const char *k = pv_cstr(root->u.dict.keys[i]);
        o += (size_t)snprintf(keys + o, sizeof keys - o, "%s%s", i ? ", " : "",
                              k ? k : "(not a str)");
    }
    return ml_errf(err, "%s: no tensors: expected a state dict at the top level or under "
                        "model_state_dict or state_dict; the top-level keys are: %s",
                   c->pkl_name, root->u.dict.n ? keys : "(none)");
}

static int register_tensors(ckpt *c, const ml_pv *sd, const char *where, ml_err *err) {
    for (size_t i = 0; i < sd->u.dict.n; i++) {
        const char *name = pv_cstr(sd->u.dict.keys[i]);
        const ml_pv *v = sd->u.dict.vals[i];
        if (!name) continue;
        if (is_special_tensor(v))
            return ml_errf(err, "%s: tensor %s is rebuilt by torch._utils.%s (a quantized, "
                                "sparse or other special tensor), which is not supported",
                           c->pkl_name, name, v->u.obj.cls->u.global.name);
        if (v->type != ML_PV_TENSOR) continue;
        if (add_tensor(c, name, v->u.tensor, err))
            return ml_err_prefix(err, "%s%s%s", c->pkl_name, where ? ": " : "",
                                 where ? where : "");
    }
    return 0;
}

/* numpy.core.multiarray.scalar(dtype(code, ...), raw bytes): a numpy scalar (np.float64(0.1)
 * in a config) as text, or NULL when v is not one this reads (little-endian bool, int, uint
 * and float of 1..8 bytes). */
static const char *numpy_scalar(const ml_pv *v, char *buf, size_t len) {
    if (v->type != ML_PV_OBJECT || v->u.obj.cls->type != ML_PV_GLOBAL ||
        (!ml_pv_is_global(v->u.obj.cls, "numpy.core.multiarray", "scalar") &&
         !ml_pv_is_global(v->u.obj.cls, "numpy._core.multiarray", "scalar")))
        return NULL;
    const ml_pv *args = v->u.obj.args;
    if (!args || args->type != ML_PV_TUPLE || args->u.seq.n < 2) return NULL;
    const ml_pv *dt = args->u.seq.items[0], *raw = args->u.seq.items[1];
    if (dt->type != ML_PV_OBJECT || !ml_pv_is_global(dt->u.obj.cls, "numpy", "dtype") ||
        !dt->u.obj.args || dt->u.obj.args->type != ML_PV_TUPLE || dt->u.obj.args->u.seq.n < 1 ||
        raw->type != ML_PV_BYTES)
        return NULL;
    const char *code = pv_cstr(dt->u.obj.args->u.seq.items[0]);
    const ml_pv *st = dt->u.obj.state; /* (version, byte order, ...) */
    if (st && st->type == ML_PV_TUPLE && st->u.seq.n >= 2 && ml_pv_is_str(st->u.seq.items[1], ">"))
        return NULL;
    if (!code || strlen(code) != 2 || code[1] < '1' || code[1] > '8') return NULL;
    size_t n = (size_t)(code[1] - '0');
    if (raw->u.s.len != n) return NULL;
    const unsigned char *b = (const unsigned char *)raw->u.s.data;
    uint64_t u = 0;
    for (size_t i = 0; i < n; i++) u |= (uint64_t)b[i] << (8 * i);
    switch (code[0]) {
    case 'b': snprintf(buf, len, "%s", u ? "true" : "false"); return n == 1 ? buf : NULL;
    case 'u': snprintf(buf, len, "%" PRIu64, u); return buf;
    case 'i': {
        uint64_t sign = (uint64_t)1 << (8 * n - 1);
        int64_t x = (int64_t)((u ^ sign) - sign); /* sign-extend */
        snprintf(buf, len, "%" PRId64, x);
        return buf;
    }
    case 'f': {
        double x;
        float f;
        if (n == 8) {
            memcpy(&x, &u, 8);
        } else if (n == 4 || n == 2) {
            if (ml_convert_to_f32(&f, b, n == 4 ? ML_F32 : ML_F16, 1)) return NULL;
            x = f;
        } else {
            return NULL;
        }
        snprintf(buf, len, "%.17g", x);
        return buf;
    }
    default: return NULL;
    }
}

/* A pickled config (a dataclass, a Namespace: BUILD state dict) or a plain dict: its scalar
 * fields (numpy scalars too) become metadata, e.g. num_attention_heads -> "12", bias ->
 * "false", and an object's class "__class__" -> "metalign.model.MetaLearnerConfig". */
static int config_meta(ckpt *c, const ml_pv *root, ml_err *err) {
    const ml_pv *cfg = ml_pv_dict_get(root, "config");
    const ml_pv *fields = cfg && cfg->type == ML_PV_DICT ? cfg : ml_pv_object_dict(cfg);
    if (fields && cfg->type == ML_PV_OBJECT && cfg->u.obj.cls->type == ML_PV_GLOBAL) {
        char cls[512];
        snprintf(cls, sizeof cls, "%s.%s", cfg->u.obj.cls->u.global.module,
                 cfg->u.obj.cls->u.global.name);
        if (ml_tensorset_add_meta(c->ts, "__class__", cls, err)) return -1;
    }
    for (size_t i = 0; fields && i < fields->u.dict.n; i++) {
        const char *key = pv_cstr(fields->u.dict.keys[i]);
        const ml_pv *v = fields->u.dict.vals[i];
        char buf[64];
        const char *val = NULL;
        if (!key) continue;
        switch (v->type) {
        case ML_PV_INT:
            snprintf(buf, sizeof buf, "%" PRId64, v->u.i);
            val = buf;
            break;
        case ML_PV_BOOL: val = v->u.i ? "true" : "false"; break;
        case ML_PV_FLOAT:
            snprintf(buf, sizeof buf, "%.17g", v->u.f);
            val = buf;
            break;
        case ML_PV_STR: val = pv_cstr(v); break;
        case ML_PV_OBJECT: val = numpy_scalar(v, buf, sizeof buf); break;
        default: break;
        }
        if (val && ml_tensorset_add_meta(c->ts, key, val, err)) return -1;
    }
    return 0;
}

int ml_torch_parse(ml_tensorset *ts, ml_err *err) {
    ckpt c = {.ts = ts, .zip = ts->zip};
    unsigned char *pkl = NULL;
    size_t pkl_len = 0;
    ml_pickle *pk = NULL;
    int rc = find_prefix(&c, err);
    if (!rc) rc = check_byteorder(&c, err);
    if (!rc) rc = read_entry(&c, c.pkl_name, PICKLE_MAX_BYTES, &pkl, &pkl_len, err);
    if (!rc) {
        pk = ml_pickle_load(pkl, pkl_len, NULL, err);
        if (!pk) rc = ml_err_prefix(err, "%s", c.pkl_name);
    }
    if (!rc) {
        const ml_pv *root = ml_pickle_root(pk);
        const char *where;
        const ml_pv *sd = find_state_dict(root, &where);
        if (!sd) rc = no_state_dict(&c, root, err);
        if (!rc) rc = register_tensors(&c, sd, where, err);
        if (!rc) rc = config_meta(&c, root, err);
    }
    ml_pickle_free(pk);
    free(pkl);
    free(c.prefix);
    free(c.pkl_name);
    return rc;
}
