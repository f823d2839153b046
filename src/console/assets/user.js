// The user console: sign in with a user token; contacts with live
// presence; your own presence; compose; conversations; each sent message's
// timeline, live over /v1/ws; opening a received message marks it read.
import { call, explain, isUnauthorized, tokens, seg, when } from "/console/api.js";
import { h, fill, $, alertText, status, signInForm } from "/console/dom.js";
import { renderTimeline, statusWords, FINAL } from "/console/timeline.js";

const KEY = "switchboard.token";
const SENT_KEY = "switchboard.sent";
const EXPIRED =
  "Your token is not valid any more: it expired or was replaced. Sign in again with the token you were given.";

let token = null;
let me = null;
const contacts = new Map(); // user → {name, state, note, otherWays}
const received = new Map(); // txn → an inbox message
const sent = new Map(); // txn → {view, body, subject}
let cursor = null;
let peer = null; // the open conversation
let open = null; // the open message: {kind: "sent"|"received", txn}
let ws = null;
let retries = 0;
let timers = [];
let generation = 0; // a sign-out makes callbacks of before it do nothing
let wentDown = null;
let poll = null; // the open sent message's next status read

signInForm("signin-form", "token", (t) => start(t, false));
$("signout").addEventListener("click", () => signOut(""));
$("presence-form").addEventListener("submit", setPresence);
$("compose-form").addEventListener("submit", send);

const saved = tokens.get(KEY);
if (saved) start(saved, true);
else $("token").focus();

// --- signing in and out ---------------------------------------------------

async function start(t, resumed) {
  alertText("");
  let who;
  try {
    who = await call(t, "GET", "/v1/me");
  } catch (e) {
    tokens.clear(KEY);
    if (isUnauthorized(e) && /admin token/.test(e.message)) {
      alertText("That is the admin token: the operator view is at /admin.");
    } else if (isUnauthorized(e)) {
      alertText(resumed ? EXPIRED : "That token is not valid: check it, or ask your operator for a new one.");
    } else {
      alertText(explain(e));
    }
    $("token").focus();
    return;
  }
  generation += 1;
  token = t;
  tokens.set(KEY, t);
  me = who;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  fill($("whoami"), "Signed in as ", h("strong", {}, who.display_name || who.user));
  contacts.clear();
  for (const c of who.contacts) {
    contacts.set(c.user, { name: c.display_name || c.user, state: "offline", note: null, otherWays: false });
  }
  fill(
    $("contact-ids"),
    who.contacts.map((c) => h("option", { value: c.user }, c.display_name || c.user)),
  );
  renderContacts();
  connect();
  await Promise.all([loadPresence(), loadInbox(), loadSent()]).catch(report);
  renderConversations();
  $("main").focus();
}

function signOut(reason) {
  generation += 1;
  tokens.clear(KEY);
  token = null;
  me = null;
  if (ws) ws.close(1000, "signed out");
  ws = null;
  timers.forEach(clearTimeout);
  timers = [];
  retries = 0;
  contacts.clear();
  received.clear();
  sent.clear();
  cursor = null;
  peer = null;
  open = null;
  $("app").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("thread").hidden = true;
  $("detail").hidden = true;
  fill($("whoami"));
  setConn("", "");
  alertText(reason);
  $("token").focus();
}

/** The API with this session's token; a refused token signs out. */
async function api(method, path, body) {
  const g = generation;
  try {
    return await call(token, method, path, body);
  } catch (e) {
    if (isUnauthorized(e) && g === generation) signOut(EXPIRED);
    throw e;
  }
}

function report(e) {
  if (!isUnauthorized(e)) alertText(explain(e));
}

function later(f, ms) {
  const g = generation;
  const t = setTimeout(() => {
    timers = timers.filter((x) => x !== t);
    if (g === generation) f();
  }, ms);
  timers.push(t);
  return t;
}

// --- presence ---------------------------------------------------------------

async function loadPresence() {
  await Promise.all(
    [...contacts.keys()].map(async (u) => {
      const p = await api("GET", `/v1/presence/${seg(u)}`);
      const c = contacts.get(u);
      if (!c) return;
      c.otherWays = Object.entries(p.mediums || {}).some(([m, v]) => m !== "im" && v === "reachable");
      // A push that came first is newer than this answer.
      if (!c.pushed) Object.assign(c, { state: p.state, note: p.note || null });
    }),
  );
  renderContacts();
}

