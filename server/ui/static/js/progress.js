// Live progress of a streaming generation: phase, bar (marked when estimated), ETA,
// provider/model being tried, fallbacks as they happen, previews.

import { seconds } from "./api.js";
import { $, capitalised, el, enumWords, formatSeconds } from "./dom.js";

const TERMINAL = ["PHASE_COMPLETED", "PHASE_FAILED"];

function setPercent(percent, estimated) {
  const bar = $("#bar");
  const value = Math.max(0, Math.min(100, percent || 0));
  $("#bar-fill").style.width = `${value}%`;
  bar.setAttribute("aria-valuenow", value.toFixed(0));
  bar.setAttribute("aria-valuetext", `${value.toFixed(0)} %${estimated ? " (estimated)" : ""}`);
  bar.dataset.percent = value.toFixed(1);
  bar.classList.toggle("estimated", Boolean(estimated));
  $("#estimated").hidden = !estimated;
}

/** Reset and show the panel for a new generation. */
export function startProgress(label) {
  $("#progress").hidden = false;
  $("#progress").dataset.state = "running";
  $("#phase").textContent = `${label}: queued`;
  $("#eta").textContent = "";
  $("#attempt").textContent = "";
  $("#fallbacks").replaceChildren();
  setPercent(0, false);
}

/** Apply one event; `onPreview(dataUri)` is called for preview images. */
export function showEvent(event, label, onPreview) {
  const phase = event.phase || "PHASE_UNSPECIFIED";
  $("#phase").textContent = `${label}: ${enumWords(phase, "PHASE_")}`;
  if (event.message && !TERMINAL.includes(phase)) $("#phase").textContent += ` (${event.message})`;
  if (phase === "PHASE_RUNNING" || phase === "PHASE_FALLBACK") setPercent(event.percent, event.percentEstimated);
  if (phase === "PHASE_PERSISTING") setPercent(100, false);
  const eta = seconds(event.eta);
  const elapsed = seconds(event.elapsed);
  $("#eta").textContent = [
    eta ? `about ${formatSeconds(eta)} left` : "",
    elapsed ? `${formatSeconds(elapsed)} elapsed` : "",
  ].filter(Boolean).join(" · ");
  if (event.attempt?.provider) {
    const a = event.attempt;
    $("#attempt").textContent = `Trying ${a.provider} / ${a.model} (attempt ${a.attemptNumber || 1})`;
  }
  if (phase === "PHASE_FALLBACK") {
    $("#fallbacks").append(el("li", {}, capitalised(event.message || "falling back")));
  }
  if (event.preview?.data) {
    onPreview(`data:${event.preview.contentType || "image/png"};base64,${event.preview.data}`);
  }
}

/** Final state of the panel: "completed", "failed" or "cancelled"; `detail` replaces the attempt line. */
export function endProgress(state, text, detail) {
  $("#progress").dataset.state = state;
  $("#phase").textContent = text;
  if (detail) $("#attempt").textContent = detail;
  if (state === "completed") setPercent(100, false);
  $("#eta").textContent = "";
}
