// The dashboard's script: live camera list (server-sent events), previews (one multiplexed stream),
// capture, download with progress, settings, shutdown, gallery. No framework, no build step.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const initial = JSON.parse($("#initial-state").textContent);
  const grid = $("#grid");
  const cards = new Map(); // camera key -> card element
  let snapshot = initial.snapshot;
  // With accounts, every action carries the session's CSRF token, and a viewer's action buttons
  // stay disabled (the server refuses those actions anyway).
  const csrfMeta = $('meta[name="csrf-token"]');
  const csrfToken = csrfMeta ? csrfMeta.content : null;
  const canOperate = document.body.dataset.role === "operator";

  function toLogin(expired) {
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(`/login?next=${next}${expired ? "&expired=1" : ""}`);
  }

  // -- talking to the controller -----------------------------------------------------------------------
  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (csrfToken && method !== "GET") options.headers["X-CSRF-Token"] = csrfToken;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      throw new Error(`cannot reach the controller (${error.message})`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (response.status === 401 && csrfToken) {
      toLogin(data && data.error && data.error.includes("expired"));
      throw new Error(data && data.error ? data.error : "not logged in");
    }
    if (!response.ok) {
      const text = data && data.error ? data.error : `the controller answered ${response.status} ${response.statusText}`;
      const failure = new Error(text);
      failure.data = data;
      throw failure;
    }
    return data;
  }

  function pathOf(key) {
    return key.split("/").map(encodeURIComponent).join("/");
  }

  function message(text, kind = "error") {
    const box = document.createElement("div");
    box.className = `message ${kind}`;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    const span = document.createElement("span");
    span.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("aria-label", "dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => box.remove());
    box.append(span, close);
    const list = $("#messages");
    list.prepend(box);
    while (list.children.length > 5) list.lastElementChild.remove();
    if (kind !== "error") setTimeout(() => box.remove(), 6000);
    return box;
  }

  function failuresText(failures) {
    const entries = Object.entries(failures || {});
    if (!entries.length) return "";
    const shown = entries.slice(0, 4).map(([camera, reason]) => `${camera}: ${reason}`);
    return shown.join("; ") + (entries.length > 4 ? `; and ${entries.length - 4} more` : "");
  }

  async function busy(button, label, action) {
    const text = button.textContent;
    button.disabled = true;
    button.dataset.busy = "1";
    button.textContent = label;
    try {
      return await action();
    } catch (error) {
      message(error.message);
      return null;
    } finally {
      delete button.dataset.busy;
      button.disabled = !canOperate;
      button.textContent = text;
      refreshActions();
    }
  }

  // An operator's captures and downloads wait while a scan runs (the server refuses them: the
  // scan's dataset holds only its positions), and a download while one runs.
  let scanning = initial.scan.state === "running";
  let downloading = initial.download.state === "running";
  const SCANNING = "a scan is running: it captures at each position";

  function refreshActions(root = document) {
    if (!canOperate) return; // a viewer's stay disabled, with their own tooltip
    for (const button of root.querySelectorAll("#capture-all, .capture-one, #download-all")) {
      if (button.dataset.busy) continue;
      button.disabled = scanning || (button.id === "download-all" && downloading);
      button.title = scanning ? SCANNING : "";
    }
  }

  // -- the live header and the cards ----------------------------------------------------------------
  const STATE_LABELS = { ready: "live", unreachable: "gone: not answering", connecting: "connecting", failed: "failed" };

  function settingsText(cam) {
    const [w, h] = cam.resolution;
    const quality = cam.encoding === "jpeg" && cam.quality ? ` q${cam.quality}` : "";
    return `${w}×${h} · ${cam.encoding}${quality} · ${cam.rotation}°`;
  }

  function makeCard(key) {
    const card = $("#card-template").content.firstElementChild.cloneNode(true);
    card.dataset.key = key;
    wireCard(card);
    return card;
  }

  function wireCard(card) {
    $(".preview", card).addEventListener("click", () => openViewer(card.dataset.key));
    $(".capture-one", card).addEventListener("click", (event) => captureOne(card.dataset.key, event.currentTarget));
    $(".settings-one", card).addEventListener("click", () => openSettings(card.dataset.key));
    for (const button of card.querySelectorAll(".card-actions button")) button.disabled = !canOperate;
    refreshActions(card); // a card may be made before it is on the page
  }

  function fillCard(card, cam) {
    $(".cam-name", card).textContent = cam.key;
    $(".node-id", card).textContent = cam.node_id;
    const address = $(".address", card);
    address.textContent = cam.address.split("://").pop();
    address.title = cam.address;
    $(".settings", card).textContent = settingsText(cam);
    $(".state-badge", card).textContent = STATE_LABELS[cam.state] || cam.state;
    $(".preview-img", card).alt = `preview of ${cam.key}`;
    $(".view-link", card).href = cam.view;
    const error = $(".card-error", card);
    error.textContent = cam.error || "";
    error.hidden = !cam.error;
    $(".preview-note", card).textContent = cam.stream_url ? "waiting for frames…" : "no preview: the node runs none";
    const offset = cam.clock_offset_ms;
    $(".clock", card).textContent = offset == null ? "unknown" : `${offset >= 0 ? "+" : ""}${offset.toFixed(3)} ms`;
    const clockFlag = $(".clock-flag", card);
    clockFlag.textContent = cam.clock_flag || "";
    clockFlag.hidden = !cam.clock_flag;
    card.dataset.state = cam.state;
    card.classList.toggle("gone", !cam.healthy);
    card.classList.toggle("clock-off", Boolean(cam.clock_flag));
  }

  function size(bytes) {
    if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
    if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
    return `${Math.round(bytes / 1e3)} kB`;
  }

  function plural(n, word) {
    return `${word}${n === 1 ? "" : "s"}`;
  }

  function applySnapshot(next) {
    snapshot = next;
    $("#camera-count").textContent = next.count;
    $("#camera-word").textContent = plural(next.count, "camera");
    document.title = `plantimager · ${next.count} ${plural(next.count, "camera")}`;
    $("#healthy-count").textContent = `${next.healthy} live`;
    const unhealthy = $("#unhealthy-count");
    unhealthy.textContent = `${next.unhealthy} not answering`;
    unhealthy.hidden = !next.unhealthy;
    const failed = $("#failed-count");
    failed.textContent = `${next.failed_nodes.length} device(s) failed`;
    failed.title = next.failed_nodes.map((n) => `${n.name}: ${n.error}`).join("\n");
    failed.hidden = !next.failed_nodes.length;
    const registry = $("#registry-state");
    registry.textContent = next.connected ? "registry connected" : "registry unreachable";
    registry.className = `registry ${next.connected ? "ok" : "bad"}`;
    $("#shutdown-count").textContent = next.nodes.length;

    const seen = new Set();
    next.cameras.forEach((cam, index) => {
      seen.add(cam.key);
      let card = cards.get(cam.key);
      if (!card) {
        card = makeCard(cam.key);
        cards.set(cam.key, card);
      }
      fillCard(card, cam);
      if (grid.children[index] !== card) grid.insertBefore(card, grid.children[index] || null);
    });
    for (const [key, card] of cards) {
      if (!seen.has(key)) {
        card.remove();
        cards.delete(key);
      }
    }
    $("#empty").hidden = next.count > 0;
  }

  // -- previews: every camera's frames on one connection -------------------------------------------------
  // A browser opens at most 6 connections to one server; one MJPEG <img> per camera would stall the
  // cameras beyond the fifth. /api/previews.bin carries them all: u16 name length, u32 frame length,
  // name, JPEG.
  const decoder = new TextDecoder();
  let previewAbort = null;

  function showFrame(key, bytes) {
    const card = cards.get(key);
    if (!card) return;
    const img = $(".preview-img", card);
    if (img.dataset.loading === "1") {
      img._pending = bytes; // the newest frame wins; shown once the current one is decoded
      return;
    }
    img.dataset.loading = "1";
    const url = URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
    const previous = img._url;
    img._url = url;
    const done = (loaded) => {
      img.dataset.loading = "0";
      if (previous) URL.revokeObjectURL(previous);
      // Counted here, once decoding has finished: the size of a frame in flight reads as 0.
      if (loaded) {
        card.dataset.frames = String(Number(card.dataset.frames || 0) + 1);
        card.dataset.frameSize = `${img.naturalWidth}x${img.naturalHeight}`;
        card.classList.add("has-frame");
      } else {
        card.dataset.badFrames = String(Number(card.dataset.badFrames || 0) + 1);
      }
      const pending = img._pending;
      img._pending = null;
      if (pending) showFrame(key, pending);
    };
    img.onload = () => done(true);
    img.onerror = () => done(false);
    img.src = url;
  }

  async function readPreviews(responsePromise) {
    const response = await responsePromise;
    if (!response || !response.ok || !response.body) throw new Error("previews: no stream");
    const reader = response.body.getReader();
    let buffer = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
      let offset = 0;
      while (buffer.length - offset >= 6) {
        const view = new DataView(buffer.buffer, buffer.byteOffset + offset);
        const nameLength = view.getUint16(0);
        const frameLength = view.getUint32(2);
        const end = offset + 6 + nameLength + frameLength;
        if (buffer.length < end) break;
        const name = decoder.decode(buffer.subarray(offset + 6, offset + 6 + nameLength));
        showFrame(name, buffer.slice(offset + 6 + nameLength, end));
        offset = end;
      }
      buffer = buffer.slice(offset);
    }
  }

  let previewsRunning = false;
  async function runPreviews() {
    if (previewsRunning) return;
    previewsRunning = true;
    let pause = 500;
    try {
      while (!document.hidden) {
        previewAbort = new AbortController();
        try {
          await readPreviews(fetch("/api/previews.bin", { signal: previewAbort.signal, cache: "no-store" }));
          pause = 500;
        } catch (error) {
          if (previewAbort.signal.aborted) return;
        }
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 5000);
      }
    } finally {
      previewsRunning = false;
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (previewAbort) previewAbort.abort(); // nobody looks: the relay and the nodes stop
    } else {
      runPreviews();
    }
  });

  // -- full-screen preview ----------------------------------------------------------------------------
  const viewer = $("#viewer-dialog");
  const viewerImg = $("#viewer-img");

  function openViewer(key) {
    const cam = snapshot.cameras.find((c) => c.key === key);
    if (!cam) return;
    $("#viewer-title").textContent = `${cam.key} · ${cam.node_id} @ ${cam.address}`;
    $("#viewer-open").href = cam.view;
    viewerImg.alt = `live preview of ${cam.key}`;
    viewerImg.src = cam.preview;
    viewer.showModal();
  }

  viewer.addEventListener("close", () => {
    viewerImg.removeAttribute("src"); // ends the relayed stream
    if (document.fullscreenElement) document.exitFullscreen();
  });
  $("#viewer-close").addEventListener("click", () => viewer.close());
  $("#viewer-full").addEventListener("click", () => {
    if (viewer.requestFullscreen) viewer.requestFullscreen().catch(() => {});
  });

  // -- capture ------------------------------------------------------------------------------------------
  let reportedCapture = null; // the capture whose failures were shown (the answer and the event both come)
  let shownCapture = null;
  function showCapture(result) {
    const box = $("#capture-result");
    if (!result) {
      box.textContent = "No capture yet.";
      return;
    }
    // The answer and the event of a capture race each other: keep the newest capture shown.
    if (shownCapture && shownCapture.dataset === result.dataset && result.capture_no < shownCapture.no) return;
    shownCapture = { dataset: result.dataset, no: result.capture_no };
    const skew = result.skew_ms === null || result.skew_ms === undefined ? "–" : `${result.skew_ms.toFixed(2)} ms`;
    const clocks = Object.keys(result.clock_flags || {});
    const clockNote = clocks.length ? ` · clock off on ${clocks.join(", ")}` : "";
    box.textContent = `Capture ${result.capture_no}: ${result.answered} of ${result.asked} cameras answered, skew ${skew}${clockNote}`;
    box.classList.toggle("warn", result.answered < result.asked || clocks.length > 0);
    const failed = failuresText(result.failures);
    box.title = failed;
    const id = `${result.dataset} ${result.capture_no}`;
    if (failed && reportedCapture !== id) message(`capture ${result.capture_no}: ${failed}`);
    reportedCapture = id;
  }

  $("#capture-all").addEventListener("click", (event) =>
    busy(event.currentTarget, "Capturing…", async () => {
      showCapture(await api("POST", "/api/capture", {}));
      loadGallery();
    }),
  );

  function captureOne(key, button) {
    return busy(button, "…", async () => {
      showCapture(await api("POST", `/api/cameras/${pathOf(key)}/capture`, {}));
      loadGallery();
    });
  }

  // -- download -------------------------------------------------------------------------------------
  function showDownload(job) {
    const bar = $("#download-progress");
    const text = $("#download-text");
    if (!job || job.state === "idle") {
      bar.hidden = true;
      text.textContent = "No download yet.";
      return;
    }
    bar.hidden = false;
    bar.max = Math.max(job.total, 1);
    bar.value = job.state === "done" && !job.total ? 1 : job.done;
    downloading = job.state === "running";
    refreshActions();
    if (job.state === "running") {
      text.textContent = `Downloading ${job.done} of ${job.total || "?"} images (${size(job.bytes)})…`;
    } else if (job.state === "done") {
      const r = job.result;
      const owed = r.owed ? `, ${r.owed} still owed` : "";
      text.textContent = `Downloaded ${r.written} images (${size(r.bytes)} in ${r.seconds.toFixed(1)} s${owed}) into `;
      const folder = document.createElement("code");
      folder.id = "dataset-folder";
      folder.textContent = r.dataset;
      text.append(folder);
    } else if (job.state === "failed") {
      text.textContent = `Download failed: ${job.error}`;
    }
  }

  let lastDownloadState = initial.download.state;
  let lastDownload = { run: initial.download.run, seq: initial.download.seq };
  function onDownload(job) {
    // The answer to Download All and the events race each other: never go back to an older state.
    if (job.run === lastDownload.run && job.seq < lastDownload.seq) return;
    lastDownload = { run: job.run, seq: job.seq };
    showDownload(job);
    if (lastDownloadState === "running" && job.state !== "running") {
      if (job.state === "failed") message(`download failed: ${job.error}`);
      const failed = job.result ? failuresText(job.result.failures) : "";
      if (failed) message(`download: ${failed}`);
      loadGallery();
    }
    lastDownloadState = job.state;
  }

  $("#download-all").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true; // enabled again when the download ends (see showDownload)
    try {
      onDownload(await api("POST", "/api/download", {}));
    } catch (error) {
      message(error.message);
      button.disabled = !canOperate;
      refreshActions();
    }
  });

  // -- gallery ------------------------------------------------------------------------------------
  function showGallery(gallery) {
    const box = $("#gallery");
    const info = $("#gallery-info");
    box.replaceChildren();
    const capture = gallery && gallery.capture;
    if (!capture) {
      $("#gallery-title").textContent = "Last capture";
      info.textContent = "Nothing captured yet.";
      return;
    }
    $("#gallery-title").textContent = `Last capture: ${capture.capture_no}`;
    const failed = Object.keys(capture.failures || {}).length;
    const lost = Object.keys(capture.lost || {}).length;
    const parts = [`${gallery.images.length} ${plural(gallery.images.length, "image")} downloaded`];
    if (capture.owed) parts.push(`${capture.owed} still on the cameras (Download All fetches them)`);
    if (failed) parts.push(`${failed} did not capture`);
    if (lost) parts.push(`${lost} lost`);
    if (capture.skew_ms !== null && capture.skew_ms !== undefined) parts.push(`skew ${capture.skew_ms.toFixed(2)} ms`);
    info.textContent = `${parts.join(" · ")} · folder ${gallery.dataset}`;
    for (const image of gallery.images) {
      const figure = document.createElement("figure");
      const link = document.createElement("a");
      link.href = image.url;
      link.target = "_blank";
      link.rel = "noopener";
      const img = document.createElement("img");
      img.src = image.thumb;
      img.alt = image.file;
      img.loading = "lazy";
      link.append(img);
      const caption = document.createElement("figcaption");
      caption.textContent = image.file;
      caption.title = `${image.camera}, ${image.offset_ms} ms after t0, ${image.size} bytes`;
      figure.append(link, caption);
      box.append(figure);
    }
  }

  async function loadGallery() {
    try {
      showGallery(await api("GET", "/api/gallery"));
    } catch (error) {
      message(`gallery: ${error.message}`);
    }
  }

  // -- settings -----------------------------------------------------------------------------------
  const settingsDialog = $("#settings-dialog");
  const form = $("#settings-form");

  function targetCameras() {
    const chosen = $("#settings-target").value;
    return chosen ? snapshot.cameras.filter((c) => c.key === chosen || c.node === chosen) : snapshot.cameras;
  }

  function fillControls() {
    const box = $("#controls");
    box.replaceChildren();
    const controls = new Map();
    for (const cam of targetCameras()) {
      for (const [name, value] of Object.entries(cam.controls || {})) if (!controls.has(name)) controls.set(name, value);
    }
    for (const [name, value] of [...controls].sort()) {
      const label = document.createElement("label");
      label.textContent = name;
      const input = document.createElement("input");
      input.name = `control:${name}`;
      input.dataset.control = name;
      input.type = typeof value === "number" ? "number" : "text";
      if (input.type === "number") input.step = "any";
      input.placeholder = `now ${JSON.stringify(value)}`;
      label.append(input);
      box.append(label);
    }
    $("#controls-fieldset").hidden = controls.size === 0;
  }

  function openSettings(key = "") {
    const select = $("#settings-target");
    select.replaceChildren(new Option("All cameras", ""));
    for (const cam of snapshot.cameras) select.append(new Option(cam.key, cam.key));
    select.value = key;
    form.reset();
    select.value = key;
    $("#settings-result").textContent = "";
    fillControls();
    settingsDialog.showModal();
  }

  function readSettings() {
    const body = {};
    const data = new FormData(form);
    const text = (name) => String(data.get(name) || "").trim();
    if (text("camera")) body.camera = text("camera");
    if (text("resolution")) body.resolution = text("resolution");
    if (text("encoding")) body.encoding = text("encoding");
    if (text("quality")) body.quality = Number(text("quality"));
    if (text("rotation")) body.rotation = Number(text("rotation"));
    const controls = {};
    for (const input of form.querySelectorAll("[data-control]")) {
      const value = input.value.trim();
      if (!value) continue;
      if (input.type === "number") controls[input.dataset.control] = Number(value);
      else if (value === "true" || value === "false") controls[input.dataset.control] = value === "true";
      else controls[input.dataset.control] = value;
    }
    if (Object.keys(controls).length) body.controls = controls;
    return body;
  }

  $("#settings-target").addEventListener("change", fillControls);
  $("#open-settings").addEventListener("click", () => openSettings(""));
  form.addEventListener("submit", (event) => {
    if (event.submitter && event.submitter.value === "close") return; // closes the dialog
    event.preventDefault();
    applySettings();
  });

  async function applySettings() {
    const result = $("#settings-result");
    result.className = "form-result";
    result.textContent = "Applying…";
    const button = $("#settings-apply");
    button.disabled = true;
    try {
      const answer = await api("POST", "/api/settings", readSettings());
      const done = Object.keys(answer.settings).length;
      const failed = failuresText(answer.failures);
      result.textContent = `Applied to ${done} camera${done === 1 ? "" : "s"}.` + (failed ? ` Not applied: ${failed}` : "");
      result.classList.toggle("error", Boolean(failed));
    } catch (error) {
      result.textContent = error.message;
      result.classList.add("error");
    } finally {
      button.disabled = false;
    }
  }

  // -- shutdown -------------------------------------------------------------------------------------
  const shutdownDialog = $("#shutdown-dialog");
  $("#shutdown-all").addEventListener("click", () => {
    shutdownDialog.returnValue = "";
    shutdownDialog.showModal();
  });
  shutdownDialog.addEventListener("close", async () => {
    if (shutdownDialog.returnValue !== "confirm") return;
    const button = $("#shutdown-all");
    await busy(button, "Shutting down…", async () => {
      const result = await api("POST", "/api/shutdown", { confirm: true });
      const failed = failuresText(result.failures);
      message(`Shutdown sent: ${result.stopped.length} node(s) stopping.` + (failed ? ` No answer from ${failed}` : ""), "info");
    });
  });

  // -- live updates ------------------------------------------------------------------------------------
  // One event stream per page; the page's other scripts subscribe through `plantimager.on`.
  const source = new EventSource("/api/events");
  function on(name, handler) {
    source.addEventListener(name, (event) => {
      try {
        handler(JSON.parse(event.data));
      } catch (error) {
        console.error(name, error);
      }
    });
  }

  function connectEvents() {
    const conn = $("#conn-state");
    source.addEventListener("open", () => {
      conn.textContent = "live";
      conn.className = "conn ok";
    });
    source.addEventListener("error", () => {
      conn.textContent = "reconnecting…";
      conn.className = "conn bad";
      if (csrfToken) api("GET", "/api/account").catch(() => {}); // off to the login page if the session ended
    });
    on("cameras", applySnapshot);
    on("capture", (result) => showCapture(result));
    on("download", onDownload);
    on("scan", (job) => {
      scanning = job.state === "running";
      refreshActions();
    });
    on("rig", (event) => {
      if (event.kind === "node_failed") message(`camera node ${event.node}: ${event.detail}`);
    });
  }

  // -- the account ----------------------------------------------------------------------------------
  const accountForm = $("#account");
  if (accountForm) {
    accountForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("POST", "/logout");
      } finally {
        location.assign("/login");
      }
    });
  }

  // -- start -------------------------------------------------------------------------------------------
  // Every button is wired by now: the actions may be used (by an operator; a viewer's stay disabled).
  for (const id of ["#capture-all", "#download-all", "#open-settings", "#shutdown-all"]) $(id).disabled = !canOperate;
  refreshActions();
  for (const card of grid.querySelectorAll(".card")) {
    cards.set(card.dataset.key, card);
    wireCard(card);
  }
  applySnapshot(snapshot);
  showCapture(initial.capture);
  showDownload(initial.download);
  showGallery(initial.gallery);
  connectEvents();
  runPreviews();
  // What the page's other scripts (scan.js) share: one way to call the controller, to show a
  // message and to follow the event stream.
  window.plantimager = Object.freeze({ api, message, on, canOperate });
})();
