/* Binding a checkpoint's tensors to the model: the generation, the variant and every size come
 * from the state-dict names and shapes (MODEL.md sections 2 and 7), all parameters go into one
 * float buffer (llm.c's params_memory), and every tensor's shape is checked before anything is
 * read. This file holds the seed's binding and what both generations share; weights_ml.c the
 * later generation's. */
#include "model/weights.h"

#include "io/checkpoint.h"
#include "model/gemm.h"

#include <cblas.h>
#undef I /* cblas.h pulls in <complex.h>; I is the intermediate size here */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* State-dict entries of the seed that are not parameters and are recomputed here. */
static const char *const known_buffers[] = {"freqs_cis"};

void ml_shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (n < len) snprintf(buf + n, len - n, ")");
}

int ml_bind_take(ml_binder *b, float **field, int layers, const char *prefix, const char *suffix,
                 int ndim, int64_t d0, int64_t d1, ml_err *err) {
    const ml_tensorset *ts = b->ts;
    int64_t want[2] = {d0, d1};
    size_t numel = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    int n = layers ? layers : 1;
    for (int i = 0; i < n; i++) {
        char name[256], ws[64], gs[128];
        if (layers)
            snprintf(name, sizeof name, "%s%d%s", prefix, i, suffix);
        else
            snprintf(name, sizeof name, "%s", suffix);
        ml_shape_str(ws, sizeof ws, ndim, want);
        const ml_tensor *t = ml_tensorset_find(ts, name);
        if (!t)
            return ml_errf(err, "%s: tensor %s (shape %s) is missing; the other tensors say "
                                "this model needs it", ts->path, name, ws);
        int ok = t->ndim == ndim;
        for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == want[d];
        if (!ok) {
            ml_shape_str(gs, sizeof gs, t->ndim, t->shape);
            return ml_errf(err, "%s: tensor %s has shape %s but %s was expected (%s)", ts->path,
                           name, gs, ws, b->context);
        }
        b->used[t - ts->tensors] = 1;
        if (b->mem && ml_tensorset_read_f32(ts, t, b->mem + b->off + (size_t)i * numel, err) != 0)
            return -1;
    }
    if (b->mem) *field = b->mem + b->off;
    b->off += numel * (size_t)n;
    return 0;
}

