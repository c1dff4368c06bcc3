// The REST API on the same origin: JSON calls and the `:stream` routes (SSE over a POST).

const KEY_STORE = "aigen.apiKey";

/** The API key for this tab ("" when none). */
export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY_STORE, value);
  else sessionStorage.removeItem(KEY_STORE);
}

function withKey(headers) {
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** An API error: HTTP status plus the JSON body {code, message, details}. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `request failed (HTTP ${status})`);
    this.status = status;
    this.code = body?.code;
    this.details = Array.isArray(body?.details) ? body.details : [];
  }

  /** BadRequest field violations: [{field, description}]. */
  get violations() {
    return this.details
      .filter((d) => d["@type"]?.endsWith("google.rpc.BadRequest"))
      .flatMap((d) => d.fieldViolations || []);
  }

  /** The attempts the server made (503 and failed streams). */
  get attempts() {
    return this.details.filter((d) => d["@type"]?.endsWith("aigen.v1.Attempt"));
  }

  /** True when the server wants credentials. */
  get needsCredentials() {
    return this.status === 401 || this.status === 403;
  }

  get reason() {
    return this.details.find((d) => d["@type"]?.endsWith("google.rpc.ErrorInfo"))?.reason || "";
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { message: `${response.status} ${response.statusText}`.trim() };
  }
  return new ApiError(response.status, body);
}

/** JSON request; resolves to the parsed body, rejects with ApiError. */
export async function call(method, path, body) {
  const init = { method, headers: withKey({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (cause) {
    throw new ApiError(0, { message: `the server did not answer (${cause.message})` });
  }
  if (!response.ok) throw await errorFrom(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

/**
 * POST to a `:stream` route and call `onEvent` for every `data:` frame.
 * Resolves to the terminal event; aborting `signal` closes the connection, which
 * cancels the generation on the server.
 */
export async function stream(path, body, onEvent, signal) {
  const response = await fetch(path, {
    method: "POST",
    headers: withKey({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const frames = buffer.split(/\r?\n\r?\n/);
    buffer = frames.pop();
    for (const frame of frames) {
      const data = frame
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      last = JSON.parse(data);
      onEvent(last);
    }
  }
  if (!last || !["PHASE_COMPLETED", "PHASE_FAILED"].includes(last.phase)) {
    throw new ApiError(0, { message: "the progress stream ended before the generation finished" });
  }
  return last;
}

/** Seconds from a JSON Duration ("1.500s"). */
export function seconds(duration) {
  return duration ? parseFloat(duration) : 0;
}

const HTTP_FOR_CODE = { 1: 499, 3: 400, 4: 504, 5: 404, 8: 429, 9: 400, 10: 409, 13: 500, 14: 503, 16: 401 };

/** ApiError from the google.rpc.Status of a PHASE_FAILED event. */
export function errorFromStatus(status) {
  return new ApiError(HTTP_FOR_CODE[status?.code] || 500, status || {});
}

/** GET `path` as a file download (with the API key, which a plain link cannot send). */
export async function download(path, filename) {
  const response = await fetch(path, { headers: withKey({}) });
  if (!response.ok) throw await errorFrom(response);
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
