// Where the page runs, decided once at start.
//
// Served by botrace (its own aiohttp app, or mounted in a host's) the page talks to its
// server with fetch and EventSource and routes with real paths under `base`.
//
// As a plugin page inside AstrBot's dashboard (webui/plugin_page.py writes that copy) it runs
// in a sandboxed iframe with an opaque origin: no cookies, no storage, no direct way to the
// API (a plain fetch or EventSource gets 401). Everything goes through the bridge AstrBot
// injects, and the iframe's path belongs to AstrBot, so views live in the URL's hash.

// AstrBot 4.29 calls it AstrBotPluginView and keeps AstrBotPluginPage as an alias.
export const bridge = window.AstrBotPluginView || window.AstrBotPluginPage || null;

// The plugin page copy says so itself, so a bridge that failed to load shows as an error
// rather than as requests to a server that is not there.
export const embedded = bridge !== null || document.body.dataset.embed === "astrbot";

export const base = document.body.dataset.base || "/";
