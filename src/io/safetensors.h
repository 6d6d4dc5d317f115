/* safetensors (MODEL.md section 6): an 8-byte little-endian header length, a JSON header,
 * then the data. */
#ifndef METALIGN_IO_SAFETENSORS_H
#define METALIGN_IO_SAFETENSORS_H

#include "io/tensorset.h"

/* Parses the header of the source ts was opened on and records every tensor. Messages need
 * not name the file: the caller (checkpoint.c) puts "<path>: " in front. */
int ml_safetensors_parse(ml_tensorset *ts, ml_err *err);

#endif
