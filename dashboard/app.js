// The kyc-edge dashboard: reads the v1 API with the operator's token (session storage only),
// renders with DOM calls (text, never HTML from data), refreshes itself.

const TOKEN_KEY = "kyc-edge-token";
const STATUSES = ["unknown", "not_started", "incomplete", "pending", "resubmission_required", "approved", "rejected"];
const COLORS = {
  unknown: "#98a2b3",
  not_started: "#b692f6",
  incomplete: "#fdb022",
  pending: "#2f5fd0",
  resubmission_required: "#f97066",
  approved: "#12b76a",
  rejected: "#b42318",
};

const $ = (id) => document.getElementById(id);
let timer = null;
let signedIn = false;
// Only the newest history asked for is shown (an older answer arriving late is dropped).
let historyTicket = 0;

class Unauthorized extends Error {}

/** The API answered with an error: its HTTP status and its message. */
class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, init = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(path, {
    ...init,
    headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
  });
  if (res.status === 401) throw new Unauthorized("the API refused the token");
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiFailure(res.status, body?.error?.message ?? `HTTP ${res.status}`);
  return body;
}

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function table(target, headings, rows) {
  const node = $(target);
  node.replaceChildren();
  const head = el("tr");
  for (const [label, numeric] of headings) head.append(el("th", label, numeric ? { class: "number" } : {}));
  node.append(el("thead"), el("tbody"));
  node.tHead.append(head);
  for (const row of rows) node.tBodies[0].append(row);
  if (rows.length === 0) {
    const empty = el("tr");
    empty.append(el("td", "nothing here", { colspan: String(headings.length), class: "note" }));
    node.tBodies[0].append(empty);
  }
}

function row(cells, attributes = {}) {
  const tr = el("tr", null, attributes);
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = el("td");
      td.append(cell);
      tr.append(td);
    } else if (typeof cell === "number") {
      tr.append(el("td", cell.toLocaleString("en"), { class: "number" }));
    } else {
      tr.append(el("td", cell ?? "–"));
    }
  }
  return tr;
}

function ago(iso) {
  if (!iso) return "–";
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  const abs = Math.abs(seconds);
  const [value, unit] =
    abs < 90 ? [abs, "s"] : abs < 5400 ? [Math.round(abs / 60), "min"] : abs < 172800 ? [Math.round(abs / 3600), "h"] : [Math.round(abs / 86400), "d"];
  return seconds >= 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
}

function renderStats(stats) {
  const providers = Object.keys(stats.providers);
  table(
    "statuses",
    [["status"], ...providers.map((p) => [p, true])],
    STATUSES.map((status) =>
      row([status, ...providers.map((p) => stats.subjects[p]?.[status] ?? 0)], { "data-status": status }),
    ),
  );
  table(
    "webhooks",
    [["provider"], ["accepted", true], ["repeats", true], ["drift", true], ["changes", true]],
    providers.map((p) => {
      const drift = el("span", stats.drift[p].toLocaleString("en"), { class: stats.drift[p] > 0 ? "bad" : "good" });
      return row([p, stats.webhooks[p].accepted, stats.webhooks[p].duplicate, drift, stats.changes[p]], {
        "data-provider": p,
      });
    }),
  );
  table(
    "providers",
    [["provider"], ["state"], ["failures", true], ["last error"], ["last success"]],
    providers.map((p) => {
      const h = stats.providers[p];
      const state = !h.enabled
        ? el("span", "not configured", { class: "note" })
        : h.paused_until
          ? el("span", `paused until ${new Date(h.paused_until).toLocaleTimeString()}`, { class: "warn" })
          : h.degraded
            ? el("span", "degraded", { class: "bad" })
            : el("span", "healthy", { class: "good" });
      return row([p, state, h.consecutive_failures, h.last_error, ago(h.last_success_at)]);
    }),
  );
  const n = stats.notifications;
  const delivery = $("delivery");
  delivery.replaceChildren();
  const pairs = [
    ["delivery", n.disabled ? `disabled since ${ago(n.disabled.since)} (${n.disabled.reason})` : n.delivery],
    ["pending", n.pending],
    ["delivered", n.delivered],
    ["dead", n.dead],
    ["oldest undelivered", n.oldest_undelivered_age_seconds === null ? "–" : `${n.oldest_undelivered_age_seconds} s`],
  ];
  for (const [term, value] of pairs) delivery.append(el("dt", term), el("dd", value, { "data-field": term }));
  $("enable").hidden = !n.disabled;

  // Imported subjects waiting for their paced first check, and each provider's backfill.
  const adoption = $("adoption");
  adoption.replaceChildren();
  for (const p of providers) {
    const f = stats.first_checks[p];
    const by = f.all_scheduled_by ? `, all by ${new Date(f.all_scheduled_by).toLocaleTimeString()}` : "";
    adoption.append(el("dt", `${p} first checks waiting`), el("dd", `${f.waiting}${by}`, { "data-field": `${p}-waiting` }));
  }
  for (const b of stats.backfills) {
    const text = `${b.state}: ${b.pages_read} pages, ${b.found} found${b.last_error ? ` (${b.last_error})` : ""}`;
    adoption.append(el("dt", `${b.provider} backfill`), el("dd", text, { "data-field": `${b.provider}-backfill` }));
  }
}

