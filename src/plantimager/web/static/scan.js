// The Scan control: start a scan of N turntable positions and follow its progress (scan events).
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  const button = $("#scan-start");
  const input = $("#scan-positions");
  const bar = $("#scan-progress");
  const text = $("#scan-text");
  let last = { run: "", seq: 0 };

  function fail(textOf) {
    const box = document.createElement("div");
    box.className = "message error";
    box.setAttribute("role", "alert");
    box.textContent = textOf;
    $("#messages").prepend(box);
  }

  function show(job) {
    // The answer to Scan and the events race each other: never go back to an older state.
    if (!job || (job.run === last.run && job.seq < last.seq)) return;
    last = { run: job.run, seq: job.seq };
    button.disabled = job.state === "running";
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
      text.textContent = `Scanning: ${job.taken} of ${job.total} positions, ${job.downloaded} images downloaded (${doing})…`;
    } else if (job.state === "done") {
      const r = job.result;
      const before = r.already ? ` (${r.already} taken before)` : "";
      text.textContent = `Scan ${r.scan} ${r.complete ? "complete" : "stopped"}: ${r.taken + r.already} of ${r.total} positions${before}, ${job.downloaded} images downloaded into ${r.dataset}`;
    } else if (job.state === "failed") {
      text.textContent = `Scan failed: ${job.error}`;
      fail(`scan failed: ${job.error}`);
    }
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await fetch("/api/scan", {
        method: "POST",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ positions: Number(input.value) }),
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) throw new Error(data && data.error ? data.error : `the controller answered ${response.status}`);
      show(data);
    } catch (error) {
      fail(error.message);
      button.disabled = false;
    }
  });

  const source = new EventSource("/api/events");
  source.addEventListener("scan", (event) => show(JSON.parse(event.data)));
  fetch("/api/scan", { headers: { Accept: "application/json" } })
    .then((response) => response.json())
    .then(show)
    .catch(() => {});
})();
