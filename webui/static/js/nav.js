// Page URLs: one view path ("traces/<id>?span=<id>", "stats?group_by=tool", "" for the list)
// and where it goes in the address.
//
// Served by botrace a view is a real path under `base` (history routing), so links can be
// shared and reloaded. Inside AstrBot's dashboard the iframe's path and query are AstrBot's
// (they carry its asset token), so the view goes in the hash: #/traces/<id>.

import { base, embedded } from "./mode.js";

/** The address of a view: href("traces/abc") is "/trace/traces/abc" or "#/traces/abc". */
export function href(path) {
  const p = path.replace(/^\//, "");
  return embedded ? `#/${p}` : base + p;
}

/** The view the address shows: {path: "traces/abc", params: URLSearchParams}. */
export function currentView() {
  if (embedded) {
    const view = location.hash.replace(/^#\/?/, "");
    const q = view.indexOf("?");
    if (q < 0) return { path: view, params: new URLSearchParams() };
    return { path: view.slice(0, q), params: new URLSearchParams(view.slice(q + 1)) };
  }
  const path = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : "";
  return { path, params: new URLSearchParams(location.search) };
}

/** Put a view in the address without drawing it (filters, the selected span). */
export function setView(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href(path));
  else history.pushState(null, "", href(path));
}

// Back and forward. With hash routing this is `hashchange` alone: the browser also fires
// popstate for the same step, and drawing twice would cost the view its state.
export const HISTORY_EVENT = embedded ? "hashchange" : "popstate";