// Which providers this deployment serves (GET /healthz), the variables each other one lacks,
// and the search's provider choices: the enabled ones.
function renderSetup(setup) {
  const missing = Object.entries(setup.not_configured);
  table("setup", [["provider"], ["setup"]], [
    ...setup.enabled.map((p) => row([p, el("span", "enabled", { class: "good" })], { "data-provider": p, "data-setup": "enabled" })),
    ...missing.map(([p, variables]) => {
      const cell = el("div", null, { class: "variables" });
      cell.append(el("span", "not configured, set:", { class: "warn" }));
      for (const name of variables) cell.append(el("code", name));
      return row([p, cell], { "data-provider": p, "data-setup": "not_configured" });
    }),
  ]);
  const select = $("search-provider");
  const chosen = select.value;
  select.replaceChildren(...setup.enabled.map((p) => el("option", p, { value: p })));
  if (setup.enabled.length === 0) select.append(el("option", "no provider enabled", { value: "", disabled: "" }));
  if (setup.enabled.includes(chosen)) select.value = chosen;
}

// Open alerts first (what needs a person now), then the latest resolved ones; under the
// table, whether alerts reach ALERT_WEBHOOK_URL.
function renderAlerts(alerts) {
  const rows = [...alerts.open, ...alerts.recent.slice(0, 5)].map((a) => {
    const state =
      a.state === "open"
        ? el("span", a.severity, { class: a.severity === "critical" ? "bad" : "warn" })
        : el("span", "resolved", { class: "good" });
    return row([state, a.alert, a.text, ago(a.raised_at), a.resolved_at ? ago(a.resolved_at) : "open"], {
      "data-alert": a.alert,
      "data-state": a.state,
    });
  });
  table("alerts", [["state"], ["alert"], ["what"], ["raised"], ["resolved"]], rows);
  const d = alerts.delivery;
  const note = $("alert-delivery");
  note.className = d.failing > 0 || d.dead > 0 ? "warn" : "note";
  note.textContent = !d.configured
    ? "Alerts are listed here only: ALERT_WEBHOOK_URL is not set."
    : d.failing > 0 || d.dead > 0
      ? `The alert endpoint is failing: ${d.failing} retrying, ${d.dead} dead (last answer: ${d.last_error ?? "–"}).`
      : `Sent to the alert endpoint: ${d.delivered} delivered, ${d.pending} waiting.`;
  note.setAttribute("data-failing", String(d.failing + d.dead));
}

