/* Binding a later-generation checkpoint (MODEL.md section 7): a MetaLearnerConfig model, a
 * transformer, an LSTM or the static linear model. What the tensors say (type, width,
 * layers, MLP, embedding or mag_proj, biases, head width, the mag_std buffer) is checked
 * against the pickled config's fields where the checkpoint has them, and any disagreement is
 * refused naming both; without a config the tensors, the buffer and the dataclass defaults
 * decide. */
#include "model/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Name components only the later generation uses (the seed has embedding, self_attn,
 * final_ln, linear_head). */
static const char *const later_components[] = {
    "embed", "attn", "ln_f", "head_binary", "head_magnitude", "lstm", "mag_proj", "proj",
    "log_var_ce", "log_var_mse", "mag_std"};

/* State-dict entries that are not parameters of the pass: the loss weights (training only),
 * the mag_std buffer (read on its own) and a saved RoPE table (recomputed). */
static const char *const later_buffers[] = {"log_var_ce", "log_var_mse", "mag_std", "freqs_cis"};

#define CONFIG_CLASS "MetaLearnerConfig"
/* |config - buffer| allowed for mag_std: the buffer is float32, the config a Python float. */
#define MAG_STD_RTOL 1e-6

static int has_later_component(const char *name) {
    for (const char *p = name; *p;) {
        size_t len = strcspn(p, ".");
        for (size_t i = 0; i < sizeof later_components / sizeof *later_components; i++)
            if (strlen(later_components[i]) == len && strncmp(p, later_components[i], len) == 0)
                return 1;
        p += len;
        if (*p) p++;
    }
    return 0;
}

/* "metalign.model.MetaLearnerConfig", or the same class pickled from a script
 * ("__main__.MetaLearnerConfig"). */
static int is_config_class(const char *cls) {
    size_t n = strlen(cls), k = strlen(CONFIG_CLASS);
    return n >= k && strcmp(cls + n - k, CONFIG_CLASS) == 0 && (n == k || cls[n - k - 1] == '.');
}

int ml_is_later_generation(const ml_tensorset *ts, const char **why) {
    for (size_t k = 0; k < ts->n_tensors; k++)
        if (has_later_component(ts->tensors[k].name)) {
            *why = ts->tensors[k].name;
            return 1;
        }
    const char *cls = ml_tensorset_meta(ts, "__class__");
    if (cls && is_config_class(cls)) {
        *why = cls;
        return 1;
    }
    return 0;
}

static int later_ignored(const char *name) {
    for (size_t i = 0; i < sizeof later_buffers / sizeof *later_buffers; i++)
        if (strcmp(name, later_buffers[i]) == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The config's fields (metadata: the pickled object's scalar fields, or safetensors
 * __metadata__); -1 = not given */

typedef struct later_cfg {
    int model_type, x_sz, n_heads, int_sz, n_layers, sl, num_dims;
    int use_mlp, no_embed, bias, logit_bias;
    double mag_std;
    int has_mag_std;
    const char *act;
    int any;
} later_cfg;

static int cfg_int(const ml_tensorset *ts, const char *key, long lo, long hi, int *out,
                   int *any, ml_err *err) {
    const char *v = ml_tensorset_meta(ts, key);
    *out = -1;
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        return ml_errf(err, "%s: config field %s=\"%s\" is not an integer in [%ld, %ld]",
                       ts->path, key, v, lo, hi);
    *out = (int)x;
    *any = 1;
    return 0;
}

static int cfg_bool(const ml_tensorset *ts, const char *key, int *out, int *any, ml_err *err) {
    const char *v = ml_tensorset_meta(ts, key);
    *out = -1;
    if (!v) return 0;
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "0"))
        *out = 0;
    else
        return ml_errf(err, "%s: config field %s=\"%s\" is not a boolean", ts->path, key, v);
    *any = 1;
    return 0;
}

