// An llm_call's request as a chat (system prompt collapsible, tool calls and results folded,
// the response below), and what an on_llm_request hook added to a request.
//
// The request's shape is botrace.prompt's: input = {messages: [{role, content, tool_calls?,
// tool_call_id?, name?}], tools: [names], omitted_messages?}; a message {role: "omitted",
// omitted: N, chars: M} stands for the ones dropped to keep the trace within its budget.
// Every text here comes from a chat or a plugin: text nodes in their own <bdi> (dom.js).

import { bdi, escapeBidi, h } from "./dom.js";
import { fmtNum } from "./format.js";

// What botrace.limits appends to a cut string, and puts for a cut list.
const CUT_TEXT = /…\[\+(\d+) chars\]$/;
const CUT_ITEMS = /^\[\+(\d+) items\]$/;

function cutMark(label) {
  return h("span", { class: "cut-mark", title: "cut when it was recorded (the trace's size limits)" }, label);
}

/** A text, with a visible mark when the recorder cut it. */
function textOf(value, cls = "msg-text") {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const m = CUT_TEXT.exec(text);
  return h("div", { class: cls }, bdi(m ? text.slice(0, m.index) : text),
    m ? [" ", cutMark(`cut: ${fmtNum(Number(m[1]))} more chars`)] : null);
}

function argsText(args) {
  if (typeof args === "string") {
    try { return escapeBidi(JSON.stringify(JSON.parse(args), null, 2)); } catch { return args; }
  }
  return escapeBidi(JSON.stringify(args, null, 2) ?? "");
}

function toolCalls(calls) {
  if (!Array.isArray(calls) || !calls.length) return null;
  return calls.map((c) => {
    const call = c && typeof c === "object" ? c : { name: String(c) };
    return h("details", { class: "msg-fold tool-call" },
      h("summary", null, "calls ", h("strong", null, bdi(String(call.name ?? "?"))),
        call.id ? h("span", { class: "hint" }, " · ", bdi(String(call.id))) : null),
      h("pre", { class: "json" }, argsText(call.arguments)));
  });
}

function message(m, callNames = new Map()) {
  if (typeof m === "string") {
    const items = CUT_ITEMS.exec(m);
    return h("li", { class: "msg role-omitted" },
      items ? cutMark(`${fmtNum(Number(items[1]))} more messages not recorded`) : bdi(m));
  }
  if (!m || typeof m !== "object") return null;
  const role = String(m.role ?? "unknown");
  if (role === "omitted") {
    return h("li", { class: "msg role-omitted" },
      cutMark(`${fmtNum(m.omitted || 0)} earlier messages not recorded (${fmtNum(m.chars || 0)} chars) — the trace's size limits`));
  }
  const content = m.content;
  const hasText = content !== undefined && content !== null && content !== "";
  const size = typeof content === "string" ? content.length : 0;
  if (role === "system") {
    return h("li", { class: "msg role-system" },
      h("details", { class: "msg-fold" },
        h("summary", null, h("span", { class: "msg-role" }, "system"), ` prompt · ${fmtNum(size)} chars`),
        hasText ? textOf(content) : null));
  }
  if (role === "tool") {
    return h("li", { class: "msg role-tool" },
      h("details", { class: "msg-fold" },
        h("summary", null, h("span", { class: "msg-role" }, "tool result"),
          m.name || callNames.get(m.tool_call_id) ? [" ", bdi(String(m.name || callNames.get(m.tool_call_id)))] : null,
          m.tool_call_id ? h("span", { class: "hint" }, " · ", bdi(String(m.tool_call_id))) : null,
          ` · ${fmtNum(size)} chars`),
        hasText ? textOf(content) : null));
  }
  return h("li", { class: `msg role-${role === "user" || role === "assistant" ? role : "other"}` },
    h("div", { class: "msg-role" }, bdi(role), m.name ? [" · ", bdi(String(m.name))] : null),
    hasText ? textOf(content) : null,
    toolCalls(m.tool_calls));
}

function rawJson(label, value) {
  return h("details", { class: "raw-json" }, h("summary", null, label),
    h("pre", { class: "json" }, escapeBidi(JSON.stringify(value, null, 2) ?? "")));
}

