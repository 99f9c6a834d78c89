// The review page: keyboard-first verdicts, waveform from server peaks. Untrusted text only via textContent.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("initial-data").textContent);
  const Timeline = window.ReviewTimeline;  // timeline.js: axis, spectrogram, QC hints
  const reasons = data.reasons.map((r) => r.code);
  const $ = (id) => document.getElementById(id);
  const video = $("video"), canvas = $("wave"), ctx = canvas.getContext("2d");
  let clip = null, peaks = [], shownAt = 0, busy = false, ended = false;
  let spans = [], spanStart = null, drag = null, pending = null, noteFor = null;
  let zoom = 1, spec = null, hints = null;
  const spanReasons = (data.span_reasons || []).map((r) => r.code);
  const spanLabel = Object.fromEntries((data.span_reasons || []).map((r) => [r.code, r.label]));
  const reasonLabel = Object.fromEntries(data.reasons.map((r) => [r.code, r.label]));
  const DRAG_MIN_PX = 4;  // a shorter drag on the waveform is a click (seek)
  const PEAKS_N = 4000;  // every stored peak, so a zoomed-in view stays sharp
  let leaseS = data.lease_s || 600;  // the server's lease length: renewed at a third of it
  const RETRY_DEFAULT_S = 5, MAX_TRIES = 30;
  // What an answer without a message of its own means, in words (the server's messages come first).
  const IN_WORDS = {
    403: "this page may not do that from here; reload the review page", 404: "not found; reload the review page",
    409: "someone else changed this clip meanwhile", 413: "too much at once (a note that long?)",
    500: "the review server failed; try again, and tell the lead if it keeps failing",
    502: "the review server is not reachable; try again shortly", 503: "the review server is busy; try again shortly",
    504: "the review server took too long; try again shortly",
  };
  const STILL_WARN_S = 10;  // a still picture this long is worth a look (rejection: "static images")
  const LIMITING_SHOW_DB = 1, LIMITING_WARN_DB = 3;  // limiter gain reduction, shown above 1 dB

  function say(msg, isError, force) {
    if (ended && !force) return;  // "your session ended" stays
    $("status").textContent = msg;
    $("status").className = isError ? "status error" : "status";
  }

  async function api(method, url, body) {
    const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, opts);
    } catch (e) {
      throw new Error("the review server did not answer (is this computer online?); try again");
    }
    const json = await resp.json().catch(() => ({}));
    if (resp.status === 401) sessionEnded();
    if (!resp.ok) {
      const err = new Error(json.detail || IN_WORDS[resp.status] || "the server answered with an error; try again");
      err.status = resp.status;
      err.body = json;
      err.retryAfter = Number(resp.headers.get("Retry-After")) || RETRY_DEFAULT_S;
      throw err;
    }
    return json;
  }

  // The token was revoked or replaced: say so instead of "signed in as ...", and stop renewing.
  function sessionEnded() {
    if (ended) return;
    ended = true;
    const who = $("who");
    if (who) who.textContent = "signed out";
    const msg = "Your session ended (this login link was revoked or replaced): ask for a new login link.";
    $("ended").textContent = msg;
    $("ended").hidden = false;
    document.querySelectorAll("button[data-action]").forEach((b) => { b.disabled = true; });
    say(msg, true, true);
  }

  const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

  // A verdict the catalog could not take now (503) is sent again after the server's Retry-After.
  async function sendDecision(body) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await api("POST", "/api/decisions", body);
      } catch (e) {
        // An earlier try that reached the catalog just before it failed: the verdict is in.
        if (e.status === 409 && attempt > 1 && /already has your verdict/.test(e.message)) return { clip_id: body.clip_id };
        if (e.status !== 503 || attempt >= MAX_TRIES) throw e;
        say("the catalog is not answering; sending your verdict again in " + e.retryAfter + " s (try " +
            (attempt + 1) + " of " + MAX_TRIES + ")", true);
        await sleep(e.retryAfter);
      }
    }
  }

  // Uploaders' titles may carry explicit direction controls (e.g. U+202E, right-to-left override) that
  // make text read reversed; they are dropped from what is shown (ordinary right-to-left text is kept).
  const DIRECTION_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;
  const plain = (v) => String(v ?? "").replace(DIRECTION_CONTROLS, "");

  function fmt(t) {
    if (!isFinite(t)) return "0:00";
    const s = Math.max(0, Math.floor(t));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function fmtNum(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }

  function renderProgress(p) {
    $("done").textContent = p.done;
    $("left").textContent = p.left;
    $("mine").textContent = p.mine ?? 0;
    const body = $("by-query");
    body.replaceChildren();
    for (const q of p.by_query) {
      const tr = document.createElement("tr");
      for (const v of [plain(q.query), q.done, q.left]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  const known = (v) => v !== null && v !== undefined;

  function renderQc(qc) {
    // Seconds of still picture when curation measured them; the older frame-step ratio otherwise.
    const still = known(qc.still_s)
      ? ["still picture", fmtNum(qc.still_s, 0) + " s", qc.still_s >= STILL_WARN_S]
      : ["static image", fmtNum(known(qc.static_ratio) ? qc.static_ratio * 100 : null, 0) + " %", qc.static_ratio > 0.3];
    const rows = [
      ["non-music / silence", fmtNum(known(qc.silence_ratio) ? qc.silence_ratio * 100 : null, 0) + " %", qc.silence_ratio > 0.08],
      still,
      ["scene cuts", qc.scene_cuts ?? "–", qc.scene_cuts === 0],
      ["loudness", fmtNum(qc.loudness_lufs, 1) + " LUFS", known(qc.loudness_lufs) && (qc.loudness_lufs < -30 || qc.loudness_lufs > -8)],
    ];
    if (known(qc.limiting_db) && qc.limiting_db > LIMITING_SHOW_DB) {  // heavy limiting is audible
      rows.push(["limiting", fmtNum(qc.limiting_db, 1) + " dB", qc.limiting_db > LIMITING_WARN_DB]);
    }
    rows.push(["residual vocals", fmtNum(qc.vocal_energy, 2), qc.vocal_energy > 0.1]);
    const dl = $("qc");
    dl.replaceChildren();
    for (const [k, v, warn] of rows) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      if (warn) dd.className = "warn";
      dl.append(dt, dd);
    }
  }

  // The part of the clip in view: all of it, or 1/zoom of it around the playhead.
  function viewRange() {
    const dur = mediaDuration(), len = dur / zoom;
    const a = Math.max(0, Math.min(video.currentTime - len / 2, dur - len));
    return [a, a + len];
  }
  const { xOf, tOf } = Timeline;

  function drawWave() {
    const w = canvas.width, h = canvas.height, mid = h / 2;
    ctx.clearRect(0, 0, w, h);
    const dur = mediaDuration(), v = viewRange();
    const n = peaks.length;
    for (let i = 0; i < n; i++) {
      const t = (i / n) * dur;
      if (t < v[0] - dur / n || t > v[1]) continue;
      const x = xOf(t, w, v), amp = Math.max(1, peaks[i] * (mid - 2));
      ctx.fillStyle = t < video.currentTime ? "#2b6cb0" : "#a0aec0";
      ctx.fillRect(x, mid - amp, Math.max(1, (w * zoom) / n), 2 * amp);
    }
    ctx.fillStyle = "rgba(229, 62, 62, 0.28)";
    for (const sp of spans) ctx.fillRect(xOf(sp.start_s, w, v), 0, xOf(sp.end_s, w, v) - xOf(sp.start_s, w, v), h);
    if (drag && drag.moved) {
      ctx.fillStyle = "rgba(229, 62, 62, 0.18)";
      ctx.fillRect(Math.min(drag.x0, drag.x1), 0, Math.abs(drag.x1 - drag.x0), h);
    }
    if (spanStart !== null) {
      ctx.fillStyle = "#c05621";
      ctx.fillRect(xOf(spanStart, w, v) - 1, 0, 2, h);
    }
    ctx.fillStyle = "#e53e3e";
    ctx.fillRect(xOf(video.currentTime || 0, w, v) - 1, 0, 2, h);
    $("time").textContent = fmt(video.currentTime) + " / " + fmt(video.duration);
    $("zoom").textContent = zoom === 1 ? "whole clip" : zoom + "× (" + fmt(v[0]) + "–" + fmt(v[1]) + ")";
    Timeline.axis($("axis"), v, fmt);
    Timeline.spectrogram($("spec"), spec, v);
    Timeline.hints($("hints"), hints, v);
  }

  function setZoom(z) {
    zoom = Math.min(16, Math.max(1, z));
    drawWave();
  }

  // --- spans: stretches left out of an accepted clip (no training window overlaps one) ---
  function mediaDuration() {
    return isFinite(video.duration) && video.duration > 0 ? video.duration : (clip ? clip.duration_s : 60);
  }

  // Whole-second offsets o with [o, o + W) inside the clip and clear of every span (dvmset.spans.window_offsets).
  function windowsKept() {
    const W = clip.window_s || 30, last = Math.floor(clip.duration_s) - W;
    let n = 0;
    for (let o = 0; o <= last; o++) if (!spans.some((sp) => o < sp.end_s && sp.start_s < o + W)) n++;
    return [n, Math.max(0, last + 1)];
  }

  function secondsKept() {
    const iv = spans.map((sp) => [sp.start_s, Math.min(sp.end_s, clip.duration_s)]).sort((a, b) => a[0] - b[0]);
    let cut = 0, end = -1;
    for (const [a, b] of iv) {
      if (b <= end) continue;
      cut += b - Math.max(a, end);
      end = b;
    }
    return Math.max(0, clip.duration_s - cut);
  }

  function renderSpans() {
    const list = $("spans");
    list.replaceChildren();
    spans.forEach((sp, i) => {
      const li = document.createElement("li"), del = document.createElement("button");
      li.textContent = fmtPrecise(sp.start_s) + "–" + fmtPrecise(sp.end_s) + " " + (spanLabel[sp.reason] || sp.reason) + " ";
      del.type = "button";
      del.textContent = "remove";
      del.addEventListener("click", () => { spans.splice(i, 1); renderSpans(); del.blur(); });
      li.appendChild(del);
      list.appendChild(li);
    });
    if (clip) {
      const [n, all] = windowsKept();
      const kept = secondsKept();
      $("windows-kept").textContent = spans.length
        ? "Keeps " + n + " of " + all + " training windows (" + Math.round(kept) + " of " + Math.round(clip.duration_s) +
          " s); " + (n === 0 ? "nothing left to train on: reject the clip instead" : "A accepts the rest")
        : "Keeps all " + all + " training windows (" + Math.round(clip.duration_s) + " s); mark a bad stretch with I and O or drag on the waveform";
      $("windows-kept").className = n === 0 && spans.length ? "kept warn" : "kept";
    }
    $("span-start").textContent = spanStart === null ? "" : "span starts at " + fmtPrecise(spanStart) + ": O ends it";
    drawWave();
  }

  function fmtPrecise(t) {
    const s = Math.max(0, t);
    return Math.floor(s / 60) + ":" + (s % 60).toFixed(1).padStart(4, "0");
  }

  function addSpan(a, b) {
    const dur = clip ? clip.duration_s : mediaDuration();
    a = Math.max(0, Math.round(Math.min(a, b) * 10) / 10);
    b = Math.min(dur, Math.round(Math.max(a, b) * 10) / 10);
    if (b - a < 0.1) { say("a span needs a start before its end", true); return; }
    const reason = $("span-reason").value;
    spans.push({ start_s: a, end_s: b, reason });
    spans.sort((x, y) => x.start_s - y.start_s);
    spanStart = null;
    renderSpans();
    say("left out " + fmtPrecise(a) + "–" + fmtPrecise(b) + " (" + (spanLabel[reason] || reason) + ")");
  }

  function markIn() {
    if (!clip) return;
    spanStart = video.currentTime;
    renderSpans();
  }

  function markOut() {
    if (!clip) return;
    if (spanStart === null) { say("press I at the start of the bad stretch first", true); return; }
    addSpan(spanStart, video.currentTime);
  }

  function cycleSpanReason() {
    const sel = $("span-reason");
    sel.selectedIndex = (sel.selectedIndex + 1) % sel.options.length;
    say("new spans: " + sel.options[sel.selectedIndex].textContent);
  }

  function refreshProgress() {
    api("GET", "/api/progress").then(renderProgress).catch((e) => say("progress: " + e.message, true));
  }

  function show(next) {
    if (next.lease_s) leaseS = next.lease_s;
    if (next.progress) renderProgress(next.progress); else refreshProgress();
    clip = next.clip;
    hideNote(true);
    hideConfirm();
    spans = [];
    spanStart = null;
    document.querySelectorAll("#reason-picks input").forEach((c) => { c.checked = false; });
    document.querySelectorAll(".clip-only").forEach((el) => { el.hidden = !clip; });
    refreshSkipped();
    if (!clip) {
      $("empty").hidden = false;
      $("empty-why").textContent = waitingText(next.waiting);
      $("clip-view").hidden = true;
      video.removeAttribute("src");
      video.load();
      return;
    }
    $("empty").hidden = true;
    $("clip-view").hidden = false;
    $("clip-title").textContent = plain(clip.source.title) || clip.id;
    $("clip-id").textContent = clip.id;
    $("src-title").textContent = plain(clip.source.title) || "–";
    $("src-query").textContent = plain(clip.source.query) || "–";
    const link = $("src-link");
    if (clip.source.link && /^https?:\/\//i.test(clip.source.link)) {
      link.href = clip.source.link;
      link.textContent = plain(clip.source.link);
    } else {
      link.removeAttribute("href");
      link.textContent = "–";
    }
    $("clip-start").textContent = fmt(clip.start_s);
    renderQc(clip.qc);
    const rate = video.playbackRate;
    video.src = clip.media_url;
    video.playbackRate = rate;
    video.defaultPlaybackRate = rate;
    peaks = [];
    renderSpans();
    shownAt = performance.now();
    if ($("autoplay").checked) video.play().catch(() => say("autoplay was blocked by the browser: press Space to play", true));
    const forId = clip.id;
    api("GET", clip.peaks_url + "?n=" + PEAKS_N).then((r) => {
      if (clip && clip.id === forId) { peaks = r.peaks; drawWave(); }
    }).catch((e) => say("The waveform could not be loaded: " + e.message, true));
    spec = null;
    hints = null;
    $("spec-note").textContent = "";
    $("hints-note").textContent = "";
    fetch(clip.spectrogram_url, { credentials: "same-origin" }).then(async (resp) => {
      const r = await resp.json();
      if (!clip || clip.id !== forId) return;
      if (!resp.ok || !r.stored) { $("spec-note").textContent = "No spectrogram stored for this clip (curated before they were stored)."; return; }
      const raw = atob(r.data), data = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) data[i] = raw.charCodeAt(i);
      spec = { bands: r.bands, frames: r.frames, fps: r.fps, data };
      drawWave();
    }).catch(() => {});
    fetch(clip.hints_url, { credentials: "same-origin" }).then(async (resp) => {
      const r = await resp.json();
      if (!clip || clip.id !== forId) return;
      if (!resp.ok || !r.stored) { $("hints-note").textContent = "No timeline hints stored for this clip (curated before they were stored)."; return; }
      hints = r;
      $("hints-note").textContent = Timeline.summary(hints);
      drawWave();
    }).catch(() => {});
  }

  async function run(label, fn) {
    if (busy || ended) return;
    busy = true;
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) say(label + " failed: " + e.message, true);
    } finally {
      busy = false;
    }
  }

  function checkedReasons() {
    return [...document.querySelectorAll("#reason-picks input:checked")].map((c) => c.value);
  }

  // A verdict: reject reasons are the one pressed plus those ticked; the note and (on an accept) the spans go with it.
  function decide(verdict, reason, note) {
    if (!clip) return;
    const why = verdict === "reject" ? [...(reason ? [reason] : []), ...checkedReasons().filter((c) => c !== reason)] : [];
    if (verdict === "reject" && why.length === 0) { say("tick a reason first (Shift+digit), or press its digit", true); return; }
    note = (note ?? $("note").value).trim();
    const body = {
      clip_id: clip.id, verdict, reasons: why, note: note || null,
      seconds_spent: Math.round((performance.now() - shownAt) / 100) / 10,
      spans: verdict === "accept" ? spans : [], confirm: false,
    };
    submit(body);
  }

  function submit(body) {
    const { verdict, reasons: why, note } = body;
    run("decision", async () => {
      let r;
      try {
        r = await sendDecision(body);
      } catch (e) {
        if (e.status === 401) return;
        if (e.status === 409 && e.body && e.body.needs_confirmation) { askConfirm(body, e.body); return; }
        // e.g. the lease ran out and the clip went to someone else: move on rather than get stuck.
        say("Your verdict was not saved: " + e.message, true);
        show(await api("GET", "/api/next"));
        return;
      }
      const kept = verdict === "accept" && spans.length
        ? ", keeping " + Math.round(secondsKept()) + " s (" + spans.length + (spans.length === 1 ? " stretch" : " stretches") + " left out)" : "";
      say((verdict === "accept" ? "Accepted " : "Rejected (" + why.map((c) => reasonLabel[c] || c).join("; ") + ") ") +
          r.clip_id + kept + (note ? ", with your note" : "") + ". Press U to undo.");
      show(await api("GET", "/api/next"));
      refreshMine();
    });
  }

  // Minimum listening: the server measured too little time since it handed the clip out.
  function askConfirm(body, info) {
    pending = body;
    $("confirm-text").textContent = "You have had this clip for " + Math.round(info.listened_s) + " s; listen for at least " +
      Math.round(info.min_listen_s) + " s before a verdict. Press Enter to give it anyway, or Esc to keep listening.";
    $("confirm").hidden = false;
  }
  function hideConfirm() {
    pending = null;
    $("confirm").hidden = true;
  }
  function confirmPending() {
    const body = pending;
    hideConfirm();
    if (body && clip && body.clip_id === clip.id) submit({ ...body, confirm: true });
  }

  function undo() {
    run("undo", async () => {
      const r = await api("POST", "/api/undo");
      if (r.undid === "skip") {
        say(r.handed_back ? "Took back your skip: " + r.clip_id + " is yours again."
          : "Took back your skip of " + r.clip_id + ", but another annotator holds it now.");
      } else {
        say("Undid your verdict on " + r.clip_id + ".");
      }
      show(await api("GET", "/api/next"));
      refreshMine();
    });
  }

  // --- skipped clips, the empty queue's reasons, the annotator's own recent verdicts ---
  function at(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function waitingText(w) {
    if (!w) return "";
    const parts = [];
    if (w.held_by_others) parts.push(w.held_by_others + (w.held_by_others === 1 ? " clip is" : " clips are") +
      " held by other annotators; any they leave comes back by " + at(w.held_until) + ".");
    if (w.skipped) parts.push("You skipped " + w.skipped + (w.skipped === 1 ? " clip" : " clips") + "; the first comes back at " +
      at(w.skipped_next) + ", or bring it back now from the Skipped list.");
    return parts.join(" ") || "Every clip has the verdicts it needs.";
  }

  function refreshSkipped() {
    api("GET", "/api/skipped").then((r) => {
      const list = $("skipped");
      list.replaceChildren();
      $("skipped-card").hidden = r.skipped.length === 0;
      for (const k of r.skipped) {
        const li = document.createElement("li"), b = document.createElement("button");
        li.textContent = k.clip_id + " (back at " + at(k.back_at) + ") ";
        b.type = "button";
        b.textContent = "bring back";
        b.addEventListener("click", () => unskip(k.clip_id));
        li.appendChild(b);
        list.appendChild(li);
      }
    }).catch(() => {});
  }

  function unskip(clipId) {
    run("bring back", async () => {
      const r = await api("POST", "/api/unskip", { clip_id: clipId });
      say(r.handed_back ? "Brought back " + clipId + "." : clipId + " left your skipped list; another annotator holds it now.");
      show(await api("GET", "/api/next"));
    });
  }

  function refreshMine() {
    api("GET", "/api/decisions/mine?n=5").then((r) => {
      const list = $("mine-list");
      list.replaceChildren();
      $("mine-card").hidden = r.decisions.length === 0;
      for (const d of r.decisions) {
        const li = document.createElement("li");
        let t = d.clip_id + ": " + (d.verdict === "accept" ? "accepted" : "rejected (" + d.reasons.map((c) => reasonLabel[c] || c).join("; ") + ")");
        if (d.spans.length) t += ", " + d.spans.length + (d.spans.length === 1 ? " stretch" : " stretches") + " left out";
        if (d.listened_s !== null) t += ", after " + Math.round(d.listened_s) + " s";
        li.textContent = t;
        if (d.note) {
          const q = document.createElement("q");
          q.textContent = plain(d.note);
          li.append(" ", q);
        }
        list.appendChild(li);
      }
    }).catch(() => {});
  }

  function skip() {
    if (!clip) return;
    run("skip", async () => {
      await api("POST", "/api/skip", { clip_id: clip.id });
      say("Skipped " + clip.id + ". Press U to take the skip back.");
      show(await api("GET", "/api/next"));
    });
  }

  // The note goes with the next verdict; opened for "other" its Enter rejects with that reason.
  function showNote(forReason) {
    noteFor = forReason || null;
    $("note-label").textContent = noteFor === "other"
      ? "Note for \u201cother\u201d (Enter rejects, Esc cancels)"
      : "Note for your next verdict (Enter keeps it, Esc clears it)";
    $("note-row").hidden = false;
    $("note").focus();
  }
  function hideNote(clear) {
    if (clear) $("note").value = "";
    if (!$("note").value) $("note-row").hidden = true;
    $("note").blur();
  }

  function setSpeed(r) {
    r = Math.min(2, Math.max(0.5, Math.round(r * 100) / 100));
    video.playbackRate = r;
    video.defaultPlaybackRate = r;
    $("speed").textContent = r.toFixed(2) + "×";
  }

  function seek(delta) {
    if (!isFinite(video.duration)) return;
    video.currentTime = Math.min(video.duration, Math.max(0, video.currentTime + delta));
    drawWave();
  }

  function setVolume(v) {
    video.volume = Math.min(1, Math.max(0, Math.round(v * 10) / 10));
    video.muted = false;
    showVolume();
  }
  function toggleMute() {
    video.muted = !video.muted;
    showVolume();
  }
  function showVolume() {
    $("volume").textContent = video.muted ? "muted" : Math.round(video.volume * 100) + " %";
  }

  function toggleHelp(show) {
    $("help").hidden = show === undefined ? !$("help").hidden : !show;
  }

  function togglePlay() {
    if (video.paused) video.play().catch((e) => say("play: " + e.message, true));
    else video.pause();
  }

  $("note").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      const note = $("note").value.trim();
      if (noteFor === "other") {
        if (!note) { say("write a note for \u201cother\u201d first", true); return; }
        hideNote();
        decide("reject", "other", note);
      } else {
        hideNote();
        if (note) say("Your note goes with your next verdict.");
      }
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      hideNote(true);
    }
    ev.stopPropagation();
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target instanceof HTMLInputElement && ev.target.type === "text") return;
    if (ev.target instanceof HTMLTextAreaElement || ev.target instanceof HTMLSelectElement) return;
    const k = ev.key;
    let handled = true;
    const digit = /^Digit([1-9])$/.exec(ev.code || "");
    if (!$("help").hidden && (k === "Escape" || k === "?")) toggleHelp(false);
    else if (pending && k === "Enter") confirmPending();
    else if (pending && k === "Escape") { hideConfirm(); say("Keep listening; give your verdict when you are ready."); }
    else if (ev.shiftKey && digit && Number(digit[1]) <= reasons.length) {  // tick a reason: several per reject
      const box = document.querySelector("#reason-picks input[value='" + reasons[Number(digit[1]) - 1] + "']");
      box.checked = !box.checked;
    } else if (k === "?") toggleHelp();
    else if (k === "a" || k === "A") decide("accept");
    else if (k === "r" || k === "R") decide("reject");
    else if (/^[1-9]$/.test(k) && Number(k) <= reasons.length) {
      const reason = reasons[Number(k) - 1];
      if (reason === "other" && !$("note").value.trim()) showNote("other"); else decide("reject", reason);
    } else if (k === "i" || k === "I") markIn();
    else if (k === "o" || k === "O") markOut();
    else if (k === "x" || k === "X") { spans.pop(); spanStart = null; renderSpans(); }
    else if (k === "t" || k === "T") cycleSpanReason();
    else if (k === "n" || k === "N") showNote();
    else if (k === "m" || k === "M") toggleMute();
    else if (k === "z") setZoom(zoom * 2);
    else if (k === "Z") setZoom(zoom / 2);
    else if (k === "-") setVolume(video.volume - 0.1);
    else if (k === "+") setVolume(video.volume + 0.1);
    else if (k === "Escape" && spanStart !== null) { spanStart = null; renderSpans(); }
    else if (k === " " || k === "k" || k === "K") togglePlay();
    else if (k === "ArrowLeft" || k === "j" || k === "J") seek(-5);
    else if (k === "ArrowRight" || k === "l" || k === "L") seek(5);
    else if (k === "[") setSpeed(video.playbackRate - 0.25);
    else if (k === "]") setSpeed(video.playbackRate + 0.25);
    else if (k === "=") setSpeed(1);
    else if (k === "u" || k === "U") undo();
    else if (k === "s" || k === "S") skip();
    else handled = false;
    if (handled) ev.preventDefault();
  });

  document.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", () => {
    const a = b.dataset.action;
    if (a === "accept") decide("accept");
    else if (a === "reject") {
      if (b.dataset.reason === "other" && !$("note").value.trim()) showNote("other"); else decide("reject", b.dataset.reason);
    } else if (a === "undo") undo();
    else if (a === "skip") skip();
    else if (a === "help") toggleHelp();
    else if (a === "confirm") confirmPending();
    b.blur();
  }));

  // Drag on the waveform to leave a stretch out; a click (no drag) seeks.
  const toCanvasX = (ev) => {
    const rect = canvas.getBoundingClientRect();
    return Math.min(canvas.width, Math.max(0, ((ev.clientX - rect.left) / rect.width) * canvas.width));
  };
  canvas.addEventListener("mousedown", (ev) => {
    if (!clip) return;
    const x = toCanvasX(ev);
    drag = { x0: x, x1: x, moved: false };
    ev.preventDefault();
  });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    drag.x1 = toCanvasX(ev);
    const rect = canvas.getBoundingClientRect();
    drag.moved = drag.moved || Math.abs(drag.x1 - drag.x0) * (rect.width / canvas.width) >= DRAG_MIN_PX;
    drawWave();
  });
  window.addEventListener("mouseup", (ev) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    d.x1 = toCanvasX(ev);
    const v = viewRange(), w = canvas.width;
    if (d.moved) addSpan(tOf(d.x0, w, v), tOf(d.x1, w, v));
    else if (isFinite(video.duration)) { video.currentTime = tOf(d.x1, w, v); drawWave(); }
  });
  for (const id of ["hints", "spec", "axis"]) {
    $(id).addEventListener("click", (ev) => {
      if (!isFinite(video.duration)) return;
      const c = $(id), rect = c.getBoundingClientRect();
      video.currentTime = tOf(((ev.clientX - rect.left) / rect.width) * c.width, c.width, viewRange());
      drawWave();
    });
  }
  video.addEventListener("timeupdate", drawWave);
  video.addEventListener("loadedmetadata", drawWave);
  video.addEventListener("seeked", drawWave);
  video.addEventListener("click", togglePlay);

  // Keep the lease alive while a clip is open: renewed at a third of the server's lease length.
  function renew() {
    setTimeout(renew, (leaseS * 1000) / 3);
    if (!clip || busy || ended) return;
    const held = clip.id;
    api("GET", "/api/next").then((next) => {
      if (clip && clip.id === held && (!next.clip || next.clip.id !== held)) {
        say("this clip's reservation ran out; here is the next one", true);
        show(next);
      }
    }).catch(() => {});
  }
  setTimeout(renew, (leaseS * 1000) / 3);

  $("autoplay").checked = localStorage.getItem("vm-autoplay") === "1";
  $("autoplay").addEventListener("change", () => {
    localStorage.setItem("vm-autoplay", $("autoplay").checked ? "1" : "0");
    $("autoplay").blur();
  });
  video.addEventListener("volumechange", showVolume);
  $("span-reason").addEventListener("change", () => $("span-reason").blur());  // the keys work again at once

  setSpeed(1);
  showVolume();
  show(data);
  refreshMine();
})();
