// Errors in plain words, next to what caused them. Slots are elements with
// `data-error-for="field other"`; the slot marked "*" takes errors without a field.

const PLAIN = {
  400: "Check the highlighted input.",
  401: "Credentials are needed: enter an API key.",
  403: "These credentials do not allow this.",
  404: "Not found.",
  409: "This session is busy with another generation; wait for it or cancel it.",
  413: "The request is too large (reference images too big?).",
  429: "Too many requests; try again shortly.",
  499: "Cancelled.",
  503: "No provider could make the image.",
  504: "The generation took too long and was stopped.",
};

/** Field name as a slot key: "config.aspectRatio" -> "aspectRatio", "referenceImages[3]" -> "referenceImages". */
export function fieldKey(field) {
  return field.replace(/^config\./, "").split(/[.[]/)[0];
}

function slotFor(key, scope) {
  for (const slot of scope.querySelectorAll("[data-error-for]")) {
    if (slot.dataset.errorFor.split(" ").includes(key)) return slot;
  }
  return null;
}

function mark(slot, text) {
  slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
  const control = slot.previousElementSibling;
  if (control?.matches("input, select, textarea")) control.setAttribute("aria-invalid", "true");
}

/** Clear every message inside `scope` (the whole page by default). */
export function clearErrors(scope = document) {
  for (const slot of scope.querySelectorAll("[data-error-for]")) slot.textContent = "";
  for (const control of scope.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/**
 * Show `error` (ApiError or Error): each field violation next to its field, the rest in
 * `fallback` (a slot element). Returns the slots used.
 */
export function showError(error, fallback) {
  const used = [];
  const violations = error.violations || [];
  for (const { field, description } of violations) {
    const slot = slotFor(fieldKey(field || ""), document) || fallback;
    mark(slot, slot === fallback ? `${field}: ${description}` : description);
    used.push(slot);
  }
  if (!violations.length && error.needsCredentials) {
    const keySlot = document.querySelector('[data-error-for~="authorization"]');
    keySlot.closest("details").open = true;
    mark(keySlot, error.message);
    used.push(keySlot);
  }
  if (!violations.length) {
    const plain = PLAIN[error.status];
    let text = error.message;
    if (plain && !text.toLowerCase().startsWith(plain.toLowerCase().slice(0, 12))) text = `${plain} ${text}`;
    const attempts = (error.attempts || []).map((a) => `${a.provider}/${a.model}: ${a.error || a.outcome}`);
    if (attempts.length) text += ` Tried ${attempts.join("; ")}.`;
    mark(fallback, text);
    used.push(fallback);
  }
  return used;
}

/** Show a message of the page's own (no request made) in `slot`. */
export function showMessage(slot, text) {
  mark(slot, text);
}
