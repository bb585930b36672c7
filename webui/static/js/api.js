// The page's only way to the server: JSON over /api/v1.

import { base, qs } from "./dom.js";

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

export const api = {
  get: (path, params) => request("GET", path, params),
  put: (path, body) => request("PUT", path, {}, body),
  post: (path, body) => request("POST", path, {}, body),
};