int ml_bind_params(ml_model *m, const ml_tensorset *ts, ml_walk_fn walk,
                   int (*ignored)(const char *name), const char *what, ml_err *err) {
    ml_binder b = {.ts = ts, .used = calloc(ts->n_tensors + 1, 1)};
    if (!b.used) return ml_errf(err, "out of memory");
    int rc = walk(&b, m, err);
    for (size_t k = 0; rc == 0 && k < ts->n_tensors; k++)
        if (!b.used[k] && !ignored(ts->tensors[k].name))
            rc = ml_errf(err, "%s: tensor %s is not part of %s; the checkpoint holds a different "
                              "architecture", ts->path, ts->tensors[k].name, what);
    if (rc == 0) {
        m->num_params = b.off;
        m->params_memory = malloc(sizeof(float) * (b.off ? b.off : 1));
        if (!m->params_memory) rc = ml_errf(err, "out of memory for %zu parameters", b.off);
    }
    if (rc == 0) {
        b.mem = m->params_memory;
        b.off = 0;
        rc = walk(&b, m, err);
    }
    free(b.used);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * The seed's transformer */

static int seed_walk(ml_binder *b, ml_model *m, ml_err *err) {
    const ml_model_config *c = &m->cfg;
    ml_params *p = &m->params;
    int64_t C = c->hidden_size, I = c->intermediate_size;
    int L = c->num_layers, bias = c->bias;
    snprintf(b->context, sizeof b->context, "the other tensors give input size %d, hidden size "
             "%d, intermediate size %d", c->input_size, c->hidden_size, c->intermediate_size);
    const char *lp = "layers.";
    if (c->embedding &&
        ml_bind_take(b, &p->emb_w, 0, "", "embedding.weight", 2, C, c->input_size, err))
        return -1;
    if (c->embedding && bias && ml_bind_take(b, &p->emb_b, 0, "", "embedding.bias", 1, C, 0, err))
        return -1;
    if (c->pos == ML_POS_LEARNED &&
        ml_bind_take(b, &p->pos, 0, "", "pos_encoder.embedding.weight", 2, c->max_seq_len, C,
                     err))
        return -1;
    if (ml_bind_take(b, &p->ln1_w, L, lp, ".ln1.weight", 1, C, 0, err) ||
        ml_bind_take(b, &p->ln1_b, L, lp, ".ln1.bias", 1, C, 0, err) ||
        ml_bind_take(b, &p->qkv_w, L, lp, ".self_attn.qkv.weight", 2, 3 * C, C, err) ||
        (bias && ml_bind_take(b, &p->qkv_b, L, lp, ".self_attn.qkv.bias", 1, 3 * C, 0, err)) ||
        ml_bind_take(b, &p->o_w, L, lp, ".self_attn.o_proj.weight", 2, C, C, err) ||
        (bias && ml_bind_take(b, &p->o_b, L, lp, ".self_attn.o_proj.bias", 1, C, 0, err)) ||
        ml_bind_take(b, &p->ln2_w, L, lp, ".ln2.weight", 1, C, 0, err) ||
        ml_bind_take(b, &p->ln2_b, L, lp, ".ln2.bias", 1, C, 0, err) ||
        ml_bind_take(b, &p->fc1_w, L, lp, ".mlp.fc1.weight", 2, I, C, err) ||
        (bias && ml_bind_take(b, &p->fc1_b, L, lp, ".mlp.fc1.bias", 1, I, 0, err)) ||
        ml_bind_take(b, &p->fc2_w, L, lp, ".mlp.fc2.weight", 2, C, I, err) ||
        (bias && ml_bind_take(b, &p->fc2_b, L, lp, ".mlp.fc2.bias", 1, C, 0, err)) ||
        ml_bind_take(b, &p->lnf_w, 0, "", "final_ln.weight", 1, C, 0, err) ||
        ml_bind_take(b, &p->lnf_b, 0, "", "final_ln.bias", 1, C, 0, err) ||
        ml_bind_take(b, &p->head_w, 0, "", "linear_head.weight", 2, 1, C, err) ||
        (c->logit_bias && ml_bind_take(b, &p->head_b, 0, "", "linear_head.bias", 1, 1, 0, err)))
        return -1;
    return 0;
}

int ml_count_indexed(const ml_tensorset *ts, const char *prefix, char terminator, int *layers,
                     ml_err *err) {
    char seen[ML_MAX_LAYERS] = {0};
    size_t plen = strlen(prefix);
    int max = -1;
    for (size_t k = 0; k < ts->n_tensors; k++) {
        const char *name = ts->tensors[k].name;
        if (strncmp(name, prefix, plen) != 0) continue;
        const char *digits = name + plen;
        char *end;
        long i = strtol(digits, &end, 10);
        if (*digits < '0' || *digits > '9' || *end != terminator)
            return ml_errf(err, "%s: tensor %s: expected %s<index>%s", ts->path, name, prefix,
                           terminator ? ".<name>" : "");
        if (i >= ML_MAX_LAYERS)
            return ml_errf(err, "%s: tensor %s: more than %d layers are not supported", ts->path,
                           name, ML_MAX_LAYERS);
        seen[i] = 1;
        if (i > max) max = (int)i;
    }
    for (int i = 0; i <= max; i++)
        if (!seen[i])
            return ml_errf(err, "%s: %s%d%s is missing but %s%d%s is present; the layers must "
                                "be numbered 0..%d", ts->path, prefix, i,
                           terminator ? ".*" : "", prefix, max, terminator ? ".*" : "", max);
    *layers = max + 1;
    return 0;
}

int ml_tensor_dim(const ml_tensorset *ts, const char *name, int ndim, int axis, int *out,
                  const char *what, ml_err *err) {
    const ml_tensor *t = ml_tensorset_find(ts, name);
    if (!t)
        return ml_errf(err, "%s: tensor %s is missing; this is not a checkpoint of %s",
                       ts->path, name, what);
    if (t->ndim != ndim)
        return ml_errf(err, "%s: tensor %s has %d dimensions, %d expected", ts->path, name,
                       t->ndim, ndim);
    if (t->shape[axis] < 1 || t->shape[axis] > ML_MAX_DIM)
        return ml_errf(err, "%s: tensor %s: size %lld is out of range (1..%d)", ts->path, name,
                       (long long)t->shape[axis], ML_MAX_DIM);
    *out = (int)t->shape[axis];
    return 0;
}

/* All linears have a bias or none do (cfg.bias); a partial set is a broken checkpoint. */
static int check_bias_set(const ml_tensorset *ts, int bias, ml_err *err) {
    if (bias) return 0;
    static const char *const linears[] = {"self_attn.qkv", "self_attn.o_proj", "mlp.fc1",
                                          "mlp.fc2"};
    for (size_t k = 0; k < ts->n_tensors; k++) {
        const char *name = ts->tensors[k].name;
        int is_bias = strcmp(name, "embedding.bias") == 0;
        for (size_t j = 0; !is_bias && j < sizeof linears / sizeof linears[0]; j++) {
            const char *p = strstr(name, linears[j]);
            is_bias = strncmp(name, "layers.", 7) == 0 && p && strcmp(p + strlen(linears[j]),
                                                                       ".bias") == 0;
        }
        if (is_bias)
            return ml_errf(err, "%s: tensor layers.0.self_attn.qkv.bias is missing but %s is "
                                "present; a model has biases on all its linears or on none",
                           ts->path, name);
    }
    return 0;
}

int ml_resolve_heads(const ml_tensorset *ts, const char *key, int heads_hint, int *heads,
                     const char **source, ml_err *err) {
    const char *v = ml_tensorset_meta(ts, key);
    if (!v) {
        *heads = heads_hint > 0 ? heads_hint : ML_DEFAULT_HEADS;
        *source = heads_hint > 0 ? "--heads" : "default";
        return 0;
    }
    char *end;
    long h = strtol(v, &end, 10);
    if (end == v || *end || h < 1 || h > ML_MAX_DIM)
        return ml_errf(err, "%s: metadata %s=\"%s\" is not a positive integer", ts->path, key, v);
    if (heads_hint > 0 && heads_hint != h)
        return ml_errf(err, "%s: --heads %d contradicts the checkpoint, whose config says "
                            "%s=%ld; drop --heads (it is only for checkpoints without a head "
                            "count)", ts->path, heads_hint, key, h);
    *heads = (int)h;
    *source = "checkpoint";
    return 0;
}

static const char *seed_what = "the seed's transformer";

/* A field the checkpoint's config (a pickled TransformerConfig, or safetensors metadata)
 * records must be what the tensors say; a value that is not a number or boolean is not this
 * check's to judge. */
static int seed_field(const ml_tensorset *ts, const char *key, long tensor_value,
                      const char *where, ml_err *err) {
    const char *v = ml_tensorset_meta(ts, key);
    if (!v) return 0;
    long x;
    char *end;
    if (!strcmp(v, "true") || !strcmp(v, "false")) {
        x = v[0] == 't';
    } else {
        x = strtol(v, &end, 10);
        if (end == v || *end) return 0;
    }
    if (x == tensor_value) return 0;
    return ml_errf(err, "%s: the checkpoint's config says %s=%s but its tensors say %ld (%s); "
                        "the config and the weights disagree", ts->path, key, v, tensor_value,
                   where);
}

static int check_seed_config(const ml_tensorset *ts, const ml_model_config *c, ml_err *err) {
    return seed_field(ts, "hidden_size", c->hidden_size, "the rows of embedding.weight or the "
                                                         "width of final_ln.weight", err) ||
                   seed_field(ts, "input_size", c->input_size,
                              c->embedding ? "the columns of embedding.weight"
                                           : "no embedding layer: the hidden size", err) ||
                   seed_field(ts, "intermediate_size", c->intermediate_size,
                              "the rows of layers.0.mlp.fc1.weight", err) ||
                   seed_field(ts, "num_layers", c->num_layers, "layers.<i>.*", err) ||
                   seed_field(ts, "embedding", c->embedding, "embedding.weight", err) ||
                   seed_field(ts, "bias", c->bias, "layers.0.self_attn.qkv.bias", err) ||
                   seed_field(ts, "logit_bias", c->logit_bias, "linear_head.bias", err) ||
                   (c->pos == ML_POS_LEARNED &&
                    seed_field(ts, "sequence_length", c->max_seq_len,
                               "the rows of pos_encoder.embedding.weight", err))
               ? -1
               : 0;
}

static int detect_config(const ml_tensorset *ts, int heads_hint, ml_model *m, ml_err *err) {
    ml_model_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->embedding = ml_tensorset_find(ts, "embedding.weight") != NULL;
    if (c->embedding) {
        if (ml_tensor_dim(ts, "embedding.weight", 2, 0, &c->hidden_size, seed_what, err) ||
            ml_tensor_dim(ts, "embedding.weight", 2, 1, &c->input_size, seed_what, err))
            return -1;
    } else {
        if (ml_tensor_dim(ts, "final_ln.weight", 1, 0, &c->hidden_size, seed_what, err))
            return -1;
        c->input_size = c->hidden_size;
    }
    if (ml_tensor_dim(ts, "layers.0.mlp.fc1.weight", 2, 0, &c->intermediate_size, seed_what,
                      err) ||
        ml_count_indexed(ts, "layers.", '.', &c->num_layers, err))
        return -1;
    if (c->num_layers == 0)
        return ml_errf(err, "%s: no tensor layers.0.*: this is not a checkpoint of the seed's "
                            "transformer (layers.{i}.ln1.weight, ... are expected)", ts->path);
    c->bias = ml_tensorset_find(ts, "layers.0.self_attn.qkv.bias") != NULL;
    if (check_bias_set(ts, c->bias, err)) return -1;
    c->logit_bias = ml_tensorset_find(ts, "linear_head.bias") != NULL;
    c->pos = ML_POS_ROPE;
    if (ml_tensorset_find(ts, "pos_encoder.embedding.weight")) {
        c->pos = ML_POS_LEARNED;
        if (ml_tensor_dim(ts, "pos_encoder.embedding.weight", 2, 0, &c->max_seq_len, seed_what,
                          err))
            return -1;
    }
    if (check_seed_config(ts, c, err) ||
        ml_resolve_heads(ts, "num_attention_heads", heads_hint, &c->num_heads, &m->heads_source,
                         err))
        return -1;
    int C = c->hidden_size, H = c->num_heads;
    const char *hint = strcmp(m->heads_source, "default") == 0
                           ? " (the default: the checkpoint does not record its head count; "
                             "give it with --heads)"
                           : "";
    if (C % H != 0)
        return ml_errf(err, "%s: hidden size %d is not a multiple of the %d attention heads%s",
                       ts->path, C, H, hint);
    if (c->pos == ML_POS_ROPE && (C / H) % 2 != 0)
        return ml_errf(err, "%s: rotary positions need an even head size, but %d / %d heads = "
                            "%d%s", ts->path, C, H, C / H, hint);
    if (c->embedding && c->input_size < 2)
        return ml_errf(err, "%s: embedding.weight has %d input columns; the 2 label columns "
                            "alone need 2", ts->path, c->input_size);
    m->feature_dim = c->input_size - 2;
    return 0;
}

static int seed_ignored(const char *name) {
    for (size_t i = 0; i < sizeof known_buffers / sizeof known_buffers[0]; i++)
        if (strcmp(name, known_buffers[i]) == 0) return 1;
    return 0;
}

/* Rotation tables as the reference computes them: freqs = 1 / 10000^(2i/d) and the angle
 * t * freqs[i] rounded to float32, cos and sin of that float. torch's pow is within 2 ulp of
 * the correctly rounded value used here (1e-5 of the angle at t = 100 at worst). */
int ml_rope_tables(ml_model *m, int len, ml_err *err) {
    int half = m->cfg.hidden_size / m->cfg.num_heads / 2;
    m->rope_cos = malloc(sizeof(float) * (size_t)len * (size_t)half);
    m->rope_sin = malloc(sizeof(float) * (size_t)len * (size_t)half);
    float *freqs = malloc(sizeof(float) * (size_t)half);
    if (!m->rope_cos || !m->rope_sin || !freqs) {
        free(freqs);
        return ml_errf(err, "out of memory for the rotary position tables");
    }
    int d = 2 * half;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)d;
        freqs[i] = 1.0f / (float)pow(10000.0, (double)e);
    }
    for (int t = 0; t < len; t++) {
        for (int i = 0; i < half; i++) {
            float angle = (float)t * freqs[i];
            m->rope_cos[(size_t)t * half + i] = (float)cos((double)angle);
            m->rope_sin[(size_t)t * half + i] = (float)sin((double)angle);
        }
    }
    m->rope_len = len;
    free(freqs);
    return 0;
}