static int read_config(const ml_tensorset *ts, later_cfg *c, ml_err *err) {
    memset(c, 0, sizeof *c);
    int *a = &c->any;
    if (cfg_int(ts, "x_sz", 1, ML_MAX_DIM, &c->x_sz, a, err) ||
        cfg_int(ts, "n_heads", 1, ML_MAX_DIM, &c->n_heads, a, err) ||
        cfg_int(ts, "int_sz", 1, ML_MAX_DIM, &c->int_sz, a, err) ||
        cfg_int(ts, "n_layers", 0, ML_MAX_LAYERS, &c->n_layers, a, err) ||
        cfg_int(ts, "sl", 1, ML_MAX_DIM, &c->sl, a, err) ||
        cfg_int(ts, "num_dims", 1, ML_MAX_DIM, &c->num_dims, a, err) ||
        cfg_bool(ts, "use_mlp", &c->use_mlp, a, err) ||
        cfg_bool(ts, "no_embed", &c->no_embed, a, err) ||
        cfg_bool(ts, "bias", &c->bias, a, err) ||
        cfg_bool(ts, "logit_bias", &c->logit_bias, a, err))
        return -1;
    c->model_type = -1;
    const char *t = ml_tensorset_meta(ts, "model_type");
    if (t) {
        static const ml_arch archs[] = {ML_ARCH_TRANSFORMER, ML_ARCH_LSTM, ML_ARCH_STATIC_LINEAR};
        for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
            if (!strcmp(t, ml_arch_name(archs[i]))) c->model_type = (int)archs[i];
        if (c->model_type < 0)
            return ml_errf(err, "%s: config field model_type=\"%s\" is not one of transformer, "
                                "lstm, static_linear", ts->path, t);
        c->any = 1;
    }
    const char *ms = ml_tensorset_meta(ts, "mag_std");
    if (ms) {
        char *end;
        c->mag_std = strtod(ms, &end);
        if (end == ms || *end || !isfinite(c->mag_std) || c->mag_std <= 0)
            return ml_errf(err, "%s: config field mag_std=\"%s\" is not a positive number",
                           ts->path, ms);
        c->has_mag_std = c->any = 1;
    }
    c->act = ml_tensorset_meta(ts, "act");
    if (c->act) c->any = 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * What the tensors say, and the two compared */

/* A field the config gives (>= 0) must be what the tensors say (`where` tells how). */
static int check_field(const ml_tensorset *ts, const char *field, int cfg_value, int tensor_value,
                       const char *where, ml_err *err) {
    if (cfg_value < 0 || cfg_value == tensor_value) return 0;
    return ml_errf(err, "%s: the checkpoint's config says %s=%d but its tensors say %s=%d (%s); "
                        "the config and the weights disagree", ts->path, field, cfg_value, field,
                   tensor_value, where);
}

/* The same for a boolean field (-1: not given). */
static int check_flag(const ml_tensorset *ts, const char *field, int cfg_value, int tensor_value,
                      const char *where, ml_err *err) {
    if (cfg_value < 0 || cfg_value == tensor_value) return 0;
    return ml_errf(err, "%s: the checkpoint's config says %s=%s but its tensors say %s=%s (%s); "
                        "the config and the weights disagree", ts->path, field,
                   cfg_value ? "true" : "false", field, tensor_value ? "true" : "false", where);
}

/* The model type from the tensors, checked against the config's. */
static int detect_type(const ml_tensorset *ts, const later_cfg *lc, ml_arch *type, ml_err *err) {
    static const struct {
        ml_arch arch;
        const char *marker;
    } markers[] = {{ML_ARCH_TRANSFORMER, "layers.0.attn.qkv.weight"},
                   {ML_ARCH_LSTM, "lstm.weight_ih_l0"},
                   {ML_ARCH_STATIC_LINEAR, "proj.weight"}};
    int found = -1;
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
        if (!ml_tensorset_find(ts, markers[i].marker)) continue;
        if (found >= 0)
            return ml_errf(err, "%s: tensors %s and %s belong to two model types (%s and %s)",
                           ts->path, markers[found].marker, markers[i].marker,
                           ml_arch_name(markers[found].arch), ml_arch_name(markers[i].arch));
        found = (int)i;
    }
    if (found < 0 && lc->model_type < 0)
        return ml_errf(err, "%s: a later-generation (MetaLearnerConfig) checkpoint, but none of "
                            "layers.0.attn.qkv.weight (transformer), lstm.weight_ih_l0 (lstm) "
                            "or proj.weight (static_linear) is present, and no config says "
                            "which model it is", ts->path);
    if (found >= 0 && lc->model_type >= 0 && (ml_arch)lc->model_type != markers[found].arch)
        return ml_errf(err, "%s: the checkpoint's config says model_type=%s but its tensors are "
                            "a %s's (%s); the config and the weights disagree", ts->path,
                       ml_arch_name((ml_arch)lc->model_type), ml_arch_name(markers[found].arch),
                       markers[found].marker);
    *type = found >= 0 ? markers[found].arch : (ml_arch)lc->model_type;
    return 0;
}

