// Amtsbote's operator console: one page, one view per hash route. It logs
// in with an admin client's credentials at /token, keeps the access token
// in sessionStorage (gone with the tab) and calls the operator API with it.
// Views are built with DOM calls, never from HTML strings, so no value the
// API returns is ever interpreted as markup.
"use strict";

const TOKEN = "amtsbote.token";
const main = document.getElementById("main");

// h builds an element: h("td", {class: "num"}, "3", child).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// show puts a view in place and moves focus to its heading, so that a
// screen reader reads where the keyboard now is.
function show(...nodes) {
  main.replaceChildren(...nodes);
  const h1 = main.querySelector("h1");
  if (h1) {
    h1.setAttribute("tabindex", "-1");
    h1.focus({ preventScroll: true });
  }
}

// announce tells a screen reader the result of what was asked.
function announce(text) {
  document.getElementById("announce").textContent = text;
}

// scroll wraps a table that may be wider than the window in a region the
// keyboard can reach and scroll.
function scroll(label, table) {
  return h("div", { class: "scroll", role: "region", tabindex: "0", "aria-label": label }, table);
}

function token() {
  const raw = sessionStorage.getItem(TOKEN);
  if (!raw) return null;
  try {
    const t = JSON.parse(raw);
    if (t.expires > Date.now()) return t.value;
  } catch (e) {
    // A damaged entry is as good as none.
  }
  sessionStorage.removeItem(TOKEN);
  return null;
}

// ApiError carries a problem+json answer.
class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || "HTTP " + status);
    this.status = status;
    this.problem = problem;
  }
}

async function api(method, path, body) {
  const t = token();
  if (!t) {
    logout("Your session ended; log in again.");
    throw new ApiError(401, { detail: "not logged in" });
  }
  // No credentials of the browser's: a 401's Basic challenge would open
  // its login dialog.
  const opts = { method, credentials: "omit", headers: { Authorization: "Bearer " + t, Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (err) {
    throw new ApiError(0, { detail: "the gateway did not answer (" + err.message + ")" });
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      // A proxy's error page, say: not Amtsbote's answer.
      data = { detail: "HTTP " + resp.status + " " + resp.statusText + " without a problem description (from a proxy in between?)" };
    }
  }
  if (resp.status === 429) {
    const wait = resp.headers.get("Retry-After");
    data = Object.assign({}, data, { detail: ((data && data.detail) || "too many requests") + (wait ? "; retry in " + wait + " s" : "") });
  }
  if (resp.status === 401) {
    logout("The gateway refused the session (" + ((data && data.detail) || "401") + "); log in again.");
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err.message || String(err));
}

function fmtTime(s) {
  if (!s) return "—";
  const d = new Date(s);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function fmtAge(s) {
  if (!s) return "—";
  let sec = Math.max(0, (Date.now() - new Date(s).getTime()) / 1000);
  if (sec < 120) return Math.round(sec) + " s";
  if (sec < 7200) return Math.round(sec / 60) + " min";
  if (sec < 172800) return Math.round(sec / 3600) + " h";
  return Math.round(sec / 86400) + " d";
}

// fmtDur turns a Go duration ("72h0m0s") into days or hours.
function fmtDur(d) {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(d || "");
  if (!m) return d;
  const sec = (+m[1] || 0) * 3600 + (+m[2] || 0) * 60 + (+m[3] || 0);
  if (sec >= 86400 && sec % 86400 === 0) return sec / 86400 + " d";
  if (sec >= 3600 && sec % 3600 === 0) return sec / 3600 + " h";
  return d;
}

function fmtNum(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-GB", { maximumFractionDigits: 2 });
}

function pct(part, whole) {
  return whole > 0 ? part / whole : 0;
}

function fmtPct(x) {
  return (x * 100).toLocaleString("en-GB", { maximumFractionDigits: 1 }) + " %";
}

// shareColour runs from dark orange (nobody reaches a destination) over
// green to dark blue (all do): apart for red-green colour blindness, and
// every step at least 3:1 against white.
function shareColour(share) {
  return "hsl(" + Math.round(28 + share * 184) + ", 80%, 30%)";
}

// ---- login ----

function viewLogin(message) {
  document.title = "Log in · Amtsbote Console";
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  const status = h("div", { id: "login-status" }, message ? errorBox({ message }) : null);
  const form = h(
    "form",
    { id: "login" },
    h("label", {}, "Client ID", h("input", { name: "client_id", id: "client-id", autocomplete: "username", required: true, "aria-describedby": "login-status" })),
    h(
      "label",
      {},
      "Client secret",
      h("input", { name: "client_secret", id: "client-secret", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "login-status" })
    ),
    h("button", { type: "submit", id: "login-submit" }, "Log in"),
    status
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.replaceChildren();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    const body = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: form.client_id.value,
      client_secret: form.client_secret.value,
    });
    try {
      const resp = await fetch("/token", {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
        body,
      });
      const data = await resp.json().catch(() => ({ detail: "HTTP " + resp.status + " without a readable answer" }));
      if (!resp.ok) {
        status.replaceChildren(errorBox({ message: data.error_description || data.detail || "login refused" }));
        form.client_secret.setAttribute("aria-invalid", "true");
        return;
      }
      if (!String(data.scope || "").split(" ").includes("amtsbote:admin")) {
        status.replaceChildren(errorBox({ message: "this client is no operator: its token lacks the scope amtsbote:admin" }));
        return;
      }
      sessionStorage.setItem(TOKEN, JSON.stringify({ value: data.access_token, expires: Date.now() + (data.expires_in - 30) * 1000 }));
      resume();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    } finally {
      submit.disabled = false;
      // Disabling the focused button dropped focus to the page.
      if (document.activeElement === document.body && document.body.contains(form)) form.client_secret.focus();
    }
  });
  const tokenIn = h("textarea", { id: "access-token", name: "access_token", rows: 3, placeholder: "eyJ…" });
  const tokenForm = h(
    "form",
    { id: "token-login" },
    h("label", {}, "Or an access token of the OIDC issuer", tokenIn),
    h("button", { type: "submit" }, "Use token")
  );
  tokenForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const value = tokenIn.value.trim();
    const exp = tokenExpiry(value);
    if (!exp) {
      status.replaceChildren(errorBox({ message: "this is not a JWT with an expiry" }));
      return;
    }
    const resp = await fetch("/admin/v1/overview", { credentials: "omit", headers: { Authorization: "Bearer " + value, Accept: "application/json" } });
    if (!resp.ok) {
      const data = await resp.json().catch(() => ({}));
      status.replaceChildren(errorBox({ message: data.detail || "the token was refused" }));
      return;
    }
    sessionStorage.setItem(TOKEN, JSON.stringify({ value, expires: exp }));
    resume();
  });
  show(h("section", { class: "login" }, h("h1", {}, "Operator login"), form, h("hr"), tokenForm));
}