static int label_columns(ml_model *m, ml_err *err) {
    int C = m->cfg.hidden_size, In = m->cfg.input_size;
    m->label_emb = calloc(2 * (size_t)C, sizeof(float));
    if (!m->label_emb) return ml_errf(err, "out of memory");
    for (int j = 0; j < 2; j++) {
        for (int c = 0; c < C; c++) {
            if (m->cfg.embedding)
                m->label_emb[(size_t)j * C + c] = m->params.emb_w[(size_t)c * In + j];
            else
                m->label_emb[(size_t)j * C + c] = c == j ? 1.0f : 0.0f;
        }
    }
    return 0;
}

/* vo_w[l] (C, C) = o_w[l] (C, C) @ v_w[l] (C, C), v_w the last third of qkv_w[l];
 * vo_b[l] (C) = o_w[l] @ v_b[l] + o_b[l]. */
int ml_fused_value_output(ml_model *m, ml_err *err) {
    const ml_params *p = &m->params;
    size_t C = (size_t)m->cfg.hidden_size, L = (size_t)m->cfg.num_layers;
    if (L == 0 || C == 0) return 0;
    m->vo_w = malloc(sizeof(float) * L * C * C);
    if (!m->vo_w) return ml_errf(err, "out of memory for the fused attention weights");
    if (p->qkv_b || p->o_b) {
        m->vo_b = calloc(L * C, sizeof(float));
        if (!m->vo_b) return ml_errf(err, "out of memory for the fused attention biases");
    }
    for (size_t l = 0; l < L; l++) {
        const float *wo = p->o_w + l * C * C, *wv = p->qkv_w + l * 3 * C * C + 2 * C * C;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)C, (int)C, (int)C, 1.0f, wo,
                    (int)C, wv, (int)C, 0.0f, m->vo_w + l * C * C, (int)C);
        if (p->o_b) memcpy(m->vo_b + l * C, p->o_b + l * C, sizeof(float) * C);
        if (p->qkv_b) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)C, (int)C, 1.0f, wo, (int)C,
                        p->qkv_b + l * 3 * C + 2 * C, 1, 1.0f, m->vo_b + l * C, 1);
        }
    }
    return 0;
}

