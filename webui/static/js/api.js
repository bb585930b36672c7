// The page's only way to the server: JSON over /api/v1, the live stream, and downloads.
//
// Served by botrace that is fetch, EventSource and links. Inside AstrBot's dashboard it is
// the bridge (see mode.js); the botrace plugin's backend maps each bridge endpoint
// `api/<path>` to botrace's `/api/v1/<path>`.

import { compactParams, qs } from "./dom.js";
import { base, bridge, embedded } from "./mode.js";

export class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

export function apiUrl(path, params = {}) {
  return `${base}api/v1/${path.replace(/^\//, "")}${qs(params)}`;
}

async function request(method, path, params, body) {
  if (embedded) return bridged(method, path, params, body);
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(apiUrl(path, params), init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the server (${err.message})`);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    if (resp.status === 401) window.location.assign(`${base}login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(resp.status, (data && data.error) || `HTTP ${resp.status}`, data && data.param);
  }
  return data;
}

function bridgeEndpoint(path) {
  if (!bridge) throw new ApiError(0, "AstrBot's page bridge did not load: open this page from AstrBot's dashboard");
  return `api/${path.replace(/^\//, "")}`;
}

// The bridge has GET and POST only: a PUT goes as a POST (the plugin's backend turns a POST to
// api/config into botrace's PUT /config). Bridge calls resolve to the API's JSON body and reject
// with an Error that carries only the message: the HTTP status is lost on the way. The views
// need one status, 404 (a running trace not in the store yet), and botrace's 404 messages all
// end in "not found".
async function bridged(method, path, params, body) {
  const endpoint = bridgeEndpoint(path);
  try {
    if (method === "GET") return await bridge.apiGet(endpoint, compactParams(params));
    return await bridge.apiPost(endpoint, body ?? {});
  } catch (err) {
    const message = (err && err.message) || String(err);
    throw new ApiError(/ not found$/.test(message) ? 404 : null, message);
  }
}

export const api = {
  get: (path, params) => request("GET", path, params),
  put: (path, body) => request("PUT", path, {}, body),
  post: (path, body) => request("POST", path, {}, body),
  /** Inside AstrBot: have the dashboard fetch an API document and save it as `filename`
   *  (served by botrace the page links to the API instead; see widgets.downloadLink). */
  download: (path, params, filename) => bridge
    ? bridge.download(bridgeEndpoint(path), compactParams(params), filename)
    : Promise.reject(new ApiError(0, "downloads go through AstrBot's bridge only inside its dashboard")),
};

// The named events of GET /api/v1/stream (docs/WEBUI.md, "Live stream").
export const STREAM_EVENTS = ["hello", "heartbeat", "lost", "trace_started", "span_started",
  "span_finished", "trace_finished", "config"];

/**
 * Open the live stream. `onEvent(kind, data, lastEventId)` gets each named event, its JSON
 * parsed; `onError(gaveUp)` is told when the connection failed, `gaveUp` meaning nothing will
 * retry it (otherwise EventSource reconnects by itself, sending Last-Event-ID).
 * Returns {close()}.
 */
export function openStream(params, { onEvent, onError }) {
  return embedded ? bridgedStream(params, onEvent, onError) : eventSource(params, onEvent, onError);
}

function eventSource(params, onEvent, onError) {
  const src = new EventSource(apiUrl("stream", params));
  for (const kind of STREAM_EVENTS) {
    src.addEventListener(kind, (ev) => onEvent(kind, JSON.parse(ev.data), ev.lastEventId));
  }
  src.onerror = () => onError(src.readyState === EventSource.CLOSED);
  return { close: () => src.close() };
}

// Through the bridge: the dashboard fetches the stream (with its own auth) and posts each
// event to the page as {eventType, parsed, lastEventId}. It never reconnects, and a stream the
// server ended is not reported at all, so the plugin's backend sends a last `reconnect` event
// when botrace's stream behind it ends (a plugin reload); the caller's watchdog notices any
// other silence.
function bridgedStream(params, onEvent, onError) {
  let closed = false;
  let id = null;
  const fail = () => {
    if (!closed) onError(true);
  };
  const handlers = {
    onMessage(ev) {
      if (ev.eventType === "reconnect") return fail();
      if (closed || !STREAM_EVENTS.includes(ev.eventType) || typeof ev.parsed !== "object") return;
      onEvent(ev.eventType, ev.parsed, ev.lastEventId || "");
    },
    onError: fail,
  };
  const unsubscribe = (sub) => Promise.resolve(bridge.unsubscribeSSE(sub)).catch(() => {});
  try {
    bridge.subscribeSSE(bridgeEndpoint("stream"), handlers, params).then((sub) => {
      if (closed) unsubscribe(sub);
      else id = sub;
    }, fail);
  } catch {
    setTimeout(fail, 0); // no bridge: report it the way a failed connection is reported
  }
  return {
    close() {
      closed = true;
      if (id !== null) unsubscribe(id);
    },
  };
}
