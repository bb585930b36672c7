// One live connection (Server-Sent Events) for the whole page, built to keep going:
// - EventSource reconnects by itself after a network blip and sends Last-Event-ID;
//   a connection that gave up (and inside AstrBot's dashboard, where the bridge never
//   retries, any failed one) is reopened here with the last id, backing off;
// - a watchdog notices a stream that went quiet (no heartbeat) and reconnects, so a
//   tab left in the background, or a proxy that swallowed the connection, catches up
//   as soon as it is looked at again;
// - when the server says events were lost (slow tab, or the replay buffer no longer
//   reaches back far enough) the views reload from the REST API ("resync").

import { openStream } from "./api.js";

const KINDS = ["trace_started", "span_started", "span_finished", "trace_finished", "config"];
const RECENT_TRACES = 30;

export class LiveStream {
  constructor() {
    this.listeners = new Map(); // kind -> Set(fn)
    this.lastEventId = "";
    this.heartbeatS = 15;
    this.lastMessageAt = 0;
    this.state = "connecting";
    this.source = null;
    this.backoff = 1000;
    this.retryTimer = null;
    // recent traces seen live, so a running trace can be drawn before the store has it
    this.recent = new Map(); // trace_id -> {trace, spans: Map}
  }

  on(kind, fn) {
    if (!this.listeners.has(kind)) this.listeners.set(kind, new Set());
    this.listeners.get(kind).add(fn);
    return () => this.listeners.get(kind).delete(fn);
  }

  emit(kind, data) {
    for (const fn of this.listeners.get(kind) || []) {
      try {
        fn(data);
      } catch (err) {
        console.error("botrace: live listener failed", err);
      }
    }
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("state", state);
  }

  start() {
    this.connect();
    this.armWatchdog();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.watchdog();
    });
    window.addEventListener("online", () => this.reconnect(0));
    window.addEventListener("pageshow", (ev) => {
      if (ev.persisted) this.reconnect(0);
    });
  }

  armWatchdog() {
    clearInterval(this.watchdogTimer);
    this.watchdogTimer = setInterval(() => this.watchdog(), Math.min(5000, this.heartbeatS * 1000));
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    const params = this.lastEventId ? { last_event_id: this.lastEventId } : {};
    // events of a connection already replaced are ignored: only the current one speaks
    const source = openStream(params, {
      onEvent: (kind, data, id) => {
        if (source === this.source) this.receive(kind, data, id);
      },
      onError: (gaveUp) => {
        if (source !== this.source) return;
        if (gaveUp) {
          // the browser gave up (e.g. the server answered an error): retry ourselves
          this.reconnect(this.backoff);
          this.backoff = Math.min(this.backoff * 2, 30000);
        } else {
          this.setState("reconnecting");
        }
      },
    });
    this.source = source;
    this.lastMessageAt = Date.now();
  }

  receive(kind, data, id) {
    this.touch(id);
    if (kind === "hello") {
      if ((data.heartbeat_s || 15) !== this.heartbeatS) {
        this.heartbeatS = data.heartbeat_s || 15;
        this.armWatchdog();
      }
      this.backoff = 1000;
      this.feed = data.source;
      this.setState(this.liveState(data.live));
      if (data.resume === "gap") this.emit("resync", { reason: "reconnected after a gap" });
    } else if (kind === "lost") {
      this.emit("resync", { reason: `${data.count} live events were dropped` });
    } else if (KINDS.includes(kind)) {
      this.remember(kind, data);
      this.emit(kind, data);
    }
  }

  touch(lastEventId) {
    this.lastMessageAt = Date.now();
    if (lastEventId) this.lastEventId = lastEventId;
    if (this.state === "reconnecting" || this.state === "offline") this.setState(this.liveState(true));
  }

  liveState(live) {
    if (!live) return "static";
    return this.feed === "store" ? "polled" : "live";
  }

  reconnect(delay) {
    this.setState("reconnecting");
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  watchdog() {
    if (!this.source) return;
    const quietFor = Date.now() - this.lastMessageAt;
    // 2.5 heartbeats of silence: the connection is dead even if the socket does not say so
    if (quietFor > this.heartbeatS * 2500 + 1000) this.reconnect(0);
  }

  remember(kind, data) {
    if (kind === "config") return;
    const tid = data.trace_id;
    let entry = this.recent.get(tid);
    if (!entry) {
      if (kind !== "trace_started") return;
      entry = { trace: data, spans: new Map() };
      this.recent.set(tid, entry);
      if (this.recent.size > RECENT_TRACES) this.recent.delete(this.recent.keys().next().value);
      return;
    }
    if (kind === "trace_finished" || kind === "trace_started") entry.trace = data;
    else entry.spans.set(data.span_id, data);
  }
}

export const live = new LiveStream();
