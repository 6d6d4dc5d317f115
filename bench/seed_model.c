/* see seed_model.h */
#include "seed_model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { IN = SEED_IN, C = SEED_C, H = SEED_H, FF = SEED_FF, L = SEED_L };

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
float bench_frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

void bench_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * bench_frand();
}

/* ---- a seed-size safetensors file in memory ---- */

typedef struct spec {
    char name[64];
    int ndim;
    long d0, d1;
    float scale, offset;
} spec;

static void add(spec *s, int *n, const char *name, int ndim, long d0, long d1, float scale,
                float offset) {
    spec *x = &s[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim;
    x->d0 = d0;
    x->d1 = ndim == 2 ? d1 : 1;
    x->scale = scale;
    x->offset = offset;
}

/* The seed's tensors, scaled so activations stay O(1) (LayerNorm weights around 1). */
static int specs(spec *s) {
    int n = 0;
    add(s, &n, "embedding.weight", 2, C, IN, 1.7f / 48, 0);
    static const struct {
        const char *suffix;
        int ndim;
        long d0, d1;
        float scale, offset;
    } layer[] = {{"ln1.weight", 1, C, 1, 0.2f, 1},
                 {"ln1.bias", 1, C, 1, 0.2f, 0},
                 {"self_attn.qkv.weight", 2, 3 * C, C, 0.0625f, 0},
                 {"self_attn.o_proj.weight", 2, C, C, 0.0625f, 0},
                 {"ln2.weight", 1, C, 1, 0.2f, 1},
                 {"ln2.bias", 1, C, 1, 0.2f, 0},
                 {"mlp.fc1.weight", 2, FF, C, 0.0625f, 0},
                 {"mlp.fc2.weight", 2, C, FF, 0.03125f, 0}};
    for (int l = 0; l < L; l++) {
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "layers.%d.%s", l, layer[k].suffix);
            add(s, &n, name, layer[k].ndim, layer[k].d0, layer[k].d1, layer[k].scale,
                layer[k].offset);
        }
    }
    add(s, &n, "final_ln.weight", 1, C, 1, 0.2f, 1);
    add(s, &n, "final_ln.bias", 1, C, 1, 0.2f, 0);
    add(s, &n, "linear_head.weight", 2, 1, C, 0.0625f, 0);
    add(s, &n, "linear_head.bias", 1, 1, 1, 0.1f, 0);
    return n;
}

unsigned char *bench_seed_model_file(size_t *len) {
    spec s[8 + 8 * L];
    int n = specs(s);
    size_t cap = 64 * 1024, hl = 0, off = 0;
    char *hdr = malloc(cap);
    hl += (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"num_attention_heads\":\"%d\"}", H);
    for (int i = 0; i < n; i++) {
        size_t bytes = 4 * (size_t)s[i].d0 * (size_t)s[i].d1;
        char shape[64];
        if (s[i].ndim == 2)
            snprintf(shape, sizeof shape, "%ld,%ld", s[i].d0, s[i].d1);
        else
            snprintf(shape, sizeof shape, "%ld", s[i].d0);
        hl += (size_t)snprintf(hdr + hl, cap - hl,
                               ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],"
                               "\"data_offsets\":[%zu,%zu]}",
                               s[i].name, shape, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, cap - hl, "}");
    size_t padded = (hl + 7) / 8 * 8;
    *len = 8 + padded + off;
    unsigned char *buf = malloc(*len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    float *data = (float *)(buf + 8 + padded);
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)s[i].d0 * (size_t)s[i].d1;
        bench_fill(data, cnt, s[i].scale);
        for (size_t k = 0; k < cnt; k++) data[k] += s[i].offset;
        data += cnt;
    }
    free(hdr);
    return buf;
}

