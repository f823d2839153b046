// Accounting per medium per hour as a stacked bar chart (SVG drawn from
// data, no library), with the same numbers as a table.
import { h, fill } from "/console/dom.js";
import { medium } from "/console/api.js";

const SVG = "http://www.w3.org/2000/svg";
const HOUR = 3600 * 1000;
export const MEDIUMS = ["im", "sms", "email", "fax"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Counts `records` per hour (the 24 up to `now`) and medium. */
export function perHour(records, now) {
  const last = Math.floor(now / HOUR);
  const hours = Array.from({ length: 24 }, (_, i) => ({
    start: (last - 23 + i) * HOUR,
    counts: Object.fromEntries(MEDIUMS.map((m) => [m, 0])),
  }));
  for (const r of records) {
    const slot = Math.floor(Date.parse(r.at) / HOUR) - (last - 23);
    if (slot >= 0 && slot < 24 && r.medium in hours[slot].counts) hours[slot].counts[r.medium] += 1;
  }
  return hours;
}

const hourLabel = (ms) => `${String(new Date(ms).getHours()).padStart(2, "0")}:00`;

/** Draws `hours` into `chartEl` and the table into `tableEl`. */
export function drawChart(chartEl, tableEl, hours) {
  const W = 720;
  const H = 240;
  const left = 40;
  const bottom = 24;
  const top = 10;
  const total = (x) => MEDIUMS.reduce((n, m) => n + x.counts[m], 0);
  const max = Math.max(1, ...hours.map(total));
  const bw = (W - left - 10) / hours.length;
  const y = (v) => H - bottom - ((H - bottom - top) * v) / max;
  const sum = hours.reduce((n, x) => n + total(x), 0);
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc", class: "bars" },
    s("title", { id: "chart-title" }, "Messages per medium per hour, last 24 hours"),
    s(
      "desc",
      { id: "chart-desc" },
      `${sum} messages in all: ${MEDIUMS.map((m) => `${medium(m)} ${hours.reduce((n, x) => n + x.counts[m], 0)}`).join(", ")}.`,
    ),
  );
  for (const v of [0, Math.ceil(max / 2), max]) {
    svg.append(s("line", { x1: left, x2: W - 10, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, v));
  }
  hours.forEach((x, i) => {
    let base = 0;
    for (const m of MEDIUMS) {
      const n = x.counts[m];
      if (n > 0) {
        const rect = s("rect", {
          x: left + i * bw + 2,
          width: Math.max(1, bw - 4),
          y: y(base + n),
          height: y(base) - y(base + n),
          class: `m-${m}`,
        });
        rect.append(s("title", {}, `${hourLabel(x.start)}: ${n} by ${medium(m)}`));
        svg.append(rect);
        base += n;
      }
    }
    if (i % 3 === 0) {
      svg.append(s("text", { x: left + i * bw + bw / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, hourLabel(x.start)));
    }
  });
  const legend = h(
    "ul",
    { class: "legend" },
    MEDIUMS.map((m) => h("li", {}, h("span", { class: `swatch m-${m}`, "aria-hidden": "true" }), medium(m))),
  );
  fill(chartEl, svg, legend);
  fill(
    tableEl,
    h(
      "table",
      {},
      h("caption", {}, "Messages per medium per hour"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Hour"), MEDIUMS.map((m) => h("th", { scope: "col" }, medium(m))))),
      h(
        "tbody",
        {},
        hours.map((x) =>
          h("tr", {}, h("th", { scope: "row" }, hourLabel(x.start)), MEDIUMS.map((m) => h("td", {}, String(x.counts[m])))),
        ),
      ),
    ),
  );
}