// tokenExpiry reads exp from a JWT's claims, in milliseconds; the
// gateway, not this, judges the token.
function tokenExpiry(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) return 0;
  try {
    const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims.exp === "number" ? claims.exp * 1000 - 30000 : 0;
  } catch (e) {
    return 0;
  }
}

// logout ends the session and shows the login with message; the page it
// ended on is shown again after the next login.
function logout(message) {
  sessionStorage.removeItem(TOKEN);
  stopPolling();
  clearTimeout(expiryTimer);
  expiryWatched = 0;
  document.getElementById("session").hidden = true;
  viewLogin(message);
}

// expiryTimer warns two minutes before the session's token runs out
// (WCAG 2.2.1): a new login, which brings the reader back, extends it.
let expiryTimer = null;
let expiryWatched = 0;

function watchExpiry() {
  let expires = 0;
  try {
    expires = JSON.parse(sessionStorage.getItem(TOKEN)).expires;
  } catch (e) {
    return;
  }
  // A notice already given for this token stays as it is, not announced
  // again at every view.
  if (expires === expiryWatched) return;
  expiryWatched = expires;
  clearTimeout(expiryTimer);
  const banner = document.getElementById("session");
  banner.hidden = true;
  // setTimeout holds at most 2^31-1 ms; a longer token is watched again
  // at a later view.
  const wait = expires - Date.now() - 120000;
  if (wait > 2147483647) {
    expiryWatched = 0;
    return;
  }
  expiryTimer = setTimeout(() => {
    if (!token()) return;
    const again = h("button", { type: "button", class: "small" }, "Log in again now");
    again.addEventListener("click", () => logout("Log in again to continue; you return to this page."));
    banner.replaceChildren("Your session ends at " + new Date(expires).toLocaleTimeString("en-GB") + ". ", again);
    banner.hidden = false;
  }, Math.max(0, wait));
}