function renderChart(runs) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const points = runs
    .filter((r) => r.statuses)
    .map((r) => {
      const totals = {};
      for (const byStatus of Object.values(r.statuses)) {
        for (const [status, count] of Object.entries(byStatus)) totals[status] = (totals[status] ?? 0) + count;
      }
      return { at: Date.parse(r.scheduled_at), totals };
    })
    .sort((a, b) => a.at - b.at);
  const legend = $("legend");
  legend.replaceChildren();
  if (points.length === 0) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "20");
    text.setAttribute("y", "110");
    text.textContent = "No cron run yet.";
    svg.append(text);
    return;
  }
  const [width, height, pad] = [720, 220, 16];
  const first = points[0].at;
  const span = Math.max(points[points.length - 1].at - first, 1);
  const max = Math.max(1, ...points.flatMap((p) => Object.values(p.totals)));
  const x = (at) => pad + ((at - first) / span) * (width - 2 * pad);
  const y = (count) => height - pad - (count / max) * (height - 2 * pad);
  for (const status of STATUSES) {
    if (!points.some((p) => p.totals[status])) continue;
    const line = document.createElementNS(ns, "polyline");
    const coordinates = points.map((p) => `${x(p.at).toFixed(1)},${y(p.totals[status] ?? 0).toFixed(1)}`);
    // A single run draws a short flat line so it can be seen.
    if (points.length === 1) coordinates.push(`${(width - pad).toFixed(1)},${y(points[0].totals[status] ?? 0).toFixed(1)}`);
    line.setAttribute("points", coordinates.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[status]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("data-status", status);
    svg.append(line);
    const swatch = el("span", `${status} (${points[points.length - 1].totals[status] ?? 0})`);
    swatch.style.setProperty("--swatch", COLORS[status]);
    legend.append(swatch);
  }
}

function renderRuns(runs) {
  table(
    "runs",
    [["scheduled"], ["took (ms)", true], ["due", true], ["queued", true], ["skipped"], ["webhooks", true], ["changes", true], ["drift", true]],
    runs.slice(0, 12).map((r) => {
      const activity = Object.values(r.activity ?? {});
      const sum = (field) => activity.reduce((total, a) => total + a[field], 0);
      return row([
        new Date(r.scheduled_at).toLocaleString(),
        r.duration_ms,
        r.due,
        r.enqueued,
        r.skipped.join(", ") || "–",
        sum("webhooks"),
        sum("changes"),
        sum("drift"),
      ]);
    }),
  );
}

function renderStuck(subjects) {
  table(
    "stuck",
    [["subject"], ["status"], ["since"], ["last check"], ["check error"]],
    subjects.map((s) => {
      const tr = row([`${s.provider}/${s.ref}`, s.status, ago(s.status_at), ago(s.last_checked_at), s.check_error], {
        class: "clickable",
        tabindex: "0",
        "data-ref": s.ref,
      });
      const open = () => showHistory(s.provider, s.ref);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (event) => event.key === "Enter" && open());
      return tr;
    }),
  );
}

function renderNotifications(pending, dead) {
  const rows = [...dead, ...pending].map((n) => {
    let action = "–";
    if (n.state === "dead") {
      action = el("button", "Redeliver", { type: "button", "data-redeliver": n.id });
      action.addEventListener("click", async () => {
        action.disabled = true;
        try {
          await api(`/v1/notifications/${encodeURIComponent(n.id)}/redeliver`, { method: "POST" });
          await refresh();
        } catch (error) {
          report(error);
        }
      });
    }
    return row([n.id, n.type, `${n.provider}/${n.ref}`, n.state, n.attempts, n.last_response, action], {
      "data-notification": n.id,
    });
  });
  table("notifications", [["id"], ["type"], ["subject"], ["state"], ["attempts", true], ["last answer"], [""]], rows);
}

async function showHistory(provider, ref) {
  const ticket = ++historyTicket;
  const path = `/v1/subjects/${encodeURIComponent(provider)}/${encodeURIComponent(ref)}`;
  try {
    const [subject, history] = await Promise.all([api(`${path}?consistency=strong`), api(`${path}/events?limit=100`)]);
    if (ticket !== historyTicket) return;
    $("history-title").textContent = `${provider}/${ref}`;
    $("history-missing").hidden = true;
    const facts = $("history-subject");
    facts.replaceChildren();
    for (const [term, value] of [
      ["status", subject.status],
      ["provider says", [subject.provider_status, subject.sub_status].filter(Boolean).join(" / ") || "–"],
      ["AML", subject.aml ? `${subject.aml.status} (${subject.aml.risk_level ?? "–"})` : "–"],
      ["since", subject.status_at ? new Date(subject.status_at).toLocaleString() : "–"],
      ["last check", ago(subject.last_checked_at)],
      ["next check", ago(subject.next_check_at)],
      ["version", subject.version],
    ]) {
      facts.append(el("dt", term), el("dd", value, { "data-field": term }));
    }
    table(
      "history-events",
      [["at"], ["type"], ["kind"], ["announces"], ["change"], ["source"], ["drift"]],
      history.events.map((e) =>
        row(
          [
            new Date(e.at).toLocaleString(),
            e.type,
            e.kind,
            e.announces,
            e.type === "change" ? `${e.from_status} → ${e.to_status}` : "–",
            e.source,
            e.drift ? el("span", "drift", { class: "bad" }) : "–",
          ],
          { "data-event": e.type },
        ),
      ),
    );
    facts.hidden = false;
    $("history-events").hidden = false;
    $("history").hidden = false;
  } catch (error) {
    if (ticket !== historyTicket) return;
    // A subject that is not tracked is an answer, not a failure.
    if (error instanceof ApiFailure && error.status === 404) showMissing(provider, ref);
    else report(error);
  }
}

