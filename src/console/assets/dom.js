// Building the page from data without HTML strings: every text goes in as
// text (nothing is ever parsed as HTML), so nothing a message says can
// become markup.

/** An element: `h("li", {class: "x", onclick: f}, "text", child…)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces `el`'s children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (id) => document.getElementById(id);

/** Shows `text` in the page's alert region (or hides it when empty). */
export function alertText(text) {
  const el = $("error");
  el.textContent = text || "";
  el.hidden = !text;
}

/** Says `text` in a polite status region. */
export function status(id, text) {
  $(id).textContent = text || "";
}

/**
 * Wires a sign-in form: `onToken(token)` resolves when the token works and
 * throws (an ApiError) when not; the form shows why.
 */
export function signInForm(formId, inputId, onToken) {
  const form = $(formId);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $(inputId);
    const token = input.value.trim();
    if (!token) {
      alertText("Enter your token.");
      input.focus();
      return;
    }
    input.value = "";
    await onToken(token);
  });
}