// resume shows the page the session ended on, or the overview.
function resume() {
  if (location.hash.replace(/^#\/?/, "") === "") location.hash = "#/overview";
  route();
}

// ---- overview ----

let pollTimer = null;
let polls = [];
// paused holds the overview still (WCAG 2.2.2), until asked again.
let paused = false;

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

function sumSeries(series, name, filter) {
  let found = false;
  let total = 0;
  for (const s of series) {
    if (s.name !== name) continue;
    if (filter && !Object.entries(filter).every(([k, v]) => (s.labels || {})[k] === v)) continue;
    found = true;
    total += s.value;
  }
  return found ? total : null;
}

function card(label, value, sub, id) {
  return h("div", { class: "card", id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub || ""));
}

const STAGES = ["created", "submitted", "routed", "picked_up", "accepted", "rejected", "forwarded", "expired", "deleted"];

async function viewOverview() {
  // The heading, the status line and its pause button stay while the
  // figures below them are replaced, so that a reader's focus stays.
  const asOf = h("span", {});
  const mode = h("span", {}, updatesText());
  const body = h("div", { id: "overview-body" });
  const root = h("section", { id: "overview" }, h("h1", {}, "Overview"));
  const refresh = async () => {
    let o;
    try {
      o = await api("GET", "/admin/v1/overview");
    } catch (err) {
      body.replaceChildren(errorBox(err));
      return;
    }
    polls.push(o);
    if (polls.length > 60) polls.shift();
    asOf.textContent = "As of " + fmtTime(o.at);
    renderOverview(body, o);
  };
  root.append(h("p", { class: "muted" }, asOf, mode, pauseButton(refresh, mode)), body);
  show(root);
  polls = [];
  await refresh();
  // Left for another page while the first answer was under way.
  if (!document.body.contains(root)) return;
  stopPolling();
  if (!paused) pollTimer = setInterval(refresh, 5000);
}

// updatesText says whether the overview updates itself.
function updatesText() {
  return paused ? " · updates paused " : " · refreshed every 5 s ";
}

// pauseButton stops and restarts the overview's updates.
function pauseButton(refresh, mode) {
  const b = h("button", { type: "button", id: "pause", class: "small", "aria-pressed": paused ? "true" : "false" }, paused ? "Resume updates" : "Pause updates");
  b.addEventListener("click", () => {
    paused = !paused;
    stopPolling();
    if (!paused) pollTimer = setInterval(refresh, 5000);
    mode.textContent = updatesText();
    b.setAttribute("aria-pressed", paused ? "true" : "false");
    b.textContent = paused ? "Resume updates" : "Pause updates";
    announce(paused ? "Updates paused." : "Updates resumed, every 5 seconds.");
  });
  return b;
}

// rate is the per-minute rate of a counter between the last two polls.
function rate(name, filter) {
  if (polls.length < 2) return null;
  const a = polls[polls.length - 2];
  const b = polls[polls.length - 1];
  const va = sumSeries(a.series, name, filter);
  const vb = sumSeries(b.series, name, filter);
  if (va === null || vb === null) return null;
  const minutes = (new Date(b.at) - new Date(a.at)) / 60000;
  return minutes > 0 ? Math.max(0, vb - va) / minutes : null;
}

function renderOverview(root, o) {
  const created = sumSeries(o.series, "amtsbote_submissions_total", { stage: "submitted" });
  const signing = sumSeries(o.series, "amtsbote_signing_queue_length");
  // On the pickup list after a fetch: the back office has it but neither accepted nor rejected it.
  const listed = sumSeries(o.series, "amtsbote_inbox_backlog");
  const unpicked = sumSeries(o.series, "amtsbote_inbox_unpicked");
  const undecided = listed === null || unpicked === null ? null : Math.max(0, listed - unpicked);
  const cards = h(
    "div",
    { class: "cards" },
    card("Submitted /min", rate("amtsbote_submissions_total", { stage: "submitted" }) === null ? "—" : fmtNum(rate("amtsbote_submissions_total", { stage: "submitted" })), created === null ? "not exported here" : fmtNum(created) + " in total", "card-ingest"),
    card("Waiting for pickup", fmtNum(o.waiting), o.waiting === null ? "the store does not answer" : "oldest " + fmtAge(o.oldestSubmittedAt), "card-waiting"),
    card("Fetched, undecided", undecided === null ? "—" : fmtNum(undecided), undecided === null ? "not exported here" : "picked up, not yet accepted or rejected", "card-undecided"),
    card("Overdue", (o.overdue || []).map(fmtNum).join(" / ") || "—", "waiting longer than " + (o.overdueAfter || []).map(fmtDur).join(" / "), "card-overdue"),
    card("Dead letters", o.deadLetters === null ? "—" : fmtNum(o.deadLetters), o.deadLetters !== null ? "in DEAD" : (o.unavailable || []).includes("jetstream") ? "JetStream does not answer" : "no JetStream here", "card-dead"),
    card("Signing queue", signing === null ? "—" : fmtNum(signing), signing === null ? "not exported here" : "SETs waiting", "card-signing")
  );
  const canvas = h("canvas", { class: "spark", id: "spark", width: 1000, height: 60, role: "img" });
  const stageRows = STAGES.map((st) => {
    const total = sumSeries(o.series, "amtsbote_submissions_total", { stage: st });
    const r = rate("amtsbote_submissions_total", { stage: st });
    return h("tr", { "data-stage": st }, h("td", {}, st), h("td", { class: "num" }, fmtNum(total)), h("td", { class: "num" }, r === null ? "—" : fmtNum(r)));
  });
  const byLand = {};
  for (const s of o.series) {
    if (s.name !== "amtsbote_inbox_backlog") continue;
    const land = (s.labels || {}).land || "unknown";
    byLand[land] = (byLand[land] || 0) + s.value;
  }
  const landRows = Object.keys(byLand)
    .sort()
    .map((l) => h("tr", {}, h("td", {}, l), h("td", { class: "num" }, fmtNum(byLand[l]))));
  const hasStages = o.series.some((x) => x.name === "amtsbote_submissions_total");
  const parts = [
    cards,
    h("h2", {}, "Waiting submissions over the last polls"),
    canvas,
    h("h2", {}, "Lifecycle stages"),
    hasStages
      ? h("table", { id: "stages" }, h("thead", {}, h("tr", {}, h("th", {}, "Stage"), h("th", { class: "num" }, "Total"), h("th", { class: "num" }, "Per minute"))), h("tbody", {}, stageRows))
      : h("p", { class: "muted", id: "stages" }, "This process does not count lifecycle stages (amtsbote_submissions_total); the ledger role does."),
  ];
  if (landRows.length) {
    parts.push(h("h2", {}, "Backlog by Land"), h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Land"), h("th", { class: "num" }, "Backlog"))), h("tbody", {}, landRows)));
  }
  root.replaceChildren(...parts);
  drawSpark(canvas, polls.filter((x) => x.waiting !== null).map((x) => x.waiting));
}

function drawSpark(canvas, values) {
  canvas.setAttribute(
    "aria-label",
    values.length
      ? "Waiting submissions over the last " + values.length + " polls: least " + fmtNum(Math.min(...values)) + ", most " + fmtNum(Math.max(...values)) + ", now " + fmtNum(values[values.length - 1])
      : "No polls yet"
  );
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const hgt = canvas.height;
  ctx.clearRect(0, 0, w, hgt);
  ctx.strokeStyle = "#d7dde3";
  ctx.beginPath();
  ctx.moveTo(0, hgt - 1);
  ctx.lineTo(w, hgt - 1);
  ctx.stroke();
  if (values.length === 0) return;
  const max = Math.max(1, ...values);
  ctx.strokeStyle = "#0b5cad";
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = values.length === 1 ? w / 2 : (i / (values.length - 1)) * w;
    const y = hgt - 4 - (v / max) * (hgt - 8);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

// ---- paged lists ----

// pageOf reads a list's page from the view's query: offset, and limit up
// to the API's 500.
function pageOf(params, limit) {
  const num = (name, fallback, min, max) => {
    const v = Number(params.get(name));
    return params.has(name) && Number.isInteger(v) && v >= min && v <= max ? v : fallback;
  };
  return { offset: num("offset", 0, 0, 2147483647), limit: num("limit", limit, 1, 500) };
}

// pager says which entries of total a page of count shows and links the
// pages before and after it.
function pager(id, view, page, count, total) {
  const link = (text, offset) => h("a", { href: "#/" + view + "?" + new URLSearchParams({ offset, limit: page.limit }) }, text);
  return h(
    "p",
    { class: "muted pager", id },
    count === 0 ? "none of " + total : page.offset + 1 + "–" + (page.offset + count) + " of " + total,
    page.offset > 0 ? [" · ", link([h("span", { "aria-hidden": "true" }, "‹ "), "previous"], Math.max(0, page.offset - page.limit))] : null,
    page.offset + count < total ? [" · ", link(["next", h("span", { "aria-hidden": "true" }, " ›")], page.offset + page.limit)] : null
  );
}

// ---- destinations ----

async function viewDestinations(params) {
  const root = h("section", { id: "destinations" }, h("h1", {}, "Destinations"));
  show(root);
  const page = pageOf(params, 500);
  try {
    const [list, o] = await Promise.all([
      api("GET", "/admin/v1/destinations?" + new URLSearchParams(page)),
      api("GET", "/admin/v1/overview"),
    ]);
    const waiting = {};
    for (const d of o.destinations) waiting[d.destinationId] = d;
    // Without the store's answer a destination's figures are unknown, not 0.
    const none = o.waiting === null ? null : 0;
    const rows = list.destinations.map((d) => {
      const wt = waiting[d.destinationId];
      const overdue = wt ? wt.overdue : (o.overdueAfter || []).map(() => none);
      return h(
        "tr",
        { "data-destination": d.destinationId },
        h("td", {}, (d.contactInformation && d.contactInformation.legalName) || "—", h("div", { class: "mono muted" }, d.destinationId)),
        h("td", {}, d.status || "—"),
        h("td", { class: "num" }, fmtNum(wt ? wt.waiting : none)),
        h("td", {}, wt ? fmtAge(wt.oldestSubmittedAt) : "—"),
        overdue.map((n) => h("td", { class: n > 0 ? "num bad" : "num" }, fmtNum(n)))
      );
    });
    root.append(
      h("p", { class: "muted" }, list.totalCount + " destinations · " + fmtNum(o.waiting) + " submissions waiting for pickup"),
      scroll("Destinations", h(
        "table",
        { id: "destination-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Destination"),
            h("th", {}, "Status"),
            h("th", { class: "num" }, "Waiting"),
            h("th", {}, "Oldest waiting"),
            (o.overdueAfter || []).map((a) => h("th", { class: "num" }, "Overdue > " + fmtDur(a)))
          )
        ),
        h("tbody", {}, rows)
      )),
      pager("destination-pager", "destinations", page, rows.length, list.totalCount)
    );
  } catch (err) {
    root.append(errorBox(err));
  }
}

// ---- cases ----

async function viewCase(caseId, params) {
  const input = h("input", { id: "case-id", name: "caseId", placeholder: "case id (UUID)", value: caseId || "", required: true });
  const form = h("form", { class: "inline", id: "case-form" }, h("label", {}, "Case", input), h("button", { type: "submit" }, "Show events"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("#/cases/" + encodeURIComponent(input.value.trim()));
  });
  const out = h("div", { id: "case-events" });
  show(h("section", { id: "case" }, h("h1", {}, "Case events"), form, out));
  if (!caseId) return;
  try {
    const page = pageOf(params, 500);
    const c = await api("GET", "/admin/v1/cases/" + encodeURIComponent(caseId) + "/events/verified?" + new URLSearchParams(page));
    const bad = c.events.filter((e) => !e.verified).length;
    const paged = c.events.length < c.totalCount;
    const summary =
      c.totalCount +
      " events" +
      (paged ? ", " + c.events.length + " shown" : "") +
      ", " +
      (bad ? bad + (paged ? " shown" : "") + " with a signature that does not verify" : "every signature" + (paged ? " shown" : "") + " verified");
    out.append(
      h("p", { class: bad ? "bad" : "ok", id: "case-summary" }, summary),
      scroll("Events of the case", h(
        "table",
        { id: "event-table" },
        h(
          "thead",
          {},
          h("tr", {}, ["#", "Event", "Issued", "Issuer", "Key (kid)", "Signature"].map((x) => h("th", {}, x)))
        ),
        h(
          "tbody",
          {},
          c.events.map((e, i) =>
            h(
              "tr",
              { "data-event": e.type },
              h("td", { class: "num" }, e.streamSeq || page.offset + i + 1),
              h("td", {}, e.type, h("div", { class: "mono muted" }, "submission " + e.submissionId)),
              h("td", {}, fmtTime(e.iat)),
              h("td", {}, e.signer, h("div", { class: "mono muted" }, e.iss)),
              h("td", { class: "mono" }, e.kid || "—"),
              h(
                "td",
                {},
                e.verified
                  ? h("span", { class: "ok verified" }, h("span", { "aria-hidden": "true" }, "✓ "), "valid")
                  : h("span", { class: "bad" }, h("span", { "aria-hidden": "true" }, "✗ "), e.reason)
              )
            )
          )
        )
      ))
    );
    if (c.totalCount > c.events.length || page.offset > 0) {
      out.append(pager("case-pager", "cases/" + encodeURIComponent(caseId), page, c.events.length, c.totalCount));
    }
    announce(summary);
  } catch (err) {
    out.append(errorBox(err));
  }
}

// ---- dead letters ----

async function viewDeadLetters(params, notice) {
  const root = h("section", { id: "dead-letters" }, h("h1", {}, "Dead letters"));
  show(root);
  if (notice) root.append(h("div", { class: "notice", id: "dead-notice", role: "status" }, notice));
  const page = pageOf(params, 200);
  try {
    const l = await api("GET", "/admin/v1/dead-letters?" + new URLSearchParams(page));
    if (l.totalCount === 0) {
      root.append(h("p", { id: "dead-empty" }, "DEAD holds no messages."));
      announce((notice ? notice + " " : "") + "DEAD holds no messages.");
      return;
    }
    announce((notice ? notice + " " : "") + l.totalCount + " dead letters.");
    const rows = l.deadLetters.map((d) => {
      const btn = h("button", { class: "small redrive", type: "button", "data-seq": d.seq, "aria-label": "Re-drive dead letter " + d.seq }, "Re-drive");
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try {
          await api("POST", "/admin/v1/dead-letters/" + d.seq + "/redrive");
          if (document.body.contains(root)) viewDeadLetters(params, "Dead letter " + d.seq + " re-driven to " + d.subject + ".");
        } catch (err) {
          btn.disabled = false;
          root.insertBefore(errorBox(err), root.children[1] || null);
        }
      });
      return h(
        "tr",
        { "data-seq": d.seq },
        h("td", { class: "num" }, d.seq),
        h("td", {}, fmtTime(d.at)),
        h("td", {}, d.reason, d.error ? h("div", { class: "muted" }, d.error) : null),
        h("td", { class: "num" }, d.attempts),
        h("td", { class: "mono" }, d.subject),
        h("td", { class: "mono" }, d.destinationId || "—"),
        h("td", {}, btn)
      );
    });
    root.append(
      h("p", { class: "muted" }, l.totalCount + " dead letters"),
      scroll("Dead letters", h(
        "table",
        { id: "dead-table" },
        h(
          "thead",
          {},
          h("tr", {}, ["Seq", "Dead since", "Reason", "Attempts", "Subject", "Destination"].map((x) => h("th", {}, x)), h("th", {}, h("span", { class: "visually-hidden" }, "Action")))
        ),
        h("tbody", {}, rows)
      )),
      pager("dead-pager", "dead-letters", page, rows.length, l.totalCount)
    );
  } catch (err) {
    root.append(errorBox(err));
  }
}