static const char *later_what = "a later-generation (MetaLearnerConfig) model";

/* Sizes and switches from the tensors into m->meta / m->cfg, checked against lc. */
static int detect(ml_model *m, const ml_tensorset *ts, const later_cfg *lc, ml_err *err) {
    ml_metalearner_config *mc = &m->meta;
    ml_arch type = ML_ARCH_TRANSFORMER;
    if (detect_type(ts, lc, &type, err)) return -1;
    mc->model_type = type;
    int C, K;
    if (ml_tensor_dim(ts, "ln_f.weight", 1, 0, &C, later_what, err) ||
        ml_tensor_dim(ts, "head_binary.weight", 2, 0, &K, later_what, err))
        return -1;
    int seq = type != ML_ARCH_STATIC_LINEAR;
    int D = C;
    if (!seq && ml_tensor_dim(ts, "proj.weight", 2, 1, &D, later_what, err)) return -1;
    if (seq) {
        mc->no_embed = ml_tensorset_find(ts, "mag_proj.weight") &&
                       !ml_tensorset_find(ts, "embed.weight");
        mc->bias = ml_tensorset_find(ts, mc->no_embed ? "mag_proj.bias" : "embed.bias") != NULL;
    } else {
        mc->bias = ml_tensorset_find(ts, "proj.bias") != NULL;
    }
    mc->logit_bias = ml_tensorset_find(ts, "head_binary.bias") != NULL;
    int L = 0;
    if (type == ML_ARCH_TRANSFORMER && ml_count_indexed(ts, "layers.", '.', &L, err)) return -1;
    if (type == ML_ARCH_LSTM && ml_count_indexed(ts, "lstm.weight_ih_l", '\0', &L, err))
        return -1;
    mc->use_mlp = 0;
    int I = 0;
    if (type == ML_ARCH_TRANSFORMER && L > 0) {
        mc->use_mlp = ml_tensorset_find(ts, "layers.0.mlp.fc1.weight") != NULL;
        if (mc->use_mlp && ml_tensor_dim(ts, "layers.0.mlp.fc1.weight", 2, 0, &I, later_what, err))
            return -1;
    }
    if (check_field(ts, "x_sz", lc->x_sz, D,
                    seq ? "the width of ln_f.weight" : "the columns of proj.weight", err) ||
        check_flag(ts, "bias", lc->bias, mc->bias,
                    seq ? (mc->no_embed ? "mag_proj.bias" : "embed.bias") : "proj.bias", err) ||
        check_flag(ts, "logit_bias", lc->logit_bias, mc->logit_bias, "head_binary.bias",
                   err))
        return -1;
    if (seq && (check_field(ts, "n_layers", lc->n_layers, L,
                            type == ML_ARCH_LSTM ? "lstm.weight_ih_l<k>" : "layers.<i>.*", err) ||
                check_flag(ts, "no_embed", lc->no_embed, mc->no_embed,
                            "mag_proj.weight without embed.weight", err)))
        return -1;
    if (type == ML_ARCH_TRANSFORMER && L > 0 &&
        (check_flag(ts, "use_mlp", lc->use_mlp, mc->use_mlp, "layers.0.mlp.fc1.weight", err) ||
         (mc->use_mlp &&
          check_field(ts, "int_sz", lc->int_sz, I, "the rows of layers.0.mlp.fc1.weight", err))))
        return -1;
    if (!seq && check_field(ts, "num_dims", lc->num_dims, K, "the rows of head_binary.weight",
                            err))
        return -1;
    if (seq && K != 1)
        return ml_errf(err, "%s: head_binary.weight has %d rows, but a %s predicts one label per "
                            "trial (1 row)", ts->path, K, ml_arch_name(type));
    if (mc->use_mlp && lc->act && strcmp(lc->act, "gelu") != 0)
        return ml_errf(err, "%s: config field act=\"%s\": only the exact GELU (\"gelu\") is "
                            "supported", ts->path, lc->act);
    mc->x_sz = D;
    mc->n_layers = L;
    mc->int_sz = I;
    mc->num_dims = K;
    mc->sl = lc->sl > 0 ? lc->sl : 0;
    mc->from_config = lc->any;
    m->feature_dim = D;
    ml_model_config *c = &m->cfg;
    c->hidden_size = C;
    c->input_size = seq ? C + 1 : D;
    c->intermediate_size = I;
    c->num_layers = L;
    c->embedding = seq && !mc->no_embed;
    c->bias = mc->bias;
    c->logit_bias = mc->logit_bias;
    c->pos = ML_POS_ROPE;
    c->max_seq_len = type == ML_ARCH_TRANSFORMER ? mc->sl : 0;
    return 0;
}