function promptSections(s) {
  const input = s.input || {};
  const msgs = input.messages;
  const parts = [];
  const tools = Array.isArray(input.tools) ? input.tools : [];
  // a tool result names its tool by the call it answers
  const callNames = new Map();
  for (const m of msgs) {
    for (const c of (m && Array.isArray(m.tool_calls) ? m.tool_calls : [])) {
      if (c && c.id !== undefined && c.name !== undefined) callNames.set(c.id, String(c.name));
    }
  }
  parts.push(h("section", { class: "values values-prompt", "aria-label": "Prompt" },
    h("h3", null, "Prompt ", h("span", { class: "hint" },
      `${fmtNum(msgs.filter((m) => !(m && m.role === "omitted")).length)} messages`,
      input.omitted_messages ? ` (+${fmtNum(input.omitted_messages)} not recorded)` : "",
      tools.length ? ` · ${fmtNum(tools.length)} tools` : "")),
    h("ol", { class: "prompt-chat" }, msgs.map((m) => message(m, callNames))),
    tools.length ? h("p", { class: "prompt-tools" }, "Tools offered: ",
      tools.map((t, i) => [i ? " " : null, h("code", { class: "chip" }, bdi(String(t)))])) : null));
  const out = s.output || {};
  if (out && typeof out === "object" && Object.keys(out).length) {
    parts.push(h("section", { class: "values values-response", "aria-label": "Response" },
      h("h3", null, "Response"),
      h("ol", { class: "prompt-chat" }, h("li", { class: "msg role-assistant" },
        h("div", { class: "msg-role" }, "assistant"),
        out.reasoning ? h("details", { class: "msg-fold" }, h("summary", null, "reasoning"), textOf(out.reasoning)) : null,
        out.text !== undefined && out.text !== null && out.text !== "" ? textOf(out.text) : null,
        toolCalls(out.tool_calls)))));
  }
  parts.push(rawJson("Raw input and output (JSON)", { input: s.input, output: s.output }));
  return parts;
}

function addedSection(added) {
  const bits = [];
  if (added.system_prompt_chars_added) bits.push(`system prompt ${added.system_prompt_chars_added > 0 ? "+" : ""}${fmtNum(added.system_prompt_chars_added)} chars`);
  if (added.prompt_chars_added) bits.push(`prompt ${added.prompt_chars_added > 0 ? "+" : ""}${fmtNum(added.prompt_chars_added)} chars`);
  const msgs = Array.isArray(added.messages_added) ? added.messages_added : [];
  if (msgs.length) bits.push(`${fmtNum(msgs.length)} messages added`);
  if (added.messages_removed) bits.push(`${fmtNum(added.messages_removed)} messages removed`);
  if (Array.isArray(added.tools_added) && added.tools_added.length) bits.push(`tools added: ${added.tools_added.join(", ")}`);
  if (Array.isArray(added.tools_removed) && added.tools_removed.length) bits.push(`tools removed: ${added.tools_removed.join(", ")}`);
  if (added.images_added) bits.push(`${fmtNum(added.images_added)} images`);
  return h("section", { class: "values values-added", "aria-label": "Added to the LLM request" },
    h("h3", null, "Added to the LLM request"),
    h("p", { class: "added-summary" }, h("strong", null, `≈ ${fmtNum(added.tokens_added_est || 0)} tokens`),
      ` (${fmtNum(added.chars_added || 0)} chars ÷ 4)`, bits.length ? [": ", bdi(bits.join(" · "))] : null),
    msgs.length ? h("ol", { class: "prompt-chat" }, msgs.map((m) => message(m))) : null);
}

/**
 * The chat view of a span's values, or null when it has none: for an llm_call whose input has
 * messages, {el, replaces: ["input", "output"]} (the raw JSON is inside, folded); for a hook
 * that changed the LLM request (output.request_added), {el, replaces: []}.
 */
export function promptView(s) {
  if (!s) return null;
  if (s.span_type === "llm_call" && s.input && Array.isArray(s.input.messages)) {
    return { el: h("div", { class: "prompt-view" }, promptSections(s)), replaces: ["input", "output"] };
  }
  const added = s.output && s.output.request_added;
  if (added && typeof added === "object") return { el: addedSection(added), replaces: [] };
  return null;
}
