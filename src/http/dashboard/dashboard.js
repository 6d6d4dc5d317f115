/* The dashboard: asks the daemon's JSON endpoints (relative URLs: the page's own origin and
 * nothing else), draws the notebook's figures (charts.js) and polls every few seconds with
 * If-None-Match, so an unchanged answer costs a 304 and no redraw. #poll=N in the page's URL
 * sets the interval in seconds (default 15). */
"use strict";

(function () {
  const ML = window.metalign = {
    charts: {},        /* name -> {graph, source, rows} (charts.js) */
    cache: {},         /* url -> {etag, doc}: what If-None-Match revalidates */
    polls: 0,          /* completed polling rounds */
    notModified: 0,    /* 304 answers received */
    ready: false,      /* every figure drawn once */
    replay: false,     /* the replay endpoint exists */
    errors: [],
  };
  const C = window.metalignCharts;
  const hashPoll = /poll=(\d+(?:\.\d+)?)/.exec(location.hash);
  const POLL_MS = 1000 * (hashPoll ? Math.max(0.5, Number(hashPoll[1])) : 15);
  const JOB_POLL_MS = 500;
  const REPLAY_ENDPOINT = "GET /v1/human/replay";

  function status(text, isError) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.className = isError ? "status error" : "status";
  }

  function fail(what, e) {
    ML.errors.push(what + ": " + e.message);
    status(what + ": " + e.message, true);
  }

  /* GET url as JSON, revalidating what we have: {doc, changed}. */
  async function getJSON(url) {
    const have = ML.cache[url];
    const headers = {Accept: "application/json"};
    if (have) headers["If-None-Match"] = have.etag;
    const r = await fetch(url, {headers: headers, cache: "no-store"});
    if (r.status === 304 && have) {
      ML.notModified++;
      return {doc: have.doc, changed: false, status: 304};
    }
    const text = await r.text();
    let doc = null;
    try { doc = JSON.parse(text); } catch (e) { /* reported below */ }
    if (!r.ok) {
      const msg = doc && doc.error ? doc.error.code + ": " + doc.error.message : r.status + " " + text.slice(0, 200);
      const err = new Error(msg);
      err.status = r.status;
      err.doc = doc;
      throw err;
    }
    if (!doc) throw new Error(url + ": the answer is not JSON");
    const etag = r.headers.get("ETag");
    if (etag) ML.cache[url] = {etag: etag, doc: doc};
    return {doc: doc, changed: true, status: r.status};
  }

  function showInfo(info) {
    document.getElementById("synthetic-banner").hidden = !info.data.synthetic;
    const m = info.model, d = info.data, h = info.human;
    const rows = [
      ["model", m.path],
      ["", m.format + ", " + m.variant + ", " + m.num_layers + " layers x " + m.num_heads +
        " heads, hidden " + m.hidden_size + ", " + m.parameters.toLocaleString("en") + " parameters"],
      ["layers", m.layers.join(", ")],
      ["backbone", d.backbone_path + " (" + d.items + " items x " + d.backbone_dim + ")"],
      ["targets", d.targets_path + " (" + d.target_dims + " dimensions)"],
      ["synthetic", d.synthetic ? "yes: the demo bundle" : "no"],
      ["human data", h.url + (h.cached ? " (cached, fetched " + h.fetched_at + ")" : " (not fetched yet)")],
      ["version", info.version],
    ];
    const dl = document.getElementById("info-list");
    dl.textContent = "";
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      dl.appendChild(dt);
      dl.appendChild(dd);
    }
  }

  function evalDims(info) {
    const n = Math.min(3, info.data.target_dims);
    return Array.from({length: n}, (_, i) => i);
  }

  function sources(info) {
    const dims = evalDims(info).join(",");
    return {
      info: "v1/info",
      ckaAll: "v1/cka?dims=all&ci=true",
      ckaEval: "v1/cka?dims=" + dims + "&ci=true",
      compare: "v1/compare/learning-curves",
    };
  }

  /* One round: every source revalidated, the figures of those that changed redrawn. */
  async function round(first) {
    const infoR = await getJSON("v1/info");
    const info = infoR.doc;
    if (infoR.changed) showInfo(info);
    const labels = info.data.dimension_labels || null;
    const src = sources(info);
    document.getElementById("eval-dims").textContent = "(" + evalDims(info).join(", ") + ")";
    const [all, ev] = await Promise.all([getJSON(src.ckaAll), getJSON(src.ckaEval)]);
    if (all.changed) C.drawCka("cka-all", "chart-cka-all", all.doc, src.ckaAll, info.model.layers);
    if (ev.changed) C.drawCka("cka-eval", "chart-cka-eval", ev.doc, src.ckaEval, info.model.layers);
    try {
      const cmp = await getJSON(src.compare);
      if (cmp.changed) {
        document.getElementById("compare-desc").textContent = cmp.doc.episodes +
          " model episodes of " + cmp.doc.seq_len + " trials, seed " + cmp.doc.seed + "; " +
          cmp.doc.overall.human_participants + " human participants, trials 0.." + cmp.doc.max_trial;
        C.drawCurves(cmp.doc, src.compare);
        C.drawFacets(cmp.doc, src.compare, labels);
        C.drawBars(cmp.doc, src.compare, labels);
      }
    } catch (e) {
      fail("learning curves (the human data may be unreachable)", e);
    }
    if (first) await discoverReplay(labels);
    ML.polls++;
    if (!ML.errors.length) status("up to date · polled " + ML.polls + "x, " + ML.notModified + " answers unchanged (304)");
  }

  /* The replay panel appears only when the daemon lists the endpoint. */
  async function discoverReplay(labels) {
    const root = (await getJSON("./")).doc;
    ML.replay = (root.endpoints || []).indexOf(REPLAY_ENDPOINT) >= 0;
    document.getElementById("replay").hidden = !ML.replay;
    if (!ML.replay) return;
    try {
      let r = await fetch("v1/human/replay?async=true", {headers: {Accept: "application/json"}});
      let doc = await r.json();
      if (r.status === 202) doc = await waitJob(doc.status_url || ("v1/jobs/" + doc.job), null);
      else if (!r.ok) throw new Error(doc.error ? doc.error.message : String(r.status));
      const s = doc.summary || {};
      document.getElementById("replay-summary").textContent = "Overall: pseudo-R² " +
        fmt(s.pseudo_r2) + " (baseline " + fmt(s.baseline ? s.baseline.pseudo_r2 : null) +
        "), agreement " + fmt(s.agreement) + ", " + (s.participants || 0) + " participants.";
      C.drawReplay(doc, "v1/human/replay", labels);
    } catch (e) {
      fail("replay", e);
    }
  }

  function fmt(x) { return typeof x === "number" ? x.toFixed(3) : "–"; }

  function sleep(ms) { return new Promise((ok) => setTimeout(ok, ms)); }

  /* Polls a job (with ETags) until it ends; the result, or an error. */
  async function waitJob(url, onProgress) {
    url = url.replace(/^\//, "");
    for (;;) {
      const j = (await getJSON(url)).doc;
      if (onProgress) onProgress(j);
      if (j.status === "done") return j.result;
      if (j.status === "failed") throw new Error(j.error ? j.error.message : "the job failed");
      if (j.status === "cancelled") throw new Error("the job was cancelled");
      await sleep(JOB_POLL_MS);
    }
  }

  function jobForm() {
    const form = document.getElementById("job-form");
    const bar = document.getElementById("job-progress"), text = document.getElementById("job-status");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      const body = {episodes: Number(f.get("episodes")), seq_len: Number(f.get("seq_len")),
        seed: Number(f.get("seed")), dims: String(f.get("dims")).split(",").map(Number)};
      text.textContent = "starting…";
      try {
        const r = await fetch("v1/learning-curves?async=true", {method: "POST",
          headers: {"Content-Type": "application/json", Accept: "application/json"},
          body: JSON.stringify(body)});
        const doc = await r.json();
        if (r.status !== 202) throw new Error(doc.error ? doc.error.message : String(r.status));
        ML.job = {id: doc.job, statusUrl: doc.status_url, progress: []};
        const result = await waitJob(doc.status_url, (j) => {
          bar.max = j.progress.total || 1;
          bar.value = j.progress.done;
          ML.job.progress.push([j.progress.done, j.progress.total]);
          text.textContent = "job " + j.job + ": " + j.status + ", " + j.progress.done + " of " +
            j.progress.total + " episodes";
        });
        ML.job.result = result;
        document.getElementById("job-figure").hidden = false;
        C.drawJob(result, doc.status_url);
        text.textContent += " · accuracy " + fmt(result.accuracy);
      } catch (e) {
        text.textContent = "failed: " + e.message;
        ML.errors.push("job: " + e.message);
      }
    });
  }

  async function main() {
    jobForm();
    try {
      await round(true);
      ML.ready = true;
    } catch (e) {
      fail("loading", e);
      ML.ready = true;
    }
    for (;;) {
      await sleep(POLL_MS);
      try { await round(false); } catch (e) { fail("polling", e); }
    }
  }

  main();
})();
