/* The front door for checkpoint files: sniffs the format by content and runs its parser, which
 * fills an ml_tensorset (io/tensorset.h). A zip archive is a torch.save checkpoint, anything
 * else is read as safetensors; a legacy (pre-1.6) torch file gets an error that says how to
 * convert it. Every message starts with the file's name. */
#ifndef METALIGN_IO_CHECKPOINT_H
#define METALIGN_IO_CHECKPOINT_H

#include <stddef.h>

#include "io/tensorset.h"

int ml_checkpoint_open(ml_tensorset *ts, const char *path, ml_err *err);
/* The same over a caller-owned buffer that must outlive ts (tests, fuzzing). */
int ml_checkpoint_open_mem(ml_tensorset *ts, const char *name, const void *buf, size_t len,
                           ml_err *err);

#endif
