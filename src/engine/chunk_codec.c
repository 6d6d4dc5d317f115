#include "engine/chunk_codec.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/stats.h"

#define REQUEST_VERSION "v1"
#define SEED_MAX 0xffffffffffffull /* wider than any request may ask (ML_SEED_MAX) */

int ml_request_encode(const ml_sim_request *rq, ml_buf *out) {
    ml_buf_printf(out, REQUEST_VERSION " episodes=%d seq_len=%d seed=%llu standardize=%d "
                       "include_episodes=%d batch_size=%d n_boot=%d dims=",
                  rq->episodes, rq->seq_len, (unsigned long long)rq->seed, rq->standardize != 0,
                  rq->include_episodes != 0, rq->batch_size, rq->n_boot);
    for (int i = 0; i < rq->n_dims; i++) ml_buf_printf(out, "%s%d", i ? "," : "", rq->dims[i]);
    return out->oom ? -1 : 0;
}

/* A decimal in [lo, hi] spanning exactly [s, s + n). */
static int number(const char *s, size_t n, unsigned long long lo, unsigned long long hi,
                  unsigned long long *out) {
    if (n == 0 || n > 20) return -1;
    unsigned long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned long long d = (unsigned long long)(s[i] - '0');
        if (v > (ULLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_dims(const char *s, size_t n, ml_sim_request *rq, ml_err *err) {
    int count = 1;
    for (size_t i = 0; i < n; i++) count += s[i] == ',';
    if (n == 0 || count > ML_SIM_MAX_EPISODES)
        return ml_errf(err, "job request: dims must list 1..%d dimensions", ML_SIM_MAX_EPISODES);
    int *dims = malloc(sizeof(int) * (size_t)count);
    if (!dims) return ml_errf(err, "job request: out of memory");
    size_t start = 0;
    for (int k = 0; k < count; k++) {
        size_t end = start;
        while (end < n && s[end] != ',') end++;
        unsigned long long v;
        if (number(s + start, end - start, 0, INT_MAX, &v) != 0) {
            free(dims);
            return ml_errf(err, "job request: dims[%d] is not a dimension number", k);
        }
        dims[k] = (int)v;
        start = end + 1;
    }
    free(rq->dims);
    rq->dims = dims;
    rq->n_dims = count;
    return 0;
}

typedef struct field {
    const char *name;
    unsigned long long lo, hi;
    int seen;
    unsigned long long v;
} field;

int ml_request_decode(const char *text, size_t len, ml_sim_request *rq, ml_err *err) {
    memset(rq, 0, sizeof *rq);
    if (len > ML_REQUEST_TEXT_MAX) return ml_errf(err, "job request: longer than %d bytes",
                                                  ML_REQUEST_TEXT_MAX);
    size_t vlen = sizeof REQUEST_VERSION - 1;
    if (len < vlen + 1 || memcmp(text, REQUEST_VERSION " ", vlen + 1) != 0)
        return ml_errf(err, "job request: not of version " REQUEST_VERSION
                            " (a replica of another version wrote it?)");
    field f[] = {{"episodes", 1, ML_SIM_MAX_EPISODES, 0, 0},
                 {"seq_len", 1, INT_MAX, 0, 0},
                 {"seed", 0, SEED_MAX, 0, 0},
                 {"standardize", 0, 1, 0, 0},
                 {"include_episodes", 0, 1, 0, 0},
                 {"batch_size", 1, ML_SIM_MAX_BATCH, 0, 0},
                 {"n_boot", 0, ML_N_BOOT_MAX, 0, 0}};
    int n_fields = (int)(sizeof f / sizeof f[0]), dims_seen = 0;
    size_t i = vlen + 1;
    while (i < len) {
        size_t end = i;
        while (end < len && text[end] != ' ') end++;
        const char *eq = memchr(text + i, '=', end - i);
        if (!eq) {
            ml_sim_request_free(rq);
            return ml_errf(err, "job request: expected NAME=VALUE at byte %zu", i);
        }
        size_t name_len = (size_t)(eq - (text + i));
        const char *val = eq + 1;
        size_t val_len = (size_t)(text + end - val);
        int known = 0;
        if (name_len == 4 && memcmp(text + i, "dims", 4) == 0) {
            known = 1;
            if (dims_seen++ || parse_dims(val, val_len, rq, err) != 0) {
                if (dims_seen > 1) ml_errf(err, "job request: dims given twice");
                ml_sim_request_free(rq);
                return -1;
            }
        }
        for (int k = 0; k < n_fields && !known; k++) {
            if (strlen(f[k].name) != name_len || memcmp(f[k].name, text + i, name_len) != 0)
                continue;
            known = 1;
            if (f[k].seen++ || number(val, val_len, f[k].lo, f[k].hi, &f[k].v) != 0) {
                ml_sim_request_free(rq);
                return ml_errf(err, "job request: %s is repeated or not in %llu..%llu",
                               f[k].name, f[k].lo, f[k].hi);
            }
        }
        if (!known) {
            ml_sim_request_free(rq);
            return ml_errf(err, "job request: unknown field at byte %zu", i);
        }
        i = end + 1;
    }
    for (int k = 0; k < n_fields; k++)
        if (!f[k].seen) {
            ml_sim_request_free(rq);
            return ml_errf(err, "job request: %s is missing", f[k].name);
        }
    if (!dims_seen) return ml_errf(err, "job request: dims is missing");
    rq->episodes = (int)f[0].v;
    rq->seq_len = (int)f[1].v;
    rq->seed = f[2].v;
    rq->standardize = (int)f[3].v;
    rq->include_episodes = (int)f[4].v;
    rq->batch_size = (int)f[5].v;
    rq->n_boot = (int)f[6].v;
    if ((long long)rq->episodes * rq->seq_len > ML_SIM_MAX_TRIALS) {
        ml_sim_request_free(rq);
        return ml_errf(err, "job request: more than %lld trials", ML_SIM_MAX_TRIALS);
    }
    return 0;
}

int ml_chunk_episodes(int episodes, int seq_len, int want, int max_rows) {
    /* A chunk is whole forward calls of a single daemon's grouping (ml_sim_run_range from
     * episode 0): a GEMM's rounding may depend on how many rows it has and where they
     * start, so the same grouping is what makes the logits, and the loss, the same bits. */
    int per_call = max_rows / (seq_len > 0 ? seq_len : 1);
    if (per_call < 1) per_call = 1;
    int per = want > 0 ? want : per_call;
    int floor = (episodes + ML_CHUNKS_MAX_PER_JOB - 1) / ML_CHUNKS_MAX_PER_JOB;
    if (per < floor) per = floor;
    per = (per + per_call - 1) / per_call * per_call;
    return per > episodes ? episodes : per;
}

int ml_chunk_count(int episodes, int chunk_episodes) {
    return (episodes + chunk_episodes - 1) / chunk_episodes;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_floats(const float *v, size_t count, ml_buf *out) {
    unsigned char b[4];
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        put_u32(b, bits);
        ml_buf_append(out, b, 4);
    }
}

static void get_floats(const unsigned char *p, size_t count, float *v) {
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = get_u32(p + 4 * i);
        memcpy(&v[i], &bits, 4);
    }
}

int ml_chunk_encode(int e0, int n, int seq_len, const float *logits, const float *mags,
                    ml_buf *out) {
    unsigned char head[ML_CHUNK_HEADER];
    memcpy(head, ML_CHUNK_MAGIC, 4);
    put_u32(head + 4, (uint32_t)e0);
    put_u32(head + 8, (uint32_t)n);
    put_u32(head + 12, (uint32_t)seq_len);
    put_u32(head + 16, mags ? 2u : 1u);
    ml_buf_append(out, head, sizeof head);
    size_t count = (size_t)n * (size_t)seq_len;
    put_floats(logits, count, out);
    if (mags) put_floats(mags, count, out);
    return out->oom ? -1 : 0;
}

int ml_chunk_decode(const void *data, size_t len, int e0, int n, int seq_len, float *logits,
                    float *mags, ml_err *err) {
    const unsigned char *p = data;
    size_t count = (size_t)n * (size_t)seq_len;
    uint32_t cols = mags ? 2u : 1u;
    if (len < ML_CHUNK_HEADER || memcmp(p, ML_CHUNK_MAGIC, 4) != 0)
        return ml_errf(err, "chunk of episodes %d..: not a chunk outcome (bad header)", e0);
    if (get_u32(p + 4) != (uint32_t)e0 || get_u32(p + 8) != (uint32_t)n ||
        get_u32(p + 12) != (uint32_t)seq_len || get_u32(p + 16) != cols)
        return ml_errf(err, "chunk of episodes %d..: it holds episodes %u.. (%u of %u trials, "
                            "%u columns), expected %d of %d trials, %u columns", e0,
                       get_u32(p + 4), get_u32(p + 8), get_u32(p + 12), get_u32(p + 16), n,
                       seq_len, cols);
    if (len != ML_CHUNK_HEADER + 4 * count * cols)
        return ml_errf(err, "chunk of episodes %d..: %zu bytes, expected %zu (truncated?)", e0,
                       len, ML_CHUNK_HEADER + 4 * count * cols);
    get_floats(p + ML_CHUNK_HEADER, count, logits);
    if (mags) get_floats(p + ML_CHUNK_HEADER + 4 * count, count, mags);
    return 0;
}
