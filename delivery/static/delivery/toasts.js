/*
 * toasts.js: a short-lived card for each new notification; a burst (another one arriving
 * while the last is still on screen) collapses into one card, "12 new notifications", that
 * opens the inbox, instead of a stack over the page.
 */
import { el } from "./dom.js";

const TOAST_MS = 8000; // long enough to read a title and a line of body

export class Toaster {
  /**
   * @param {HTMLElement} container  the aria-live region the cards go in
   * @param {object} handlers        {open(n): a card clicked, openAll(): the burst card clicked}
   */
  constructor(container, handlers) {
    this.container = container;
    this.handlers = handlers;
    this.burst = 0; // notifications that arrived while a card of this burst was on screen
    this.card = null; // the card on screen, if any
  }

  /** A new notification arrived (live, unread). */
  show(n) {
    if (this.card && this.card.isConnected && !this.card.classList.contains("is-leaving")) {
      this.burst += 1;
      this.replace(this.summaryCard(this.burst));
    } else {
      this.burst = 1;
      this.replace(this.singleCard(n));
    }
  }

  /** Take every card away (the inbox was opened: the news is on screen there). */
  clear() {
    if (this.card) this.hide(this.card);
    this.burst = 0;
  }

  singleCard(n) {
    const card = this.frame();
    const main = el("button", "toast-main");
    main.type = "button";
    main.append(el("strong", "toast-title", n.title || "Notification"), el("span", "toast-body", n.body || ""));
    main.addEventListener("click", () => {
      this.hide(card);
      this.handlers.open(n);
    });
    card.prepend(main);
    return card;
  }

  summaryCard(count) {
    const card = this.frame();
    card.dataset.burst = String(count);
    const main = el("button", "toast-main");
    main.type = "button";
    main.append(el("strong", "toast-title", count + " new notifications"), el("span", "toast-body", "Open the inbox to see them"));
    main.addEventListener("click", () => {
      this.hide(card);
      this.handlers.openAll();
    });
    card.prepend(main);
    return card;
  }

  frame() {
    const card = el("div", "toast");
    card.dataset.testid = "toast";
    const dismiss = el("button", "toast-close", "×");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", "Dismiss");
    dismiss.addEventListener("click", () => this.hide(card));
    card.append(dismiss);
    card.addEventListener("mouseenter", () => clearTimeout(card.timer));
    card.addEventListener("mouseleave", () => this.arm(card));
    return card;
  }

  replace(card) {
    if (this.card) {
      clearTimeout(this.card.timer);
      this.card.remove();
    }
    this.card = card;
    this.container.prepend(card);
    this.arm(card);
  }

  arm(card) {
    clearTimeout(card.timer);
    card.timer = setTimeout(() => this.hide(card), TOAST_MS);
  }

  hide(card) {
    clearTimeout(card.timer);
    card.classList.add("is-leaving");
    setTimeout(() => card.remove(), 200);
    if (this.card === card) this.card = null;
  }
}
