// The Scan control: start a scan of N turntable positions and follow its progress (scan events).
// It calls the controller and follows the event stream through what app.js shares (`plantimager`),
// so a scan carries the session's CSRF token and an ended session leads back to the login.
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  const { api, message, on, canOperate } = window.plantimager;
  const button = $("#scan-start");
  const stopButton = $("#scan-stop");
  const input = $("#scan-positions");
  const bar = $("#scan-progress");
  const text = $("#scan-text");
  let last = { run: "", seq: 0 };

  function show(job) {
    // The answer to Scan and the events race each other: never go back to an older state.
    if (!job || (job.run === last.run && job.seq < last.seq)) return;
    last = { run: job.run, seq: job.seq };
    button.disabled = !canOperate || job.state === "running";
    stopButton.hidden = job.state !== "running";
    stopButton.disabled = !canOperate || Boolean(job.stopping);
    if (job.state === "idle") {
      bar.hidden = true;
      text.textContent = "No scan yet.";
      return;
    }
    bar.hidden = false;
    bar.max = Math.max(job.total, 1);
    bar.value = job.taken;
    const angle = job.angle === null ? "" : ` at ${job.angle.toFixed(1)}°`;
    if (job.state === "running") {
      const doing = job.phase === "moving" ? `turning to position ${job.index + 1}${angle}` : `position ${job.index + 1}${angle} captured`;
      const what = job.stopping ? `stopping after position ${job.index + 1}` : doing;
      text.textContent = `Scanning: ${job.taken} of ${job.total} positions, ${job.downloaded} images downloaded (${what})…`;
    } else if (job.state === "done") {
      const r = job.result;
      const before = r.already ? ` (${r.already} taken before)` : "";
      const rest = r.complete ? "" : "; Scan goes on from there";
      text.textContent = `Scan ${r.scan} ${r.complete ? "complete" : "stopped"}: ${r.taken + r.already} of ${r.total} positions${before}, ${job.downloaded} images downloaded into ${r.dataset}${rest}`;
    } else if (job.state === "failed") {
      text.textContent = `Scan failed: ${job.error}`;
      message(`scan failed: ${job.error}`);
    }
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      show(await api("POST", "/api/scan", { positions: Number(input.value) }));
    } catch (error) {
      message(error.message);
      button.disabled = !canOperate;
    }
  });

  stopButton.addEventListener("click", async () => {
    stopButton.disabled = true;
    try {
      show(await api("POST", "/api/scan/stop", {}));
    } catch (error) {
      message(error.message);
      stopButton.disabled = !canOperate;
    }
  });

  on("scan", show);
  show(JSON.parse($("#initial-state").textContent).scan); // wired: usable now (by an operator)
})();
