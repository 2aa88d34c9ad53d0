/*
 * demo.js: the demo page at "/": the bell and its inbox drawer, toasts, opt-in desktop alerts
 * and a message form, kept live by NotificationClient (notifications.js).
 */
import { NotificationClient } from "./notifications.js";
import { DesktopAlerts } from "./desktop-alerts.js";
import { describeErrors, makeApi } from "./http.js";
import { Inbox } from "./inbox.js";
import { Toaster } from "./toasts.js";

const STATUS_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
const BADGE_MAX = 99; // wider than the bell beyond this: "99+"
const ALERTS_TEXT = {
  on: "Desktop alerts: on",
  off: "Desktop alerts: off",
  blocked: "Desktop alerts: blocked in the browser",
  unsupported: "Desktop alerts: not supported here",
};

const body = document.body;
const config = {
  apiBase: body.dataset.apiBase || "/api/",
  loginUrl: body.dataset.loginUrl || "/accounts/login/",
  user: body.dataset.user || "",
  signIn: body.dataset.signIn || "", // this page's own sign-in, whose alert is not news here
};
const $ = (testid) => document.querySelector('[data-testid="' + testid + '"]');
const els = {
  topbar: document.getElementById("topbar"),
  badge: $("unread-count"),
  bell: $("bell"),
  status: $("status"),
  statusText: document.getElementById("status-text"),
  inbox: $("inbox"),
  alerts: $("desktop-alerts"),
  toasts: document.getElementById("toasts"),
  form: document.getElementById("message-form"),
  to: $("message-to"),
  text: $("message-text"),
  send: $("message-send"),
  formNote: document.getElementById("message-note"),
  logoutForm: document.getElementById("logout-form"),
  signOutEverywhere: $("sign-out-everywhere"),
};

/** To the login page, saying why (a fixed word the login page knows, never free text). */
function toLogin(reason) {
  const query = new URLSearchParams({ next: location.pathname + location.search });
  if (reason) query.set("reason", reason);
  location.assign(config.loginUrl + "?" + query.toString());
}

const api = makeApi(config.apiBase, () => toLogin("signed_out"));
const client = new NotificationClient({ apiBase: config.apiBase });
const inbox = new Inbox({
  panel: els.inbox,
  bell: els.bell,
  api: api,
  client: client,
  alreadySeen: (n) => n.event === "auth.new_sign_in" && config.signIn && (n.data || {}).sign_in === config.signIn,
});

/** A toast or desktop alert was clicked: go where the notification points, or show it. */
function openNotification(n) {
  const link = inbox.rows.get(n.id) && inbox.rows.get(n.id).querySelector("a.item-main");
  if (link) {
    link.click();
    return;
  }
  inbox.markRead([n.id]);
  openInbox("all");
}

function openInbox(filter) {
  toaster.clear();
  inbox.open();
  if (filter) inbox.showFilter(filter);
}

const toaster = new Toaster(els.toasts, { open: openNotification, openAll: () => openInbox("unread") });
const alerts = new DesktopAlerts({ open: openNotification, openAll: () => openInbox("unread") });

// --- the socket -------------------------------------------------------------------------------

client.addEventListener("notification", (event) => {
  const { notification: n, replay } = event.detail;
  const isNew = !inbox.items.has(n.id);
  inbox.add(n);
  // A reconnect's replay can be long: it goes to the inbox without an alert each.
  if (!isNew || n.read || replay) return;
  if (!inbox.isOpen) toaster.show(n);
  alerts.notify(n);
});
client.addEventListener("read", (event) => inbox.applyRead(event.detail.ids));
client.addEventListener("unread", (event) => setUnread(event.detail.unread));
client.addEventListener("status", (event) => {
  const status = event.detail.status;
  els.status.dataset.state = status;
  els.statusText.textContent = STATUS_TEXT[status] || status;
});
// A resume brings back what this tab missed, not what was marked read meanwhile: every
// reconnect reloads the list too (the first hello's "initial" reload is the first load).
let beenLive = false;
client.addEventListener("status", (event) => {
  if (event.detail.status !== "live") return;
  if (beenLive) inbox.reload();
  beenLive = true;
});
client.addEventListener("reload", () => inbox.reload());
client.addEventListener("unauthenticated", () => toLogin("signed_out"));

function setUnread(count) {
  els.badge.textContent = count > BADGE_MAX ? BADGE_MAX + "+" : String(count);
  els.badge.dataset.count = String(count);
  els.bell.setAttribute("aria-label", count === 1 ? "1 unread notification" : count + " unread notifications");
  inbox.setUnread(count);
  document.title = (count ? "(" + count + ") " : "") + "Notifications · " + config.user;
}

// --- desktop alerts ---------------------------------------------------------------------------

function showAlertsState() {
  const state = alerts.state;
  els.alerts.dataset.state = state;
  els.alerts.textContent = ALERTS_TEXT[state];
  els.alerts.disabled = state === "unsupported" || state === "blocked";
  els.alerts.setAttribute("aria-pressed", String(state === "on"));
}
els.alerts.addEventListener("click", () => alerts.toggle().then(showAlertsState));

// --- the page ---------------------------------------------------------------------------------

// Focus that moves under the sticky header scrolls clear of it, whatever its height.
new ResizeObserver(() => {
  document.documentElement.style.setProperty("--topbar-height", els.topbar.offsetHeight + "px");
}).observe(els.topbar);

// "Reply" links of message notifications open this page as /?reply_to=<sender>#message-form.
const replyTo = new URLSearchParams(location.search).get("reply_to");
if (replyTo && !els.to.value) els.to.value = replyTo;

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const to = els.to.value.trim();
  els.send.disabled = true;
  els.formNote.textContent = "";
  els.formNote.dataset.kind = "";
  api("messages/", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ to: to, text: els.text.value }),
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

// Logging out closes this tab's socket with 4401 anyway; stop first so the form's own
// navigation is the only one.
els.logoutForm.addEventListener("submit", () => client.close());

// Every session and API token of this user ends, and every socket they opened closes.
els.signOutEverywhere.addEventListener("click", () => {
  els.signOutEverywhere.disabled = true;
  client.close();
  api("sign-out-everywhere/", { method: "POST" })
    .catch(() => null)
    .then(() => toLogin("signed_out_everywhere"));
});

setUnread(0);
showAlertsState();
client.start();
// The socket's hello asks for the list; if the socket cannot get through, load it anyway.
setTimeout(() => {
  if (!inbox.views.all.loaded && !inbox.views.all.loading) inbox.reload();
}, 3000);
window.notificationClient = client; // for the console and for tests