// ---- routing explorer ----

function viewRouting(params) {
  const service = h("input", { id: "route-service", name: "service", placeholder: "LeiKa key or service URN", value: params.get("service") || "", required: true });
  const placeIn = h("input", { id: "route-place", name: "place", placeholder: "place name or ARS", value: params.get("place") || "", required: true });
  const form = h(
    "form",
    { class: "inline", id: "route-form" },
    h("label", {}, "Service", service),
    h("label", {}, "Place", placeIn),
    h("button", { type: "submit" }, "Resolve")
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("#/routing?" + new URLSearchParams({ service: service.value.trim(), place: placeIn.value.trim() }));
  });
  const out = h("div", { id: "route-result" });
  show(h("section", { id: "routing" }, h("h1", {}, "Routing explorer"), form, out));
  if (params.get("service") && params.get("place")) explain(out, params.get("service"), params.get("place"));
}

async function explain(out, service, placeText) {
  const q = new URLSearchParams({ service });
  if (/^\d{2,12}$/.test(placeText)) q.set("ars", placeText);
  else q.set("place", placeText);
  try {
    const x = await api("GET", "/admin/v1/routing/explain?" + q);
    if (!x.place) {
      const cut = x.placesTotal > x.places.length;
      const count = cut ? x.placesTotal + " areas are named so, the first " + x.places.length + " below; choose one or give more of the name:" : "Several areas are named so; choose one:";
      announce(count);
      out.append(
        h("p", { id: "place-count" }, count),
        h(
          "ul",
          { id: "place-choices" },
          x.places.map((p) =>
            h(
              "li",
              {},
              h(
                "a",
                { href: "#/routing?" + new URLSearchParams({ service, place: p.ars }) },
                p.name + " (" + p.level + ", " + p.ars + ")"
              )
            )
          )
        )
      );
      return;
    }
    const m = x.match;
    announce(m ? (m.destinationName || m.destinationId) + " matched at level " + m.level + "." : "No destination serves this service here.");
    out.append(
      h("p", { class: "muted" }, (x.serviceName ? x.serviceName + " · " : "") + x.service + " in " + x.place.name + " (" + x.place.level + ", ARS " + x.place.ars + ") at " + fmtTime(x.at)),
      m
        ? h(
            "div",
            { class: "match", id: "route-match" },
            h("strong", {}, m.destinationName || m.destinationId),
            " matched at level ",
            h("strong", { id: "route-level" }, m.level),
            " (region " + m.region + ")",
            h("div", { class: "mono muted" }, m.destinationId + (m.destinationStatus ? " · " + m.destinationStatus : ""))
          )
        : h("div", { class: "match none", id: "route-match" }, "No destination serves this service here."),
      h("h2", {}, "Routes for this place"),
      x.routes.length
        ? scroll("Routes for this place", h(
            "table",
            { id: "route-table" },
            h("thead", {}, h("tr", {}, ["Level", "Region", "Destination", "Valid", "Outcome"].map((c) => h("th", {}, c)))),
            h(
              "tbody",
              {},
              x.routes.map((r) =>
                h(
                  "tr",
                  {},
                  h("td", {}, r.level),
                  h("td", { class: "mono" }, r.region),
                  h("td", {}, r.destinationName || "—", h("div", { class: "mono muted" }, r.destinationId)),
                  h("td", {}, (r.validFrom ? fmtTime(r.validFrom) : "always") + " – " + (r.validUntil ? fmtTime(r.validUntil) : "open")),
                  h("td", { class: r.outcome === "matched" ? "ok" : "muted" }, r.outcome)
                )
              )
            )
          ))
        : h("p", { class: "muted" }, "The service has no route whose region holds this place.")
    );
  } catch (err) {
    out.append(errorBox(err));
  }
}

