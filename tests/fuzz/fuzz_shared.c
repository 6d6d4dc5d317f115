/* libFuzzer target: what the scale-out reads back from Redis or the command line, on the same
 * bytes: a job's request line, a chunk's outcome (checked against the range the input's
 * first bytes name) and a --redis URL. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chunk_codec.h"
#include "engine/redis_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ml_err err;
    ml_sim_request rq;
    if (ml_request_decode((const char *)data, size, &rq, &err) == 0) {
        ml_buf b = {0};
        ml_request_encode(&rq, &b); /* what it decodes to, it encodes back */
        ml_sim_request again;
        if (ml_request_decode(b.data, b.len, &again, &err) != 0) abort();
        if (again.episodes != rq.episodes || again.n_dims != rq.n_dims) abort();
        ml_sim_request_free(&again);
        ml_buf_free(&b);
        ml_sim_request_free(&rq);
    }
    if (size >= ML_CHUNK_HEADER) {
        int n = data[8] % 8, seq_len = data[12] % 8, e0 = data[4], with_mags = data[16] == 2;
        float *logits = malloc(sizeof(float) * (size_t)(n * seq_len + 1));
        float *mags = malloc(sizeof(float) * (size_t)(n * seq_len + 1));
        if (logits && mags)
            ml_chunk_decode(data, size, e0, n, seq_len, logits, with_mags ? mags : NULL, &err);
        free(logits);
        free(mags);
    }
    char *url = malloc(size + 1);
    if (url) {
        memcpy(url, data, size);
        url[size] = '\0';
        ml_redis_url u;
        ml_redis_url_parse(url, &u, &err);
        free(url);
    }
    return 0;
}
