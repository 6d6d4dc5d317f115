/* What travels through Redis for a shared learning-curves job, as bytes: the job's request
 * (a line of text, so redis-cli shows it) and a chunk's outcome (its episodes' logits, and
 * for the later generation the predicted magnitudes after them, as little-endian float32,
 * behind a header naming the range). Items, labels, dims, lengths and fed magnitudes do not
 * travel: they are a pure function of (seed, episode) that the merging replica samples again,
 * and "correct", the loss and the accuracy are computed there from the logits by the same
 * code as a single daemon's (ml_sim_finish), so the merged answer has the same bits.
 * Decoders check every byte: Redis content is input like any other. */
#ifndef METALIGN_ENGINE_CHUNK_CODEC_H
#define METALIGN_ENGINE_CHUNK_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "metalign/err.h"
#include "metalign/simulate.h"
#include "util/buf.h"

#define ML_CHUNK_MAGIC "MLC1"
#define ML_CHUNK_HEADER 20         /* magic, e0, n, seq_len, columns (u32 LE each) */
#define ML_CHUNKS_MAX_PER_JOB 4096 /* chunks are made larger to stay below this */
#define ML_REQUEST_TEXT_MAX 65536  /* a request line longer than this is refused */

/* "v1 episodes=128 seq_len=100 seed=0 standardize=1 include_episodes=0 batch_size=64
 * n_boot=1000 dims=0,1,2" */
int ml_request_encode(const ml_sim_request *rq, ml_buf *out);
/* Parses exactly that form (every field once, nothing else); rq is owned by the caller
 * afterwards (ml_sim_request_free). Bounds are checked against the simulation's limits but
 * not against a model's (ml_sim_check does that). 0 or -1 with err. */
int ml_request_decode(const char *text, size_t len, ml_sim_request *rq, ml_err *err);

/* Episodes per chunk for a job of `episodes`: want (0: one forward call's worth of
 * max_rows rows), raised so that the job has at most ML_CHUNKS_MAX_PER_JOB chunks and to a
 * whole number of forward calls. */
int ml_chunk_episodes(int episodes, int seq_len, int want, int max_rows);
int ml_chunk_count(int episodes, int chunk_episodes);

/* The outcome of episodes [e0, e0 + n) of seq_len trials: n * seq_len logits, then as many
 * predicted magnitudes when mags is not NULL. */
int ml_chunk_encode(int e0, int n, int seq_len, const float *logits, const float *mags,
                    ml_buf *out);
/* Checks data is the chunk (e0, n, seq_len), with magnitudes exactly when mags is not NULL,
 * and copies them into logits and mags (n, S). */
int ml_chunk_decode(const void *data, size_t len, int e0, int n, int seq_len, float *logits,
                    float *mags, ml_err *err);

#endif