static int bind_seed(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err) {
    m->generation = ML_GEN_SEED;
    if (detect_config(ts, heads_hint, m, err)) return -1;
    char what[160];
    snprintf(what, sizeof what, "the seed's transformer (variant %s, %s biases)",
             ml_posenc_name(m->cfg.pos), m->cfg.bias ? "with" : "without");
    if (ml_bind_params(m, ts, seed_walk, seed_ignored, what, err)) return -1;
    int rope_len = ML_ROPE_MIN_LEN;
    const ml_tensor *fc = ml_tensorset_find(ts, "freqs_cis");
    if (fc && fc->ndim >= 1 && fc->shape[0] > rope_len && fc->shape[0] <= ML_MAX_DIM)
        rope_len = (int)fc->shape[0];
    /* What the model was trained on: its learned positions, else the RoPE buffer the
     * research code saves (sequence_length rows), else a pickled config's field. */
    if (m->cfg.pos == ML_POS_LEARNED)
        m->trained_seq_len = m->cfg.max_seq_len;
    else if (fc && fc->ndim >= 1 && fc->shape[0] > 0 && fc->shape[0] <= ML_MAX_DIM)
        m->trained_seq_len = (int)fc->shape[0];
    else if (ml_tensorset_meta(ts, "sequence_length"))
        m->trained_seq_len = atoi(ml_tensorset_meta(ts, "sequence_length"));
    if (m->cfg.pos == ML_POS_ROPE && ml_rope_tables(m, rope_len, err)) return -1;
    if (ml_fused_value_output(m, err)) return -1;
    return label_columns(m, err);
}

