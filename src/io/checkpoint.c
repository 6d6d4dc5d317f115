#include "io/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/tensorset_build.h"
#include "io/torch_ckpt.h"

/* The start of a pre-1.6 torch.save file: pickle protocol 2, then the pickled long
 * 0x1950a86a20f9469cfc6c (torch.serialization's MAGIC_NUMBER) as LONG1 with 10 bytes. */
static const unsigned char legacy_torch_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                   0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static int is_legacy_torch(const ml_source *src) {
    unsigned char head[sizeof legacy_torch_magic];
    return src->size >= (int64_t)sizeof head &&
           ml_source_read(src, 0, (int64_t)sizeof head, head, NULL) == 0 &&
           memcmp(head, legacy_torch_magic, sizeof head) == 0;
}

/* Decides the format by content and runs its parser. Messages get the file name in front. */
static int parse(ml_tensorset *ts, ml_err *err) {
    int rc;
    if (ml_source_is_zip(&ts->src)) {
        ts->format = "pytorch";
        ts->zip = ml_source_open_zip(&ts->src, err);
        rc = ts->zip ? ml_torch_parse(ts, err) : -1;
    } else if (is_legacy_torch(&ts->src)) {
        rc = ml_errf(err, "this is a legacy (pre-1.6) torch.save file, which is not supported; "
                          "convert it with a PyTorch >= 1.6: torch.save(torch.load(path), "
                          "new_path) writes the default zip format");
    } else {
        ts->format = "safetensors";
        rc = ml_safetensors_parse(ts, err);
    }
    if (rc != 0) ml_err_prefix(err, "%s", ts->path);
    return rc;
}

static int finish_open(ml_tensorset *ts, ml_err *err) {
    ts->path = strdup(ts->src.name);
    if (!ts->path) ml_errf(err, "%s: out of memory", ts->src.name);
    if (!ts->path || parse(ts, err) != 0) {
        ml_tensorset_free(ts);
        return -1;
    }
    return 0;
}

int ml_checkpoint_open(ml_tensorset *ts, const char *path, ml_err *err) {
    ml_tensorset_init(ts);
    if (ml_source_open_file(&ts->src, path, "the checkpoint", err) != 0) return -1;
    return finish_open(ts, err);
}

int ml_checkpoint_open_mem(ml_tensorset *ts, const char *name, const void *buf, size_t len,
                           ml_err *err) {
    ml_tensorset_init(ts);
    if (ml_source_open_mem(&ts->src, name, buf, len, err) != 0) return -1;
    return finish_open(ts, err);
}
