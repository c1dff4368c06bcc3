// Small DOM and formatting helpers.

export const $ = (selector, scope = document) => scope.querySelector(selector);

/** Element with attributes/properties and children: el("li", {className: "x"}, "text", child). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key in node && !key.includes("-")) node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** "1.2 s", "2 min 5 s". */
export function formatSeconds(value) {
  if (!Number.isFinite(value)) return "";
  if (value < 60) return `${value < 10 ? value.toFixed(1) : Math.round(value)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

/** "PHASE_RUNNING" -> "Running", "ATTEMPT_OUTCOME_SKIPPED_NOT_CONFIGURED" -> "skipped not configured". */
export function enumWords(value, prefix) {
  return (value || "").replace(prefix, "").toLowerCase().replaceAll("_", " ");
}

export function capitalised(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

/** Same-origin path of an image id (downloads need the same origin). */
export const imagePath = (imageId) => `/images/${encodeURIComponent(imageId)}`;
