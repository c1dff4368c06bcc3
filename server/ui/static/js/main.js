// The playground: wires sessions, settings, references, streaming generation, history and layers.

import { apiKey, errorFromStatus, setApiKey, stream } from "./api.js";
import { $ } from "./dom.js";
import { clearErrors, showError } from "./errors.js";
import { loadHistory } from "./history.js";
import { initLayers, loadLayers } from "./layers.js";
import { endProgress, showEvent, startProgress } from "./progress.js";
import { initReferences, referenceImages } from "./references.js";
import { clearResult, showImage, showPreview, showResult } from "./result.js";
import { createSession, current, fetchSession, loadSessions, showBanner } from "./session.js";
import { applyConfig, initSettings, loadModels, settingsFields } from "./settings.js";

let running = null; // AbortController of the generation in progress
const actionSlot = () => $("#action-error");

/** Make `session` the one in use and refresh everything that shows it. */
async function useSession(session, { showCurrent = true } = {}) {
  current.session = session;
  showBanner();
  $("#session-pick").value = session?.sessionId || "";
  if (showCurrent) {
    applyConfig(session?.config);
    showImage(session?.currentImage, "Current image");
  }
  await Promise.all([loadHistory(session?.sessionId), loadLayers(session)]);
}

async function refreshSession() {
  if (!current.session) return;
  const session = await fetchSession(current.session.sessionId);
  current.session = session;
  showBanner();
  await Promise.all([loadHistory(session.sessionId), loadSessions(), loadLayers(session)]);
}

async function newSession() {
  const config = settingsFields();
  const session = await createSession($("#project").value.trim(), $("#mode").value, config);
  await loadSessions();
  await useSession(session, { showCurrent: false });
  clearResult();
  return session;
}

function setRunning(controller) {
  running = controller;
  $("#generate").disabled = Boolean(controller);
  $("#iterate").disabled = Boolean(controller) || !current.session?.currentImage?.url;
  $("#cancel").disabled = !controller;
  $("#separate").disabled = Boolean(controller);
  document.body.classList.toggle("busy", Boolean(controller));
}

/** Run Generate or Iterate with streamed progress. */
async function run(kind) {
  if (running) return;
  clearErrors();
  const text = $("#prompt").value;
  const label = kind === "generate" ? "Generate" : "Iterate";
  const controller = new AbortController();
  setRunning(controller);
  try {
    const session = current.session || (await newSession());
    const body = { ...settingsFields(), omitImageData: true, referenceImages: referenceImages() };
    body[kind === "generate" ? "prompt" : "instructions"] = text;
    startProgress(label);
    const path = `/session/${encodeURIComponent(session.sessionId)}/${kind}:stream`;
    const last = await stream(path, body, (event) => showEvent(event, label, showPreview), controller.signal);
    if (last.phase === "PHASE_FAILED") throw errorFromStatus(last.error);
    const { provider, model } = last.result;
    endProgress("completed", `${label}: done`, `Served by ${provider} / ${model}`);
    showResult(last.result, label === "Generate" ? "Generated" : "Iterated");
  } catch (error) {
    if (controller.signal.aborted) {
      endProgress("cancelled", `${label}: cancelled`);
    } else {
      if (!$("#progress").hidden) endProgress("failed", `${label}: failed`);
      showError(error, actionSlot());
    }
  } finally {
    setRunning(null);
    await refreshSession().catch((error) => showError(error, actionSlot()));
  }
}

function cancel() {
  running?.abort();
}

async function pickSession() {
  clearErrors();
  const id = $("#session-pick").value;
  try {
    await useSession(id ? await fetchSession(id) : null);
  } catch (error) {
    showError(error, document.querySelector('[data-error-for~="sessionId"]'));
  }
}

function wire() {
  $("#compose").addEventListener("submit", (event) => {
    event.preventDefault();
    run("generate");
  });
  $("#iterate").addEventListener("click", () => run("iterate"));
  $("#cancel").addEventListener("click", cancel);
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run("generate");
    }
  });
  $("#new-session").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    try {
      await newSession();
    } catch (error) {
      showError(error, $("#new-session .field-error[data-error-for='mode']"));
    }
  });
  $("#session-pick").addEventListener("change", pickSession);
  $("#api-key").value = apiKey();
  $("#api-key").addEventListener("change", async () => {
    setApiKey($("#api-key").value.trim());
    clearErrors();
    const results = await Promise.allSettled([loadModels(), loadSessions()]);
    for (const failed of results.filter((r) => r.status === "rejected")) showError(failed.reason, actionSlot());
  });
  $("#sessions-refresh").addEventListener("click", () => loadSessions().catch((e) => showError(e, actionSlot())));
  document.addEventListener("session-changed", () => refreshSession().catch((e) => showError(e, actionSlot())));
}

async function start() {
  initSettings();
  initReferences();
  initLayers();
  wire();
  const results = await Promise.allSettled([loadModels(), loadSessions()]);
  for (const failed of results.filter((r) => r.status === "rejected")) showError(failed.reason, actionSlot());
  document.body.dataset.ready = "true";
}

start();