const STATE = { online: "Online", away: "Away", busy: "Busy", offline: "Offline" };

function presenceWords(c) {
  let words = STATE[c.state] || c.state;
  if (c.note && c.state !== "offline") words += ` — ${c.note}`;
  if (c.state !== "online" && c.otherWays) words += " · reachable another way";
  return words;
}

function renderContacts() {
  const list = $("contact-list");
  if (contacts.size === 0) {
    fill(list, h("li", { class: "empty" }, "No contacts yet: your operator adds them to your profile."));
    return;
  }
  fill(
    list,
    [...contacts].map(([u, c]) =>
      h(
        "li",
        { "data-user": u, "data-state": c.state },
        h(
          "button",
          { type: "button", class: "contact", onclick: () => pick(u) },
          h("span", { class: `dot ${c.state}${c.otherWays && c.state !== "online" ? " other" : ""}`, "aria-hidden": "true" }),
          h("span", { class: "name" }, c.name),
          h("span", { class: "presence" }, presenceWords(c)),
        ),
      ),
    ),
  );
}

function pick(u) {
  $("to").value = u;
  showConversation(u);
  $("body").focus();
}

async function setPresence(ev) {
  ev.preventDefault();
  const state = $("my-state").value;
  const note = $("my-note").value.trim();
  try {
    await api("PUT", "/v1/presence", note ? { state, note } : { state });
    status("presence-status", `You are ${STATE[state].toLowerCase()}${note ? ` (${note})` : ""}.`);
  } catch (e) {
    status("presence-status", `Not changed: ${explain(e)}`);
  }
}

// --- messages -----------------------------------------------------------------

/** The newest 2 000 messages of the inbox (on sign-in). */
async function loadInbox() {
  let before = "";
  for (let page = 0; page < 2; page += 1) {
    const got = await api("GET", `/v1/inbox?before=${seg(before)}&limit=1000`);
    took(got.messages);
    if (got.messages.length < 1000 || !got.next) break;
    before = got.next;
  }
}

/** Whatever came after the newest message this console has (on return). */
async function loadNewer() {
  if (cursor === null) {
    await loadInbox();
    return;
  }
  for (let page = 0; page < 10; page += 1) {
    const got = await api("GET", `/v1/inbox?after=${seg(cursor)}&limit=1000`);
    took(got.messages);
    if (got.messages.length < 1000) break;
  }
}

function took(messages) {
  for (const m of messages) {
    received.set(m.txn, { ...received.get(m.txn), ...m });
    if (cursor === null || BigInt(m.cursor) > BigInt(cursor)) cursor = m.cursor;
  }
}

function remembered() {
  try {
    return JSON.parse(sessionStorage.getItem(SENT_KEY) || "{}");
  } catch {
    return {};
  }
}

function remember(txn, body, subject) {
  const all = remembered();
  all[txn] = { body, subject };
  const keys = Object.keys(all);
  for (const k of keys.slice(0, Math.max(0, keys.length - 500))) delete all[k];
  sessionStorage.setItem(SENT_KEY, JSON.stringify(all));
}

async function loadSent() {
  const got = await api("GET", "/v1/messages?limit=200");
  const bodies = remembered();
  for (const view of got.messages) sent.set(view.txn, { view, ...bodies[view.txn] });
}

async function refreshSent(txn) {
  const s = sent.get(txn);
  if (!s) return;
  try {
    s.view = await api("GET", `/v1/messages/${seg(txn)}`);
  } catch (e) {
    report(e);
    return;
  }
  renderConversations();
  if (peer === peerOf(s)) renderThread();
  if (open && open.txn === txn) renderDetail();
}

async function send(ev) {
  ev.preventDefault();
  const to = $("to").value.trim();
  const body = $("body").value;
  const subject = $("subject").value.trim();
  const priority = $("priority").value;
  if (!to || !body.trim()) {
    status("compose-status", "Say whom to send it to, and what.");
    return;
  }
  const msg = { to, body, priority };
  if (subject) msg.subject = subject;
  status("compose-status", "Sending…");
  let answer;
  try {
    answer = await api("POST", "/v1/messages", msg);
  } catch (e) {
    status("compose-status", `Not sent: ${explain(e)}`);
    alertText(`Not sent: ${explain(e)}`);
    return;
  }
  alertText("");
  remember(answer.txn, body, subject);
  const now = new Date().toISOString();
  sent.set(answer.txn, {
    body,
    subject,
    view: { txn: answer.txn, to, status: answer.status, events: [], attempts: [], created_at: now, priority },
  });
  $("body").value = "";
  $("subject").value = "";
  status("compose-status", `Sent to ${nameOf(to)}.`);
  showConversation(to);
  openMessage("sent", answer.txn, false);
  refreshSent(answer.txn);
}

