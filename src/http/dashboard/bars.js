/* Bars for dygraphs: the multi-column bar plotter of dygraphs' own plotter gallery
 * (libjs-dygraphs: site/tests/plotters.html, multiColumnBarPlotter), with an error whisker
 * per bar from the customBars interval dygraphs has already mapped to canvas coordinates
 * (point.y_top, point.y_bottom). dygraphs draws axes, grid, legend and hover; this only
 * fills the bars. */
"use strict";

(function () {
  function darken(color) {
    const rgb = Dygraph.toRGB_(color);
    return "rgb(" + Math.floor((255 + rgb.r) / 2) + "," + Math.floor((255 + rgb.g) / 2) + "," +
      Math.floor((255 + rgb.b) / 2) + ")";
  }

  function multiColumnBarPlotter(e) {
    if (e.seriesIndex !== 0) return; /* all series at once */
    const g = e.dygraph, ctx = e.drawingContext, sets = e.allSeriesPoints;
    const yBottom = g.toDomYCoord(0);
    let minSep = Infinity;
    for (const points of sets)
      for (let i = 1; i < points.length; i++)
        minSep = Math.min(minSep, points[i].canvasx - points[i - 1].canvasx);
    if (!isFinite(minSep)) minSep = e.plotArea.w / 2;
    const barWidth = Math.floor(2.0 / 3 * minSep);
    const colors = g.getColors();
    for (let j = 0; j < sets.length; j++) {
      ctx.fillStyle = darken(colors[j]);
      ctx.strokeStyle = colors[j];
      for (const p of sets[j]) {
        if (p.canvasy === null || isNaN(p.canvasy)) continue;
        const x = p.canvasx - barWidth / 2 + (j / sets.length) * barWidth;
        const w = Math.floor(barWidth / sets.length);
        ctx.fillRect(x, p.canvasy, w, yBottom - p.canvasy);
        ctx.strokeRect(x, p.canvasy, w, yBottom - p.canvasy);
        const top = e.plotArea.y + p.y_top * e.plotArea.h;
        const bottom = e.plotArea.y + p.y_bottom * e.plotArea.h;
        if (isFinite(top) && isFinite(bottom)) { /* the interval as a whisker */
          const cx = x + w / 2;
          ctx.save();
          ctx.strokeStyle = "#222";
          ctx.beginPath();
          ctx.moveTo(cx, top); ctx.lineTo(cx, bottom);
          ctx.moveTo(cx - w / 6, top); ctx.lineTo(cx + w / 6, top);
          ctx.moveTo(cx - w / 6, bottom); ctx.lineTo(cx + w / 6, bottom);
          ctx.stroke();
          ctx.restore();
        }
      }
    }
  }

  window.metalignBars = {multiColumnBarPlotter: multiColumnBarPlotter};
})();
