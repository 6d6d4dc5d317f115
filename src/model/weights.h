/* Binding a checkpoint's tensors to the model (private to src/model and its tests). */
#ifndef METALIGN_MODEL_WEIGHTS_H
#define METALIGN_MODEL_WEIGHTS_H

#include "io/tensorset.h"
#include "metalign/model.h"

/* ml_model_load without the file: detects the variant from ts's names and shapes and copies
 * the weights into one parameter buffer. */
int ml_model_from_tensorset(ml_model *m, const ml_tensorset *ts, int heads_hint, ml_err *err);

#endif
