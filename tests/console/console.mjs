// Drives Switchboard's web console in Debian's Chromium, headless, as a
// person would: alice and bob in two browsers (each its own fresh profile),
// then the operator. Run by tests/console.rs, which boots the node and
// answers the lines this prints:
//   STOP  → it stops the node and answers "STOPPED";
//   START → it starts the node again on the same address, sends alice a
//           message from bob while her console is still away, and answers
//           "STARTED".
// Environment: CONSOLE_URL, ALICE_TOKEN, BOB_TOKEN, ADMIN_TOKEN, SHOTS (the
// screenshot directory), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const URL_ = process.env.CONSOLE_URL;
const ADMIN = process.env.ADMIN_TOKEN;
let ALICE = process.env.ALICE_TOKEN;
const BOB = process.env.BOB_TOKEN;
const SHOTS = process.env.SHOTS;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const WAIT = 30_000;
mkdirSync(SHOTS, { recursive: true });

const lines = createInterface({ input: process.stdin });
const incoming = [];
let waiting = null;
lines.on("line", (l) => {
  if (waiting) {
    const w = waiting;
    waiting = null;
    w(l);
  } else incoming.push(l);
});
/** Asks the test for `what` and waits for its answer. */
function ask(what) {
  console.log(what);
  return new Promise((resolve) => {
    if (incoming.length) resolve(incoming.shift());
    else waiting = resolve;
  });
}

const step = (s) => console.log(`step: ${s}`);
const problems = [];
const profiles = [];
const browsers = [];

/** A browser of its own (a fresh --user-data-dir), watched for errors and tokens in URLs. */
async function browser(who, viewport) {
  const dir = mkdtempSync(join(tmpdir(), `sb-console-${who}-`));
  profiles.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport,
  });
  browsers.push(ctx);
  const page = ctx.pages()[0] || (await ctx.newPage());
  watch(who, page);
  return { ctx, page };
}

function watch(who, page) {
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const t = m.text();
    // A refused API call is logged by Chromium as a failed resource load
    // (the console shows it in words); anything else is a problem — a CSP
    // violation above all.
    if (/Failed to load resource: the server responded with a status of (401|403|404|422)/.test(t)) return;
    if (/WebSocket connection to .* failed/.test(t)) return;
    problems.push(`${who}: console error: ${t}`);
  });
  page.on("pageerror", (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on("request", (r) => {
    for (const tok of [ALICE, BOB, ADMIN]) {
      if (tok && r.url().includes(tok)) problems.push(`${who}: a token in a URL: ${r.url()}`);
    }
  });
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

/** Waits until `selector` has text matching `re`. */
async function waitText(page, selector, re, timeout = WAIT) {
  try {
    await page.locator(selector).filter({ hasText: re }).first().waitFor({ timeout });
  } catch (e) {
    const now = await page.locator(selector).allInnerTexts().catch(() => []);
    throw new Error(`waiting for ${selector} to say ${re}: it says ${JSON.stringify(now)}`);
  }
}

async function signIn(page, path, token) {
  await page.goto(`${URL_}${path}`);
  await page.locator("#token").waitFor();
  // By keyboard: the field has focus on load, Enter submits.
  await page.keyboard.type(token);
  await page.keyboard.press("Enter");
}

async function admin(method, path, body) {
  const r = await fetch(`${URL_}${path}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** What a person needs of every page: labelled controls, visible focus, no sideways scrolling. */
async function accessible(page, who, width) {
  const report = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll("input, select, textarea, button")) {
      if (el.closest("[hidden]") || el.type === "hidden") continue;
      const named =
        (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || (el.tagName === "BUTTON" && el.textContent.trim());
      if (!named) out.push(`unlabelled ${el.tagName.toLowerCase()}#${el.id}`);
    }
    const doc = document.documentElement;
    if (doc.scrollWidth > doc.clientWidth + 1) out.push(`scrolls sideways: ${doc.scrollWidth} > ${doc.clientWidth}`);
    return out;
  });
  for (const r of report) problems.push(`${who} at ${width} px: ${r}`);
  // Tab reaches the controls, and the focused one is outlined.
  await page.locator("body").focus();
  for (let i = 0; i < 3; i += 1) await page.keyboard.press("Tab");
  const focus = await page.evaluate(() => {
    const el = document.activeElement;
    const st = getComputedStyle(el);
    return { tag: el.tagName, outline: st.outlineStyle, width: st.outlineWidth };
  });
  if (focus.tag === "BODY") problems.push(`${who}: Tab focused nothing`);
  else if (focus.outline === "none" || focus.width === "0px") problems.push(`${who}: focus on ${focus.tag} is not visible`);
}

