/* What /v1/info says about the model's generation (API.md "The later generation"): the
 * fields both generations have, and what a MetaLearnerConfig governs (as --check prints it). */
#include <stdio.h>
#include <stdlib.h>

#include "http/render/render.h"

/* A float32 config value as its shortest decimal (0.6, not 0.60000002384). */
static double shortest(float v) {
    char buf[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) return strtod(buf, NULL);
    }
    return (double)v;
}

static const char *feedback_name(ml_feedback f) {
    switch (f) {
    case ML_FEEDBACK_LABELS: return "labels";
    case ML_FEEDBACK_MAGNITUDES: return "magnitudes";
    case ML_FEEDBACK_NONE: return "none";
    }
    return "?";
}

void ml_render_model_generation(ml_jw *w, const ml_model *m) {
    ml_jw_kstring(w, "generation", ml_generation_name(m->generation));
    ml_jw_kstring(w, "model_type", ml_arch_name(ml_model_arch(m)));
    ml_jw_kstring(w, "feedback", feedback_name(ml_model_feedback(m)));
    ml_jw_kint(w, "logit_dims", ml_model_logit_dims(m));
    ml_jw_kbool(w, "magnitudes", ml_model_has_magnitudes(m));
    ml_jw_key(w, "mag_std");
    if (m->generation == ML_GEN_SEED) {
        ml_jw_null(w);
        return;
    }
    const ml_metalearner_config *c = &m->meta;
    if (c->model_type == ML_ARCH_STATIC_LINEAR) /* no feedback, so no scale */
        ml_jw_null(w);
    else
        ml_jw_double(w, shortest(c->mag_std));
    ml_jw_key(w, "heads_source");
    if (m->heads_source)
        ml_jw_string(w, m->heads_source);
    else
        ml_jw_null(w);
    ml_jw_kbool(w, "use_mlp", c->use_mlp);
    ml_jw_kbool(w, "no_embed", c->no_embed);
    ml_jw_key(w, "sl");
    if (c->sl > 0)
        ml_jw_int(w, c->sl);
    else
        ml_jw_null(w);
    ml_jw_kbool(w, "config_in_checkpoint", c->from_config);
}
