/* Health, discovery, items, metrics and jobs: all answered in the I/O threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metalign/blas.h"
#include "util/buf.h"
#include "http/request.h"
#include "http/routes.h"

static const char *const no_args[] = {NULL};

void ml_respond_blob(ml_response *resp, int status, const ml_blob *b) {
    char *copy = malloc(b->len + 1);
    if (!copy) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return;
    }
    memcpy(copy, b->data, b->len + 1);
    ml_respond_raw(resp, status, "application/json", copy, b->len);
}

void ml_h_root(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)app;
    if (ml_request_check_args(req, no_args, resp) != 0) return;
    json_t *eps = json_array();
    for (int i = 0; i < ml_n_routes; i++)
        json_array_append_new(eps, json_sprintf("%s %s%s", ml_routes[i].method, ml_routes[i].path,
                                                ml_routes[i].path[strlen(ml_routes[i].path) - 1] == '/' &&
                                                        strlen(ml_routes[i].path) > 1
                                                    ? "<id>"
                                                    : ""));
    ml_respond_json(resp, 200, json_pack("{s:s,s:s,s:o}", "service", "metalignd", "version",
                                         ML_VERSION, "endpoints", eps));
}

void ml_h_healthz(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)app;
    (void)req;
    ml_respond_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

void ml_h_readyz(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)req;
    if (__atomic_load_n(&app->ready, __ATOMIC_ACQUIRE))
        ml_respond_json(resp, 200, json_pack("{s:s}", "status", "ready"));
    else
        ml_respond_error(resp, 503, "not_ready", "model and data are still loading");
}

static json_t *model_info(const ml_app *app) {
    const ml_model *m = &app->model;
    json_t *layers = json_array();
    char name[32];
    for (int i = 0; i < ml_model_num_outputs(m); i++)
        json_array_append_new(layers, json_string(ml_model_output_name(m, i, name, sizeof name)));
    json_t *info = json_pack(
        "{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:I,s:o,s:b,s:b,s:b,s:b}", "path", m->path, "format",
        m->format, "variant", ml_posenc_name(m->cfg.pos), "input_size", m->cfg.input_size,
        "hidden_size", m->cfg.hidden_size, "num_layers", m->cfg.num_layers, "num_heads",
        m->cfg.num_heads, "intermediate_size", m->cfg.intermediate_size, "parameters",
        (json_int_t)m->num_params, "layers", layers, "embedding", m->cfg.embedding, "bias",
        m->cfg.bias, "logit_bias", m->cfg.logit_bias, "synthetic", m->synthetic);
    json_object_set_new(info, "max_seq_len", json_integer(app->max_seq));
    return info;
}

static json_t *data_info(const ml_app *app) {
    const ml_dataset *d = &app->data;
    json_t *info = json_pack("{s:i,s:i,s:i,s:s,s:s,s:s,s:b,s:I,s:b}", "items", d->n_items,
                             "backbone_dim", d->backbone_dim, "target_dims", d->target_dims,
                             "backbone_path", d->backbone_path, "targets_path", d->targets_path,
                             "item_ids_path", d->ids_path, "synthetic", app->model.synthetic,
                             "backbone_rows", (json_int_t)d->backbone_rows, "per_image",
                             d->per_image);
    if (d->images_path) json_object_set_new(info, "things_images", json_string(d->images_path));
    return info;
}

void ml_h_info(ml_app *app, const ml_request *req, ml_response *resp) {
    if (ml_request_check_args(req, no_args, resp) != 0) return;
    json_t *server = json_pack("{s:i,s:i,s:s,s:I}", "compute_threads", app->threads,
                               "http_threads", app->cfg->http_threads, "blas_core",
                               ml_blas_core(), "started_at", (json_int_t)app->started_at);
    json_t *doc = json_pack("{s:s,s:o,s:o,s:o,s:o}", "version", ML_VERSION, "model",
                            model_info(app), "data", data_info(app), "human",
                            ml_human_info_json(app), "server", server);
    ml_respond_json(resp, 200, doc);
}

void ml_h_items(ml_app *app, const ml_request *req, ml_response *resp) {
    static const char *const args[] = {"offset", "limit", NULL};
    if (ml_request_check_args(req, args, resp) != 0) return;
    long long offset = 0, limit = 100;
    int n = app->data.n_items;
    if (ml_arg_int(req, "offset", 0, n, &offset, resp) != 0 ||
        ml_arg_int(req, "limit", 1, 10000, &limit, resp) != 0)
        return;
    json_t *items = json_array();
    for (long long i = offset; i < n && i < offset + limit; i++)
        json_array_append_new(items, json_pack("{s:I,s:s}", "index", (json_int_t)i, "id",
                                               app->data.ids[i]));
    ml_respond_json(resp, 200, json_pack("{s:i,s:I,s:I,s:o}", "total", n, "offset",
                                         (json_int_t)offset, "limit", (json_int_t)limit, "items",
                                         items));
}

void ml_h_metrics(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)req;
    ml_buf out = {0};
    ml_metrics_render(app->metrics, &out);
    int counts[5];
    ml_jobs_counts(app->jobs, counts);
    ml_buf_puts(&out, "# HELP metalignd_jobs Jobs in the table by status.\n"
                      "# TYPE metalignd_jobs gauge\n");
    for (int s = 0; s < 5; s++)
        ml_buf_printf(&out, "metalignd_jobs{status=\"%s\"} %d\n",
                      ml_job_status_name((ml_job_status)s), counts[s]);
    int interactive = 0, background = 0;
    ml_workers_load(app->workers, &interactive, &background);
    ml_buf_printf(&out, "# HELP metalignd_worker_tasks Tasks queued or running on the compute "
                        "workers.\n# TYPE metalignd_worker_tasks gauge\n"
                        "metalignd_worker_tasks{class=\"interactive\"} %d\n"
                        "metalignd_worker_tasks{class=\"background\"} %d\n",
                  interactive, background);
    int entries = 0;
    size_t bytes = 0;
    ml_lru_stats(app->results, &entries, &bytes);
    ml_buf_printf(&out, "# HELP metalignd_result_cache_entries Answers in the result cache.\n"
                        "# TYPE metalignd_result_cache_entries gauge\n"
                        "metalignd_result_cache_entries %d\n"
                        "# HELP metalignd_result_cache_bytes Bytes in the result cache.\n"
                        "# TYPE metalignd_result_cache_bytes gauge\n"
                        "metalignd_result_cache_bytes %zu\n",
                  entries, bytes);
    ml_human_metrics(app, &out);
    ml_buf_printf(&out, "# HELP metalignd_ready 1 once model and data are loaded.\n"
                        "# TYPE metalignd_ready gauge\nmetalignd_ready %d\n",
                  __atomic_load_n(&app->ready, __ATOMIC_ACQUIRE));
    size_t len = 0;
    char *text = ml_buf_take(&out, &len);
    if (!text) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return;
    }
    ml_respond_raw(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void job_not_found(const ml_request *req, ml_response *resp) {
    ml_respond_error(resp, 404, "job_not_found",
                     "no job \"%s\" (unknown, or its result expired; finished jobs are kept "
                     "for --job-ttl seconds)", req->path_param);
}

void ml_h_job_get(ml_app *app, const ml_request *req, ml_response *resp) {
    if (ml_request_check_args(req, no_args, resp) != 0) return;
    ml_job *j = ml_jobs_get(app->jobs, req->path_param);
    if (!j) {
        job_not_found(req, resp);
        return;
    }
    ml_buf out = {0};
    ml_job_render(j, &out);
    ml_job_release(j);
    size_t len = 0;
    char *text = ml_buf_take(&out, &len);
    if (!text) {
        ml_respond_error(resp, 500, "internal", "out of memory");
        return;
    }
    ml_respond_raw(resp, 200, "application/json", text, len);
}

void ml_h_job_delete(ml_app *app, const ml_request *req, ml_response *resp) {
    if (ml_request_check_args(req, no_args, resp) != 0) return;
    if (ml_jobs_cancel(app->jobs, req->path_param) != 0) {
        job_not_found(req, resp);
        return;
    }
    ml_h_job_get(app, req, resp);
}
