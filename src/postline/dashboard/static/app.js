// postline operator dashboard: renders the live pages from their JSON feed, polls it every
// few seconds, and draws the per-minute charts as SVG. Text goes in with textContent only.
"use strict";

(function () {
  const POLL_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";
  const page = document.body.dataset.page || "";
  const csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, props) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(props || {})) node.setAttribute(key, String(value));
    return node;
  }

  function fmt(n) {
    return n === null || n === undefined ? "" : Number(n).toLocaleString("en");
  }

  function pct(rate) {
    if (rate === null || rate === undefined) return "–";
    const v = rate * 100;
    return (v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2)) + " %";
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function hhmm(ts) {
    const d = new Date(ts * 1000);
    return String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0");
  }

  function table(headers, rows, empty) {
    const head = el("tr", null, ...headers.map((h) => el("th", { text: h })));
    const body = el("tbody");
    for (const row of rows) {
      body.append(el("tr", null, ...row.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", null, c)))));
    }
    if (!rows.length && empty) body.append(el("tr", null, el("td", { class: "empty", colspan: headers.length, text: empty })));
    return el("table", null, el("thead", null, head), body);
  }

  function num(value) {
    return el("td", { class: "num", text: fmt(value) });
  }

  function actionForm(action, fields, label, extra, danger) {
    const form = el("form", { method: "post", action: action });
    form.append(el("input", { type: "hidden", name: "csrf", value: csrf }));
    for (const [name, value] of Object.entries(fields)) {
      form.append(el("input", { type: "hidden", name: name, value: value }));
    }
    if (extra) form.append(extra);
    form.append(el("button", { type: "submit", class: danger ? "danger" : null, text: label }));
    return form;
  }

  function replace(id, node) {
    const target = document.getElementById(id);
    if (!target) return;
    // A form being used (a duration chosen) is not swapped away under the operator.
    if (target.contains(document.activeElement) && document.activeElement !== document.body) return;
    target.replaceChildren(node);
  }

  // -- overview ---------------------------------------------------------------------------
  function chart(figure, values, start, step) {
    const name = figure.dataset.series;
    const box = figure.querySelector("svg");
    const W = 400, H = 140, L = 34, B = 16, T = 6;
    box.setAttribute("viewBox", `0 0 ${W} ${H}`);
    box.setAttribute("preserveAspectRatio", "none");
    box.replaceChildren();
    const max = Math.max(1, ...values);
    const n = values.length;
    const x = (i) => L + ((W - L - 4) * i) / Math.max(1, n - 1);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    box.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }));
    box.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
    const top = svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" });
    top.textContent = fmt(max);
    const zero = svg("text", { x: L - 4, y: H - B, "text-anchor": "end" });
    zero.textContent = "0";
    box.append(top, zero);
    for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
      if (i < 0) continue;
      const label = svg("text", { x: x(i), y: H - 3, "text-anchor": i === 0 ? "start" : i === n - 1 ? "end" : "middle" });
      label.textContent = hhmm(start + i * step) + "Z";
      box.append(label);
    }
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    box.append(svg("polygon", { class: `area s-${name}`, points: `${x(0)},${H - B} ${points} ${x(n - 1)},${H - B}` }));
    box.append(svg("polyline", { class: `line s-${name}`, points: points }));
    const total = values.reduce((a, b) => a + b, 0);
    const last = values.length ? values[values.length - 1] : 0;
    figure.querySelector(".total").textContent = `${fmt(total)} in the window, ${fmt(last)} this minute`;
    const title = svg("title");
    title.textContent = `${name}: peak ${fmt(max)} per minute`;
    box.append(title);
  }

  function card(label, value, cls) {
    return el("div", { class: "card" + (cls ? " " + cls : "") }, el("div", { class: "label", text: label }), el("div", { class: "value", text: value }));
  }

  function renderOverview(d) {
    const warnings = el("div");
    for (const w of d.warnings) warnings.append(el("p", { class: "warning", text: w }));
    replace("warnings", warnings);
    const q = d.queue;
    const cards = el("div", { class: "cards" },
      card("queued recipients", fmt(q.total)),
      card("deferred (retrying)", fmt(q.deferred)),
      card("oldest queued", age(q.oldest_age)),
      card("destination domains", fmt(q.domains)),
      card("delivered (all time)", fmt((q.states || {}).delivered || 0)),
      card("bounced (all time)", fmt((q.states || {}).bounced || 0)),
      card("paused tenants", fmt(d.held.filter((t) => t.status === "paused").length), d.held.length ? "paused" : ""),
    );
    replace("queue-cards", cards);
    const a = d.activity;
    const windowEl = document.getElementById("window");
    if (windowEl) windowEl.textContent = age(a.series.accepted.length * a.step).replace(/ 0m$/, "");
    for (const figure of document.querySelectorAll(".chart")) {
      chart(figure, a.series[figure.dataset.series] || [], a.start, a.step);
    }
    replace("top", table(["domain", "queued"], q.top.map((t) => [el("a", { href: "/ui/destinations", text: t.domain }), num(t.depth)]), "Nothing queued."));
    replace("held", table(["tenant", "status", "reason"], d.held.map((t) => [t.name, el("span", { class: "status " + t.status, text: t.status }), t.reason]), "Every tenant is sending."));
  }

  // -- destinations -----------------------------------------------------------------------
  function throttleText(t) {
    if (!t) return "no route yet";
    if (t.unavailable) return `${t.rule}: throttle unavailable`;
    if (t.sources) return `${t.rule}: ${Object.keys(t.sources).length} sources`;
    const parts = [t.rule];
    parts.push(`rate ×${t.rate_factor}`);
    parts.push(`conns ${t.connections}/${t.connection_limit ?? "∞"}`);
    if (t.suspended_for > 0) parts.push(`backing off ${age(t.suspended_for)}`);
    return parts.join(" · ");
  }

  function renderDestinations(d) {
    replace("providers", table(["provider (rule)", "MX site", "domains", "queued", "due"], d.providers.map((p) => [p.provider, p.site || "–", num(p.domains), num(p.depth), num(p.due)]), "Nothing queued."));
    const rows = d.destinations.map((q) => {
      const actions = el("td", { class: "actions" });
      if (q.suspended) {
        actions.append(actionForm("/ui/destinations/resume", { domain: q.domain }, "Resume"));
      } else {
        const duration = el("select", { name: "duration", "aria-label": "for how long" },
          el("option", { value: "", text: "until resumed" }),
          el("option", { value: "30m", text: "30 minutes" }),
          el("option", { value: "2h", text: "2 hours" }),
          el("option", { value: "1d", text: "1 day" }));
        actions.append(actionForm("/ui/destinations/suspend", { domain: q.domain }, "Suspend", duration, true));
      }
      actions.append(actionForm("/ui/destinations/retry-now", { domain: q.domain }, "Retry now"));
      const state = q.suspended
        ? el("span", { class: "status suspended", text: q.suspended_until ? "suspended until " + hhmm(q.suspended_until) + "Z" : "suspended" })
        : el("span", { class: "status ok", text: "sending" });
      return [
        el("strong", { text: q.domain }), num(q.depth), el("td", { class: "num", text: q.due >= d.due_cap ? fmt(q.due) + "+" : fmt(q.due) }),
        num(q.deferred), age(q.oldest_age), state, el("td", { class: "throttle", text: throttleText(q.throttle) }),
        q.tenants.map((t) => t.name + " " + t.depth + (t.suspended ? " (held)" : "")).join(", "),
        actions,
      ];
    });
    const t = table(["domain", "queued", "due", "deferred", "oldest", "state", "throttle", "tenants", "actions"], rows, "Nothing queued and nothing suspended.");
    t.id = "destinations-table";
    replace("destinations", t);
  }

  // -- tenants ----------------------------------------------------------------------------
  function rateCell(rate, warn, pause) {
    const cls = rate === null ? "" : rate >= pause ? "status paused" : rate >= warn ? "status warned" : "";
    return el("td", { class: "num" }, el("span", { class: cls, text: pct(rate) }));
  }

  function renderTenants(d) {
    const t = d.thresholds;
    const p = document.getElementById("thresholds");
    if (p) {
      p.textContent = `Over the last ${age(d.window)}: hard-bounce rate warns at ${pct(t.bounce_warn)} and pauses at ${pct(t.bounce_pause)}; ` +
        `complaint rate warns at ${pct(t.complaint_warn)} and pauses at ${pct(t.complaint_pause)}; judged from ${fmt(t.min_volume)} recipients on.`;
    }
    const rows = d.tenants.map((x) => {
      const actions = el("td");
      if (x.status === "ok") actions.append(actionForm(`/ui/tenants/${encodeURIComponent(x.id)}/pause`, {}, "Pause", null, true));
      else actions.append(actionForm(`/ui/tenants/${encodeURIComponent(x.id)}/resume`, {}, "Resume"));
      return [
        el("strong", { text: x.name }), el("code", { text: x.id }),
        el("span", { class: "status " + x.status, text: x.status, title: x.reason || null }),
        num(x.delivered), num(x.bounced), num(x.complained),
        rateCell(x.bounce_rate, t.bounce_warn, t.bounce_pause), rateCell(x.complaint_rate, t.complaint_warn, t.complaint_pause),
        x.volume >= t.min_volume ? "yes" : "not yet", actions,
      ];
    });
    const table_ = table(["tenant", "id", "status", "delivered", "hard bounces", "complaints", "bounce rate", "complaint rate", "judged", "actions"], rows, "No tenant.");
    table_.id = "tenants-table";
    replace("tenants", table_);
  }

  const renderers = { overview: renderOverview, destinations: renderDestinations, tenants: renderTenants };

  function start() {
    const render = renderers[page];
    if (!render) return;
    const data = document.getElementById("data");
    if (data) render(JSON.parse(data.textContent));
    const feed = "/ui/api/" + page;
    let busy = false;
    setInterval(async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const r = await fetch(feed, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (r.status === 401) {
          window.location.assign("/ui/login?next=" + encodeURIComponent(window.location.pathname));
          return;
        }
        if (r.ok) {
          render(await r.json());
          document.body.classList.remove("stale");
        } else {
          document.body.classList.add("stale");
        }
      } catch (err) {
        document.body.classList.add("stale");
      } finally {
        busy = false;
      }
    }, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
