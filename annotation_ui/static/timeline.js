// The review page's timeline under the waveform: time axis, stored spectrogram, per-second QC hints.
// Pure drawing on canvases for a view [v0, v1] in seconds; review.js owns the state.
"use strict";
(function () {
  const xOf = (t, w, v) => ((t - v[0]) / (v[1] - v[0])) * w;
  const tOf = (x, w, v) => v[0] + (x / w) * (v[1] - v[0]);

  // Time axis: a tick and label every 5 or 10 s (every second when zoomed in far).
  function axis(c, v, fmt) {
    const g = c.getContext("2d"), w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    const len = v[1] - v[0], step = len > 40 ? 10 : len > 12 ? 5 : 1;
    g.fillStyle = "#4a5568";
    g.font = "11px system-ui, sans-serif";
    for (let t = Math.ceil(v[0] / step) * step; t <= v[1]; t += step) {
      const x = xOf(t, w, v);
      g.fillRect(x, 0, 1, 5);
      const label = fmt(t);
      g.fillText(label, Math.min(w - g.measureText(label).width, Math.max(0, x - g.measureText(label).width / 2)), h - 2);
    }
  }

  // The stored spectrogram (low bands at the bottom), drawn for the part in view.
  function spectrogram(c, spec, v) {
    const g = c.getContext("2d"), w = c.width, h = c.height;
    g.clearRect(0, 0, w, h);
    if (!spec) return;
    const img = g.createImageData(w, h);
    for (let x = 0; x < w; x++) {
      const f = Math.floor(tOf(x + 0.5, w, v) * spec.fps);
      if (f < 0 || f >= spec.frames) continue;
      for (let y = 0; y < h; y++) {
        const band = spec.bands - 1 - Math.floor((y / h) * spec.bands);
        const val = spec.data[band * spec.frames + f], o = (y * w + x) * 4;
        img.data[o] = Math.min(255, val * 1.2);  // dark blue (quiet) to yellow (loud)
        img.data[o + 1] = Math.max(0, val * 1.1 - 60);
        img.data[o + 2] = Math.max(0, 140 - val * 0.6);
        img.data[o + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  }

  // QC hints on the timeline: scene cuts, still and silent stretches, residual vocals per second.
  const HINT_ROWS = [["cuts", "scene cut", "#2d3748"], ["still", "still picture", "#805ad5"],
    ["silence", "silence", "#718096"], ["vocals", "residual vocals", "#dd6b20"]];
  const VOCALS_SHOW = 0.1;  // a second whose vocal share is above this is drawn
  function hints(c, hints, v) {
    const g = c.getContext("2d"), w = c.width, h = c.height, row = h / HINT_ROWS.length;
    g.clearRect(0, 0, w, h);
    if (!hints) return;
    HINT_ROWS.forEach(([key, , colour], r) => {
      g.fillStyle = colour;
      const y = r * row + 1, rh = row - 2;
      if (key === "cuts") for (const t of hints.cuts) g.fillRect(xOf(t, w, v) - 1, y, 3, rh);
      else if (key === "vocals") (hints.vocals || []).forEach((share, i) => {
        if (share > VOCALS_SHOW) {
          g.globalAlpha = Math.min(1, 0.3 + share);
          g.fillRect(xOf(i, w, v), y, xOf(i + 1, w, v) - xOf(i, w, v), rh);
          g.globalAlpha = 1;
        }
      });
      else for (const [a, b] of hints[key]) g.fillRect(xOf(a, w, v), y, Math.max(2, xOf(b, w, v) - xOf(a, w, v)), rh);
    });
  }

  function summary(hints) {
    if (!hints) return "";
    const secs = (xs) => Math.round(xs.reduce((n, [a, b]) => n + b - a, 0));
    const parts = [hints.cuts.length + (hints.cuts.length === 1 ? " scene cut" : " scene cuts"),
      secs(hints.still) + " s still", secs(hints.silence) + " s silent"];
    if (hints.vocals) parts.push(hints.vocals.filter((x) => x > VOCALS_SHOW).length + " s with residual vocals");
    return "On the timeline: " + parts.join(", ") + ". Click a mark to jump to it.";
  }

  window.ReviewTimeline = { xOf, tOf, axis, spectrogram, hints, summary };
})();