// ---- coverage ----

function viewCoverage(params) {
  const service = h("input", { id: "coverage-service", name: "service", placeholder: "LeiKa key or service URN", value: params.get("service") || "", required: true });
  const form = h("form", { class: "inline", id: "coverage-form" }, h("label", {}, "Service", service), h("button", { type: "submit" }, "Show coverage"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go("#/coverage?" + new URLSearchParams({ service: service.value.trim() }));
  });
  const out = h("div", { id: "coverage-result" });
  show(h("section", { id: "coverage" }, h("h1", {}, "Coverage"), form, out));
  if (params.get("service")) coverage(out, params.get("service"));
}

function legend() {
  const stops = [0, 0.25, 0.5, 0.75, 1].map((s) => {
    const t = h("span", { class: "tile" });
    t.style.backgroundColor = shareColour(s);
    return [t, fmtPct(s)];
  });
  return h("div", { class: "legend" }, "Share of the population that reaches a destination:", stops);
}

// moveTile moves focus among a Land's tiles with the arrow keys, Home
// and End, the group keeping one tab stop.
function moveTile(ev, tiles) {
  const i = tiles.indexOf(document.activeElement);
  if (i < 0) return;
  const to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: tiles.length - 1 }[ev.key];
  if (to === undefined) return;
  ev.preventDefault();
  const next = tiles[Math.max(0, Math.min(tiles.length - 1, to))];
  tiles[i].setAttribute("tabindex", "-1");
  next.setAttribute("tabindex", "0");
  next.focus();
}

