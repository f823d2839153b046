// The operator view: members and their health, delivery managers (view,
// edit, hot-swap), recent transactions, accounting per medium per hour, key
// metrics, policy rules and the archive. Every figure comes from the admin
// API with the admin token; without it the page shows nothing.
import { call, explain, tokens, seg, when, medium, ApiError } from "/console/api.js";
import { h, fill, $, alertText, status, signInForm } from "/console/dom.js";
import { renderTimeline, statusWords } from "/console/timeline.js";
import { drawChart, perHour } from "/console/chart.js";

const KEY = "switchboard.admin";
const PRIORITIES = ["normal", "urgent", "low"];
let token = null;
let managers = {};
let timer = null;
let generation = 0;

signInForm("signin-form", "token", (t) => start(t, false));
$("signout").addEventListener("click", () => signOut(""));
$("health-refresh").addEventListener("click", () => refreshHealth());
$("accounting-refresh").addEventListener("click", () => loadAccounting());
$("manager-form").addEventListener("submit", saveManager);
$("m-delete").addEventListener("click", deleteManager);
$("txn-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadTxns();
});
$("archive-form").addEventListener("submit", searchArchive);
$("quarantine-refresh").addEventListener("click", () => loadQuarantine());
$("held-release").addEventListener("click", () => decide("release"));
$("held-reject").addEventListener("click", () => decide("reject"));
buildConfigFields();

const saved = tokens.get(KEY);
if (saved) start(saved, true);
else $("token").focus();

function refusal(e, resumed) {
  if (e instanceof ApiError && e.status === 403) {
    return "That is a user's token: the operator view needs the node's admin token. Your own console is at /.";
  }
  if (e instanceof ApiError && e.status === 401) {
    return resumed
      ? "The admin token is not valid any more: it was replaced. Sign in with the new one (admin.token)."
      : "That token is not valid: use the node's admin token (admin.token in its data directory).";
  }
  return explain(e);
}

async function start(t, resumed) {
  alertText("");
  try {
    // Anything the view shows needs the admin token: check it first.
    await call(t, "GET", "/v1/admin/members");
  } catch (e) {
    tokens.clear(KEY);
    alertText(refusal(e, resumed));
    $("token").focus();
    return;
  }
  generation += 1;
  token = t;
  tokens.set(KEY, t);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  await Promise.all([refreshHealth(), loadManagers(), loadTxns(), loadAccounting(), loadQuarantine(), loadRules()]);
  $("main").focus();
}

function signOut(reason) {
  generation += 1;
  tokens.clear(KEY);
  token = null;
  clearTimeout(timer);
  $("app").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  for (const id of ["members", "metrics", "manager-list", "txns", "chart", "chart-table", "quarantine", "rules", "archive"]) fill($(id));
  $("held").hidden = true;
  $("txn-detail").hidden = true;
  alertText(reason);
  $("token").focus();
}

/** The admin API; a refused token signs out, saying why. */
async function api(method, path, body, accept) {
  const g = generation;
  try {
    return await call(token, method, path, body, accept);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403) && g === generation) {
      signOut(refusal(e, true));
    }
    throw e;
  }
}

function table(caption, cols, rows) {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows),
  );
}

const yes = (b) => (b ? "yes" : "no");

// --- health, metrics, members ---------------------------------------------------

/** Prometheus text → {name: summed value}. */
function metricsOf(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-z_:]+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out[m[1]] = (out[m[1]] || 0) + Number(m[3]);
  }
  return out;
}

const KEY_METRICS = [
  ["switchboard_messages_received_total", "Messages received"],
  ["switchboard_messages_delivered_total", "Delivered"],
  ["switchboard_messages_failed_total", "Failed (undeliverable, expired, blocked)"],
  ["switchboard_messages_rejected_total", "Refused"],
  ["switchboard_messages_quarantined_total", "Held for review"],
  ["switchboard_broker_open_transactions", "Open transactions"],
  ["switchboard_broker_queue_depth", "Broker queue"],
  ["switchboard_ws_sessions", "WebSocket sessions"],
  ["switchboard_members_connected", "Members connected"],
];

