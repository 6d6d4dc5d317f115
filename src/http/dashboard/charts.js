/* The notebook's figures as dygraphs charts: each builder turns one JSON answer into the
 * rows dygraphs plots (customBars rows [low, value, high] for the 95% bands) and draws or
 * redraws its chart. window.metalign.charts[name] = {graph, source, rows} lets a test read
 * back what each chart holds. */
"use strict";

(function () {
  const SIDES = ["Meta-Learned", "Human"];
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c"]; /* matplotlib's first colours */

  /* [low, value, high], or null when the value is undefined; a missing interval is a band
   * of zero width, so the point is still drawn. */
  function band(value, low, high) {
    if (value === null || value === undefined) return null;
    const lo = low === null || low === undefined ? value : low;
    const hi = high === null || high === undefined ? value : high;
    return [lo, value, hi];
  }

  function curveRows(curves) {
    const n = Math.max.apply(null, curves.map((c) => c ? c.p_correct.length : 0));
    const rows = [];
    for (let t = 0; t < n; t++) {
      rows.push([t].concat(curves.map((c) => !c || t >= c.p_correct.length ? null
        : band(c.p_correct[t], c.ci_low ? c.ci_low[t] : null, c.ci_high ? c.ci_high[t] : null))));
    }
    return rows;
  }

  function integerTicks(labelOf) {
    return function (min, max) {
      const ticks = [];
      for (let x = Math.ceil(min); x <= Math.floor(max); x++) ticks.push({v: x, label: labelOf(x)});
      return ticks;
    };
  }

  /* Draws (or redraws with new rows) the chart called name in element id. */
  function draw(name, id, rows, options, source) {
    const ML = window.metalign;
    const have = ML.charts[name];
    if (have && have.elementId === id) {
      have.graph.updateOptions(Object.assign({file: rows}, options.redraw || {}));
      have.rows = rows;
      have.source = source;
      return have.graph;
    }
    const el = document.getElementById(id);
    const opts = Object.assign({}, options);
    delete opts.redraw;
    const graph = new Dygraph(el, rows, opts);
    ML.charts[name] = {graph: graph, source: source, rows: rows, elementId: id};
    return graph;
  }

  function ckaRows(doc) {
    const b = doc.baseline;
    return doc.layers.map((l, i) => [i, band(l.cka, l.ci_low, l.ci_high),
      band(b.cka, b.ci_low, b.ci_high)]);
  }

  function drawCka(name, id, doc, source, layerNames) {
    const rows = ckaRows(doc);
    return draw(name, id, rows, {
      labels: ["Layer", "Meta-Learned", "Baseline"],
      customBars: true,
      colors: [COLORS[0], COLORS[2]],
      drawPoints: true,
      pointSize: 4,
      series: {Baseline: {strokePattern: Dygraph.DASHED_LINE, drawPoints: false}},
      xlabel: "Layer",
      ylabel: id === "chart-cka-all" ? "CKA with the target features" : "",
      dateWindow: [-0.3, rows.length - 0.7],
      labelsDiv: "legend-cka",
      legend: "always",
      axes: {
        x: {ticker: integerTicks((x) => String(x)), valueFormatter: (x) => x + " (" + (layerNames[x] || "") + ")"},
        y: {valueFormatter: (y) => y.toFixed(3), axisLabelFormatter: (y) => y.toFixed(2)},
      },
    }, source);
  }

  function drawCurves(doc, source) {
    const o = doc.overall;
    return draw("curves", "chart-curves", curveRows([o.model, o.human]), {
      labels: ["Trial"].concat(SIDES),
      customBars: true,
      colors: COLORS.slice(0, 2),
      xlabel: "Trials",
      ylabel: "p(correct)",
      labelsDiv: "legend-curves",
      legend: "always",
      axes: {y: {valueFormatter: (y) => y.toFixed(3)}},
    }, source);
  }

  function dimensionTitle(d, labels) {
    return labels && d < labels.length ? "(" + d + ") " + labels[d] : "Dimension " + d;
  }

  /* The facet grid: one row per dimension, one column per side, the y axis shared. */
  function drawFacets(doc, source, labels) {
    const box = document.getElementById("facets");
    const want = doc.by_dimension.map((g) => g.dimension).join(",");
    if (box.dataset.dims !== want) { /* a new set of dimensions: lay the grid out anew */
      box.textContent = "";
      box.dataset.dims = want;
      for (const g of doc.by_dimension)
        SIDES.forEach((side, s) => {
          const fig = document.createElement("figure");
          const cap = document.createElement("figcaption");
          cap.textContent = dimensionTitle(g.dimension, labels) + " · " + side;
          const div = document.createElement("div");
          div.id = "facet-" + g.dimension + "-" + s;
          div.className = "chart small";
          fig.appendChild(cap);
          fig.appendChild(div);
          box.appendChild(fig);
          delete window.metalign.charts["facet:" + g.dimension + ":" + side];
        });
    }
    for (const g of doc.by_dimension)
      SIDES.forEach((side, s) => {
        const curve = s === 0 ? g.model : g.human;
        draw("facet:" + g.dimension + ":" + side, "facet-" + g.dimension + "-" + s,
          curveRows([curve]), {
            labels: ["Trial", side],
            customBars: true,
            colors: [COLORS[s]],
            valueRange: [0, 1.02],
            xlabel: "Trial",
            ylabel: "p(correct)",
          }, source);
      });
  }

  function drawBars(doc, source, labels) {
    const groups = doc.by_dimension;
    const rows = groups.map((g, i) => [i, band(g.bars.model.mean, g.bars.model.ci_low, g.bars.model.ci_high),
      band(g.bars.human.mean, g.bars.human.ci_low, g.bars.human.ci_high)]);
    const label = (i) => i >= 0 && i < groups.length ? dimensionTitle(groups[i].dimension, labels) : "";
    return draw("bars", "chart-bars", rows, {
      labels: ["Dimension"].concat(SIDES),
      customBars: true,
      colors: COLORS.slice(0, 2),
      plotter: window.metalignBars.multiColumnBarPlotter,
      includeZero: true,
      valueRange: [0, 1.05],
      dateWindow: [-0.6, groups.length - 0.4],
      ylabel: "p(correct)",
      labelsDiv: "legend-bars",
      legend: "always",
      axes: {
        x: {ticker: integerTicks(label), valueFormatter: label, drawGrid: false, axisLabelWidth: 180},
        y: {valueFormatter: (y) => y.toFixed(3)},
      },
    }, source);
  }

  /* The replay summary: per dimension, the model's and the baseline's pseudo-R^2 beside the
   * noise ceiling's r (API.md, GET /v1/human/replay). */
  function drawReplay(doc, source, labels) {
    const groups = doc.by_dimension || [];
    const rows = groups.map((g, i) => [i, band(g.pseudo_r2, null, null),
      band(g.baseline_pseudo_r2 !== undefined ? g.baseline_pseudo_r2
        : (g.baseline && g.baseline.pseudo_r2 !== undefined ? g.baseline.pseudo_r2 : null), null, null),
      g.noise_ceiling ? band(g.noise_ceiling.r, g.noise_ceiling.ci_low, g.noise_ceiling.ci_high) : null]);
    const label = (i) => i >= 0 && i < groups.length ? dimensionTitle(groups[i].dimension, labels) : "";
    return draw("replay", "chart-replay", rows, {
      labels: ["Dimension", "Meta-Learned pseudo-R²", "Baseline pseudo-R²", "Noise ceiling r"],
      customBars: true,
      colors: COLORS,
      plotter: window.metalignBars.multiColumnBarPlotter,
      includeZero: true,
      dateWindow: [-0.6, groups.length - 0.4],
      labelsDiv: "legend-replay",
      legend: "always",
      axes: {x: {ticker: integerTicks(label), valueFormatter: label, drawGrid: false, axisLabelWidth: 180}},
    }, source);
  }

  function drawJob(doc, source) {
    return draw("job", "chart-job", curveRows([doc.curve]), {
      labels: ["Trial", "Meta-Learned"],
      customBars: true,
      colors: [COLORS[0]],
      valueRange: [0, 1.02],
      xlabel: "Trials",
      ylabel: "p(correct)",
      title: doc.episodes + " episodes x " + doc.seq_len + " trials, dims " + doc.dims.join(","),
    }, source);
  }

  window.metalignCharts = {drawCka: drawCka, drawCurves: drawCurves, drawFacets: drawFacets,
    drawBars: drawBars, drawReplay: drawReplay, drawJob: drawJob, curveRows: curveRows,
    band: band};
})();
