// Settings: aspect ratio, size tier and provider/model from the live GET /models catalogue.

import { call, seconds } from "./api.js";
import { $, el, formatSeconds } from "./dom.js";

const ASPECT_RATIOS = ["1:1", "4:5", "9:16", "16:9", "3:2", "2:3", "3:4", "4:3", "5:4", "21:9"];
const ALIASES = { story: "9:16", feed: "4:5" };
const SIZES = ["512", "1K", "2K", "4K"];

let models = [];

function fillStatic() {
  const ratio = $("#aspect-ratio");
  ratio.append(...ASPECT_RATIOS.map((r) => el("option", { value: r }, r)));
  ratio.append(...Object.entries(ALIASES).map(([alias, r]) => el("option", { value: alias }, `${alias} (${r})`)));
  $("#image-size").append(...SIZES.map((s) => el("option", { value: s }, s)));
  $("#image-size").value = "1K";
}

function modelLabel(m) {
  const parts = [m.model];
  if (m.local) parts.push("local renderer, not an AI model");
  if (!m.configured) parts.push("not configured");
  else if (m.inCooldown) parts.push("cooling down");
  if (m.creditsPerImage) parts.push(`${m.creditsPerImage} credits`);
  if (m.typicalLatency) parts.push(`~${formatSeconds(seconds(m.typicalLatency))}`);
  return parts.join(" · ");
}

/** Load the catalogue into the model select (grouped by provider). */
export async function loadModels() {
  const select = $("#model");
  const { models: list = [] } = await call("GET", "/models");
  models = list;
  const groups = new Map();
  for (const m of list) {
    if (!groups.has(m.provider)) groups.set(m.provider, []);
    groups.get(m.provider).push(m);
  }
  select.replaceChildren(el("option", { value: "" }, "Default (session, else the server's chain)"));
  for (const [provider, items] of groups) {
    const configured = items.some((m) => m.configured);
    const label = configured ? provider : `${provider} (not configured)`;
    select.append(
      el("optgroup", { label }, ...items.map((m) => el("option", { value: `${m.provider}/${m.model}` }, modelLabel(m)))),
    );
  }
  describeModel();
}

/** Explain the chosen model under the select (unconfigured, local, cooldown). */
export function describeModel() {
  const [provider, model] = $("#model").value.split("/");
  const m = models.find((x) => x.provider === provider && x.model === model);
  let note = "";
  if (m && !m.configured) note = `${provider} has no key configured: the fallback chain serves instead.`;
  else if (m?.inCooldown) note = `${provider}/${model} is cooling down after failures: the fallback chain serves instead.`;
  else if (m?.local) note = "The local renderer draws a deterministic scene; it is not an AI model.";
  else if (m?.notes) note = m.notes;
  $("#model-note").textContent = note;
}

/** The settings as request fields. */
export function settingsFields() {
  const fields = { aspectRatio: $("#aspect-ratio").value, imageSize: $("#image-size").value };
  const [provider, model] = $("#model").value.split("/");
  if (provider) Object.assign(fields, { provider, model });
  return fields;
}

/** Show a session's config in the controls. */
export function applyConfig(config = {}) {
  if (config.aspectRatio) $("#aspect-ratio").value = config.aspectRatio;
  if (config.imageSize) $("#image-size").value = config.imageSize;
  const value = config.provider ? `${config.provider}/${config.model}` : "";
  if ([...$("#model").options].some((o) => o.value === value)) $("#model").value = value;
  describeModel();
}

export function initSettings() {
  fillStatic();
  $("#model").addEventListener("change", describeModel);
}
