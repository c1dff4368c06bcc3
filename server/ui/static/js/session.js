// Sessions: the list to pick from, creation, and the one in use.

import { call } from "./api.js";
import { $, el } from "./dom.js";

export const current = { session: null };

function label(s) {
  const turns = `${s.turnCount || 0} turn${s.turnCount === 1 ? "" : "s"}`;
  return `${s.project} · ${s.mode} · ${turns} · ${s.sessionId}`;
}

/** Reload the picker (newest first), keeping the current session selected. */
export async function loadSessions() {
  const { sessions = [] } = await call("GET", "/sessions?pageSize=50");
  const select = $("#session-pick");
  select.replaceChildren(
    el("option", { value: "" }, sessions.length ? "Choose a session…" : "No sessions yet"),
    ...sessions.map((s) => el("option", { value: s.sessionId }, label(s))),
  );
  select.value = current.session?.sessionId || "";
}

export async function createSession(project, mode, config) {
  return call("POST", "/session", { project, mode, config });
}

export async function fetchSession(sessionId) {
  return call("GET", `/session/${encodeURIComponent(sessionId)}`);
}

/** Describe the session in use in the banner. */
export function showBanner() {
  const s = current.session;
  $("#session-banner").textContent = s
    ? `Session ${s.sessionId} · project ${s.project} · ${s.mode} · ${s.turnCount || 0} turns`
    : "No session yet: Generate creates one.";
  $("#iterate").disabled = !s?.currentImage?.url;
}
