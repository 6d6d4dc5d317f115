/* torch.save checkpoints (zip format, PyTorch >= 1.6; MODEL.md section 6): the pickle's
 * tensors, their storages and the scalar fields (and class, "__class__") of a pickled config
 * object. */
#ifndef METALIGN_IO_TORCH_CKPT_H
#define METALIGN_IO_TORCH_CKPT_H

#include "io/tensorset.h"

/* Parses the zip archive ts was opened on (ts->zip is set). Messages need not name the file:
 * the caller (checkpoint.c) puts "<path>: " in front. */
int ml_torch_parse(ml_tensorset *ts, ml_err *err);

#endif
