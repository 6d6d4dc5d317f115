/* libFuzzer target: the human CSV parser, then what is built on what it accepted: the curves,
 * and, when the replay's columns are there, the replay's numerics on rows taken from it (the
 * panel of participants x trials with its bootstrap and noise ceiling, the temperature fit,
 * the baseline learner on the first participant's rows). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/render/render.h"
#include "metalign/baseline.h"
#include "metalign/human_csv.h"
#include "metalign/human_curves.h"
#include "metalign/panel.h"
#include "metalign/temperature.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_T 64
#define MAX_P 64
#define MAX_SEQ 48
#define D 6

static void replay_numerics(const ml_human_data *d) {
    /* every interned string is reachable and the image parts are in range */
    for (size_t i = 0; i < d->images.n; i++) {
        if (d->image_concept[i] >= 0 && (size_t)d->image_concept[i] >= d->concepts.n) abort();
        if (d->image_file[i] < 0 || (size_t)d->image_file[i] >= d->files.n) abort();
        (void)strlen(ml_strtab_get(&d->images, i));
    }
    for (size_t i = 0; i < d->n_participants; i++)
        (void)strlen(ml_strtab_get(&d->participant_names, i));
    size_t P = d->n_participants < MAX_P ? d->n_participants : MAX_P;
    uint8_t *has = calloc(P * MAX_T, 1);
    double *v = calloc(P * MAX_T, sizeof *v), *z = malloc(d->n_rows * sizeof *z);
    uint8_t *choice = malloc(d->n_rows), *y = malloc(MAX_SEQ);
    float *X = calloc(MAX_SEQ * D, sizeof *X);
    double *K = malloc(MAX_SEQ * MAX_SEQ * sizeof *K), *zb = malloc(MAX_SEQ * sizeof *zb);
    size_t seq[MAX_P], n = 0, m = 0;
    ml_err err;
    for (size_t i = 0; i < d->n_rows; i++) {
        if ((size_t)d->participant[i] < P && d->trial[i] < MAX_T) {
            has[(size_t)d->participant[i] * MAX_T + (size_t)d->trial[i]] = 1;
            v[(size_t)d->participant[i] * MAX_T + (size_t)d->trial[i]] = d->correct[i];
        }
        z[i] = (double)(d->trial[i] % 9) - 4.0 + (d->image[i] >= 0 ? 0.5 : 0);
        choice[i] = d->choice[i] == 1;
        if (d->participant[i] == 0 && m < MAX_SEQ && d->label[i] != ML_HUMAN_NA) {
            y[m] = d->label[i];
            for (int k = 0; k < D; k++)
                X[m * D + (size_t)k] = (float)(((d->image[i] + 3) * (k + 1)) % 5) - 2.0f;
            m++;
        }
    }
    for (size_t p = 0; p < P; p++) seq[n++] = p;
    ml_panel panel = {.n_seq = P, .n_trials = MAX_T, .has = has, .series = {v}, .n_series = 1};
    ml_panel_curve c;
    if (ml_panel_curves(&panel, seq, n, 16, 95.0, 1, 2, &c, &err) == 0) ml_panel_curve_free(&c);
    ml_noise_ceiling nc;
    ml_noise_ceiling_compute(&panel, 0, seq, n, 8, 1, 3, &nc, &err);
    ml_temp_fit tf;
    ml_temperature_fit(z, choice, d->n_rows, &tf);
    if (!(tf.temperature > 0)) abort();
    if (ml_baseline_gram(X, m, D, K, &err) == 0)
        ml_baseline_sequence(K, y, m, ML_BASELINE_C, zb, NULL, NULL, &err);
    free(has), free(v), free(z), free(choice), free(y), free(X), free(K), free(zb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ml_human_data d;
    ml_fetch_code code;
    ml_err err;
    if (ml_human_csv_parse((const char *)data, size, "fuzz.csv", &d, &code, &err) != 0) return 0;
    ml_human_curves c;
    int max_trial = d.max_trial < 200 ? d.max_trial : 200;
    if (ml_human_curves_compute(&d, max_trial < 0 ? 0 : max_trial, 1, 20, &c, &err) == 0) {
        ml_human_status st = {.url = "fuzz.csv", .cached = 1};
        ml_buf out = {0};
        ml_jw w;
        ml_jw_init(&w, &out);
        ml_render_human_curves(&w, &c, &st);
        if (ml_jw_finish(&w) != 0) abort(); /* a non-finite value reached the answer */
        json_t *doc = json_loadb(out.data, out.len, 0, NULL);
        if (!doc) abort();
        json_decref(doc);
        ml_buf_free(&out);
        ml_human_curves_free(&c);
    }
    if (!d.replay_problem) replay_numerics(&d);
    ml_human_data_free(&d);
    return 0;
}