async function main() {
  const A = await browser("alice", { width: 1100, height: 900 });
  const B = await browser("bob", { width: 360, height: 780 });
  const alice = A.page;
  const bob = B.page;

  step("alice signs in; bob is offline but reachable another way");
  await alice.goto(`${URL_}/`);
  await alice.locator("#token").waitFor();
  await shot(alice, "01-sign-in");
  await signIn(alice, "/", ALICE);
  await waitText(alice, "#contact-list li[data-user=bob]", /Offline · reachable another way/);
  await waitText(alice, "#conn", /Connected/);
  await shot(alice, "02-alice-contacts");
  // The token is the tab's: a reload keeps her signed in, in no URL.
  await alice.reload();
  await waitText(alice, "#whoami", /Signed in as Alice/);
  await waitText(alice, "#contact-list li[data-user=bob]", /Offline · reachable another way/);

  step("a message to nobody is refused in words");
  await alice.locator("#to").fill("nobody");
  await alice.locator("#body").fill("Hello?");
  await alice.getByRole("button", { name: "Send" }).click();
  await waitText(alice, "#compose-status", /Not sent: There is no such recipient/);
  await waitText(alice, "#error", /no such recipient/);
  await shot(alice, "02-recipient-unknown");

  step("bob signs in (at 360 px): alice sees him online");
  await signIn(bob, "/", BOB);
  await waitText(bob, "#contact-list li[data-user=alice]", /Online/);
  await waitText(alice, "#contact-list li[data-user=bob]", /^\s*Bob\s*Online\s*$/);
  await accessible(bob, "bob", 360);

  step("bob says he is away, by keyboard: alice sees it with his note");
  await bob.locator("#my-state").focus();
  await bob.locator("#my-state").selectOption("away");
  await bob.keyboard.press("Tab");
  await bob.keyboard.type("at lunch");
  await bob.keyboard.press("Enter");
  await waitText(bob, "#presence-status", /You are away \(at lunch\)/);
  await waitText(alice, "#contact-list li[data-user=bob]", /Away — at lunch · reachable another way/);
  // Said to a screen reader too, once, in a polite live region.
  await waitText(alice, "#announce", /Bob is now away — at lunch/);
  await shot(alice, "03-presence-away");
  await shot(bob, "03-bob-away-360px");
  await bob.locator("#my-state").selectOption("online");
  await bob.locator("#my-note").fill("");
  await bob.getByRole("button", { name: "Set presence" }).click();
  await waitText(alice, "#contact-list li[data-user=bob]", /^\s*Bob\s*Online\s*$/);

  step("alice writes to bob: delivered via IM");
  await alice.locator("#contact-list button", { hasText: "Bob" }).click();
  await alice.locator("#body").fill("Hello Bob, lunch at noon?");
  await alice.locator("#priority").selectOption("urgent");
  await alice.getByRole("button", { name: "Send" }).click();
  await waitText(alice, "#compose-status", /Sent to Bob/);
  await waitText(alice, "#timeline", /Delivered via IM/);
  await waitText(alice, "#detail-meta", /priority urgent/);
  await shot(alice, "04-delivered");

  step("bob opens it: alice's timeline says read");
  await waitText(bob, "#conversation-list li[data-peer=alice]", /1 unread/);
  await shot(bob, "05-bob-unread-360px");
  await bob.locator("#conversation-list li[data-peer=alice] button").click();
  await bob.locator("#thread-list li.msg.in button", { hasText: "Hello Bob" }).click();
  await waitText(bob, "#detail-body", /Hello Bob, lunch at noon\?/);
  await waitText(bob, "#thread-list li.msg.in", /read/);
  await waitText(alice, "#detail-status", /^Read$/);
  await waitText(alice, "#timeline", /Read/);
  await shot(bob, "06-bob-opened-360px");
  await shot(alice, "06-alice-sees-read");

  step("the node shuts down: the console says so and reconnects");
  const stopped = await ask("STOP");
  if (stopped !== "STOPPED") throw new Error(`the test answered ${stopped}`);
  await waitText(alice, "#conn", /The node is shutting down\. Reconnecting/);
  await shot(alice, "07-node-shutting-down");
  const started = await ask("START");
  if (started !== "STARTED") throw new Error(`the test answered ${started}`);
  await waitText(alice, "#conn", /Connected/, 60_000);
  await waitText(alice, "#conversation-list li[data-peer=bob]", /1 unread/);
  await alice.locator("#conversation-list li[data-peer=bob] button").click();
  await waitText(alice, "#thread-list li.msg.in.unread", /Back now/);
  await shot(alice, "08-reconnected-unread-fetched");

  step("bob goes away for good: alice's message goes by SMS");
  await B.ctx.close();
  await waitText(alice, "#contact-list li[data-user=bob]", /Offline · reachable another way/);
  await alice.locator("#body").fill("Are you there?");
  await alice.locator("#priority").selectOption("normal");
  await alice.getByRole("button", { name: "Send" }).click();
  await waitText(alice, "#timeline", /Trying SMS/);
  await waitText(alice, "#timeline", /Delivered via SMS/, 60_000);
  await waitText(alice, "#attempts", /SMS/);
  await shot(alice, "09-sms-attempt");

  step("the operator view refuses a user's token");
  const O = await browser("operator", { width: 1200, height: 1000 });
  const op = O.page;
  await signIn(op, "/admin", ALICE);
  await waitText(op, "#error", /user's token: the operator view needs the node's admin token/);
  if (await op.locator("#app").isVisible()) problems.push("operator: the view shows with a user's token");
  await shot(op, "10-admin-refuses-user-token");

  step("the operator signs in: members, managers, transactions, accounting");
  await signIn(op, "/admin", ADMIN);
  await waitText(op, "#members tr[data-healthy=true]", /SMS/);
  await waitText(op, "#manager-list", /sequential/);
  await waitText(op, "#txns", /Read/);
  await op.locator("#chart svg rect").first().waitFor();
  await waitText(op, "#metrics", /Messages received/);
  await accessible(op, "operator", 1200);
  await shot(op, "11-admin-overview");

  step("the operator searches transactions and opens one");
  await op.locator("#txn-status").selectOption("delivered");
  await op.locator("#txn-search").fill("bob");
  await op.keyboard.press("Enter");
  await waitText(op, "#txns tbody", /SMS/);
  await op.locator("#txns tbody button").first().click();
  await waitText(op, "#txn-timeline", /Delivered via SMS/);
  await shot(op, "12-admin-transaction");

  step("the operator reads the policy rules and searches the archive");
  await waitText(op, "#rules", /sms-tag/);
  await op.locator("#a-participant").fill("alice");
  await op.locator("#a-q").fill("lunch");
  // The archive writes its records in batches: ask again until it has it
  // (bounded).
  for (let i = 0; i < 40; i += 1) {
    await op.getByRole("button", { name: "Search" }).click();
    await waitText(op, "#archive-status", /record/);
    if (/lunch at noon/.test(await op.locator("#archive").innerText())) break;
    await op.waitForTimeout(250);
  }
  await waitText(op, "#archive tbody", /Hello Bob, lunch at noon\?/);
  await shot(op, "13-admin-archive");

  step("a message policy holds: alice is told, the operator releases it, it goes");
  await alice.locator("#body").fill("card 1234-5678-9012-3456");
  await alice.getByRole("button", { name: "Send" }).click();
  await waitText(alice, "#detail-body", /card 1234/);
  await waitText(alice, "#detail-status", /Held for review/);
  await op.locator("#quarantine-refresh").click();
  await waitText(op, "#quarantine tbody", /a card number/);
  await op.locator("#quarantine tbody button").first().click();
  await waitText(op, "#held-content", /card 1234-5678-9012-3456/);
  await shot(op, "14-admin-quarantine");
  await op.getByRole("button", { name: "Release: deliver it" }).click();
  await waitText(op, "#quarantine-status", /Released .*: it is on its way/);
  await waitText(op, "#quarantine", /Nothing is held/);
  await waitText(alice, "#timeline", /Released by the reviewer/);
  await waitText(alice, "#timeline", /Delivered via SMS/, 60_000);

  step("the operator hot-swaps the sequential manager to IM only");
  await op.locator("#manager-list button", { hasText: "sequential" }).click();
  await op.locator("#m-normal-mechs").fill("im");
  await op.locator("#m-normal-timeout").fill("30");
  await op.getByRole("button", { name: "Save and swap in" }).click();
  await waitText(op, "#manager-status", /Saved sequential: new messages use it now/);
  const m = await admin("GET", "/v1/admin/delivery-managers/sequential");
  if (JSON.stringify(m.configs.normal.mechanisms) !== '["im"]') {
    problems.push(`operator: the swap left ${JSON.stringify(m.configs.normal)}`);
  }
  await shot(op, "15-admin-hot-swap");

  step("a message after the swap waits in bob's IM inbox instead of going by SMS");
  await alice.locator("#body").fill("After the swap");
  await alice.getByRole("button", { name: "Send" }).click();
  await waitText(alice, "#detail-body", /After the swap/);
  await waitText(alice, "#timeline", /Delivered via IM/);
  if (/SMS/.test(await alice.locator("#timeline").innerText())) problems.push("alice: the swapped manager still tried SMS");

  step("alice's token is replaced: her console says so");
  const rotated = await admin("POST", "/v1/admin/users/alice/token");
  ALICE = rotated.token;
  await waitText(alice, "#error", /Your token is not valid any more/, 20_000);
  if (!(await alice.locator("#signin").isVisible())) problems.push("alice: no sign-in after the token was replaced");
  if (await alice.evaluate(() => sessionStorage.getItem("switchboard.token"))) {
    problems.push("alice: the dead token stayed in session storage");
  }
  await shot(alice, "16-token-expired");
}

let failed = null;
try {
  await main();
} catch (e) {
  failed = e;
}
for (const b of browsers) await b.close().catch(() => {});
for (const d of profiles) rmSync(d, { recursive: true, force: true });
lines.close();
if (failed) {
  console.error(`FAILED: ${failed.stack || failed}`);
  for (const p of problems) console.error(`problem: ${p}`);
  process.exit(1);
}
if (problems.length) {
  for (const p of problems) console.error(`problem: ${p}`);
  process.exit(1);
}
console.log("console: every step passed");
process.exit(0);
