/*
 * http.js: the demo page's calls to the JSON API (docs/PROTOCOL.md), with the session cookie
 * and Django's CSRF token.
 */
import { csrfToken } from "./notifications.js";

/**
 * fetch() under `apiBase`, answering {ok, status, data}. A 401 (or a 403 that says the
 * credentials are missing) calls `onSignedOut` and rejects.
 */
export function makeApi(apiBase, onSignedOut) {
  return function api(path, init) {
    const options = Object.assign({ credentials: "same-origin" }, init || {});
    options.headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    if (options.method && options.method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
    return fetch(apiBase + path, options).then((response) => {
      if (response.status === 401 || response.status === 403) {
        // 403 is also what a missing CSRF token gets; only a signed-out user goes to sign in.
        return response
          .json()
          .catch(() => ({}))
          .then((data) => {
            const detail = String((data && data.detail) || "");
            if (response.status === 401 || /credentials|authenticat/i.test(detail)) onSignedOut();
            throw new Error(detail || "HTTP " + response.status);
          });
      }
      return response.json().then(
        (data) => ({ ok: response.ok, status: response.status, data: data }),
        () => ({ ok: response.ok, status: response.status, data: null }),
      );
    });
  };
}

/** {"to": ["no such user"]} -> "to: no such user". */
export function describeErrors(data) {
  if (!data || typeof data !== "object") return "";
  if (typeof data.detail === "string") return data.detail;
  return Object.entries(data)
    .map(([field, messages]) => {
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      return field === "non_field_errors" ? text : field + ": " + text;
    })
    .join("; ");
}