async function coverage(out, service) {
  try {
    const c = await api("GET", "/admin/v1/coverage/kreise?" + new URLSearchParams({ service }));
    const lands = c.lands.map((l) => {
      const share = pct(l.coveredPopulation, l.population);
      const shown = h("p", { class: "tile-label muted", "aria-hidden": "true" }, "\u00a0");
      const tiles = l.kreise.map((k, i) => {
        const ks = pct(k.coveredPopulation, k.population);
        const label = k.name + " (" + k.ars + "): " + fmtPct(ks) + " of " + fmtNum(k.population);
        // Labelled, and one tab stop per Land (arrow keys move within):
        // the colour is not all a reader gets.
        const t = h("span", { class: k.population > 0 ? "tile" : "tile empty", title: label, "aria-label": label, role: "img", tabindex: i === 0 ? "0" : "-1", "data-kreis": k.ars });
        if (k.population > 0) t.style.backgroundColor = shareColour(ks);
        const say = () => (shown.textContent = label);
        t.addEventListener("focus", say);
        t.addEventListener("mouseenter", say);
        return t;
      });
      const rows = l.kreise.map((k) =>
        h("tr", {}, h("td", { class: "mono" }, k.ars), h("td", {}, k.name), h("td", { class: "num" }, fmtPct(pct(k.coveredPopulation, k.population))), h("td", { class: "num" }, fmtNum(k.population)))
      );
      const table = h(
        "details",
        { class: "kreise" },
        h("summary", {}, h("span", { lang: "de" }, "Kreise"), " of " + l.name + " as a table"),
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, h("th", {}, "ARS"), h("th", { lang: "de" }, "Kreis"), h("th", { class: "num" }, "Covered"), h("th", { class: "num" }, "Population"))),
          h("tbody", {}, rows)
        )
      );
      const head = h("div", { class: "head" }, h("h2", {}, l.name), h("span", {}, fmtPct(share)));
      const group = h("div", { class: "tiles", role: "group", "aria-label": "Kreise of " + l.name }, tiles);
      group.addEventListener("keydown", (ev) => moveTile(ev, tiles));
      const box = h("div", { class: "land", "data-land": l.land }, head, group, shown, table);
      box.style.borderTop = "4px solid " + shareColour(share);
      return box;
    });
    const rows = c.uncovered.map((g) => h("tr", {}, h("td", { class: "mono" }, g.ars), h("td", {}, g.name), h("td", { class: "num" }, fmtNum(g.population))));
    out.append(
      h(
        "p",
        { id: "coverage-summary" },
        fmtPct(pct(c.coveredPopulation, c.population)) + " of " + fmtNum(c.population) + " people reach a destination for " + c.service + " (",
        h("span", { lang: "de" }, "Gebietsstand"),
        " " + c.stand + ")."
      ),
      legend(),
      h("div", { class: "lands", id: "coverage-tiles" }, lands),
      h("h2", {}, "Uncovered ", h("span", { lang: "de" }, "Gemeinden"), " (" + fmtNum(c.uncoveredTotal) + ")"),
      c.uncoveredTotal > c.uncovered.length ? h("p", { class: "muted" }, "The first " + c.uncovered.length + " in directory order.") : "",
      rows.length
        ? scroll(
            "Uncovered Gemeinden",
            h("table", { id: "uncovered" }, h("thead", {}, h("tr", {}, h("th", {}, "ARS"), h("th", { lang: "de" }, "Gemeinde"), h("th", { class: "num" }, "Population"))), h("tbody", {}, rows))
          )
        : h("p", { class: "ok" }, "Every ", h("span", { lang: "de" }, "Gemeinde"), " reaches a destination.")
    );
    announce(out.querySelector("#coverage-summary").textContent);
  } catch (err) {
    out.append(errorBox(err));
  }
}

