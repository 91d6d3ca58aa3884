// The live trending page. Every name from the API is set as text (never as
// HTML), and the page's Content-Security-Policy forbids inline script, so a
// title named like markup stays a name.
//
// When the job requires a token (metrics.token), open the page as
// /#token=<token>: the part after # never leaves the browser.
"use strict";
const categories = ["episode", "show", "movie", "live", "clip", "channel"];
let updates = 0, last = null;

const token = (() => {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) sessionStorage.setItem("token", decodeURIComponent(m[1]));
  return sessionStorage.getItem("token");
})();

function api(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return fetch(path, { headers }).then(r => r.ok ? r.json() : null);
}

// An element with attributes and children (strings become text nodes).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "width") e.style.width = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function row(label, value, note) {
  const name = el("span", { class: "name" }, label);
  if (note) name.append(" ", el("small", {}, `(${note})`));
  return el("li", {}, name, el("span", { class: "views" }, String(value)));
}

function bars(title, id, values) {
  const max = Math.max(1, ...Object.values(values));
  const rows = Object.entries(values).map(([k, v]) =>
    el("div", { class: "bar" },
      el("span", { class: "label" }, k),
      el("i", { width: `${Math.round(140 * v / max)}px` }),
      el("span", { class: "views" }, v.toLocaleString())));
  return el("div", { class: "card", id }, el("h2", {}, title), ...rows);
}

function card(category, titles) {
  const items = titles.map(t => row(`${t.rank}. ${t.name || t.content_id}`, t.views));
  return el("div", { class: "card", "data-category": category },
    el("h2", {}, category),
    el("ol", {}, ...(items.length ? items : [el("li", {}, "no views yet")])));
}

function trendingCard(trending) {
  const items = trending ? trending.titles.map(t =>
    row(`${t.rank}. ${t.name || t.content_id}`, Math.round(t.value), t.kind)) : [];
  return el("div", { class: "card", id: "trending-all" },
    el("h2", {}, "trending (views × decay)"),
    el("ol", {}, ...(items.length ? items : [el("li", {}, "nothing yet")])));
}

async function refresh() {
  try {
    const tops = await Promise.all(categories.map(c => api(`/api/top?category=${c}&k=5`)));
    const stats = await api("/api/stats");
    const breakdown = await api("/api/breakdown");
    const trending = await api("/api/trending?category=all&k=8");
    if (!stats) throw new Error("/api/stats refused (a token is needed: open the page as /#token=...)");
    if (breakdown) {
      document.getElementById("watch").textContent = (breakdown.watch_ms / 3600000).toFixed(1);
      document.getElementById("model").replaceChildren(
        trendingCard(trending),
        bars("views by tier", "by-tier", breakdown.by_tier),
        bars("views by device", "by-device", breakdown.by_device),
        bars("views by region", "by-region", breakdown.by_region));
    }
    // Refused (404) unless the job serves provisional counts.
    const early = await api("/api/top?category=episode&k=5&provisional=true");
    const ok = tops.filter(t => t);
    if (ok.length) {
      const cards = ok.map(t => card(t.category, t.titles));
      if (early) cards.unshift(card("episodes now (provisional)", early.titles));
      document.getElementById("grid").replaceChildren(...cards);
      document.getElementById("meta").textContent = `window ${ok[0].window.start} – ${ok[0].window.end}`;
    }
    const now = performance.now();
    if (last) {
      const rate = (stats.read - last.read) / ((now - last.at) / 1000);
      document.getElementById("rate").textContent = Math.max(0, Math.round(rate)).toLocaleString();
    }
    last = { read: stats.read, at: now };
    document.getElementById("views").textContent = stats.views.toLocaleString();
    document.getElementById("dead").textContent = stats.dead_lettered.toLocaleString();
    updates += 1;
    document.body.dataset.updates = updates;
  } catch (e) {
    document.getElementById("meta").textContent = "the job is not answering: " + e;
  }
}

refresh();
setInterval(refresh, 2000);