async function refreshHealth() {
  const g = generation;
  clearTimeout(timer);
  try {
    const resp = await fetch("/readyz", { cache: "no-store", credentials: "omit" });
    const body = await resp.json().catch(() => ({}));
    const el = $("ready");
    el.dataset.state = resp.ok ? "ok" : "down";
    el.textContent = resp.ok
      ? "Ready: storage and every gateway are up."
      : `Not ready: ${(body.error && body.error.message) || resp.status}`;
    const m = metricsOf(await api("GET", "/metrics", undefined, "text/plain"));
    const items = KEY_METRICS.filter(([k]) => k in m).map(([k, label]) => [label, String(m[k])]);
    if (m.switchboard_journal_sync_seconds_count) {
      const ms = (1000 * m.switchboard_journal_sync_seconds_sum) / m.switchboard_journal_sync_seconds_count;
      items.push(["Journal sync, mean", `${ms.toFixed(2)} ms`]);
    }
    if (m.switchboard_process_resident_memory_bytes) {
      items.push(["Memory", `${(m.switchboard_process_resident_memory_bytes / 2 ** 20).toFixed(0)} MiB`]);
    }
    fill($("metrics"), items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
    await loadMembers();
  } catch (e) {
    if (g === generation) alertText(explain(e));
  }
  if (g === generation && token) timer = setTimeout(refreshHealth, 10000);
}

async function loadMembers() {
  const got = await api("GET", "/v1/admin/members");
  const rows = got.members.map((m) =>
    h(
      "tr",
      { "data-member": m.id, "data-healthy": String(m.healthy) },
      h("th", { scope: "row" }, m.id),
      h("td", {}, m.medium ? medium(m.medium) : "processor"),
      h("td", { class: m.revoked ? "bad" : m.healthy ? "good" : m.connected ? "warn" : "bad" },
        m.revoked ? "revoked" : m.healthy ? "healthy" : m.connected ? "connected, not healthy" : "not connected"),
      h("td", {}, yes(m.logged_in)),
      h("td", {}, m.last_seen ? when(m.last_seen) : "never"),
    ),
  );
  const refusals = Object.entries(got.refusals || {});
  fill(
    $("members"),
    table("Gateways and processors", ["Member", "Medium", "Health", "Logged in", "Last seen"], rows),
    refusals.length
      ? h("p", { class: "hint" }, `MIAP frames refused: ${refusals.map(([k, v]) => `${k} ${v}`).join(", ")}`)
      : null,
  );
}

// --- delivery managers -------------------------------------------------------------

function buildConfigFields() {
  fill(
    $("m-configs"),
    PRIORITIES.map((p) =>
      h(
        "fieldset",
        {},
        h("legend", {}, `${p[0].toUpperCase()}${p.slice(1)} priority${p === "normal" ? " (required)" : " (empty: as normal)"}`),
        h("label", { for: `m-${p}-mechs` }, "Mediums, in order (comma-separated: im, sms, email, fax)"),
        h("input", { id: `m-${p}-mechs`, name: `${p}-mechanisms`, autocomplete: "off", spellcheck: "false", required: p === "normal" }),
        h("label", { for: `m-${p}-timeout` }, "Seconds one attempt may take"),
        h("input", { id: `m-${p}-timeout`, name: `${p}-timeout`, type: "number", min: "1", inputmode: "numeric" }),
        h(
          "div",
          { class: "check" },
          h("input", { id: `m-${p}-presence`, name: `${p}-presence`, type: "checkbox" }),
          h("label", { for: `m-${p}-presence` }, "Use IM only when the recipient is online"),
        ),
      ),
    ),
  );
}

async function loadManagers(select) {
  const got = await api("GET", "/v1/admin/delivery-managers");
  managers = got.managers;
  fill(
    $("manager-list"),
    Object.keys(managers).map((name) =>
      h("li", {}, h("button", { type: "button", class: "chip", "data-manager": name, onclick: () => edit(name) }, name)),
    ),
    h("li", {}, h("button", { type: "button", class: "chip", onclick: () => edit(null) }, "New manager…")),
  );
  edit(select || Object.keys(managers)[0] || null, false);
}

function edit(name, focus = true) {
  const m = name ? managers[name] : { dispatch: "sequential", configs: {} };
  $("m-name").value = name || "";
  $("m-name").readOnly = Boolean(name);
  $("m-dispatch").value = m.dispatch;
  for (const p of PRIORITIES) {
    const c = m.configs[p];
    $(`m-${p}-mechs`).value = c ? c.mechanisms.join(", ") : "";
    $(`m-${p}-timeout`).value = c ? String(c.attempt_timeout_s) : "";
    $(`m-${p}-presence`).checked = Boolean(c && c.require_presence);
  }
  for (const b of $("manager-list").querySelectorAll("button[data-manager]")) {
    b.setAttribute("aria-pressed", String(b.dataset.manager === name));
  }
  $("m-delete").hidden = !name;
  status("manager-status", name ? `Editing ${name}.` : "A new manager: give it a name.");
  if (focus) $(name ? "m-dispatch" : "m-name").focus();
}

function formManager() {
  const configs = {};
  for (const p of PRIORITIES) {
    const mechs = $(`m-${p}-mechs`).value.split(/[\s,]+/).filter(Boolean);
    if (mechs.length === 0) continue;
    const timeout = Number($(`m-${p}-timeout`).value || "60");
    configs[p] = { mechanisms: mechs, attempt_timeout_s: timeout, require_presence: $(`m-${p}-presence`).checked };
  }
  return { dispatch: $("m-dispatch").value, configs };
}

async function saveManager(ev) {
  ev.preventDefault();
  const name = $("m-name").value.trim();
  const body = formManager();
  try {
    await api("PUT", `/v1/admin/delivery-managers/${seg(name)}`, body);
  } catch (e) {
    status("manager-status", `Not saved: ${explain(e)}`);
    return;
  }
  await loadManagers(name);
  status("manager-status", `Saved ${name}: new messages use it now; messages under way keep the one they started with.`);
}

async function deleteManager() {
  const name = $("m-name").value.trim();
  try {
    await api("DELETE", `/v1/admin/delivery-managers/${seg(name)}`);
  } catch (e) {
    status("manager-status", `Not deleted: ${explain(e)}`);
    return;
  }
  await loadManagers();
  status("manager-status", `Deleted ${name}.`);
}

// --- transactions ----------------------------------------------------------------

async function loadTxns() {
  const st = $("txn-status").value;
  const q = $("txn-search").value.trim().toLowerCase();
  let got;
  try {
    got = await api("GET", `/v1/admin/transactions?limit=${q ? 1000 : 50}${st ? `&status=${seg(st)}` : ""}`);
  } catch (e) {
    fill($("txns"), h("p", {}, explain(e)));
    return;
  }
  const shown = got.transactions
    .filter((t) => !q || [t.txn, t.from, t.to].some((x) => x.toLowerCase().includes(q)))
    .slice(0, 50);
  if (shown.length === 0) {
    fill($("txns"), h("p", {}, "No transaction matches."));
    return;
  }
  fill(
    $("txns"),
    table(
      "Newest first",
      ["Transaction", "From", "To", "Status", "Created", "Attempts"],
      shown.map((t) =>
        h(
          "tr",
          { "data-txn": t.txn },
          h("td", {}, h("button", { type: "button", class: "link", onclick: () => showTxn(t) }, t.txn.slice(0, 12))),
          h("td", {}, t.from),
          h("td", {}, t.to),
          h("td", {}, statusWords(t.status)),
          h("td", {}, h("time", { datetime: t.created_at }, when(t.created_at))),
          h("td", {}, t.attempts.map((a) => medium(a.mechanism)).join(" → ") || "none"),
        ),
      ),
    ),
  );
}

function showTxn(t) {
  $("txn-detail").hidden = false;
  $("txn-detail-h").textContent = `Transaction ${t.txn}: ${t.from} to ${t.to}`;
  $("txn-detail-status").textContent = `${statusWords(t.status)}${t.manager ? ` · manager ${t.manager}` : ""}${t.reason ? ` · ${t.reason}` : ""}`;
  renderTimeline($("txn-timeline"), $("txn-attempts"), t);
  $("txn-detail-h").setAttribute("tabindex", "-1");
  $("txn-detail-h").focus();
}

// --- accounting --------------------------------------------------------------------

async function loadAccounting() {
  const now = Date.now();
  try {
    const got = await api("GET", `/v1/admin/accounting?from=${now - 24 * 3600 * 1000}`);
    drawChart($("chart"), $("chart-table"), perHour(got.records, now));
  } catch (e) {
    fill($("chart"), h("p", {}, explain(e)));
  }
}

// --- quarantine ------------------------------------------------------------------

let reviewing = null;

async function loadQuarantine() {
  let got;
  try {
    got = await api("GET", "/v1/admin/quarantine?limit=100");
  } catch (e) {
    fill($("quarantine"), h("p", {}, explain(e)));
    return;
  }
  if (got.messages.length === 0) {
    fill($("quarantine"), h("p", {}, "Nothing is held."));
    return;
  }
  fill(
    $("quarantine"),
    table(
      "Held, newest first",
      ["Transaction", "From", "To", "Why", "Held", "Expires"],
      got.messages.map((m) =>
        h(
          "tr",
          { "data-txn": m.txn },
          h("td", {}, h("button", { type: "button", class: "link", onclick: () => review(m.txn) }, m.txn.slice(0, 12))),
          h("td", {}, m.from),
          h("td", {}, m.to),
          h("td", {}, m.rule_reason || m.reason),
          h("td", {}, h("time", { datetime: m.held_at }, when(m.held_at))),
          h("td", {}, h("time", { datetime: m.expires_at }, when(m.expires_at))),
        ),
      ),
    ),
  );
}

async function review(txn) {
  let m;
  try {
    m = await api("GET", `/v1/admin/quarantine/${seg(txn)}`);
  } catch (e) {
    status("quarantine-status", explain(e));
    return;
  }
  reviewing = txn;
  $("held").hidden = false;
  $("held-h").textContent = `Held: ${m.from} to ${m.to}`;
  $("held-meta").textContent = `${m.rule_reason || m.reason} · ${m.stage} stage · held ${when(m.held_at)} · expires ${when(m.expires_at)}`;
  $("held-content").textContent =
    typeof m.content === "string" ? m.content : `(${m.content_type}, ${m.content_length} bytes: not shown here)`;
  status("quarantine-status", "");
  $("held-h").focus();
}

async function decide(what) {
  const txn = reviewing;
  if (!txn) return;
  try {
    await api("POST", `/v1/admin/quarantine/${seg(txn)}/${what}`, {});
  } catch (e) {
    status("quarantine-status", `Not ${what === "release" ? "released" : "rejected"}: ${explain(e)}`);
    return;
  }
  reviewing = null;
  $("held").hidden = true;
  status(
    "quarantine-status",
    what === "release" ? `Released ${txn.slice(0, 12)}: it is on its way.` : `Rejected ${txn.slice(0, 12)}: the sender is told.`,
  );
  await Promise.all([loadQuarantine(), loadTxns()]);
}

// --- policy and the archive ------------------------------------------------------------

async function loadRules() {
  let got;
  try {
    got = await api("GET", "/v1/admin/policy/rules");
  } catch (e) {
    fill($("rules"), h("p", {}, explain(e)));
    return;
  }
  if (got.rules.length === 0) {
    fill($("rules"), h("p", {}, "No policy rule: every message goes as its delivery manager says."));
    return;
  }
  fill(
    $("rules"),
    table(
      "In the order they are walked",
      ["Rule", "Priority", "Stage", "Action", "Version"],
      got.rules.map((r) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, r.id),
          h("td", {}, String(r.priority ?? "")),
          h("td", {}, r.stage || "meta"),
          h("td", {}, r.action ? r.action.type : ""),
          h("td", {}, String(r.version ?? "")),
        ),
      ),
    ),
  );
}

