// DOM building without innerHTML: every string from a trace becomes a text node.
//
// Text from a trace (a chat message, a plugin's name, a span's values) may carry Unicode's
// bidirectional controls: U+202E (right-to-left override) in "\u202egnp.exe" shows
// "exe.png", and reverses the page's own text after it. So every string put in the page
// shows those controls as visible marks (reveal), and every untrusted string sits in its
// own <bdi> (bdi), so its direction cannot reach the text around it.

import { href } from "./nav.js";

/** h("a", {class: "x", href, onclick}, "text", child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = reveal(String(value));
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = !!value;
    else if (key === "title") el.title = reveal(String(value));
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(reveal(String(child))));
  }
  return el;
}

// The explicit embedding, override and isolate controls (not the LRM/RLM marks).
const BIDI_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;

/** `text` with each bidi control shown as a visible mark: "\u202egnp.exe" -> "⟨U+202E⟩gnp.exe". */
export function reveal(text) {
  return text.replace(BIDI_CONTROLS, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase()}⟩`);
}

/** JSON text with each bidi control as its JSON escape ("\u202e"): the same JSON, visibly. */
export function escapeBidi(json) {
  return json.replace(BIDI_CONTROLS, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/** An untrusted string (or element) in its own bidi isolate: <bdi>text</bdi>. */
export function bdi(...children) {
  return h("bdi", null, ...children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
// The sprite's URL, from the page shell: the static file when served by botrace; empty (the
// sprite is inlined in the page) in AstrBot's plugin page, where a URL built here would get no
// asset token and an external <use> from a sandboxed (opaque-origin) frame is refused anyway.
const SPRITE = document.body.dataset.icons ?? "";

export function icon(name, cls = "icon") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS(SVG, "use");
  use.setAttribute("href", `${SPRITE}#${name}`);
  svg.append(use);
  return svg;
}

/** An internal link the router handles (no page reload). */
export function link(path, props, ...children) {
  return h("a", { href: href(path), "data-link": path.replace(/^\//, ""), ...props }, ...children);
}

/** The parameters that have a value, as strings (empty ones mean "not given"). */
export function compactParams(params = {}) {
  const out = {};
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") out[k] = String(v);
  }
  return out;
}

export function qs(params) {
  const s = new URLSearchParams(compactParams(params)).toString();
  return s ? `?${s}` : "";
}
