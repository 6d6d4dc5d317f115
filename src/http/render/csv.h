/* The tidy tables of ?format=csv (pandas: pd.read_csv(url)), from the same structs the JSON
 * renderers read. Two shapes are shared by several endpoints, so their rows line up when
 * tables are concatenated:
 * - the curve table, one row per side, dimension and trial:
 *     model,dimension,trial,p_correct,ci_low,ci_high,n
 *   (dimension empty, NaN in pandas, on the rows over all dimensions; the interval empty when
 *   none was asked for or a trial has no observation);
 * - the trial table, the notebook's long table all_data, one row per single trial:
 *     dimension,trial,correct,participant,model
 *   so sns.lineplot(data=pd.read_csv(url), x="trial", y="correct", hue="model") redraws the
 *   notebook's figure. A new endpoint with trial-level rows (the replay) writes them with
 *   ml_csv_trial_row and its own extra tables with util/csv_writer.h. */
#ifndef METALIGN_HTTP_RENDER_CSV_H
#define METALIGN_HTTP_RENDER_CSV_H

#include "engine/compare.h"
#include "metalign/curve.h"
#include "metalign/human_csv.h"
#include "metalign/human_curves.h"
#include "metalign/simulate.h"
#include "util/csv_writer.h"

#define ML_SIDE_MODEL "Meta-Learned" /* the notebook's hue names */
#define ML_SIDE_HUMAN "Human"

void ml_csv_curves_begin(ml_csv *c, ml_buf *out);
/* The rows of one curve over its first n_trials trials; dimension -1: all dimensions. */
void ml_csv_curve(ml_csv *c, const char *side, int dimension, const ml_curve *curve,
                  int n_trials);
void ml_csv_sim_curves(ml_csv *c, const ml_sim_curves *curves, int seq_len);
void ml_csv_human_curves(ml_csv *c, const ml_human_curves *h);
/* Both sides of a comparison over the trials compared. */
void ml_csv_comparison(ml_csv *c, const ml_comparison *cmp);

void ml_csv_trials_begin(ml_csv *c, ml_buf *out);
void ml_csv_trial_row(ml_csv *c, int dimension, int trial, int correct, const char *participant,
                      const char *side);
/* Every trial of every episode; the participant is the episode's index (the notebook's). */
void ml_csv_trials_model(ml_csv *c, const ml_sim_result *res);
/* The humans' rows with trial <= max_trial (the notebook's filter), those of the dimensions
 * in dims when dims is not NULL, in the CSV's order; participant as the CSV names it. */
void ml_csv_trials_human(ml_csv *c, const ml_human_data *d, int max_trial, const int *dims,
                         int n_dims);

/* The bar plot: one row per side and dimension (and the overall, dimension empty):
 *     model,dimension,mean_p_correct,ci_low,ci_high,n
 * mean over single trials with its seeded bootstrap interval (compare.h). */
void ml_csv_comparison_summary(ml_csv *c, ml_buf *out, const ml_comparison *cmp);

#endif