/* mag_std: the buffer, the config's field (which must agree), else 1. */
static int read_mag_std(ml_model *m, const ml_tensorset *ts, const later_cfg *lc, ml_err *err) {
    m->meta.mag_std = 1.0f;
    const ml_tensor *t = ml_tensorset_find(ts, "mag_std");
    if (t) {
        if (ml_tensor_numel(t) != 1)
            return ml_errf(err, "%s: tensor mag_std has %lld elements; the buffer is a scalar",
                           ts->path, (long long)ml_tensor_numel(t));
        float v;
        if (ml_tensorset_read_f32(ts, t, &v, err)) return -1;
        if (!isfinite(v) || v <= 0)
            return ml_errf(err, "%s: tensor mag_std is %g; the magnitude scale must be positive",
                           ts->path, (double)v);
        if (lc->has_mag_std && fabs(lc->mag_std - v) > MAG_STD_RTOL * fabs(lc->mag_std))
            return ml_errf(err, "%s: the checkpoint's config says mag_std=%.9g but its mag_std "
                                "buffer holds %.9g; the config and the weights disagree",
                           ts->path, lc->mag_std, (double)v);
        m->meta.mag_std = v;
    } else if (lc->has_mag_std) {
        m->meta.mag_std = (float)lc->mag_std;
    }
    return 0;
}

