// A message's timeline, from `GET /v1/messages/{txn}`: accepted, each
// attempt (by medium, never the address), delivered via a medium, read —
// or undeliverable with every attempt and why.
import { h, fill } from "/console/dom.js";
import { medium, when } from "/console/api.js";

/** Statuses after which nothing more happens but a read receipt. */
export const FINAL = ["read", "undeliverable", "rejected", "blocked", "expired"];

const STATUS = {
  quarantined: "Held for review",
  released: "On its way",
  transmitted: "Handed over",
  delivered: "Delivered",
  read: "Read",
  undeliverable: "Undeliverable",
  rejected: "Refused",
  blocked: "Blocked by policy",
  expired: "Expired",
};

/** The status in words. */
export const statusWords = (s) => STATUS[s] || s;

const OUTCOME = {
  delivered: "delivered",
  read: "delivered and read",
  non_delivery: "could not deliver",
  timeout: "timed out",
  expired: "expired",
  blocked: "blocked by policy",
  quarantined: "held for review",
};

/** One trail event in words, or null for one a person need not see. */
function eventWords(kind, view) {
  const [what, arg] = [kind.split(":")[0], kind.slice(kind.indexOf(":") + 1)];
  switch (what) {
    case "submitted":
      return "Accepted";
    case "released":
      return `Trying ${medium(arg)}`;
    case "delivered":
      return `Delivered via ${medium(arg)}`;
    case "read":
      return "Read";
    case "non_delivery": {
      const a = [...view.attempts].reverse().find((x) => x.mechanism === arg && x.reason);
      return `${medium(arg)} could not deliver${a ? `: ${a.reason}` : ""}`;
    }
    case "timeout":
      return `${medium(arg)} did not answer in time`;
    case "blocked":
      return `${medium(arg)} blocked by policy`;
    case "undeliverable":
      return "Undeliverable: every way to reach the recipient failed";
    case "expired":
      return "Expired before it could be delivered";
    case "rejected":
      return `Refused (${arg})`;
    case "quarantined":
      return "Held for review";
    case "quarantine":
      if (arg.startsWith("released")) return "Released by the reviewer";
      if (arg.startsWith("rejected")) return "Refused by the reviewer";
      return kind;
    case "manager":
    case "policy":
    case "tag":
    case "notify":
    case "archive":
      return null;
    default:
      return kind;
  }
}

/** Fills `el` (an <ol>) with `view`'s timeline; `attemptsEl` with its attempts. */
export function renderTimeline(el, attemptsEl, view) {
  const items = [];
  for (const e of view.events) {
    const words = eventWords(e.kind, view);
    if (!words) continue;
    items.push(
      h("li", { class: `ev ev-${e.kind.split(":")[0]}` }, h("time", { datetime: e.at }, when(e.at)), " ", words),
    );
  }
  if (!FINAL.includes(view.status) && view.status !== "delivered") {
    items.push(h("li", { class: "ev ev-pending" }, "Waiting for the outcome…"));
  }
  fill(el, items);
  if (!attemptsEl) return;
  if (view.attempts.length === 0) {
    fill(attemptsEl, h("p", {}, "No attempt was made."));
    return;
  }
  const rows = view.attempts.map((a) =>
    h(
      "tr",
      {},
      h("td", {}, String(a.attempt)),
      h("td", {}, medium(a.mechanism)),
      h("td", {}, h("time", { datetime: a.started_at }, when(a.started_at))),
      h("td", {}, a.outcome ? OUTCOME[a.outcome] || a.outcome : "in progress"),
      h("td", {}, a.reason || ""),
    ),
  );
  fill(
    attemptsEl,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        {},
        h("caption", {}, "Attempts"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["#", "Medium", "Started", "Outcome", "Why"].map((c) => h("th", { scope: "col" }, c)),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
  );
}
