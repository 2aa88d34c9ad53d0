/*
 * desktop-alerts.js: opt-in system notifications (the browser's Notification API) for what
 * arrives while the tab is hidden. Off until the user turns them on: the browser's
 * permission prompt is only ever asked from a click. A burst replaces the alert on screen
 * ("5 new notifications") instead of piling up.
 */

const STORAGE_KEY = "notify.desktopAlerts";
const BURST_MS = 8000;

export class DesktopAlerts {
  /** @param {object} handlers {open(n): an alert was clicked, openAll(): a burst alert was clicked} */
  constructor(handlers) {
    this.handlers = handlers;
    this.last = null; // {alert, at, count}
  }

  get supported() {
    return typeof globalThis.Notification === "function";
  }

  /** "unsupported" | "default" (not asked yet) | "denied" | "granted" */
  get permission() {
    return this.supported ? globalThis.Notification.permission : "unsupported";
  }

  /** "on" | "off" | "blocked" | "unsupported": what the toggle shows. */
  get state() {
    const permission = this.permission;
    if (permission === "unsupported") return "unsupported";
    if (permission === "denied") return "blocked";
    return permission === "granted" && this.chosen ? "on" : "off";
  }

  get chosen() {
    try {
      return globalThis.localStorage.getItem(STORAGE_KEY) === "on";
    } catch (_) {
      return false; // storage disabled: alerts stay off
    }
  }

  set chosen(on) {
    try {
      globalThis.localStorage.setItem(STORAGE_KEY, on ? "on" : "off");
    } catch (_) {
      // storage disabled
    }
  }

  /** Turn on (asking the browser for permission first) or off. Call from a click. */
  async toggle() {
    if (this.state === "on") {
      this.chosen = false;
      return this.state;
    }
    if (!this.supported) return this.state;
    const permission =
      this.permission === "default" ? await globalThis.Notification.requestPermission() : this.permission;
    this.chosen = permission === "granted";
    return this.state;
  }

  /** Alert `n` if alerts are on and the page is hidden; returns the alert, or null. */
  notify(n) {
    if (this.state !== "on" || document.visibilityState !== "hidden") return null;
    const now = Date.now();
    const burst = this.last && now - this.last.at < BURST_MS ? this.last.count + 1 : 1;
    const title = burst > 1 ? burst + " new notifications" : n.title || "Notification";
    const body = burst > 1 ? "Open the page to see them" : n.body || "";
    let alert;
    try {
      alert = new globalThis.Notification(title, { body: body, tag: "notify", renotify: burst > 1 });
    } catch (_) {
      return null; // some browsers only allow alerts from a service worker
    }
    alert.onclick = () => {
      globalThis.focus();
      alert.close();
      if (burst > 1) this.handlers.openAll();
      else this.handlers.open(n);
    };
    this.last = { alert: alert, at: now, count: burst };
    return alert;
  }
}