// A subject kyc-edge does not track (the API answered 404): say so instead of an empty history.
function showMissing(provider, ref) {
  $("history-title").textContent = `${provider}/${ref}`;
  const missing = $("history-missing");
  missing.textContent = `Not tracked: kyc-edge has no ${provider} subject with this reference. Track it with PUT /v1/subjects/${provider}/{ref} or an import.`;
  missing.hidden = false;
  $("history-subject").replaceChildren();
  $("history-subject").hidden = true;
  $("history-events").replaceChildren();
  $("history-events").hidden = true;
  $("history").hidden = false;
}

function report(error) {
  if (error instanceof Unauthorized) return signOut(error.message);
  $("problem").textContent = `Could not load everything: ${error.message}`;
}

// Loads every panel. The API answering without refusing the token is what signs in; an answer
// arriving after a sign-out (or for another token) is dropped.
async function refresh() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const current = () => token !== null && sessionStorage.getItem(TOKEN_KEY) === token;
  try {
    const [alerts, stats, runs, stuck, pending, dead, health] = await Promise.all([
      api("/v1/alerts?limit=25"),
      api("/v1/stats"),
      api("/v1/runs?limit=96"),
      api("/v1/subjects/stuck?limit=15"),
      api("/v1/notifications?state=pending&limit=25"),
      api("/v1/notifications?state=dead&limit=25"),
      api("/healthz"),
    ]);
    if (!current()) return;
    show(true);
    renderAlerts(alerts);
    renderStats(stats);
    renderSetup(health.providers);
    renderChart(runs.runs);
    renderRuns(runs.runs);
    renderStuck(stuck.subjects);
    renderNotifications(pending.notifications, dead.notifications);
    $("problem").textContent = "";
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (!current()) return;
    // The token was not refused (the API failed otherwise): the board says what failed.
    if (!(error instanceof Unauthorized)) show(true);
    report(error);
  }
}

function schedule() {
  clearInterval(timer);
  const every = Number($("interval").value);
  if (every > 0) timer = setInterval(refresh, every);
}

// Everything marked data-signed-in (the board, the header's controls and search) shows only
// once the API has accepted the token; before that, and after signing out, the sign-in form.
function show(yes) {
  signedIn = yes;
  $("login").hidden = yes;
  for (const node of document.querySelectorAll("[data-signed-in]")) node.hidden = !yes;
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  historyTicket++;
  $("history").hidden = true;
  $("search-ref").value = "";
  $("updated").textContent = "";
  $("login-error").textContent = message;
  show(false);
}

async function signIn() {
  const button = $("login-form").querySelector("button");
  button.disabled = true;
  try {
    await refresh();
  } finally {
    button.disabled = false;
  }
  if (signedIn) schedule();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("login-error").textContent = "";
    signIn();
  });
  $("signout").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", refresh);
  $("interval").addEventListener("change", schedule);
  $("close-history").addEventListener("click", () => {
    historyTicket++;
    $("history").hidden = true;
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const provider = $("search-provider").value;
    const ref = $("search-ref").value.trim();
    if (provider && ref) showHistory(provider, ref);
  });
  $("enable").addEventListener("click", async () => {
    try {
      await api("/v1/notifications/enable", { method: "POST" });
      await refresh();
    } catch (error) {
      report(error);
    }
  });
  if (sessionStorage.getItem(TOKEN_KEY)) signIn();
  else show(false);
});
