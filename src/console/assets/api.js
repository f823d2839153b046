// The console's one way to the node: the HTTP API with the signed-in
// token in an Authorization header (never in a URL), and errors in words.

/** An answer the API refused, with its code and the node's own message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** What to tell a person about an error, by its code. */
const WORDS = {
  unauthorized:
    "Your token is not valid any more: it expired or was replaced. Sign in again with the token you were given.",
  forbidden: "This needs the admin token; the token given is a user's.",
  shutting_down: "The node is shutting down. Try again in a moment.",
  not_ready: "The node is not ready yet. Try again in a moment.",
  unknown_recipient: "There is no such recipient: check the name or address.",
  no_mechanism: "The recipient cannot be reached on any medium right now.",
  policy_denied: "Your organisation's policy does not allow this message.",
  expired: "The message expired before it could be delivered.",
  too_large: "That is too large for this node.",
  storage_unavailable: "The node cannot store anything right now. Try again later.",
  cluster_unavailable: "The cluster cannot confirm anything right now. Try again later.",
  timeout: "The node took too long to answer. Try again.",
  network: "The node cannot be reached. Check that it is running and try again.",
};

/** A sentence for `err` (an ApiError or anything thrown). */
export function explain(err) {
  if (err instanceof ApiError) {
    const words = WORDS[err.code];
    if (words) return words;
    return err.message || `The node refused (${err.code}).`;
  }
  return WORDS.network;
}

/** Whether `err` means the token no longer works. */
export function isUnauthorized(err) {
  return err instanceof ApiError && err.status === 401;
}

/**
 * Calls the API: `method` on `path` with `token`, `body` as JSON.
 * Resolves to the parsed JSON (or the text for non-JSON, null for 204).
 */
export async function call(token, method, path, body, accept = "application/json") {
  const init = {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: accept },
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network", WORDS.network);
  }
  if (resp.status === 204 || resp.status === 304) return null;
  const type = resp.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await resp.json().catch(() => null) : await resp.text();
  if (!resp.ok) {
    const e = data && data.error ? data.error : { code: `http_${resp.status}`, message: "" };
    throw new ApiError(resp.status, e.code, e.message);
  }
  return data;
}

/** The token kept for this tab under `key` (session storage only). */
export const tokens = {
  get: (key) => sessionStorage.getItem(key),
  set: (key, value) => sessionStorage.setItem(key, value),
  clear: (key) => sessionStorage.removeItem(key),
};

/** A path segment, escaped. */
export const seg = (s) => encodeURIComponent(s);

/** Medium names as people read them. */
export const MEDIUM = { im: "IM", sms: "SMS", email: "email", fax: "fax" };
export const medium = (m) => MEDIUM[m] || m;

/** A time for people: today's as the time, older ones with the date. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}
