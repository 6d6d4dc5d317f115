/* Health, discovery, items, metrics and jobs: all answered in the I/O threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/human_metrics.h"
#include "engine/human_store.h"
#include "engine/shared.h"
#include "http/handlers/handlers.h"
#include "http/http.h"
#include "http/render/render.h"
#include "http/routes.h"
#include "metalign/blas.h"
#include "util/timefmt.h"

static const char *const no_args[] = {NULL};

#define ML_SPOSE_DIMS 66 /* spose_embedding_66d_sorted.txt, whose dims 0-2 the notebook names */


/* The common preamble of routes that take neither arguments nor a body. */
static int plain_get(const ml_request *req, ml_response *resp) {
    return ml_request_check_args(req, no_args, resp) != 0 || ml_request_no_body(req, resp) != 0
               ? -1
               : 0;
}

int ml_answer_from_cache(ml_app *app, const char *key, ml_response *resp) {
    ml_blob *b = ml_lru_get_blob(app->results, key);
    if (!b) return 0;
    ml_respond_blob(resp, 200, ML_CT_JSON, b);
    ml_blob_unref(b);
    return 1;
}

void ml_h_root(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)app;
    if (plain_get(req, resp) != 0) return;
    json_t *eps = json_array();
    for (int i = 0; i < ml_n_routes; i++) {
        const char *p = ml_routes[i].path;
        size_t n = strlen(p);
        json_array_append_new(eps, json_sprintf("%s %s%s", ml_routes[i].method, p,
                                                n > 1 && p[n - 1] == '/' ? "<id>" : ""));
    }
    ml_respond_json(resp, 200, json_pack("{s:s,s:s,s:o}", "service", "metalignd", "version",
                                         ML_VERSION, "endpoints", eps));
}

