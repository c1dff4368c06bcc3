// Layered sessions: separate, the stack with lock toggles and visibility, client-side
// composite (stacked images, background first), zip export.

import { apiKey, call, download } from "./api.js";
import { $, el } from "./dom.js";
import { clearErrors, showError } from "./errors.js";

let sessionId = "";
let layers = [];
const hidden = new Set();

const slot = () => document.querySelector('[data-error-for~="layerId"]');
const base = () => `/session/${encodeURIComponent(sessionId)}`;

function render() {
  const sorted = [...layers].sort((a, b) => (a.zOrder || 0) - (b.zOrder || 0));
  $("#composite").replaceChildren(
    ...sorted.map((layer) => el("img", { src: layer.url, alt: layer.name, hidden: hidden.has(layer.layerId), "data-layer": layer.layerId })),
  );
  $("#composite").hidden = !sorted.length;
  const first = $("#composite").firstElementChild;
  first?.addEventListener("load", () => {
    $("#composite").style.aspectRatio = `${first.naturalWidth} / ${first.naturalHeight}`;
  });
  $("#export").hidden = !sorted.length;
  $("#export").href = `${base()}/layers:export`;
  $("#export").download = `${sessionId}-layers.zip`;
  // Top layer first, as layer panels usually list them.
  $("#layer-list").replaceChildren(...sorted.reverse().map(row));
}

function row(layer) {
  const name = layer.name || layer.layerId;
  const visible = el("input", {
    type: "checkbox",
    checked: !hidden.has(layer.layerId),
    id: `show-${layer.layerId}`,
    "aria-label": `Show ${name}`,
  });
  visible.addEventListener("change", () => {
    if (visible.checked) hidden.delete(layer.layerId);
    else hidden.add(layer.layerId);
    render();
  });
  const lock = el(
    "button",
    {
      type: "button",
      className: "lock",
      "aria-pressed": layer.locked ? "true" : "false",
      "aria-label": `Lock ${name}`,
      title: layer.locked ? "Locked: iterations keep these pixels" : "Unlocked: iterations may change it",
    },
    layer.locked ? "Locked" : "Unlocked",
  );
  lock.addEventListener("click", () => toggleLock(layer, lock));
  return el(
    "li",
    { "data-layer": layer.layerId, className: layer.locked ? "locked" : "" },
    el("img", { src: layer.url, alt: "", className: "layer-thumb" }),
    el("span", { className: "layer-name" }, name, el("small", {}, ` ${Math.round((layer.coverage || 0) * 100)} %`)),
    el("label", { htmlFor: visible.id, className: "visible" }, visible, "visible"),
    lock,
  );
}

async function toggleLock(layer, button) {
  clearErrors($("#layers-panel"));
  button.disabled = true;
  try {
    const verb = layer.locked ? "unlock" : "lock";
    const { layer: updated } = await call("POST", `${base()}/${verb}`, { layerId: layer.layerId });
    layers = layers.map((l) => (l.layerId === updated.layerId ? { ...l, ...updated, locked: Boolean(updated.locked) } : l));
    render();
  } catch (error) {
    showError(error, slot());
    button.disabled = false;
  }
}

async function separate() {
  clearErrors($("#layers-panel"));
  const button = $("#separate");
  button.disabled = true;
  button.textContent = "Separating…";
  try {
    ({ layers = [] } = await call("POST", `${base()}/separate`, {}));
    hidden.clear();
    render();
    document.dispatchEvent(new CustomEvent("session-changed"));
  } catch (error) {
    showError(error, slot());
  } finally {
    button.disabled = false;
    button.textContent = "Separate";
  }
}

/** Show the panel for a layered session (hide it otherwise) and load its stack. */
export async function loadLayers(session) {
  const layered = session?.mode === "layered";
  $("#layers-panel").hidden = !layered;
  document.body.classList.toggle("with-layers", layered);
  if (!layered) return;
  if (session.sessionId !== sessionId) hidden.clear();
  sessionId = session.sessionId;
  ({ layers = [] } = await call("GET", `${base()}/layers`));
  render();
}

export function initLayers() {
  $("#separate").addEventListener("click", separate);
  $("#export").addEventListener("click", (event) => {
    if (!apiKey()) return; // the plain link works when no key is needed
    event.preventDefault();
    clearErrors($("#layers-panel"));
    download($("#export").getAttribute("href"), $("#export").download).catch((error) => showError(error, slot()));
  });
}