async function searchArchive(ev) {
  ev.preventDefault();
  const params = new URLSearchParams();
  for (const [id, key] of [["a-participant", "participant"], ["a-q", "q"], ["a-from", "from"], ["a-to", "to"]]) {
    const v = $(id).value.trim();
    if (v) params.set(key, v);
  }
  params.set("limit", "100");
  status("archive-status", "Searching…");
  let got;
  try {
    got = await api("GET", `/v1/admin/archive/search?${params}`);
  } catch (e) {
    status(
      "archive-status",
      e instanceof ApiError && e.status === 404
        ? "The archive is not enabled on this node (archive.enabled in the configuration)."
        : `Search failed: ${explain(e)}`,
    );
    fill($("archive"));
    return;
  }
  status("archive-status", `${got.records.length} record${got.records.length === 1 ? "" : "s"}${got.next ? " (more: narrow the search)" : ""}.`);
  fill(
    $("archive"),
    table(
      "Archived messages",
      ["Time", "From", "To", "Medium", "Outcome", "Message"],
      got.records.map((r) =>
        h(
          "tr",
          {},
          h("td", {}, when(r.time)),
          h("td", {}, r.from),
          h("td", {}, r.to),
          h("td", {}, r.medium ? medium(r.medium) : ""),
          h("td", {}, r.outcome || r.kind),
          h("td", {}, r.body || ""),
        ),
      ),
    ),
  );
}