// --- conversations --------------------------------------------------------------

const peerOf = (s) => (s.view ? s.view.to : s.from).replace(/^im:/, "");
const nameOf = (u) => (contacts.get(u) ? contacts.get(u).name : u);

function items() {
  const all = [];
  for (const [txn, m] of received) all.push({ kind: "received", txn, peer: peerOf(m), at: m.sent_at, m });
  for (const [txn, s] of sent) all.push({ kind: "sent", txn, peer: peerOf(s), at: s.view.created_at, s });
  return all.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

function renderConversations() {
  const byPeer = new Map();
  for (const it of items()) {
    const c = byPeer.get(it.peer) || { last: it.at, unread: 0 };
    c.last = it.at;
    if (it.kind === "received" && !it.m.read) c.unread += 1;
    byPeer.set(it.peer, c);
  }
  const list = $("conversation-list");
  if (byPeer.size === 0) {
    fill(list, h("li", { class: "empty" }, "No messages yet."));
    return;
  }
  const sorted = [...byPeer].sort((a, b) => (a[1].last < b[1].last ? 1 : -1));
  fill(
    list,
    sorted.map(([p, c]) =>
      h(
        "li",
        { "data-peer": p },
        h(
          "button",
          { type: "button", class: "conversation", "aria-current": p === peer ? "true" : null, onclick: () => showConversation(p) },
          h("span", { class: "name" }, nameOf(p)),
          c.unread ? h("span", { class: "badge" }, `${c.unread} unread`) : null,
          h("time", { datetime: c.last }, when(c.last)),
        ),
      ),
    ),
  );
}

function showConversation(p) {
  peer = p.replace(/^im:/, "");
  $("thread").hidden = false;
  renderConversations();
  renderThread();
}

function snippet(text) {
  if (text === undefined || text === null) return "(what you wrote is kept only by the tab it was sent from)";
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

function renderThread() {
  $("thread-h").textContent = `Conversation with ${nameOf(peer)}`;
  const mine = items().filter((it) => it.peer === peer);
  fill(
    $("thread-list"),
    mine.map((it) => {
      const isOpen = open && open.txn === it.txn;
      if (it.kind === "received") {
        return h(
          "li",
          { class: `msg in${it.m.read ? "" : " unread"}`, "data-txn": it.txn },
          h(
            "button",
            { type: "button", "aria-current": isOpen ? "true" : null, onclick: () => openMessage("received", it.txn, true) },
            h("span", { class: "who" }, nameOf(it.peer)),
            h("span", { class: "text" }, snippet(it.m.subject ? `${it.m.subject}: ${it.m.body}` : it.m.body)),
            h("span", { class: "state" }, it.m.read ? "read" : "unread"),
            h("time", { datetime: it.at }, when(it.at)),
          ),
        );
      }
      return h(
        "li",
        { class: "msg out", "data-txn": it.txn, "data-status": it.s.view.status },
        h(
          "button",
          { type: "button", "aria-current": isOpen ? "true" : null, onclick: () => openMessage("sent", it.txn, true) },
          h("span", { class: "who" }, "You"),
          h("span", { class: "text" }, snippet(it.s.body)),
          h("span", { class: "state" }, statusWords(it.s.view.status)),
          h("time", { datetime: it.at }, when(it.at)),
        ),
      );
    }),
  );
}

async function openMessage(kind, txn, focus) {
  open = { kind, txn };
  $("detail").hidden = false;
  renderDetail();
  renderThread();
  if (focus) $("detail").focus();
  if (kind === "received") {
    const m = received.get(txn);
    if (m && !m.read) {
      try {
        await api("POST", `/v1/messages/${seg(txn)}/read`);
        m.read = true;
      } catch (e) {
        report(e);
      }
      renderThread();
      renderConversations();
      renderDetail();
    }
  } else {
    refreshSent(txn);
  }
}

function renderDetail() {
  if (!open) return;
  if (open.kind === "received") {
    const m = received.get(open.txn);
    if (!m) return;
    $("detail-h").textContent = `From ${nameOf(peerOf(m))}`;
    $("detail-meta").textContent = `Sent ${when(m.sent_at)}${m.read ? " · read" : ""}`;
    $("detail-subject").textContent = m.subject || "";
    $("detail-body").textContent = m.body;
    $("detail-status").textContent = "";
    fill($("timeline"));
    fill($("attempts"));
    $("timeline-h").hidden = true;
    return;
  }
  const s = sent.get(open.txn);
  if (!s) return;
  $("timeline-h").hidden = false;
  $("detail-h").textContent = `To ${nameOf(peerOf(s))}`;
  $("detail-meta").textContent = `Sent ${when(s.view.created_at)} · priority ${s.view.priority || "normal"}`;
  $("detail-subject").textContent = s.subject || "";
  $("detail-body").textContent = snippet(s.body);
  const st = $("detail-status");
  st.textContent = statusWords(s.view.status);
  st.dataset.status = s.view.status;
  renderTimeline($("timeline"), $("attempts"), s.view);
  // Attempts in between receipts (a timeout, the next medium tried) are
  // read while the message is open and not yet delivered.
  // One poll at a time, for the open message only.
  clearTimeout(poll);
  if (!FINAL.includes(s.view.status) && s.view.status !== "delivered") {
    const txn = open.txn;
    poll = later(() => {
      if (open && open.txn === txn) refreshSent(txn);
    }, 2000);
  }
}

// --- the WebSocket --------------------------------------------------------------

function setConn(text, state) {
  const el = $("conn");
  el.textContent = text;
  el.dataset.state = state;
}

function connect() {
  const g = generation;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const sock = new WebSocket(`${scheme}://${location.host}/v1/ws`);
  ws = sock;
  setConn(retries ? "Reconnecting…" : "Connecting…", "connecting");
  sock.addEventListener("open", () => {
    // The token goes in the first frame, never in the URL.
    sock.send(JSON.stringify({ type: "auth", token }));
    setConn("Connected: live", "live");
    if (retries > 0) catchUp();
    retries = 0;
    wentDown = null;
  });
  sock.addEventListener("message", (ev) => {
    if (g !== generation) return;
    let f;
    try {
      f = JSON.parse(ev.data);
    } catch {
      return;
    }
    onFrame(f);
  });
  sock.addEventListener("close", (ev) => {
    if (g !== generation || ws !== sock) return;
    ws = null;
    if (ev.code === 1008) {
      signOut(EXPIRED);
      return;
    }
    if (ev.code === 1001) wentDown = "The node is shutting down.";
    retries += 1;
    const secs = Math.min(15, 2 ** Math.min(retries - 1, 4));
    setConn(`${wentDown || "The connection was lost."} Reconnecting in ${secs} s…`, "down");
    later(connect, secs * 1000);
  });
}

/** Back after a disconnection: what came meanwhile. */
async function catchUp() {
  try {
    await loadNewer();
    const pending = [...sent].filter(([, s]) => !FINAL.includes(s.view.status)).map(([t]) => t);
    await Promise.all(pending.map(refreshSent));
    await loadPresence();
  } catch (e) {
    report(e);
  }
  renderConversations();
  if (peer) renderThread();
}

function onFrame(f) {
  switch (f.type) {
    case "message":
      if (!received.has(f.txn)) {
        received.set(f.txn, { ...f, read: false });
        status("announce", `New message from ${nameOf(peerOf(f))}.`);
      }
      renderConversations();
      if (peer === peerOf(f)) renderThread();
      break;
    case "receipt":
      refreshSent(f.txn);
      break;
    case "presence": {
      const c = contacts.get(f.user);
      if (!c) break;
      const was = presenceWords(c);
      Object.assign(c, { state: f.state, note: f.note || null, pushed: true });
      renderContacts();
      if (presenceWords(c) !== was) status("announce", `${c.name} is now ${presenceWords(c).toLowerCase()}.`);
      break;
    }
    case "error":
      if (f.code === "unauthorized") signOut(EXPIRED);
      else alertText(f.message);
      break;
    default:
      break;
  }
}