int ml_model_from_tensorset(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err) {
    memset(m, 0, sizeof *m);
    const char *why = NULL;
    int rc = ml_is_later_generation(ts, &why) ? ml_bind_metalearner(m, ts, heads_hint, err)
                                              : bind_seed(m, ts, heads_hint, err);
    if (rc != 0) {
        ml_model_free(m);
        return -1;
    }
    m->path = strdup(ts->path ? ts->path : "<memory>");
    if (!m->path) {
        ml_model_free(m);
        return ml_errf(err, "out of memory");
    }
    m->format = ts->format;
    if (ml_model_prepare_gemm(m, ml_gemm_build_backend(), err) != 0) {
        ml_model_free(m);
        return -1;
    }
    const char *syn = ml_tensorset_meta(ts, "synthetic");
    m->synthetic = syn && strcmp(syn, "true") == 0;
    return 0;
}

int ml_model_load(ml_model *m, const char *path, int heads_hint, ml_err *err) {
    ml_tensorset ts;
    memset(m, 0, sizeof *m);
    if (ml_checkpoint_open(&ts, path, err) != 0) return -1;
    int rc = ml_model_from_tensorset(m, &ts, heads_hint, err);
    ml_tensorset_free(&ts);
    return rc;
}

void ml_model_free(ml_model *m) {
    if (!m) return;
    free(m->params_memory);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->label_emb);
    free(m->vo_w);
    free(m->vo_b);
    free(m->fb_col);
    free(m->lstm_b);
    ml_gemm_set_free(m->gemm);
    free(m->path);
    memset(m, 0, sizeof *m);
}
