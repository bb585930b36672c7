// Conversations (sessions), one conversation as a chat, users, one user.

import { api } from "./api.js";
import { bdi, clear, h, link } from "./dom.js";
import { fmtAgo, fmtCost, fmtDuration, fmtFullTime, fmtNum, fmtPct, fmtTime } from "./format.js";
import { live } from "./live.js";
import { emptyState, notice, pager, pluginChip, statusBadge, traceTable } from "./widgets.js";

const SPEND_WINDOWS = [["today", "Today"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["all", "All time"]];

/** The `since` of a spend window: local midnight for "today" (ns since the epoch). */
function spendSince(win) {
  if (win === "today") {
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    return `${midnight.getTime()}000000`;
  }
  return win === "all" ? undefined : win;
}

/** Top spenders (GET /spend): tokens and cost per user or conversation over a window. */
function spendCard(by) {
  const noun = by === "user" ? "User" : "Conversation";
  const sel = h("select", { class: "spend-window", "aria-label": "Spend window" },
    SPEND_WINDOWS.map(([v, l]) => h("option", { value: v }, l)));
  sel.value = "7d";
  const tbody = h("tbody");
  const status = h("div", { class: "table-status" });
  const totals = h("p", { class: "hint spend-totals" });
  const table = h("table", { class: "people spend" },
    h("thead", null, h("tr", null, [["num", "#"], ["", noun], ["num", "Messages"], ["num", "Tokens in / out"], ["num", "Cost"],
      ["c-bars", "Share of cost"], ["", "LLM tokens by plugin"]].map(([cls, label]) => h("th", { class: cls, scope: "col" }, label)))),
    tbody);
  const el = h("section", { class: "spend-card card", "aria-label": "Top spenders" },
    h("div", { class: "view-head" }, h("h2", null, "Top spenders"), h("div", { class: "controls" }, sel)),
    totals, status, h("div", { class: "table-wrap" }, table));
  el.style.padding = "12px 16px 6px";
  el.style.marginBottom = "14px";
  let gen = 0;
  async function load() {
    const mine = ++gen;
    try {
      const out = await api.get("spend", { by, since: spendSince(sel.value), limit: 10 });
      if (mine !== gen) return;
      clear(tbody);
      clear(status);
      const t = out.totals || {};
      totals.textContent = `${fmtNum(t.trace_count)} messages · ${fmtNum(t.input_tokens)} / ${fmtNum(t.output_tokens)} tokens · `
        + `${fmtCost(t.cost_usd)} in this window${out.plugin_shares_partial ? " (plugin shares from the newest traces)" : ""}`;
      if (!out.groups.length) status.append(emptyState("Nothing spent in this window."));
      out.groups.forEach((g, i) => tbody.append(spendRow(by, g, i + 1)));
    } catch (err) {
      if (mine === gen) clear(status).append(notice("error", err.message));
    }
  }
  sel.addEventListener("change", load);
  load();
  return el;
}

function spendRow(by, g, rank) {
  const key = String(g.key);
  const target = by === "user" ? `user?user_id=${encodeURIComponent(key)}`
    : `conversation?${key === g.umo ? "umo" : "session_id"}=${encodeURIComponent(key)}`;
  const bar = h("span", { class: "lat-bar p50" });
  bar.style.width = `${(g.cost_share || 0) * 100}%`;
  const tokens = (g.plugins || []).reduce((n, p) => n + p.input_tokens + p.output_tokens, 0);
  const shares = (g.plugins || []).slice(0, 4).map((p) => {
    const share = tokens ? (p.input_tokens + p.output_tokens) / tokens : 0;
    const chip = p.plugin ? pluginChip(p.plugin, undefined, String(p.display_name || p.plugin)) : h("span", { class: "chip" }, "host");
    const ctx = p.context_tokens_est || 0;  // what the plugin's hooks added to LLM requests
    const llm = p.input_tokens + p.output_tokens;
    const title = `${fmtNum(p.input_tokens)} / ${fmtNum(p.output_tokens)} LLM tokens, ${fmtCost(p.cost_usd)}`
      + (ctx ? `; its hooks added ≈ ${fmtNum(ctx)} tokens of context to LLM requests` : "");
    return h("span", { class: "plugin-share", title },
      chip, llm || !ctx ? ` ${fmtPct(share)} ` : " ",
      ctx ? h("span", { class: "ctx-added" }, `+≈${fmtNum(ctx)} ctx `) : null);
  });
  return h("tr", { dataset: { key } },
    h("td", { class: "num" }, String(rank)),
    h("td", null, link(target, { title: by === "session" ? String(g.umo || "") : String(g.sender || "") }, bdi(key))),
    h("td", { class: "num" }, fmtNum(g.trace_count)),
    h("td", { class: "num" }, `${fmtNum(g.input_tokens || 0)} / ${fmtNum(g.output_tokens || 0)}`),
    h("td", { class: "num c-cost" }, fmtCost(g.cost_usd)),
    h("td", { class: "c-bars", title: fmtPct(g.cost_share) }, h("div", { class: "lat" }, bar)),
    h("td", { class: "c-shares" }, shares.length ? shares : "–"));
}

function pagedTable({ title, hint, path, key, columns, row, spend }) {
  return (root) => {
    const tbody = h("tbody");
    const status = h("div", { class: "table-status" });
    let cursor = null;
    let shown = 0;
    const pg = pager(() => load());
    root.append(h("section", { class: "people-view" },
      h("div", { class: "view-head" }, h("h1", null, title)),
      h("p", { class: "hint" }, hint),
      spend ? spendCard(spend) : null,
      status,
      h("div", { class: "table-wrap card" }, h("table", { class: "people" },
        h("thead", null, h("tr", null, columns.map(([cls, label]) => h("th", { class: cls, scope: "col" }, label)))), tbody)),
      pg.el));
    async function load() {
      pg.busy(true);
      try {
        const page = await api.get(path, { limit: 50, cursor: cursor || undefined });
        for (const item of page[key]) {
          tbody.append(row(item));
          shown++;
        }
        cursor = page.next_cursor;
        pg.update(shown, page.total, !!cursor, key);
        if (!shown) status.append(emptyState(`No ${key} recorded yet.`));
      } catch (err) {
        clear(status).append(notice("error", err.message));
      } finally {
        pg.busy(false);
      }
    }
    load();
    return {};
  };
}

export const sessionsView = pagedTable({
  title: "Conversations",
  hint: "Each session (unified message origin), most recent first.",
  path: "sessions",
  key: "sessions",
  spend: "session",
  columns: [["", "Session"], ["", "Users"], ["", "Last message"], ["num", "Messages"], ["num", "Errors"], ["num", "Tokens in / out"], ["num", "Cost"]],
  row: (s) => {
    const q = s.session_id ? `session_id=${encodeURIComponent(s.session_id)}` : `umo=${encodeURIComponent(s.umo)}`;
    return h("tr", null,
      h("td", null, link(`conversation?${q}`, { title: s.umo || "" }, bdi(s.session_id || s.umo || "(none)"))),
      h("td", null, (s.user_ids || []).length ? s.user_ids.map((u, i) => [i ? ", " : "", bdi(u)]) : "–"),
      h("td", { title: fmtFullTime(s.last_ns) }, fmtAgo(s.last_ns)),
      h("td", { class: "num" }, fmtNum(s.trace_count)),
      h("td", { class: `num${s.error_count ? " err" : ""}` }, fmtNum(s.error_count)),
      h("td", { class: "num" }, `${fmtNum(s.input_tokens || 0)} / ${fmtNum(s.output_tokens || 0)}`),
      h("td", { class: "num" }, fmtCost(s.cost_usd)));
  },
});

export const usersView = pagedTable({
  title: "Users",
  hint: "Everyone who talked to the bot, most recent first.",
  path: "users",
  key: "users",
  spend: "user",
  columns: [["", "User"], ["", "Name"], ["", "Last message"], ["num", "Sessions"], ["num", "Messages"], ["num", "Errors"], ["num", "Tokens in / out"], ["num", "Cost"]],
  row: (u) => h("tr", null,
    h("td", null, link(`user?user_id=${encodeURIComponent(u.user_id)}`, null, bdi(u.user_id || "(none)"))),
    h("td", null, bdi(u.sender || "–")),
    h("td", { title: fmtFullTime(u.last_ns) }, fmtAgo(u.last_ns)),
    h("td", { class: "num" }, fmtNum(u.session_count)),
    h("td", { class: "num" }, fmtNum(u.trace_count)),
    h("td", { class: `num${u.error_count ? " err" : ""}` }, fmtNum(u.error_count)),
    h("td", { class: "num" }, `${fmtNum(u.input_tokens || 0)} / ${fmtNum(u.output_tokens || 0)}`),
    h("td", { class: "num" }, fmtCost(u.cost_usd))),
});

/** One conversation, oldest message first, drawn as a chat with each message's trace. */
export function conversationView(root, ctx) {
  const filter = {};
  if (ctx.params.get("session_id")) filter.session_id = ctx.params.get("session_id");
  else if (ctx.params.get("umo")) filter.umo = ctx.params.get("umo");
  const title = filter.session_id || filter.umo || "";
  const log = h("ol", { class: "conversation" });
  const status = h("div", { class: "table-status" });
  let cursor = null;
  const pg = pager(() => load());
  root.append(h("section", { class: "conversation-view" },
    h("div", { class: "crumbs" }, link("sessions", null, "← Conversations")),
    h("div", { class: "view-head" }, h("h1", null, "Conversation ", h("code", null, bdi(title)))),
    status, pg.el, log));
  if (!title) {
    status.append(notice("error", "Give a session_id or umo in the address."));
    return {};
  }
  const items = new Map();
  let total = 0;
  // The bot's reply of each finished message: its root span's output (refhost: replies,
  // AstrBot: reply), read from the trace, a few at a time; cached by trace id.
  const replies = new Map();
  const queue = [];
  let reading = 0;

  function replyText(out) {
    if (!out || typeof out !== "object") return null;
    if (Array.isArray(out.replies)) return out.replies.map(String).join("\n");
    if (out.reply !== undefined && out.reply !== null) return String(out.reply);
    if (out.text !== undefined && out.text !== null) return String(out.text);
    return null;
  }

  function readReplies() {
    while (reading < 4 && queue.length) {
      const [tid, slot] = queue.shift();
      reading++;
      api.get(`traces/${tid}`, { shape: "flat", values: "root", critical_path: "false" }).then((doc) => {
        const root = (doc.spans || []).find((x) => !x.parent_id);
        replies.set(tid, replyText(root && root.output));
      }).catch(() => replies.set(tid, undefined)).finally(() => {
        reading--;
        const el = items.get(tid);
        fillReply(el ? el.querySelector(".reply-slot") : slot, tid);
        readReplies();
      });
    }
  }

  function fillReply(slot, tid) {
    if (!slot) return;
    const text = replies.get(tid);
    clear(slot).append(text === undefined ? h("span", { class: "bubble-note" }, "reply not readable")
      : link(`traces/${tid}`, { class: `bubble bot reply${text ? "" : " pending"}`, title: "open this message's trace" },
        bdi(text || "(no reply)")));
  }

  function bubble(t) {
    const done = t.status !== "running";
    const slot = h("div", { class: "reply-slot" });
    if (done && replies.has(t.trace_id)) fillReply(slot, t.trace_id);
    else if (done) {
      slot.append(h("span", { class: "bubble bot pending" }, "…"));
      queue.push([t.trace_id, slot]);
      readReplies();
    }
    return h("li", { class: `turn status-${t.status}`, dataset: { traceId: t.trace_id } },
      h("div", { class: "bubble me" }, bdi(t.outline || "(no text)")),
      h("div", { class: "turn-meta" },
        h("span", { title: fmtFullTime(t.start_ns) }, fmtTime(t.start_ns)), " · ",
        bdi(t.sender || t.user_id || "?"), " · ",
        statusBadge(t.status), " · ",
        `${fmtNum(t.span_count)} spans`,
        " ", (t.plugins || []).slice(0, 4).map((p) => pluginChip(p))),
      slot,
      h("div", { class: "turn-meta reply-meta" },
        h("span", { class: "reply-duration" }, done ? fmtDuration(t.duration_ns) : "running…"), " · ",
        h("span", { class: "reply-tokens" }, `${fmtNum(t.input_tokens || 0)} / ${fmtNum(t.output_tokens || 0)} tokens`), " · ",
        h("span", { class: "reply-cost" }, fmtCost(t.cost_usd)), " · ",
        link(`traces/${t.trace_id}`, { class: "open-trace" }, "open trace →")));
  }

  function put(t, atEnd) {
    const el = bubble(t);
    const known = items.get(t.trace_id);
    if (known) known.replaceWith(el);
    else if (atEnd) log.append(el);
    else log.prepend(el);
    items.set(t.trace_id, el);
  }

  async function load() {
    pg.busy(true);
    try {
      const page = await api.get("traces", { ...filter, limit: 50, cursor: cursor || undefined });
      for (const t of page.traces) put(t, false); // newest first from the API: prepend
      cursor = page.next_cursor;
      total = page.total;
      pg.update(items.size, total, !!cursor, "messages");
      if (!items.size) status.append(emptyState("No messages in this conversation."));
    } catch (err) {
      clear(status).append(notice("error", err.message));
    } finally {
      pg.busy(false);
    }
  }

  const onLive = (t) => {
    if ((filter.session_id && t.session_id !== filter.session_id) || (filter.umo && t.umo !== filter.umo)) return;
    if (!items.has(t.trace_id)) total++;
    clear(status);
    put(t, true);
    pg.update(items.size, total, !!cursor, "messages");
  };
  const offs = [live.on("trace_started", onLive), live.on("trace_finished", onLive)];
  load();
  return { unmount: () => offs.forEach((off) => off()) };
}

/** One user: totals and their traces. */
export function userView(root, ctx) {
  const userId = ctx.params.get("user_id") || "";
  const summary = h("dl", { class: "facts card" });
  const table = traceTable(() => ({ user_id: userId }), { emptyText: "No traces for this user." });
  root.append(h("section", { class: "user-view" },
    h("div", { class: "crumbs" }, link("users", null, "← Users")),
    h("div", { class: "view-head" }, h("h1", null, "User ", h("code", null, bdi(userId)))),
    summary, table.el));
  if (!userId) {
    summary.replaceWith(notice("error", "Give a user_id in the address."));
    return {};
  }
  api.get("users", { user_id: userId, limit: 1 }).then((page) => {
    const u = (page.users || []).find((x) => x.user_id === userId);
    if (!u) return;
    const facts = [["Name", bdi(u.sender || "–")], ["Messages", fmtNum(u.trace_count)], ["Sessions", fmtNum(u.session_count)],
      ["Errors", fmtNum(u.error_count)], ["Tokens", `${fmtNum(u.input_tokens || 0)} in / ${fmtNum(u.output_tokens || 0)} out`],
      ["Cost", fmtCost(u.cost_usd)], ["Last seen", fmtAgo(u.last_ns)]];
    summary.append(...facts.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v))));
  }).catch(() => {});
  const offs = [
    live.on("trace_started", (d) => table.onLive("trace_started", d)),
    live.on("trace_finished", (d) => table.onLive("trace_finished", d)),
  ];
  table.reload();
  return { unmount: () => offs.forEach((off) => off()) };
}