static int resolve_heads(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err) {
    int H;
    const char *source;
    /* Also for models without attention: a --heads that contradicts the config is refused. */
    if (ml_resolve_heads(ts, "n_heads", heads_hint, &H, &source, err)) return -1;
    if (m->meta.model_type != ML_ARCH_TRANSFORMER) {
        m->meta.n_heads = ml_tensorset_meta(ts, "n_heads") ? H : 0;
        return 0;
    }
    int C = m->cfg.hidden_size;
    const char *hint = strcmp(source, "default") == 0
                           ? " (the default: the checkpoint has no config with n_heads; give "
                             "the count with --heads)"
                           : "";
    if (C % H != 0)
        return ml_errf(err, "%s: the later-generation transformer's width %d is not a multiple "
                            "of the %d attention heads%s", ts->path, C, H, hint);
    if ((C / H) % 2 != 0)
        return ml_errf(err, "%s: rotary positions need an even head size, but the "
                            "later-generation transformer's width %d / %d heads = %d%s",
                       ts->path, C, H, C / H, hint);
    m->meta.n_heads = m->cfg.num_heads = H;
    m->heads_source = source;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * The parameters */

static int take1(ml_binder *b, float **f, const char *name, int64_t d0, ml_err *err) {
    return ml_bind_take(b, f, 0, "", name, 1, d0, 0, err);
}

static int take2(ml_binder *b, float **f, const char *name, int64_t d0, int64_t d1, ml_err *err) {
    return ml_bind_take(b, f, 0, "", name, 2, d0, d1, err);
}

static int walk_blocks(ml_binder *b, ml_model *m, ml_err *err) {
    ml_params *p = &m->params;
    int64_t C = m->cfg.hidden_size, I = m->meta.int_sz;
    int L = m->cfg.num_layers, bias = m->meta.bias;
    const char *lp = "layers.";
    if (ml_bind_take(b, &p->ln1_w, L, lp, ".ln1.weight", 1, C, 0, err) ||
        ml_bind_take(b, &p->ln1_b, L, lp, ".ln1.bias", 1, C, 0, err) ||
        ml_bind_take(b, &p->qkv_w, L, lp, ".attn.qkv.weight", 2, 3 * C, C, err) ||
        (bias && ml_bind_take(b, &p->qkv_b, L, lp, ".attn.qkv.bias", 1, 3 * C, 0, err)) ||
        ml_bind_take(b, &p->o_w, L, lp, ".attn.o_proj.weight", 2, C, C, err) ||
        (bias && ml_bind_take(b, &p->o_b, L, lp, ".attn.o_proj.bias", 1, C, 0, err)))
        return -1;
    if (!m->meta.use_mlp) return 0;
    return ml_bind_take(b, &p->ln2_w, L, lp, ".ln2.weight", 1, C, 0, err) ||
                   ml_bind_take(b, &p->ln2_b, L, lp, ".ln2.bias", 1, C, 0, err) ||
                   ml_bind_take(b, &p->fc1_w, L, lp, ".mlp.fc1.weight", 2, I, C, err) ||
                   (bias && ml_bind_take(b, &p->fc1_b, L, lp, ".mlp.fc1.bias", 1, I, 0, err)) ||
                   ml_bind_take(b, &p->fc2_w, L, lp, ".mlp.fc2.weight", 2, C, I, err) ||
                   (bias && ml_bind_take(b, &p->fc2_b, L, lp, ".mlp.fc2.bias", 1, C, 0, err))
               ? -1
               : 0;
}

static int walk_lstm(ml_binder *b, ml_model *m, ml_err *err) {
    ml_params *p = &m->params;
    int64_t C = m->cfg.hidden_size;
    int L = m->cfg.num_layers;
    return ml_bind_take(b, &p->lstm_wih, L, "lstm.weight_ih_l", "", 2, 4 * C, C, err) ||
                   ml_bind_take(b, &p->lstm_whh, L, "lstm.weight_hh_l", "", 2, 4 * C, C, err) ||
                   ml_bind_take(b, &p->lstm_bih, L, "lstm.bias_ih_l", "", 1, 4 * C, 0, err) ||
                   ml_bind_take(b, &p->lstm_bhh, L, "lstm.bias_hh_l", "", 1, 4 * C, 0, err)
               ? -1
               : 0;
}

static int later_walk(ml_binder *b, ml_model *m, ml_err *err) {
    const ml_metalearner_config *mc = &m->meta;
    ml_params *p = &m->params;
    int64_t C = m->cfg.hidden_size, K = mc->num_dims, D = mc->x_sz;
    int bias = mc->bias;
    snprintf(b->context, sizeof b->context, "the other tensors give a later-generation %s of "
             "width %d, %d layers%s, heads of width %d", ml_arch_name(mc->model_type), (int)C, mc->n_layers,
             mc->use_mlp ? " with an MLP" : "", (int)K);
    switch (mc->model_type) {
    case ML_ARCH_TRANSFORMER:
    case ML_ARCH_LSTM:
        if (mc->no_embed) {
            if (take2(b, &p->magproj_w, "mag_proj.weight", C, 1, err) ||
                (bias && take1(b, &p->magproj_b, "mag_proj.bias", C, err)))
                return -1;
        } else if (take2(b, &p->emb_w, "embed.weight", C, C + 1, err) ||
                   (bias && take1(b, &p->emb_b, "embed.bias", C, err))) {
            return -1;
        }
        if ((mc->model_type == ML_ARCH_TRANSFORMER ? walk_blocks : walk_lstm)(b, m, err))
            return -1;
        break;
    case ML_ARCH_STATIC_LINEAR:
        if (take2(b, &p->proj_w, "proj.weight", C, D, err) ||
            (bias && take1(b, &p->proj_b, "proj.bias", C, err)))
            return -1;
        break;
    }
    if (take1(b, &p->lnf_w, "ln_f.weight", C, err) || take1(b, &p->lnf_b, "ln_f.bias", C, err) ||
        take2(b, &p->head_w, "head_binary.weight", K, C, err) ||
        (mc->logit_bias && take1(b, &p->head_b, "head_binary.bias", K, err)) ||
        take2(b, &p->mag_w, "head_magnitude.weight", K, C, err) ||
        (mc->logit_bias && take1(b, &p->mag_b, "head_magnitude.bias", K, err)))
        return -1;
    return 0;
}

/* fb_col (the magnitude column of the embedding) and lstm_b (b_ih + b_hh). */
static int derived(ml_model *m, ml_err *err) {
    const ml_params *p = &m->params;
    size_t C = (size_t)m->cfg.hidden_size, L = (size_t)m->cfg.num_layers;
    if (m->meta.model_type != ML_ARCH_STATIC_LINEAR) {
        m->fb_col = malloc(sizeof(float) * C);
        if (!m->fb_col) return ml_errf(err, "out of memory");
        for (size_t c = 0; c < C; c++)
            m->fb_col[c] = m->meta.no_embed ? p->magproj_w[c] : p->emb_w[c * (C + 1)];
    }
    if (m->meta.model_type == ML_ARCH_LSTM && L > 0) {
        m->lstm_b = malloc(sizeof(float) * L * 4 * C);
        if (!m->lstm_b) return ml_errf(err, "out of memory");
        for (size_t i = 0; i < L * 4 * C; i++) m->lstm_b[i] = p->lstm_bih[i] + p->lstm_bhh[i];
    }
    if (m->meta.model_type == ML_ARCH_TRANSFORMER) {
        int len = m->meta.sl > ML_ROPE_MIN_LEN ? m->meta.sl : ML_ROPE_MIN_LEN;
        if (ml_rope_tables(m, len, err) || ml_fused_value_output(m, err)) return -1;
    }
    return 0;
}

/* A config of another class beside later-generation tensors, or this generation's config
 * beside the seed's tensors, is a mix-up worth naming. */
static int check_class(const ml_tensorset *ts, ml_err *err) {
    const char *cls = ml_tensorset_meta(ts, "__class__");
    const char *example = NULL;
    for (size_t k = 0; k < ts->n_tensors && !example; k++)
        if (has_later_component(ts->tensors[k].name)) example = ts->tensors[k].name;
    if (cls && !is_config_class(cls) && example)
        return ml_errf(err, "%s: tensor %s is the later generation's, but the checkpoint's "
                            "config is a %s, not a metalign.model.MetaLearnerConfig", ts->path,
                       example, cls);
    if (!example)
        return ml_errf(err, "%s: the checkpoint's config is a %s, but none of its tensors is "
                            "the later generation's (embed, layers.*.attn, lstm, proj, ln_f, "
                            "head_binary, ...)%s%s", ts->path, cls ? cls : CONFIG_CLASS,
                       ts->n_tensors ? "; e.g. " : "",
                       ts->n_tensors ? ts->tensors[0].name : "");
    return 0;
}

int ml_bind_metalearner(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err) {
    m->generation = ML_GEN_METALEARNER;
    later_cfg lc;
    if (check_class(ts, err) || read_config(ts, &lc, err) || detect(m, ts, &lc, err) ||
        read_mag_std(m, ts, &lc, err) || resolve_heads(m, ts, heads_hint, err))
        return -1;
    char what[160];
    snprintf(what, sizeof what, "%s (%s%s%s)", later_what, ml_arch_name(m->meta.model_type),
             m->meta.bias ? ", with biases" : ", without biases",
             m->meta.no_embed ? ", no_embed" : "");
    if (ml_bind_params(m, ts, later_walk, later_ignored, what, err)) return -1;
    return derived(m, err);
}
