// The session's turns as a strip of thumbnails; clicking one shows that turn.

import { call } from "./api.js";
import { $, el, enumWords } from "./dom.js";
import { showTurn } from "./result.js";

const SHOWN = ["KIND_GENERATE", "KIND_ITERATE", "KIND_SEPARATE"];

function select(button, turn) {
  for (const other of $("#history").querySelectorAll("button")) other.removeAttribute("aria-current");
  button.setAttribute("aria-current", "true");
  showTurn(turn);
}

function tile(turn) {
  const kind = enumWords(turn.kind, "KIND_");
  const status = enumWords(turn.status, "STATUS_");
  const label = `Turn ${turn.index}: ${kind}, ${status}`;
  const face = turn.image?.url
    ? el("img", { src: turn.image.url, alt: "", loading: "lazy" })
    : el("span", { className: "no-image" }, status);
  const button = el("button", { type: "button", title: turn.prompt || turn.instructions || label, "aria-label": label }, face);
  button.addEventListener("click", () => select(button, turn));
  return el("li", { className: turn.image?.url ? "turn" : "turn empty", "data-turn": turn.turnId }, button, el("span", {}, `${turn.index} · ${kind}`));
}

/** Reload the strip for `sessionId` (empty when none). */
export async function loadHistory(sessionId) {
  const strip = $("#history");
  if (!sessionId) {
    strip.replaceChildren();
    return;
  }
  const { turns = [] } = await call("GET", `/session/${encodeURIComponent(sessionId)}/history`);
  strip.replaceChildren(...turns.filter((t) => SHOWN.includes(t.kind)).map(tile));
  strip.scrollLeft = strip.scrollWidth;
}
