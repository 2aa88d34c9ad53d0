/*
 * notifications.js: a dependency-free browser client for /ws/notifications/ (docs/PROTOCOL.md),
 * as an ES module.
 *
 *   import { NotificationClient } from "/static/delivery/notifications.js";
 *
 *   const client = new NotificationClient({ apiBase: "/api/" });
 *   client.addEventListener("notification", (event) => show(event.detail.notification));
 *   client.addEventListener("status", (event) => showStatus(event.detail.status));
 *   client.start();
 *
 * Events (each a CustomEvent; what it carries is in `event.detail`):
 *   notification     {notification, unread, replay}  in seq order, each seq once; replay: it
 *                    came from a resume after a reconnect, not live
 *   read             {ids, unread}     marked read anywhere (any tab, the HTTP API)
 *   unread           {unread}          the server's unread count changed
 *   status           {status}          "connecting" | "live" | "reconnecting" | "offline"
 *   reload           {reason, lastSeq} load the list over HTTP; reason "initial" | "resync" | "gap"
 *   unauthenticated  {}                closed with 4401 (signed out, credential revoked): the
 *                                      client has stopped; sign in again
 *   error            {code, detail}    an error frame from the server
 *
 * Options (all optional):
 *   url            a string, or a function returning one (or a Promise of one) for every
 *                  connection; default: /ws/notifications/ on this page's host. A page on
 *                  another origin fetches a fresh single-use ticket from POST /api/ws-ticket/
 *                  there and answers with ".../ws/notifications/?ticket=...".
 *   apiBase        where the HTTP API is, for marking read while the socket is down ("/api/")
 *   backoffBaseMs, backoffCapMs, healthyMs, pingEveryMs, pongTimeoutMs, probeTimeoutMs,
 *   helloTimeoutMs, hiddenLongMs: timings, see DEFAULTS below.
 *
 * Methods: start(), close(), markRead(ids), markAllRead(), wake(); properties: status,
 * unread, cursor, user. Helpers: safeUrl(url) (a link target that cannot leave for another
 * host unless it is an absolute http(s) URL, or null) and csrfToken().
 *
 * The cursor is the highest seq delivered to the app with none missing below it. Frames
 * that arrive ahead of the cursor wait in `pending` until the gap is filled by a `resume`,
 * so a notification is never skipped, doubled or delivered out of order. The database is
 * the source of truth; the socket only tells us sooner.
 */

const root = globalThis;

export const CLOSE_UNAUTHENTICATED = 4401; // logged out or credential revoked: never reconnect
const CLOSE_CLIENT_DROP = 4000; // our own close of a socket we consider dead
// Codes where the server asked us to wait (1012 restart, 1013 try again later, 4409 too many
// sockets of this user, 4429 abuse):
// start the backoff a few steps in, so a thousand tabs do not come back in the same 500 ms.
const CLOSE_SPREAD_OUT = new Set([1012, 1013, 4409, 4429]);
const SPREAD_OUT_ATTEMPT = 3;

const DEFAULTS = {
  backoffBaseMs: 500,
  backoffCapMs: 30000,
  healthyMs: 10000, // a socket that stayed up this long resets the backoff
  pingEveryMs: 30000, // +-20% jitter; well under common 60 s NAT and proxy idle cut-offs
  pongTimeoutMs: 10000, // no frame at all this long after a ping: the socket is dead
  probeTimeoutMs: 3000, // the same, after the browser came back online or visible
  helloTimeoutMs: 10000, // a handshake that neither opens nor fails
  hiddenLongMs: 60000, // hidden this long, timers were throttled: check the socket on return
};

function noop() {}

function defaultUrl() {
  const scheme = root.location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + root.location.host + "/ws/notifications/";
}

function isSeq(value) {
  return Number.isInteger(value) && value >= 0;
}

function uniqueIds(ids) {
  return Array.from(new Set(Array.from(ids || []).filter((id) => Number.isInteger(id) && id > 0)));
}

