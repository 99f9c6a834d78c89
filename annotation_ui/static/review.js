// The review page: keyboard-first verdicts, waveform from server peaks. Untrusted text only via textContent.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("initial-data").textContent);
  const reasons = data.reasons.map((r) => r.code);
  const $ = (id) => document.getElementById(id);
  const video = $("video"), canvas = $("wave"), ctx = canvas.getContext("2d");
  let clip = null, peaks = [], shownAt = 0, busy = false, ended = false;
  let leaseS = data.lease_s || 600;  // the server's lease length: renewed at a third of it
  const RETRY_DEFAULT_S = 5, MAX_TRIES = 30;
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
    const resp = await fetch(url, opts);
    const json = await resp.json().catch(() => ({}));
    if (resp.status === 401) sessionEnded();
    if (!resp.ok) {
      const err = new Error(json.detail || resp.status + " " + resp.statusText);
      err.status = resp.status;
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

  function drawWave() {
    const w = canvas.width, h = canvas.height, mid = h / 2;
    ctx.clearRect(0, 0, w, h);
    const played = video.duration ? video.currentTime / video.duration : 0;
    const n = peaks.length;
    for (let i = 0; i < n; i++) {
      const x = (i / n) * w, amp = Math.max(1, peaks[i] * (mid - 2));
      ctx.fillStyle = i / n < played ? "#2b6cb0" : "#a0aec0";
      ctx.fillRect(x, mid - amp, Math.max(1, w / n), 2 * amp);
    }
    ctx.fillStyle = "#e53e3e";
    ctx.fillRect(played * w - 1, 0, 2, h);
    $("time").textContent = fmt(video.currentTime) + " / " + fmt(video.duration);
  }

  function refreshProgress() {
    api("GET", "/api/progress").then(renderProgress).catch((e) => say("progress: " + e.message, true));
  }

  function show(next) {
    if (next.lease_s) leaseS = next.lease_s;
    if (next.progress) renderProgress(next.progress); else refreshProgress();
    clip = next.clip;
    hideNote();
    document.querySelectorAll(".clip-only").forEach((el) => { el.hidden = !clip; });
    if (!clip) {
      $("empty").hidden = false;
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
    drawWave();
    shownAt = performance.now();
    const forId = clip.id;
    api("GET", clip.peaks_url + "?n=" + canvas.width).then((r) => {
      if (clip && clip.id === forId) { peaks = r.peaks; drawWave(); }
    }).catch((e) => say("waveform: " + e.message, true));
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

  function decide(verdict, reason, note) {
    if (!clip) return;
    const body = {
      clip_id: clip.id, verdict, reasons: reason ? [reason] : [], note: note || null,
      seconds_spent: Math.round((performance.now() - shownAt) / 100) / 10,
    };
    run("decision", async () => {
      let r;
      try {
        r = await sendDecision(body);
      } catch (e) {
        if (e.status === 401) return;
        // e.g. the lease ran out and the clip went to someone else: move on rather than get stuck.
        say("decision not saved: " + e.message, true);
        show(await api("GET", "/api/next"));
        return;
      }
      say((verdict === "accept" ? "accepted " : "rejected (" + reason + ") ") + r.clip_id + " — U undoes");
      show(await api("GET", "/api/next"));
    });
  }

  function undo() {
    run("undo", async () => {
      const r = await api("POST", "/api/undo");
      say("undid your verdict on " + r.clip_id);
      show(await api("GET", "/api/next"));
    });
  }

  function skip() {
    if (!clip) return;
    run("skip", async () => {
      await api("POST", "/api/skip", { clip_id: clip.id });
      say("skipped " + clip.id);
      show(await api("GET", "/api/next"));
    });
  }

  function showNote() {
    $("note-row").hidden = false;
    $("note").value = "";
    $("note").focus();
  }
  function hideNote() {
    $("note-row").hidden = true;
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

  function togglePlay() {
    if (video.paused) video.play().catch((e) => say("play: " + e.message, true));
    else video.pause();
  }

  $("note").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      const note = $("note").value.trim();
      if (!note) { say("write a note for 'other' first", true); return; }
      hideNote();
      decide("reject", "other", note);
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      hideNote();
    }
    ev.stopPropagation();
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement) return;
    const k = ev.key;
    let handled = true;
    if (k === "a" || k === "A") decide("accept");
    else if (/^[1-9]$/.test(k) && Number(k) <= reasons.length) {
      const reason = reasons[Number(k) - 1];
      if (reason === "other") showNote(); else decide("reject", reason);
    } else if (k === " " || k === "k" || k === "K") togglePlay();
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
    else if (a === "reject") { if (b.dataset.reason === "other") showNote(); else decide("reject", b.dataset.reason); }
    else if (a === "undo") undo();
    else if (a === "skip") skip();
    b.blur();
  }));

  canvas.addEventListener("click", (ev) => {
    if (!isFinite(video.duration)) return;
    const rect = canvas.getBoundingClientRect();
    video.currentTime = ((ev.clientX - rect.left) / rect.width) * video.duration;
    drawWave();
  });
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

  setSpeed(1);
  show(data);
})();
