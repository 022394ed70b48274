// Switchyard dashboard: plain JavaScript, no build step. Data from the
// /admin/ JSON endpoints with the session cookie; the CSRF token (a meta tag
// of the page) goes on every POST and DELETE. Every value from the server is
// set as text, never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const COLORS = ["#4da3ff", "#3fb950", "#d29922", "#f85149", "#a371f7", "#39c5cf", "#ff7b72", "#8b98a5"];
const charts = {};

async function api(path, opts = {}) {
  const method = opts.method || "GET";
  const headers = { accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = CSRF;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  if (r.status === 401) {
    location.href = "/ui";
    throw new Error("session ended");
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function usd(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  const a = Math.abs(x);
  const digits = a === 0 ? 2 : a < 0.01 ? 6 : a < 1 ? 4 : 2;
  return (x < 0 ? "-$" : "$") + a.toFixed(digits);
}
const usdAxis = (u, vals) => vals.map((v) => (v === null ? "" : `$${Number(v.toPrecision(3))}`));
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const num = (x, d = 0) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const ms = (x) => (x === null || x === undefined ? "–" : `${Number(x).toFixed(x < 10 ? 2 : 0)} ms`);
const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)}%`);
const ymd = (t) => { const d = new Date(t); return [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()]; };
const counts = { range: (u, min, max) => [0, Math.max(max, 1)] };
const time = (t) => (t ? new Date(t).toLocaleString() : "–");

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function td(v, cls) {
  return el("td", { class: cls }, v);
}

function showError(e) {
  const p = document.getElementById("error");
  p.textContent = e ? String(e.message || e) : "";
  p.hidden = !e;
}

function meter(used, limit, pace) {
  if (!limit) return "";
  const share = Math.min(used / limit, 1);
  const m = el("div", { class: "meter", title: `${usd(used)} of ${usd(limit)}` },
    el("span", { class: used > limit ? "over" : "", style: `width:${(share * 100).toFixed(1)}%` }));
  if (pace !== null && pace !== undefined) m.append(el("i", { style: `left:${Math.min(pace / limit, 1) * 100}%`, title: "pace" }));
  return m;
}

function chart(id, series, data, opts = {}) {
  const host = document.getElementById(id);
  if (charts[id]) charts[id].destroy();
  host.replaceChildren();
  if (typeof uPlot === "undefined") {
    host.append(el("p", { class: "muted" }, "chart library not loaded"));
    return;
  }
  const width = Math.max(host.clientWidth - 4, 300);
  const axis = { stroke: "#8b98a5", grid: { stroke: "#27313c" }, ticks: { stroke: "#27313c" } };
  charts[id] = new uPlot({
    width,
    height: opts.height || 240,
    series: [{}, ...series],
    axes: [axis, { ...axis, size: 70, values: opts.yValues }],
    scales: { x: { time: true }, y: opts.y || {} },
    legend: { live: true },
  }, data, host);
}

// ---------------------------------------------------------------- pages

const pages = {
  async overview() {
    const o = await api("/admin/ui/overview");
    document.getElementById("ov-today").textContent = usd(o.today.cost_usd);
    document.getElementById("ov-today-req").textContent = `${plural(o.today.requests, "request")} · ${plural(o.today.rows, "ledger row")}`;
    document.getElementById("ov-proj").textContent = usd(o.today_projected_usd);
    document.getElementById("ov-elapsed").textContent = `${pct(o.day_elapsed)} of the day (${o.timezone}) gone`;
    document.getElementById("ov-month").textContent = usd(o.month.cost_usd);
    document.getElementById("ov-month-req").textContent = plural(o.month.requests, "request");
    const tbody = document.querySelector("#ov-budgets tbody");
    fill(tbody, o.budgets.map((b) => el("tr", { "data-scope": b.scope },
      td(b.scope),
      el("td", {}, usd(b.daily_spent_usd + b.daily_reserved_usd), meter(b.daily_spent_usd + b.daily_reserved_usd, b.daily_limit_usd, b.daily_pace_usd)),
      td(usd(b.daily_limit_usd)),
      td(b.daily_pace_usd === null ? "–" : usd(b.daily_pace_usd)),
      el("td", {}, usd(b.daily_projected_usd), b.daily_limit_usd && b.daily_projected_usd > b.daily_limit_usd ? el("span", { class: "badge bad" }, " over") : ""),
      el("td", {}, usd(b.monthly_spent_usd + b.monthly_reserved_usd), meter(b.monthly_spent_usd + b.monthly_reserved_usd, b.monthly_limit_usd)),
      td(usd(b.monthly_limit_usd)))));
    document.getElementById("ov-nobudget").hidden = o.budgets.length > 0;
    // The day's line, the pace line of the tightest daily budget, the projection.
    const xs = o.hourly.map((p) => p.ts_ms / 1000);
    const spent = o.hourly.map((p) => p.cost_usd);
    const daily = o.budgets.map((b) => b.daily_limit_usd).filter((l) => l);
    const limit = daily.length ? Math.min(...daily) : null;
    const start = o.day_start_ms, end = o.day_end_ms;
    xs.push(end / 1000);
    spent.push(null);
    const pace = xs.map((x) => (limit === null ? null : (limit * (x * 1000 - start)) / (end - start)));
    const last = o.hourly.length ? o.hourly[o.hourly.length - 1] : null;
    const proj = xs.map((x, i) => (i === xs.length - 1 ? o.today_projected_usd : last && x * 1000 === last.ts_ms ? last.cost_usd : null));
    const series = [
      { label: "spent", stroke: COLORS[0], width: 2, fill: "rgba(77,163,255,0.12)", value: (u, v) => usd(v) },
      { label: "projection", stroke: COLORS[2], dash: [6, 4], spanGaps: true, value: (u, v) => usd(v) },
    ];
    const data = [xs, spent, proj];
    if (limit !== null) {
      series.push({ label: "pace", stroke: COLORS[3], dash: [2, 4], value: (u, v) => usd(v) });
      data.push(pace);
    }
    chart("ov-chart", series, data, { yValues: usdAxis });
  },

  async savings() {
    const days = Number(document.getElementById("sv-range").value);
    const since = Date.now() - days * 86400000;
    const s = await api(`/admin/savings?since=${since}`);
    document.getElementById("sv-actual").textContent = usd(s.total.actual_usd);
    document.getElementById("sv-counter").textContent = usd(s.total.counterfactual_usd);
    document.getElementById("sv-saved").textContent = usd(s.total.saved_usd);
    document.getElementById("sv-pct").textContent = s.total.counterfactual_usd > 0
      ? `${pct(s.total.saved_usd / s.total.counterfactual_usd)} less than on the strongest models · ${s.total.requests} requests`
      : `${s.total.requests} requests`;
    // Every day of the range, days without traffic at 0.
    const byDay = Object.fromEntries(s.by_day.map((d) => [d.group, d]));
    const zero = { actual_usd: 0, counterfactual_usd: 0, saved_usd: 0 };
    const dayList = [];
    for (let t = Date.UTC(...ymd(since)); t <= Date.now(); t += 86400000) dayList.push(new Date(t).toISOString().slice(0, 10));
    const daysData = dayList.map((d) => byDay[d] || zero);
    const xs = dayList.map((d) => Date.parse(`${d}T12:00:00Z`) / 1000);
    chart("sv-chart", [
      { label: "actual", stroke: COLORS[0], width: 2, value: (u, v) => usd(v) },
      { label: "strongest model", stroke: COLORS[3], width: 2, dash: [6, 4], value: (u, v) => usd(v) },
      { label: "saved", stroke: COLORS[1], width: 2, fill: "rgba(63,185,80,0.12)", value: (u, v) => usd(v) },
    ], [xs, daysData.map((d) => d.actual_usd), daysData.map((d) => d.counterfactual_usd), daysData.map((d) => d.saved_usd)],
    { yValues: usdAxis });
    fill(document.querySelector("#sv-tasks tbody"), s.by_task.map((t) => el("tr", {},
      td(t.group), td(t.requests, "num"), td(usd(t.actual_usd), "num"), td(usd(t.counterfactual_usd), "num"), td(usd(t.saved_usd), "num"))));
    fill(document.querySelector("#sv-routes tbody"), s.by_route.map((t) => el("tr", {},
      td(t.group), td((s.strongest || {})[t.group] || (t.group === "(none)" ? "(the model asked for)" : "–")),
      td(t.requests, "num"), td(usd(t.actual_usd), "num"), td(usd(t.counterfactual_usd), "num"), td(usd(t.saved_usd), "num"))));
  },

  async traffic() {
    const range = document.getElementById("tr-range").value;
    document.getElementById("tr-custom").hidden = range !== "custom";
    let since, until;
    if (range === "custom") {
      since = Date.parse(document.getElementById("tr-since").value);
      until = Date.parse(document.getElementById("tr-until").value);
      if (Number.isNaN(since) || Number.isNaN(until)) return;
    } else {
      until = Date.now() + 1;
      since = until - Number(range) * 3600000;
    }
    const by = document.getElementById("tr-by").value;
    const t = await api(`/admin/traffic?since=${since}&until=${until}&by=${encodeURIComponent(by)}&buckets=48`);
    const xs = t.series.length ? t.series[0].points.map((p) => p.ts_ms / 1000) : [since / 1000, until / 1000];
    const per = (f) => [xs, ...t.series.map((s) => s.points.map(f))];
    const ser = (suffix = "") => t.series.map((s, i) => ({ label: s.group + suffix, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: { show: true, size: 4 } }));
    chart("tr-req", ser(), per((p) => p.requests), { y: counts });
    chart("tr-err", ser(), per((p) => p.errors), { y: counts });
    const lat = [xs], latSer = [];
    t.series.forEach((s, i) => {
      lat.push(s.points.map((p) => p.p50_ms));
      latSer.push({ label: `${s.group} p50`, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: { show: true, size: 5 } });
      lat.push(s.points.map((p) => p.p95_ms));
      latSer.push({ label: `${s.group} p95`, stroke: COLORS[i % COLORS.length], dash: [5, 4], spanGaps: true, points: { show: true, size: 5 } });
    });
    chart("tr-lat", latSer, lat);
    chart("tr-ttft", ser(), per((p) => p.ttft_p50_ms));
    fill(document.querySelector("#tr-groups tbody"), t.series.map((s) => el("tr", {},
      td(s.group), td(s.total.requests, "num"), td(s.total.errors, "num"), td(num(s.total.p50_ms, 1), "num"),
      td(num(s.total.p95_ms, 1), "num"), td(num(s.total.ttft_p50_ms, 1), "num"), td(usd(s.total.cost_usd), "num"))));
    const bars = document.getElementById("tr-tiers");
    bars.replaceChildren(...(t.tiers.length ? t.tiers.map((x) => el("div", { class: "row" },
      el("span", {}, x.tier), el("div", {}, el("div", { class: "bar", style: `width:${(x.share * 100).toFixed(1)}%` })),
      el("span", {}, `${pct(x.share)} (${x.requests})`))) : [el("p", { class: "muted" }, "No routed requests in this range.")]));
  },

  async health() {
    const h = await api("/admin/ui/health");
    fill(document.querySelector("#hl-table tbody"), h.data.map((d) => el("tr", {},
      td(d.provider), el("td", {}, el("span", { class: `badge ${d.state}` }, d.state)), td(d.consecutive_failures, "num"),
      td(pct(d.error_rate), "num"), td(d.calls_in_window, "num"), td(ms(d.ewma_latency_ms), "num"), td(d.in_flight, "num"),
      td(headroom(d.rate_limits)), td(d.failures_last_hour, "num"))));
    const fails = h.data.flatMap((d) => d.recent_failures).sort((a, b) => b.ts_ms - a.ts_ms);
    fill(document.querySelector("#hl-fail tbody"), fails.length ? fails.map((f) => el("tr", {},
      td(time(f.ts_ms)), td(f.provider), td(f.served_model), td(f.status), td(f.error || "", "wrap"))) :
      [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No failure in the last hour."))]);
  },

  async requests(more) {
    const form = document.getElementById("rq-filter");
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    q.set("limit", "50");
    const tbody = document.querySelector("#rq-table tbody");
    if (more && pages.requests.next) q.set("before", pages.requests.next);
    const r = await api(`/admin/requests?${q}`);
    const rows = r.data.map((x) => el("tr", { "data-request": x.request_id, onclick: () => openRequest(x.request_id) },
      td(time(x.ts_ms)), td(x.request_id), td(x.key_name || "–"), td(x.served_model), td(x.provider), td(x.task || "–"),
      td(x.tier || "–"), el("td", {}, el("span", { class: `badge ${x.status < 400 ? "ok" : "bad"}` }, x.status)),
      td(ms(x.latency_ms), "num"), td(`${num(x.prompt_tokens)} / ${num(x.completion_tokens)}`, "num"), td(usd(x.cost_usd), "num")));
    if (more) tbody.append(...rows); else fill(tbody, rows);
    pages.requests.next = r.next_before;
    document.getElementById("rq-more").hidden = !r.next_before;
  },

  async keys() {
    const all = document.getElementById("key-all").checked;
    const r = await api(`/admin/keys${all ? "?all=true" : ""}`);
    fill(document.querySelector("#key-table tbody"), r.data.map((k) => {
      const limits = [k.daily_budget !== undefined ? `${usd(k.daily_budget)}/day` : null, k.rpm ? `${k.rpm} rpm` : null,
        k.tpm ? `${k.tpm} tpm` : null, k.max_concurrency ? `${k.max_concurrency} concurrent` : null].filter(Boolean).join(", ") || "–";
      const revoke = el("button", { class: "danger", type: "button", "data-revoke": k.name }, "Revoke");
      revoke.addEventListener("click", async () => {
        if (!revoke.classList.contains("armed")) {
          revoke.classList.add("armed");
          revoke.textContent = "Confirm revoke";
          return;
        }
        try {
          await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
          await pages.keys();
        } catch (e) { showError(e); }
      });
      return el("tr", { "data-key": k.name }, td(k.name), td(k.id), el("td", {}, el("code", {}, k.display)), td(time(k.created_ms)),
        td(limits), td((k.models || []).join(", ") || "all"),
        el("td", {}, k.revoked_ms ? el("span", { class: "badge bad" }, "revoked") : el("span", { class: "badge ok" }, "active")),
        el("td", {}, k.revoked_ms ? "" : revoke));
    }));
  },

  async experiments() {
    const list = await api("/admin/experiments");
    const host = document.getElementById("ex-list");
    document.getElementById("ex-none").hidden = list.data.length > 0;
    const panels = [];
    for (const e of list.data) {
      const full = await api(`/admin/experiments/${encodeURIComponent(e.name)}`);
      const rep = full.report || { arms: [], comparisons: [] };
      const verdict = Object.fromEntries(rep.comparisons.map((c) => [`${c.candidate}/${c.shadow}`, c]));
      panels.push(el("div", { class: "panel experiment", "data-experiment": e.name },
        el("h2", {}, e.name, " ", el("span", { class: `badge ${e.live ? "ok" : "warn"}` }, e.live ? e.mode : "off")),
        el("p", { class: "muted" }, `control ${e.control} · applies to ${e.applies_to} · candidates ${e.candidates.map((c) => `${c.model}${c.share !== null && c.share !== undefined ? ` (${pct(c.share)})` : ""}`).join(", ")}`),
        el("table", {}, el("thead", {}, el("tr", {}, ["Arm", "Model", "Requests", "Errors", "Cost / request", "p50", "p95", "Feedback", "Verdict"].map((h) => el("th", {}, h)))),
          el("tbody", {}, rep.arms.map((a) => {
            const c = verdict[`${a.arm}/${a.shadow}`];
            return el("tr", {}, td(a.arm + (a.shadow ? " (shadow)" : "")), td(a.model || "–"), td(a.requests, "num"), td(pct(a.error_rate), "num"),
              td(usd(a.cost_per_request_usd), "num"), td(ms(a.latency_p50_ms), "num"), td(ms(a.latency_p95_ms), "num"),
              td(a.feedback_mean === null ? "–" : `${num(a.feedback_mean, 2)} ± ${num(a.feedback_ci95, 2)} (${a.feedback_count})`),
              td(c ? c.verdict : a.arm === "control" ? "(control)" : "–", "wrap"));
          }))),
        el("pre", {}, full.text || "")));
    }
    host.replaceChildren(...panels);
  },
};

function headroom(l) {
  if (!l) return "unlimited";
  const part = (b, unit) => (b ? `${b.remaining} / ${b.limit} ${unit}` : null);
  return [part(l.rpm, "rpm"), part(l.tpm, "tpm")].filter(Boolean).join(", ");
}

async function openRequest(id) {
  const d = document.getElementById("detail");
  const body = document.getElementById("detail-body");
  document.getElementById("detail-title").textContent = `Request ${id}`;
  body.replaceChildren(el("p", { class: "muted" }, "loading…"));
  if (!d.open) d.showModal();
  try {
    const r = await api(`/admin/requests/${encodeURIComponent(id)}`);
    const first = r.attempts[0] || {};
    const kv = (pairs) => el("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v === null || v === undefined || v === "" ? "–" : String(v))]));
    body.replaceChildren(
      kv([["time", time(first.ts_ms)], ["key", first.key_name], ["endpoint", first.endpoint], ["requested model", first.requested_model],
        ["route", first.route], ["task", first.task && `${first.task} (confidence ${num(first.task_confidence, 2)})`], ["complexity", num(first.complexity, 2)],
        ["tier", first.tier], ["route reason", first.route_reason], ["experiment", first.experiment && `${first.experiment}: arm ${first.arm}`],
        ["cache", first.cache_hit ? `hit (saved ${usd(first.saved_usd)})` : "miss"], ["total cost", usd(r.cost_usd)], ["attempts", r.attempts.length]]),
      el("h3", {}, "Attempts"),
      el("table", { id: "detail-attempts" }, el("thead", {}, el("tr", {}, ["#", "Model", "Provider", "Upstream model", "Status", "Latency", "TTFT", "Tokens in/out (cached)", "Cost", "Error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, r.attempts.map((a) => el("tr", {}, td(a.attempt), td(a.served_model), td(a.provider), td(a.upstream_model),
          el("td", {}, el("span", { class: `badge ${a.status < 400 ? "ok" : "bad"}` }, a.status)), td(ms(a.latency_ms), "num"), td(ms(a.ttft_ms), "num"),
          td(`${num(a.prompt_tokens)} / ${num(a.completion_tokens)} (${num(a.cached_tokens)})${a.usage_estimated ? " est." : ""}`, "num"),
          td(usd(a.cost_usd), "num"), td(a.error || "", "wrap"))))),
      r.shadows.length ? el("h3", {}, `Shadow copies (${r.shadows.length})`) : "",
      el("details", {}, el("summary", {}, "Full record (JSON)"), el("pre", {}, JSON.stringify(r, null, 2))));
  } catch (e) {
    body.replaceChildren(el("p", { class: "error" }, e.message));
  }
}

// ---------------------------------------------------------------- wiring

async function show(tab) {
  if (!pages[tab]) tab = "overview";
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === tab);
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== `page-${tab}`;
  showError(null);
  document.body.dataset.loading = tab;
  try {
    await pages[tab]();
  } catch (e) {
    showError(e);
  } finally {
    document.body.dataset.loaded = tab;
    delete document.body.dataset.loading;
  }
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));
document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/ui/logout", { method: "POST", headers: { "x-csrf-token": CSRF }, credentials: "same-origin" });
  location.href = "/ui";
});
document.getElementById("sv-range").addEventListener("change", () => show("savings"));
document.getElementById("tr-go").addEventListener("click", () => show("traffic"));
document.getElementById("tr-range").addEventListener("change", () => {
  document.getElementById("tr-custom").hidden = document.getElementById("tr-range").value !== "custom";
  if (document.getElementById("tr-range").value !== "custom") show("traffic");
});
document.getElementById("tr-by").addEventListener("change", () => show("traffic"));
document.getElementById("rq-filter").addEventListener("submit", (e) => { e.preventDefault(); show("requests"); });
document.getElementById("rq-more").addEventListener("click", () => pages.requests(true).catch(showError));
document.getElementById("key-all").addEventListener("change", () => show("keys"));
document.getElementById("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const spec = { name: f.get("name").trim() };
  if (f.get("daily_budget")) spec.daily_budget = Number(f.get("daily_budget"));
  if (f.get("rpm")) spec.rpm = Number(f.get("rpm"));
  const models = f.get("models").split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) spec.models = models;
  try {
    const k = await api("/admin/keys", { method: "POST", body: spec });
    document.getElementById("key-secret-value").textContent = k.key;
    document.getElementById("key-secret").hidden = false;
    e.target.reset();
    await pages.keys();
  } catch (err) { showError(err); }
});
let resizeTimer;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => show(location.hash.slice(1) || "overview"), 250);
});
show(location.hash.slice(1) || "overview");