// ---- routing of views ----

// go shows hash, also when it is the one shown: a form sent again
// unchanged fetches again.
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// decoded is s percent-decoded, or s itself where that is malformed.
function decoded(s) {
  try {
    return decodeURIComponent(s);
  } catch (e) {
    return s;
  }
}

function route() {
  stopPolling();
  const had = sessionStorage.getItem(TOKEN) !== null;
  if (!token()) {
    viewLogin(had ? "Your session ended; log in again." : undefined);
    return;
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  watchExpiry();
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, query] = hash.split("?");
  const parts = path.split("/");
  const params = new URLSearchParams(query || "");
  let page = "Overview";
  for (const a of document.querySelectorAll("#nav a")) {
    const current = a.dataset.page === parts[0];
    a.classList.toggle("active", current);
    if (current) {
      a.setAttribute("aria-current", "page");
      page = a.textContent;
    } else a.removeAttribute("aria-current");
  }
  document.title = page + " · Amtsbote Console";
  switch (parts[0]) {
    case "destinations":
      viewDestinations(params);
      break;
    case "cases":
      viewCase(decoded(parts[1] || ""), params);
      break;
    case "dead-letters":
      viewDeadLetters(params);
      break;
    case "routing":
      viewRouting(params);
      break;
    case "coverage":
      viewCoverage(params);
      break;
    default:
      viewOverview();
  }
}

document.getElementById("logout").addEventListener("click", () => {
  logout();
  location.hash = "";
});
window.addEventListener("hashchange", route);
// The skip link moves focus to the content; its #main is no view.
document.querySelector("a.skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  main.focus();
});
route();
