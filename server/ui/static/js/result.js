// The big image with its details: a fresh result, a preview, or a history turn.

import { seconds } from "./api.js";
import { $, el, enumWords, formatSeconds, imagePath } from "./dom.js";

function show(src, alt, preview = false) {
  const img = $("#result-image");
  img.src = src;
  img.alt = alt;
  img.hidden = false;
  img.classList.toggle("preview", preview);
  $("#result-empty").hidden = true;
}

function row(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function ref(r) {
  return r?.provider ? `${r.provider} / ${r.model}` : "";
}

function attemptsList(attempts = []) {
  if (!attempts.length) return null;
  return el(
    "ol",
    { className: "attempts" },
    ...attempts.map((a) =>
      el("li", {}, `${a.provider} / ${a.model}: ${enumWords(a.outcome, "ATTEMPT_OUTCOME_")}`, a.error ? ` (${a.error})` : ""),
    ),
  );
}

function downloads(imageId, url, contentType) {
  const extension = (contentType || "image/png").split("/")[1] || "png";
  return el(
    "p",
    { className: "links" },
    el("a", { className: "button", id: "download", href: imagePath(imageId), download: `${imageId}.${extension}` }, "Download"),
    " ",
    el("a", { href: url, target: "_blank", rel: "noopener", className: "url" }, url),
  );
}

/** A preview image sent while the provider works. */
export function showPreview(dataUri) {
  show(dataUri, "Preview of the image being generated", true);
}

/** The result of a generation (GenerationResult JSON). */
export function showResult(result, title = "Result") {
  show(result.url, result.revisedPrompt || title);
  const meta = $("#result-meta");
  const fallback = result.fallbackUsed?.provider
    ? `yes: ${ref(result.fallbackUsed)} served instead of ${ref(result.originalRequest)}`
    : "no";
  meta.replaceChildren(
    el("h2", {}, title),
    el(
      "dl",
      {},
      ...row("Provider / model", el("span", { id: "served" }, ref(result))),
      ...row("Fallback used", el("span", { id: "fallback-used" }, fallback)),
      ...row("Credits", String(result.creditsUsed || 0)),
      ...row("Time", formatSeconds(seconds(result.duration))),
      ...row("Size", `${result.width} × ${result.height}${result.aspectRatio ? ` (${result.aspectRatio})` : ""}`),
      ...(result.revisedPrompt ? row("Revised prompt", result.revisedPrompt) : []),
      ...(result.degradations?.length ? row("Adjusted", result.degradations.join("; ")) : []),
    ),
    attemptsList(result.attempts),
    downloads(result.imageId, result.url, result.contentType),
  );
}

/** One history turn (Turn JSON). */
export function showTurn(turn) {
  const kind = enumWords(turn.kind, "KIND_");
  const title = `Turn ${turn.index}: ${kind}`;
  if (turn.image?.url) show(turn.image.url, turn.prompt || turn.instructions || title);
  const meta = $("#result-meta");
  meta.replaceChildren(
    el("h2", {}, title),
    el(
      "dl",
      {},
      ...row("Status", enumWords(turn.status, "STATUS_")),
      ...(turn.prompt ? row("Prompt", turn.prompt) : []),
      ...(turn.instructions ? row("Instructions", turn.instructions) : []),
      ...(turn.requested?.provider ? row("Requested", ref(turn.requested)) : []),
      ...(turn.served?.provider ? row("Served by", ref(turn.served)) : []),
      ...row("Credits", String(turn.creditsUsed || 0)),
      ...(turn.duration ? row("Time", formatSeconds(seconds(turn.duration))) : []),
      ...(turn.aspectRatio ? row("Aspect / size", `${turn.aspectRatio} · ${turn.imageSize || ""}`) : []),
      ...(turn.layerId ? row("Layer", turn.layerId) : []),
      ...(turn.error ? row("Error", turn.error) : []),
      ...(turn.degradations?.length ? row("Adjusted", turn.degradations.join("; ")) : []),
      ...(turn.createTime ? row("Started", new Date(turn.createTime).toLocaleString()) : []),
    ),
    attemptsList(turn.attempts),
    turn.image?.imageId ? downloads(turn.image.imageId, turn.image.url, turn.image.contentType) : null,
  );
}

/** An image without details (the session's current image when a session is opened). */
export function showImage(image, title) {
  if (!image?.url) {
    clearResult();
    return;
  }
  show(image.url, title);
  $("#result-meta").replaceChildren(el("h2", {}, title), downloads(image.imageId, image.url, image.contentType));
}

export function clearResult() {
  $("#result-image").hidden = true;
  $("#result-image").removeAttribute("src");
  $("#result-empty").hidden = false;
  $("#result-meta").replaceChildren();
}
