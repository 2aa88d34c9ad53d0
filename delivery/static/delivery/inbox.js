/*
 * inbox.js: the drawer the bell opens: the user's notifications, newest first, in a scroll of
 * their own, paged in from GET /api/notifications/ as it scrolls, with an Unread / All filter,
 * "Mark all read" and an empty state. Live arrivals and read changes come from the
 * NotificationClient; the HTTP API is the source of truth whenever the socket says reload.
 */
import { safeUrl } from "./notifications.js";
import { ago, el } from "./dom.js";

const PAGE_SIZE = 30;
const PRELOAD_PX = 300; // start loading the next page this far before the end of the scroll
const EMPTY_TEXT = {
  unread: "You're all caught up: nothing unread.",
  all: "No notifications yet. Ask someone to send you a message.",
};
const END_TEXT = { unread: "No more unread notifications.", all: "That's all of them." };

/** What one filter has loaded: everything from `floor` (a seq) up is known to the page. */
function freshView() {
  return { loaded: false, floor: Infinity, hasOlder: true, loading: false, failed: false, epoch: 0 };
}

export class Inbox {
  /**
   * @param {object} options
   * @param {HTMLElement} options.panel   the drawer, with the elements demo.html gives it
   * @param {HTMLElement} options.bell    the button that opens and closes it
   * @param {Function} options.api        makeApi(): GET and POST under /api/
   * @param {object} options.client       the NotificationClient (markRead, markAllRead)
   * @param {Function} [options.alreadySeen]  notifications to mark read on arrival (a page's
   *                                          own sign-in), without showing them as news
   */
  constructor(options) {
    this.panel = options.panel;
    this.bell = options.bell;
    this.api = options.api;
    this.client = options.client;
    this.alreadySeen = options.alreadySeen || (() => false);
    const $ = (testid) => this.panel.querySelector('[data-testid="' + testid + '"]');
    this.els = {
      list: $("notification-list"),
      scroll: $("inbox-scroll"),
      empty: $("inbox-empty"),
      foot: $("inbox-foot"),
      markAll: $("mark-all-read"),
      close: $("inbox-close"),
      filters: Array.from(this.panel.querySelectorAll("[data-filter]")),
      sentinel: this.panel.querySelector(".inbox-sentinel"),
    };
    this.items = new Map(); // id -> notification, every one the page knows
    this.rows = new Map(); // id -> <li>
    this.views = { unread: freshView(), all: freshView() };
    this.filter = "all";
    this.unread = 0;
    // What changed while a reload was on its way, so that the reload cannot undo it.
    this.reloading = null;
    this.wire();
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  // --- opening and closing ----------------------------------------------------------------

  open() {
    if (this.isOpen) return;
    this.panel.hidden = false;
    this.bell.setAttribute("aria-expanded", "true");
    const view = this.views[this.filter];
    if (!view.loaded && !view.loading) this.loadPage(this.filter);
    this.render();
    this.currentFilterButton().focus();
  }

  close({ restoreFocus = true } = {}) {
    if (!this.isOpen) return;
    this.panel.hidden = true;
    this.bell.setAttribute("aria-expanded", "false");
    if (restoreFocus) this.bell.focus();
  }

  toggle() {
    if (this.isOpen) this.close();
    else this.open();
  }

  showFilter(filter) {
    if (!(filter in this.views)) return;
    this.filter = filter;
    for (const button of this.els.filters) button.setAttribute("aria-pressed", String(button.dataset.filter === filter));
    const view = this.views[filter];
    if (!view.loaded && !view.loading) this.loadPage(filter);
    this.els.scroll.scrollTop = 0;
    this.render();
  }

  currentFilterButton() {
    return this.els.filters.find((button) => button.dataset.filter === this.filter) || this.els.close;
  }

  wire() {
    this.bell.addEventListener("click", () => this.toggle());
    this.els.close.addEventListener("click", () => this.close());
    for (const button of this.els.filters) button.addEventListener("click", () => this.showFilter(button.dataset.filter));
    this.els.markAll.addEventListener("click", () => this.markAllRead());
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.close();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) this.close();
    });
    // A click anywhere outside the drawer and the bell closes it, as menus do.
    document.addEventListener("pointerdown", (event) => {
      if (!this.isOpen) return;
      const target = event.target;
      if (this.panel.contains(target) || this.bell.contains(target)) return;
      if (target.closest && target.closest(".toasts")) return;
      this.close({ restoreFocus: false });
    });
    if (typeof IntersectionObserver === "function") {
      const observer = new IntersectionObserver(() => this.maybeLoadMore(), {
        root: this.els.scroll,
        rootMargin: "0px 0px " + PRELOAD_PX + "px 0px",
      });
      observer.observe(this.els.sentinel);
    }
    this.els.scroll.addEventListener("scroll", () => this.maybeLoadMore(), { passive: true });
    setInterval(() => this.refreshTimes(), 30000);
  }

  // --- loading ----------------------------------------------------------------------------

  /** Forget what was loaded and load the newest page again (the socket said reload). */
  reload() {
    this.reloading = { arrived: new Map(), read: new Set() };
    this.views = { unread: freshView(), all: freshView() };
    this.loadPage(this.filter, { replace: true });
  }

  /** The next page of `filter` (older than what it has), or its first page. */
  loadPage(filter, { replace = false } = {}) {
    const view = this.views[filter];
    if (view.loading) return Promise.resolve();
    view.loading = true;
    view.failed = false;
    const epoch = ++view.epoch;
    const reloading = this.reloading;
    let query = "notifications/?limit=" + PAGE_SIZE;
    if (filter === "unread") query += "&unread=true";
    if (view.loaded && view.floor !== Infinity) query += "&before_seq=" + view.floor;
    this.render();
    return this.api(query)
      .then((answer) => {
        if (epoch !== view.epoch || this.views[filter] !== view) return; // a reload replaced it
        if (!answer.ok || !answer.data) throw new Error("HTTP " + answer.status);
        const data = answer.data;
        if (replace && reloading && this.reloading === reloading) {
          this.items.clear();
          for (const n of reloading.arrived.values()) this.items.set(n.id, n);
          this.reloading = null;
        }
        for (const n of data.results) {
          if (reloading && reloading.read.has(n.id)) n.read = true;
          const known = this.items.get(n.id);
          if (!known || replace) this.items.set(n.id, known && known.read ? Object.assign(n, { read: true }) : n);
        }
        this.markSeen(data.results);
        view.loaded = true;
        view.hasOlder = Boolean(data.next);
        const seqs = data.results.map((n) => n.seq);
        view.floor = view.hasOlder && seqs.length ? Math.min(...seqs) : 0;
        if (Number.isInteger(data.unread)) this.setUnread(data.unread);
      })
      .catch(() => {
        if (this.views[filter] === view) view.failed = true;
      })
      .finally(() => {
        if (this.views[filter] !== view) return;
        view.loading = false;
        this.render();
        this.maybeLoadMore();
      });
  }

  /** Near the end of the scroll, with more to load: load it. */
  maybeLoadMore() {
    const view = this.views[this.filter];
    if (!this.isOpen || !view.loaded || view.loading || view.failed || !view.hasOlder) return;
    const scroll = this.els.scroll;
    const sentinelTop = this.els.sentinel.getBoundingClientRect().top;
    if (sentinelTop - scroll.getBoundingClientRect().bottom < PRELOAD_PX) this.loadPage(this.filter);
  }

  // --- changes ----------------------------------------------------------------------------

  /** A notification from the socket (live or replayed). */
  add(n) {
    const known = this.items.get(n.id);
    this.items.set(n.id, known && known.read ? Object.assign(n, { read: true }) : n);
    if (this.reloading) this.reloading.arrived.set(n.id, n);
    this.markSeen([n]);
    this.render();
  }

  /** Read anywhere: this tab, another tab, the API. */
  applyRead(ids) {
    for (const id of ids) {
      const n = this.items.get(id);
      if (n) n.read = true;
      if (this.reloading) this.reloading.read.add(id);
    }
    this.render();
  }

  markRead(ids) {
    const fresh = ids.filter((id) => this.items.has(id) && !this.items.get(id).read);
    if (!fresh.length) return;
    this.applyRead(fresh); // at once here; the server's "read" frame brings the count and the other tabs
    this.client.markRead(fresh);
  }

  markAllRead() {
    this.applyRead(Array.from(this.items.keys()));
    this.client.markAllRead();
  }

  /** Opening a notification marks it read. The page may be about to navigate away, so the
   * request is a keepalive one: it completes even after this page is gone. */
  opened(n) {
    if (n.read) return;
    this.applyRead([n.id]);
    this.api("notifications/" + n.id + "/read/", { method: "POST", keepalive: true }).catch(() => {});
  }

  setUnread(count) {
    this.unread = count;
    this.els.markAll.disabled = count === 0;
  }

  /** Notifications that are no news to this page (its own sign-in): read, not alerted. */
  markSeen(list) {
    const seen = list.filter((n) => !n.read && this.alreadySeen(n));
    for (const n of seen) n.read = true;
    if (seen.length) this.client.markRead(seen.map((n) => n.id));
  }

  // --- rendering --------------------------------------------------------------------------

  visible() {
    const view = this.views[this.filter];
    return Array.from(this.items.values())
      .filter((n) => view.loaded && n.seq >= view.floor && (this.filter === "all" || !n.read))
      .sort((a, b) => b.seq - a.seq);
  }

  render() {
    const shown = this.visible();
    const wanted = new Set(shown.map((n) => n.id));
    for (const [id, li] of this.rows) {
      if (!wanted.has(id)) {
        li.remove();
        this.rows.delete(id);
      }
    }
    const list = this.els.list;
    shown.forEach((n, index) => {
      const li = this.renderRow(n);
      if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    });

    const view = this.views[this.filter];
    this.els.empty.hidden = !(view.loaded && shown.length === 0 && !view.hasOlder);
    this.els.empty.textContent = EMPTY_TEXT[this.filter];
    this.renderFoot(view, shown.length);
  }

  renderFoot(view, count) {
    const foot = this.els.foot;
    foot.replaceChildren();
    if (view.loading) {
      foot.textContent = "Loading…";
    } else if (view.failed) {
      foot.append(el("span", "", "Could not load notifications. "));
      const retry = el("button", "link-button", "Try again");
      retry.type = "button";
      retry.addEventListener("click", () => this.loadPage(this.filter));
      foot.append(retry);
    } else if (view.loaded && view.hasOlder) {
      const more = el("button", "link-button", "Load older");
      more.type = "button";
      more.addEventListener("click", () => this.loadPage(this.filter));
      foot.append(more);
    } else if (view.loaded && count > 0) {
      foot.textContent = END_TEXT[this.filter];
    }
    foot.dataset.state = view.loading ? "loading" : view.failed ? "failed" : view.hasOlder ? "more" : "end";
  }

  renderRow(n) {
    const href = safeUrl(n.url);
    let li = this.rows.get(n.id);
    if (li && (li.dataset.href || "") !== (href || "")) {
      li.remove();
      this.rows.delete(n.id);
      li = null;
    }
    if (!li) {
      li = this.buildRow(n, href);
      this.rows.set(n.id, li);
    }
    li.dataset.seq = String(n.seq);
    li.classList.toggle("is-unread", !n.read);
    li.querySelector(".item-state").textContent = n.read ? "" : "Unread: ";
    li.querySelector(".item-title").textContent = n.title || "Notification";
    const body = li.querySelector(".item-body");
    body.textContent = n.body || "";
    body.hidden = !n.body;
    const time = li.querySelector(".item-time");
    time.dateTime = n.created_at || "";
    time.title = n.created_at ? new Date(n.created_at).toLocaleString() : "";
    time.textContent = ago(n.created_at);
    li.querySelector(".item-read").hidden = Boolean(n.read);
    return li;
  }

  /** A row is one control: a link when the notification has a url (opening it marks it
   * read), else a button that marks it read. */
  buildRow(n, href) {
    const li = el("li", "item");
    li.dataset.testid = "notification-item";
    li.dataset.id = String(n.id);
    li.dataset.href = href || "";
    const main = el(href ? "a" : "button", "item-main");
    if (href) {
      main.href = href;
      main.rel = "noopener noreferrer";
      main.addEventListener("click", () => this.opened(this.items.get(n.id) || n));
    } else {
      main.type = "button";
      main.addEventListener("click", () => this.markRead([n.id]));
    }
    const text = el("span", "item-text");
    text.append(el("span", "item-title"), el("span", "item-body"), el("time", "item-time"));
    text.prepend(el("span", "item-state sr-only")); // "Unread: " for screen readers; the dot shows it
    main.append(el("span", "item-dot"), text);
    const read = el("button", "item-read icon-button");
    read.type = "button";
    read.setAttribute("aria-label", "Mark read");
    read.title = "Mark read";
    read.dataset.testid = "mark-read";
    read.textContent = "✓";
    read.addEventListener("click", () => this.markRead([n.id]));
    li.append(main, read);
    return li;
  }

  refreshTimes() {
    for (const [id, li] of this.rows) {
      const n = this.items.get(id);
      if (n) li.querySelector(".item-time").textContent = ago(n.created_at);
    }
  }
}