/** The csrftoken cookie, for POSTs to Django (empty when there is none). */
export function csrfToken() {
  const doc = root.document;
  if (!doc || !doc.cookie) return "";
  for (const part of doc.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

/**
 * A URL that is safe to put in a link's href, or null. Allowed: http:, https: and
 * site-relative "/path" (not "//host" or "/\\host", which browsers read as another host).
 */
export function safeUrl(url, base) {
  if (typeof url !== "string" || url === "") return null;
  const origin = base || (root.location && root.location.origin) || "http://localhost";
  try {
    if (url[0] === "/") {
      if (url[1] === "/" || url[1] === "\\") return null;
      const parsed = new URL(url, origin);
      if (parsed.origin !== new URL(origin).origin) return null;
      // Checked after parsing: "/.//evil.com" resolves to the path "//evil.com", which,
      // put back into an href, is another host.
      if (parsed.pathname.startsWith("//")) return null;
      return parsed.pathname + parsed.search + parsed.hash;
    }
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
    return parsed.href;
  } catch (_) {
    return null; // not a URL at all
  }
}

export class NotificationClient extends EventTarget {
  constructor(options) {
    super();
    const opts = Object.assign({}, DEFAULTS, options || {});
    this.options = opts;
    this.url = opts.url || defaultUrl();
    this.apiBase = opts.apiBase || "/api/";
    // Test seams: plain attributes.
    this.WebSocket = opts.WebSocket || root.WebSocket;
    this.fetch = opts.fetch || (root.fetch ? root.fetch.bind(root) : null);
    this.random = opts.random || Math.random;
    this.now = opts.now || Date.now;
    this.csrfToken = opts.csrfToken || csrfToken;

    this.status = "offline";
    this.cursor = null; // highest contiguous seq delivered; null until the first hello
    this.pending = new Map(); // seq -> notification that arrived ahead of the cursor
    this.unread = null;
    this.user = null;
    this.ws = null;
    this.live = false; // hello received on the current socket
    this.liveSince = 0;
    this.resuming = false; // a resume was sent and its `resumed` has not come back
    this.resumeFrom = null; // the cursor that resume was sent from
    this.attempts = 0; // failures in a row, for the backoff
    this.generation = 0; // one per connection attempt: a late answer from an old one is ignored
    this.stopped = true;
    this.networkDown = false; // the browser said "offline": wait for "online"
    this.hiddenSince = null;
    this.timers = { reconnect: null, ping: null, pong: null, hello: null };

    this.onOnline = () => this.wake();
    // The browser knows the network is gone before any ping could tell: say so at once,
    // and wait for "online" instead of retrying into nothing.
    this.onOffline = () => this.networkLost();
    this.onVisibility = () => {
      const doc = root.document;
      if (doc.visibilityState === "hidden") {
        this.hiddenSince = this.now();
      } else if (this.hiddenSince !== null) {
        const hiddenFor = this.now() - this.hiddenSince;
        this.hiddenSince = null;
        if (hiddenFor >= this.options.hiddenLongMs) this.wake();
      }
    };
  }

  /** Connect, and keep connecting until close() or a 4401. */
  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    if (root.addEventListener) {
      root.addEventListener("online", this.onOnline);
      root.addEventListener("offline", this.onOffline);
    }
    if (root.document && root.document.addEventListener) {
      root.document.addEventListener("visibilitychange", this.onVisibility);
    }
    this.open();
    return this;
  }

  /** Stop for good: close the socket, cancel every timer, stop listening. */
  close() {
    this.stop();
    this.setStatus("offline");
  }

  /** Mark these notification ids read. Over the socket when live, else over HTTP. */
  markRead(ids) {
    const clean = uniqueIds(ids);
    if (clean.length === 0) return Promise.resolve();
    if (this.send({ type: "mark_read", ids: clean })) return Promise.resolve();
    return Promise.all(clean.map((id) => this.post("notifications/" + id + "/read/"))).then((answers) => {
      const done = answers.filter(Boolean);
      // The requests ran side by side: the smallest count is the one after all of them.
      if (done.length) this.applyRead(done.map((a) => a.id), Math.min(...done.map((a) => a.unread)));
    });
  }

  /** Mark every notification of the user read. */
  markAllRead() {
    if (this.send({ type: "mark_all_read" })) return Promise.resolve();
    return this.post("notifications/read-all/").then((answer) => {
      if (answer) this.applyRead(answer.ids || [], answer.unread);
    });
  }

  /** Check the connection now: reconnect at once if down, probe it if it looks up. */
  wake() {
    if (this.stopped) return;
    this.networkDown = false;
    if (this.ws && this.live) {
      this.ping(this.options.probeTimeoutMs);
    } else if (this.timers.reconnect !== null || !this.ws) {
      this.attempts = 0;
      this.open();
    }
  }

  /** The browser went offline: drop the socket and wait for "online". */
  networkLost() {
    if (this.stopped) return;
    this.networkDown = true;
    if (this.ws) {
      this.drop();
    } else {
      this.clearTimers();
      this.setStatus("offline");
    }
  }

  // --- the socket ----------------------------------------------------------------------

  open() {
    this.clearTimers();
    if (this.stopped) return;
    if (this.networkDown || (root.navigator && root.navigator.onLine === false)) {
      this.networkDown = true;
      this.setStatus("offline");
      return; // "online" wakes us
    }
    const generation = ++this.generation;
    this.setStatus(this.cursor === null ? "connecting" : "reconnecting");
    // Covers a URL that is slow to come (a ticket fetch) and a handshake that hangs.
    this.timers.hello = setTimeout(() => (this.ws ? this.drop() : this.closed(1006)), this.options.helloTimeoutMs);
    let url;
    try {
      url = typeof this.url === "function" ? this.url() : this.url;
    } catch (error) {
      url = Promise.reject(error);
    }
    Promise.resolve(url).then(
      (resolved) => {
        if (generation === this.generation && !this.stopped) this.connect(resolved);
      },
      () => {
        if (generation === this.generation && !this.stopped) this.closed(1006);
      },
    );
  }

  connect(url) {
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (_) {
      this.closed(1006);
      return;
    }
    this.ws = ws;
    this.live = false;
    ws.onmessage = (event) => {
      if (this.ws === ws) this.receive(event.data);
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.closed(event.code);
    };
    ws.onerror = noop; // a close event always follows
  }

  /** Give up on a socket that stopped answering: close it and go on as if it had closed. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    ws.onmessage = ws.onclose = null;
    try {
      ws.close(CLOSE_CLIENT_DROP, "no answer");
    } catch (_) {
      // already closing
    }
    this.closed(1006);
  }

  closed(code) {
    this.generation += 1; // a URL still on its way belongs to a finished attempt
    const wasHealthy = this.live && this.now() - this.liveSince >= this.options.healthyMs;
    this.ws = null;
    this.live = false;
    this.resuming = false;
    this.clearTimers();
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.stop();
      this.setStatus("offline");
      this.emit("unauthenticated", {});
      return;
    }
    if (wasHealthy) this.attempts = 0;
    if (this.networkDown) {
      this.setStatus("offline");
      return; // "online" wakes us
    }
    this.setStatus("reconnecting");
    let step = this.attempts++;
    if (CLOSE_SPREAD_OUT.has(code)) step = Math.max(step, SPREAD_OUT_ATTEMPT);
    // Full jitter: anywhere from 0 to the exponential ceiling, so a crowd spreads out.
    const ceiling = Math.min(this.options.backoffCapMs, this.options.backoffBaseMs * 2 ** step);
    this.timers.reconnect = setTimeout(() => this.open(), Math.floor(this.random() * ceiling));
  }

  stop() {
    this.stopped = true;
    this.generation += 1;
    this.clearTimers();
    if (root.removeEventListener) {
      root.removeEventListener("online", this.onOnline);
      root.removeEventListener("offline", this.onOffline);
    }
    if (root.document && root.document.removeEventListener) {
      root.document.removeEventListener("visibilitychange", this.onVisibility);
    }
    const ws = this.ws;
    this.ws = null;
    this.live = false;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      try {
        ws.close(1000);
      } catch (_) {
        // already closing
      }
    }
  }

  clearTimers() {
    for (const name of Object.keys(this.timers)) {
      clearTimeout(this.timers[name]);
      this.timers[name] = null;
    }
  }

  send(frame) {
    if (!this.ws || !this.live || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  schedulePing() {
    clearTimeout(this.timers.ping);
    const every = this.options.pingEveryMs * (0.8 + 0.4 * this.random());
    this.timers.ping = setTimeout(() => this.ping(this.options.pongTimeoutMs), every);
  }

  ping(timeoutMs) {
    if (!this.send({ type: "ping" })) return;
    clearTimeout(this.timers.pong);
    this.timers.pong = setTimeout(() => this.drop(), timeoutMs);
    this.schedulePing();
  }

  // --- frames --------------------------------------------------------------------------

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (!frame || typeof frame.type !== "string") return;
    // Any frame shows the socket works, not only the pong.
    clearTimeout(this.timers.pong);
    this.timers.pong = null;
    switch (frame.type) {
      case "hello":
        return this.hello(frame);
      case "notification":
        return this.notification(frame);
      case "read":
        return this.applyRead(frame.ids, frame.unread);
      case "resumed":
        return this.resumed();
      case "resync":
        return this.resync(frame.last_seq, "resync");
      case "error":
        return this.serverError(frame);
      default:
        return; // "pong", and frame types added after this client was written
    }
  }

  hello(frame) {
    clearTimeout(this.timers.hello);
    this.timers.hello = null;
    this.live = true;
    this.liveSince = this.now();
    this.user = frame.user;
    this.setUnread(frame.unread);
    this.setStatus("live");
    this.schedulePing();
    if (this.cursor === null) {
      this.resync(isSeq(frame.last_seq) ? frame.last_seq : 0, "initial");
    } else {
      this.resume();
    }
  }

  notification(frame) {
    const n = frame.notification;
    if (!n || !isSeq(n.seq) || this.cursor === null) return;
    this.setUnread(frame.unread);
    if (n.seq <= this.cursor || this.pending.has(n.seq)) return; // a duplicate: live and replayed
    this.pending.set(n.seq, { n: n, replay: this.resuming });
    this.flush();
    if (this.pending.size > 0 && !this.resuming) this.resume(); // a gap: ask, never skip
  }

  resume() {
    if (this.send({ type: "resume", after_seq: this.cursor })) {
      this.resuming = true;
      this.resumeFrom = this.cursor;
    }
  }

  resumed() {
    const from = this.resumeFrom;
    this.resuming = false;
    this.flush();
    if (this.pending.size === 0) return;
    if (this.cursor === from) {
      // The server replayed and the gap is still there: it cannot be filled, so reload
      // rather than ask forever.
      this.resync(Math.min(...this.pending.keys()) - 1, "gap");
    } else {
      this.resume();
    }
  }

  /** Start over from `lastSeq`: the app reloads its list over HTTP. */
  resync(lastSeq, reason) {
    if (!isSeq(lastSeq)) return;
    this.resuming = false;
    this.cursor = lastSeq;
    for (const seq of Array.from(this.pending.keys())) {
      if (seq <= lastSeq) this.pending.delete(seq);
    }
    this.emit("reload", { reason: reason, lastSeq: lastSeq });
    this.flush();
  }

  /** Deliver what is contiguous with the cursor, in seq order. */
  flush() {
    while (this.pending.has(this.cursor + 1)) {
      const next = this.pending.get(this.cursor + 1);
      this.pending.delete(this.cursor + 1);
      this.cursor += 1;
      this.emit("notification", { notification: next.n, unread: this.unread, replay: next.replay });
    }
  }

  applyRead(ids, unread) {
    this.setUnread(unread);
    this.emit("read", { ids: uniqueIds(ids), unread: this.unread });
  }

  serverError(frame) {
    if (this.resuming && frame.code === "invalid_cursor") {
      // Our cursor is unusable: start over as a new client would.
      this.cursor = null;
      this.drop();
    }
    this.emit("error", { code: frame.code, detail: frame.detail });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail: detail }));
  }

  setUnread(value) {
    if (!Number.isInteger(value) || value < 0 || value === this.unread) return;
    this.unread = value;
    this.emit("unread", { unread: value });
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.emit("status", { status: status });
  }

  // --- HTTP, for when the socket is down -----------------------------------------------

  post(path) {
    if (!this.fetch) return Promise.resolve(null);
    return this.fetch(this.apiBase + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": this.csrfToken() },
    })
      .then((response) => (response.ok ? response.json() : null))
      .catch(() => null);
  }
}
