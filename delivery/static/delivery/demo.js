/*
 * demo.js: the demo page at "/": a bell, the list, toasts and a message form, kept live by
 * NotificationClient (notifications.js). Server text only ever goes into textContent.
 */
(function () {
  "use strict";

  const TOAST_MS = 8000; // long enough to read a title and a line of body
  const TOASTS_MAX = 4; // older toasts give way; the list keeps everything
  const PAGE_SIZE = 50;
  const STATUS_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
  const BADGE_MAX = 99; // wider than the bell beyond this: "99+"

  const body = document.body;
  const config = {
    apiBase: body.dataset.apiBase || "/api/",
    loginUrl: body.dataset.loginUrl || "/accounts/login/",
    user: body.dataset.user || "",
    signIn: body.dataset.signIn || "", // this page's own sign-in, whose alert is not news here
  };
  const $ = (testid) => document.querySelector('[data-testid="' + testid + '"]');
  const els = {
    badge: $("unread-count"),
    bell: document.getElementById("bell"),
    status: $("status"),
    statusText: document.getElementById("status-text"),
    list: $("notification-list"),
    empty: document.getElementById("empty"),
    more: document.getElementById("load-more"),
    markAll: $("mark-all-read"),
    toasts: document.getElementById("toasts"),
    form: document.getElementById("message-form"),
    to: $("message-to"),
    text: $("message-text"),
    send: $("message-send"),
    formNote: document.getElementById("message-note"),
    logoutForm: document.getElementById("logout-form"),
    signOutEverywhere: document.getElementById("sign-out-everywhere"),
  };

  // id -> notification; the list is this map, newest (highest seq) first.
  const items = new Map();
  const rows = new Map(); // id -> <li>
  let unread = 0;
  let oldestLoadedSeq = null;
  let hasOlder = false;
  // What changed while a list reload was on its way, so the reload cannot undo it.
  let reloadEpoch = null;
  let listLoaded = false;
  let beenLive = false;

  // --- small helpers -----------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null && text !== "") node.textContent = String(text);
    return node;
  }

  const relative =
    typeof Intl === "object" && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;

  function ago(iso) {
    const then = Date.parse(iso);
    if (Number.isNaN(then)) return "";
    const seconds = Math.round((then - Date.now()) / 1000);
    if (!relative) return new Date(then).toLocaleString();
    if (Math.abs(seconds) < 45) return "just now";
    const minutes = Math.round(seconds / 60);
    if (Math.abs(minutes) < 60) return relative.format(minutes, "minute");
    const hours = Math.round(minutes / 60);
    if (Math.abs(hours) < 24) return relative.format(hours, "hour");
    return relative.format(Math.round(hours / 24), "day");
  }

  function apiFetch(path, init) {
    const options = Object.assign({ credentials: "same-origin" }, init || {});
    options.headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    if (options.method && options.method !== "GET") {
      options.headers["X-CSRFToken"] = NotificationClient.csrfToken();
    }
    return fetch(config.apiBase + path, options).then((response) => {
      if (response.status === 401 || response.status === 403) {
        // 403 is also what a missing CSRF token gets; only a logged-out user goes to login.
        return response.json().catch(() => ({})).then((data) => {
          const detail = String((data && data.detail) || "");
          if (response.status === 401 || /credentials|authenticat/i.test(detail)) toLogin();
          throw new Error(detail || "HTTP " + response.status);
        });
      }
      return response.json().then(
        (data) => ({ ok: response.ok, status: response.status, data: data }),
        () => ({ ok: response.ok, status: response.status, data: null }),
      );
    });
  }

  function toLogin() {
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(config.loginUrl + "?next=" + next);
  }

  // --- the list -------------------------------------------------------------------------------

  function renderRow(n) {
    let li = rows.get(n.id);
    if (!li) {
      li = el("li", "item");
      li.dataset.testid = "notification-item";
      li.dataset.id = String(n.id);
      const main = el("button", "item-main");
      main.type = "button";
      const text = el("span", "item-text");
      text.append(el("span", "item-title"), el("span", "item-body"), el("time", "item-time"));
      main.append(el("span", "item-dot"), text);
      li.append(main);
      main.addEventListener("click", () => markRead([n.id]));
      rows.set(n.id, li);
    }
    li.dataset.seq = String(n.seq);
    li.classList.toggle("is-unread", !n.read);
    li.querySelector(".item-main").setAttribute("aria-label", (n.read ? "" : "Unread: ") + (n.title || "Notification"));
    li.querySelector(".item-title").textContent = n.title || "Notification";
    const bodyNode = li.querySelector(".item-body");
    bodyNode.textContent = n.body || "";
    bodyNode.hidden = !n.body;
    const time = li.querySelector(".item-time");
    time.dateTime = n.created_at || "";
    time.title = n.created_at ? new Date(n.created_at).toLocaleString() : "";
    time.textContent = ago(n.created_at);

    const href = NotificationClient.safeUrl(n.url);
    let link = li.querySelector(".item-link");
    if (href) {
      if (!link) {
        link = el("a", "item-link", "Open");
        link.rel = "noopener noreferrer";
        link.addEventListener("click", () => markRead([Number(li.dataset.id)]));
        li.append(link);
      }
      link.href = href;
    } else if (link) {
      link.remove();
    }
    return li;
  }

  function renderList() {
    const ordered = Array.from(items.values()).sort((a, b) => b.seq - a.seq);
    for (const [id, li] of rows) {
      if (!items.has(id)) {
        li.remove();
        rows.delete(id);
      }
    }
    ordered.forEach((n, index) => {
      const li = renderRow(n);
      if (els.list.children[index] !== li) els.list.insertBefore(li, els.list.children[index] || null);
    });
    els.empty.hidden = ordered.length > 0;
    els.more.hidden = !hasOlder;
  }

  function setUnread(count) {
    unread = count;
    els.badge.textContent = count > BADGE_MAX ? BADGE_MAX + "+" : String(count);
    els.badge.dataset.count = String(count);
    els.bell.setAttribute("aria-label", count === 1 ? "1 unread notification" : count + " unread notifications");
    els.markAll.disabled = count === 0;
    document.title = (count ? "(" + count + ") " : "") + "Notifications · " + config.user;
  }

  /** (Re)load the newest page over HTTP. Items that arrived or were read meanwhile survive. */
  function reloadList() {
    const epoch = { arrived: new Map(), read: new Set() };
    reloadEpoch = epoch;
    return apiFetch("notifications/?limit=" + PAGE_SIZE)
      .then((answer) => {
        if (reloadEpoch !== epoch) return; // a newer reload is on its way
        reloadEpoch = null;
        if (!answer.ok || !answer.data) return;
        listLoaded = true;
        const data = answer.data;
        items.clear();
        for (const n of data.results) items.set(n.id, n);
        for (const n of epoch.arrived.values()) if (n.seq > data.last_seq) items.set(n.id, n);
        for (const id of epoch.read) if (items.has(id)) items.get(id).read = true;
        readThisSignIn(Array.from(items.values()));
        const seqs = data.results.map((n) => n.seq);
        oldestLoadedSeq = seqs.length ? Math.min(...seqs) : null;
        hasOlder = Boolean(data.next);
        if (client.status !== "live") setUnread(data.unread);
        renderList();
      })
      .catch(() => {
        if (reloadEpoch === epoch) reloadEpoch = null;
      });
  }

  function loadOlder() {
    if (oldestLoadedSeq === null) return;
    els.more.disabled = true;
    apiFetch("notifications/?limit=" + PAGE_SIZE + "&before_seq=" + oldestLoadedSeq)
      .then((answer) => {
        if (!answer.ok || !answer.data) return;
        for (const n of answer.data.results) if (!items.has(n.id)) items.set(n.id, n);
        const seqs = answer.data.results.map((n) => n.seq);
        if (seqs.length) oldestLoadedSeq = Math.min(oldestLoadedSeq, ...seqs);
        hasOlder = Boolean(answer.data.next);
        renderList();
      })
      .catch(() => {})
      .finally(() => {
        els.more.disabled = false;
      });
  }

  function applyRead(ids) {
    for (const id of ids) {
      const n = items.get(id);
      if (n) n.read = true;
      if (reloadEpoch) reloadEpoch.read.add(id);
    }
    renderList();
  }

  function markRead(ids) {
    const fresh = ids.filter((id) => items.has(id) && !items.get(id).read);
    if (!fresh.length) return;
    applyRead(fresh); // at once here; the server's "read" frame brings the count and the other tabs
    client.markRead(fresh);
  }

  // --- toasts ---------------------------------------------------------------------------------

  function toast(n) {
    const node = el("div", "toast");
    node.dataset.testid = "toast";
    const text = el("button", "toast-main");
    text.type = "button";
    text.append(el("strong", "toast-title", n.title || "Notification"), el("span", "toast-body", n.body || ""));
    const dismiss = el("button", "toast-close", "×");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", "Dismiss");
    node.append(text, dismiss);

    let timer = null;
    const hide = () => {
      clearTimeout(timer);
      node.classList.add("is-leaving");
      setTimeout(() => node.remove(), 200);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(hide, TOAST_MS);
    };
    node.addEventListener("mouseenter", () => clearTimeout(timer));
    node.addEventListener("mouseleave", arm);
    text.addEventListener("click", () => {
      markRead([n.id]);
      hide();
    });
    dismiss.addEventListener("click", hide);

    els.toasts.prepend(node);
    while (els.toasts.children.length > TOASTS_MAX) els.toasts.lastChild.remove();
    arm();
  }

  /** The alert of this page's own sign-in is neither news nor unread here: mark it read. */
  function readThisSignIn(list) {
    const mine = list.filter(
      (n) => !n.read && n.event === "auth.new_sign_in" && config.signIn && (n.data || {}).sign_in === config.signIn,
    );
    for (const n of mine) n.read = true;
    if (mine.length) client.markRead(mine.map((n) => n.id));
  }

  // "Reply" links of message notifications open this page as /?reply_to=<sender>#message-form.
  const replyTo = new URLSearchParams(window.location.search).get("reply_to");
  if (replyTo && !els.to.value) els.to.value = replyTo;

  // --- the socket -----------------------------------------------------------------------------

  const client = new NotificationClient({
    apiBase: config.apiBase,
    onNotification(n, count, meta) {
      readThisSignIn([n]);
      const isNew = !items.has(n.id);
      items.set(n.id, n);
      if (reloadEpoch) reloadEpoch.arrived.set(n.id, n);
      renderList();
      // A reconnect's replay can be long: it goes to the list without a toast each.
      if (isNew && !n.read && !meta.replay) toast(n);
    },
    onRead(ids) {
      applyRead(ids);
    },
    onUnread: setUnread,
    onStatus(status) {
      els.status.dataset.state = status;
      els.statusText.textContent = STATUS_TEXT[status] || status;
      // A resume brings back the notifications this tab missed, but not what was marked
      // read meanwhile: refresh the list after every reconnect (the first "live" reloads anyway).
      if (status === "live" && beenLive) reloadList();
      if (status === "live") beenLive = true;
    },
    onReload() {
      reloadList();
    },
    onUnauthenticated: toLogin,
  });

  // --- the page -------------------------------------------------------------------------------

  els.markAll.addEventListener("click", () => {
    applyRead(Array.from(items.keys()));
    client.markAllRead();
  });
  els.more.addEventListener("click", loadOlder);
  els.bell.addEventListener("click", () => {
    els.list.scrollIntoView({ behavior: "smooth", block: "start" });
    const first = els.list.querySelector(".is-unread .item-main") || els.list.querySelector(".item-main");
    if (first) first.focus({ preventScroll: true });
  });

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const to = els.to.value.trim();
    const text = els.text.value;
    els.send.disabled = true;
    els.formNote.textContent = "";
    els.formNote.dataset.kind = "";
    apiFetch("messages/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ to: to, text: text }),
    })
      .then((answer) => {
        if (answer.ok) {
          els.text.value = "";
          els.formNote.textContent = "Sent to " + to + ".";
          els.formNote.dataset.kind = "ok";
          return;
        }
        els.formNote.textContent = describeErrors(answer.data) || "Could not send (HTTP " + answer.status + ").";
        els.formNote.dataset.kind = "error";
      })
      .catch((error) => {
        els.formNote.textContent = "Could not send: " + (error.message || "network error");
        els.formNote.dataset.kind = "error";
      })
      .finally(() => {
        els.send.disabled = false;
      });
  });

  /** {"to": ["no such user"]} -> "to: no such user". */
  function describeErrors(data) {
    if (!data || typeof data !== "object") return "";
    if (typeof data.detail === "string") return data.detail;
    return Object.entries(data)
      .map(([field, messages]) => {
        const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
        return field === "non_field_errors" ? text : field + ": " + text;
      })
      .join("; ");
  }

  // Logging out closes this tab's socket with 4401 anyway; stop first so the form's own
  // navigation is the only one.
  els.logoutForm.addEventListener("submit", () => client.close());

  // Every session and API token of this user ends, and every socket they opened closes.
  els.signOutEverywhere.addEventListener("click", () => {
    els.signOutEverywhere.disabled = true;
    client.close();
    apiFetch("sign-out-everywhere/", { method: "POST" })
      .catch(() => null)
      .then(() => location.assign(config.loginUrl));
  });

  setInterval(() => {
    for (const li of rows.values()) {
      const n = items.get(Number(li.dataset.id));
      if (n) li.querySelector(".item-time").textContent = ago(n.created_at);
    }
  }, 30000);

  setUnread(0);
  client.start();
  // The socket's hello asks for the list; if the socket cannot get through, load it anyway.
  setTimeout(() => {
    if (!listLoaded && !reloadEpoch) reloadList();
  }, 3000);
  window.notificationClient = client; // for the console and for tests
})();