void ml_h_healthz(ml_app *app, const ml_request *req, ml_response *resp) {
    (void)app;
    if (plain_get(req, resp) != 0) return;
    ml_respond_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

void ml_h_readyz(ml_app *app, const ml_request *req, ml_response *resp) {
    if (plain_get(req, resp) != 0) return;
    if (ml_app_is_stopping(app))
        ml_respond_unavailable(resp, 1, "shutting_down",
                               "the server is shutting down; send requests elsewhere");
    else if (ml_app_is_ready(app) && app->shared && !ml_shared_ready(app, resp))
        return; /* answered: the shared store does not answer */
    else if (ml_app_is_ready(app))
        ml_respond_json(resp, 200, json_pack("{s:s}", "status", "ready"));
    else
        ml_respond_unavailable(resp, 1, "not_ready", "model and data are still loading");
}

static void model_info(ml_jw *w, const ml_app *app) {
    const ml_model *m = &app->model;
    ml_jw_object(w);
    ml_jw_kstring(w, "path", m->path);
    ml_jw_kstring(w, "format", m->format);
    ml_jw_key(w, "variant"); /* positions: a transformer's only */
    if (ml_model_arch(m) == ML_ARCH_TRANSFORMER)
        ml_jw_string(w, ml_posenc_name(m->cfg.pos));
    else
        ml_jw_null(w);
    ml_jw_kint(w, "input_size", m->cfg.input_size);
    ml_jw_kint(w, "hidden_size", m->cfg.hidden_size);
    ml_jw_kint(w, "num_layers", m->cfg.num_layers);
    ml_jw_kint(w, "num_heads", m->cfg.num_heads);
    ml_jw_kint(w, "intermediate_size", m->cfg.intermediate_size);
    ml_jw_kint(w, "parameters", (int64_t)m->num_params);
    ml_jw_key(w, "layers");
    ml_jw_array(w);
    char name[32];
    for (int i = 0; i < ml_model_num_outputs(m); i++)
        ml_jw_string(w, ml_model_output_name(m, i, name, sizeof name));
    ml_jw_array_end(w);
    ml_jw_kbool(w, "embedding", m->cfg.embedding);
    ml_jw_kbool(w, "bias", m->cfg.bias);
    ml_jw_kbool(w, "logit_bias", m->cfg.logit_bias);
    ml_jw_kbool(w, "synthetic", m->synthetic);
    ml_jw_kint(w, "max_seq_len", app->max_seq);
    ml_render_model_generation(w, m);
    ml_jw_key(w, "trained_seq_len");
    if (m->trained_seq_len > 0)
        ml_jw_int(w, m->trained_seq_len);
    else
        ml_jw_null(w);
    ml_jw_object_end(w);
}

static void data_info(ml_jw *w, const ml_app *app) {
    const ml_dataset *d = &app->data;
    ml_jw_object(w);
    ml_jw_kint(w, "items", d->n_items);
    ml_jw_kint(w, "backbone_dim", d->backbone_dim);
    ml_jw_kint(w, "target_dims", d->target_dims);
    ml_jw_kstring(w, "backbone_path", d->backbone_path);
    ml_jw_kstring(w, "targets_path", d->targets_path);
    ml_jw_kstring(w, "item_ids_path", d->ids_path);
    ml_jw_kbool(w, "synthetic", app->model.synthetic);
    ml_jw_kint(w, "backbone_rows", d->backbone_rows);
    ml_jw_kbool(w, "per_image", d->per_image);
    /* Names for the notebook's eval dimensions, only where they hold: the SPoSE 66-d
     * embedding of a real (not synthetic) world. */
    static const char *const spose_labels[] = {"Metallic/Artificial", "Food-related",
                                               "Animal-related"};
    ml_jw_key(w, "dimension_labels");
    if (!app->model.synthetic && d->target_dims == ML_SPOSE_DIMS) {
        ml_jw_array(w);
        for (size_t i = 0; i < sizeof spose_labels / sizeof spose_labels[0]; i++)
            ml_jw_string(w, spose_labels[i]);
        ml_jw_array_end(w);
    } else {
        ml_jw_null(w);
    }
    if (d->images_path) ml_jw_kstring(w, "things_images", d->images_path);
    ml_jw_object_end(w);
}

void ml_h_info(ml_app *app, const ml_request *req, ml_response *resp) {
    if (plain_get(req, resp) != 0) return;
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_object(&w);
    ml_jw_kstring(&w, "version", ML_VERSION);
    ml_jw_key(&w, "model");
    model_info(&w, app);
    ml_jw_key(&w, "data");
    data_info(&w, app);
    ml_human_status st;
    ml_human_status_get(app->human, &st);
    ml_jw_key(&w, "human");
    ml_render_human_status(&w, &st);
    ml_jw_key(&w, "server");
    ml_jw_object(&w);
    ml_jw_kint(&w, "compute_threads", app->threads);
    ml_jw_kint(&w, "http_threads", app->cfg->http_threads);
    ml_jw_kstring(&w, "blas_core", ml_blas_core());
    char gemm[128];
    ml_jw_kstring(&w, "gemm", ml_model_gemm_backend(&app->model));
    ml_jw_kstring(&w, "gemm_library", ml_model_gemm_library(&app->model, gemm, sizeof gemm));
    char started[ML_RFC3339_LEN];
    ml_rfc3339(app->started_at, started);
    ml_jw_kstring(&w, "started_at", started);
    ml_jw_object_end(&w);
    ml_jw_object_end(&w);
    ml_respond_writer(resp, 200, &w);
}

void ml_h_items(ml_app *app, const ml_request *req, ml_response *resp) {
    static const char *const args[] = {"offset", "limit", NULL};
    if (ml_request_check_args(req, args, resp) != 0 || ml_request_no_body(req, resp) != 0) return;
    long long offset = 0, limit = ML_ITEMS_DEFAULT_LIMIT;
    int n = app->data.n_items;
    if (ml_arg_int(req, "offset", 0, n, &offset, resp) != 0 ||
        ml_arg_int(req, "limit", 1, ML_ITEMS_MAX_LIMIT, &limit, resp) != 0)
        return;
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_jw_object(&w);
    ml_jw_kint(&w, "total", n);
    ml_jw_kint(&w, "offset", offset);
    ml_jw_kint(&w, "limit", limit);
    ml_jw_key(&w, "items");
    ml_jw_array(&w);
    for (long long i = offset; i < n && i < offset + limit; i++) {
        ml_jw_object(&w);
        ml_jw_kint(&w, "index", i);
        ml_jw_kstring(&w, "id", app->data.ids[i]);
        ml_jw_object_end(&w);
    }
    ml_jw_array_end(&w);
    ml_jw_object_end(&w);
    ml_respond_writer(resp, 200, &w);
}

/* The transport's gauges: connections, suspended requests, answers waiting for clients. */
static void transport_metrics(ml_app *app, ml_buf *out) {
    if (!app->transport) return;
    ml_http_stats_t st;
    ml_http_stats(app->transport, &st);
    ml_buf_printf(out, "# HELP metalignd_http_connections Open connections.\n"
                       "# TYPE metalignd_http_connections gauge\nmetalignd_http_connections %d\n"
                       "# HELP metalignd_http_requests_in_flight Requests received and not yet "
                       "answered.\n# TYPE metalignd_http_requests_in_flight gauge\n"
                       "metalignd_http_requests_in_flight %d\n"
                       "# HELP metalignd_http_suspended Requests waiting for a worker or for an "
                       "identical request's computation.\n# TYPE metalignd_http_suspended gauge\n"
                       "metalignd_http_suspended %d\n"
                       "# HELP metalignd_http_inflight_bytes Bytes of answers queued for clients "
                       "that have not read them yet (a shared answer counted once).\n"
                       "# TYPE metalignd_http_inflight_bytes gauge\nmetalignd_http_inflight_bytes %zu\n",
                  st.connections, st.requests, st.suspended, st.inflight_bytes);
    ml_buf_printf(out, "# HELP metalignd_computations_in_progress Computations that identical "
                       "requests wait for.\n# TYPE metalignd_computations_in_progress gauge\n"
                       "metalignd_computations_in_progress %d\n",
                  ml_coalesce_in_progress(app->coalesce));
}

void ml_h_metrics(ml_app *app, const ml_request *req, ml_response *resp) {
    if (plain_get(req, resp) != 0) return;
    ml_buf out = {0};
    ml_metrics_render(app->metrics, &out);
    transport_metrics(app, &out);
    if (!ml_app_is_ready(app)) { /* loading: the rest does not exist yet */
        ml_buf_printf(&out, "# HELP metalignd_ready 1 once model and data are loaded.\n"
                            "# TYPE metalignd_ready gauge\nmetalignd_ready 0\n");
        ml_respond_buf(resp, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
        return;
    }
    int counts[ML_JOB_N_STATUS];
    ml_jobs_counts(app->jobs, counts);
    ml_buf_puts(&out, "# HELP metalignd_jobs Jobs in the table by status.\n"
                      "# TYPE metalignd_jobs gauge\n");
    for (int s = 0; s < ML_JOB_N_STATUS; s++)
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
                        "# HELP metalignd_result_cache_bytes Bytes in the result cache, finished "
                        "jobs' results included.\n"
                        "# TYPE metalignd_result_cache_bytes gauge\n"
                        "metalignd_result_cache_bytes %zu\n"
                        "# HELP metalignd_result_cache_job_bytes Bytes of finished jobs' results "
                        "(held until DELETE or --job-ttl).\n"
                        "# TYPE metalignd_result_cache_job_bytes gauge\n"
                        "metalignd_result_cache_job_bytes %zu\n"
                        "# HELP metalignd_result_cache_limit_bytes The budget "
                        "(--result-cache-bytes).\n"
                        "# TYPE metalignd_result_cache_limit_bytes gauge\n"
                        "metalignd_result_cache_limit_bytes %zu\n",
                  entries, bytes, ml_lru_pinned_bytes(app->results),
                  ml_lru_max_bytes(app->results));
    ml_human_render_metrics(app->human, &out);
    if (app->shared) ml_shared_render_metrics(app->shared, &out);
    ml_buf_printf(&out, "# HELP metalignd_ready 1 once model and data are loaded.\n"
                        "# TYPE metalignd_ready gauge\nmetalignd_ready %d\n",
                  ml_app_is_ready(app));
    ml_respond_buf(resp, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
}

static void job_not_found(const ml_request *req, ml_response *resp) {
    ml_respond_error(resp, 404, "job_not_found",
                     "no job \"%s\" (unknown, or its result expired; finished jobs are kept "
                     "for --job-ttl seconds)", req->path_param);
}

/* The job's state, and its result after it: the result is the cached answer itself, sent
 * without a copy however many clients fetch it. */
static void respond_job(const ml_job_info *info, ml_response *resp) {
    ml_buf out = {0};
    ml_jw w;
    ml_jw_init(&w, &out);
    ml_render_job(&w, info);
    if (!info->result || ml_jw_finish(&w) != 0 || out.len < 2) {
        ml_respond_writer(resp, 200, &w);
        return;
    }
    out.data[--out.len] = '\0'; /* the closing brace: the result goes before it */
    ml_buf_puts(&out, ",\"result\":");
    ml_buf tail = {0};
    ml_buf_puts(&tail, "}");
    ml_respond_wrapped(resp, 200, ML_CT_JSON, &out, info->result, &tail);
}

void ml_respond_job_info(const ml_job_info *info, ml_response *resp) {
    respond_job(info, resp);
}

void ml_h_job_get(ml_app *app, const ml_request *req, ml_response *resp) {
    if (plain_get(req, resp) != 0) return;
    ml_job *j = ml_jobs_get(app->jobs, req->path_param);
    if (!j && app->shared) { /* a job of another replica, or of this one, in Redis */
        ml_h_shared_job(app, req, resp, 0);
        return;
    }
    if (!j) {
        job_not_found(req, resp);
        return;
    }
    ml_job_info info;
    ml_job_info_get(j, &info);
    ml_job_unref(j);
    respond_job(&info, resp);
    ml_job_info_free(&info);
}

/* A queued job is cancelled, a running one asked to stop (the answer says so), a finished
 * one removed and its result released. */
void ml_h_job_delete(ml_app *app, const ml_request *req, ml_response *resp) {
    if (plain_get(req, resp) != 0) return;
    ml_job_info info;
    if (ml_jobs_delete(app->jobs, req->path_param, &info) != 0) {
        if (app->shared) /* a job of another replica, or of this one, in Redis */
            ml_h_shared_job(app, req, resp, 1);
        else
            job_not_found(req, resp);
        return;
    }
    respond_job(&info, resp);
    ml_job_info_free(&info);
}
