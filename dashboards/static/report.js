// The alarm-handling report: one night of one organisation, for deviation
// reporting (avvikelserapportering), as tables, charts, and CSV and PDF
// downloads. It opens on tonight (the server decides which night that is, by
// the rule set's night window). The charts are SVG drawn by the server, the
// same drawing the PDF holds, in the page's language.

import { HttpError } from "./http.js";
import { getLang, t } from "./i18n.js";
import {
  $,
  cell,
  describeError,
  errorLine,
  formatDuration,
  formatTime,
  getJson,
  initPage,
  signedInReader,
} from "./pages.js";

const PAGE = "/report";

const MESSAGES = {
  sv: {
    "report.title": "Larmhantering per natt",
    "report.choose": "Välj natt",
    "report.date": "Natten som börjar",
    "report.org": "Organisation",
    "report.show": "Visa rapport",
    "report.csv": "Ladda ner CSV",
    "report.pdf": "Ladda ner PDF",
    "report.tonight": "I natt",
    "report.tonightRule": "Rapporten öppnar på i natt: natten enligt regeluppsättningens nattfönster, på Stockholms klocka. På dagen är det den kommande natten, efter midnatt den som pågår.",
    "report.charts": "Diagram",
    "report.chartsFailed": "Diagrammen kunde inte hämtas ({status}): {detail}",
    "night.tonight": "I natt",
    "night.other": "Natten som börjar {date}",
    "night.window": "nattfönster {window}, {tz}",
    "night.coming": "Natten har inte börjat än.",
    "night.in_progress": "Natten pågår: siffrorna gäller fram till {time}.",
    "night.ended": "Natten är slut.",
    "report.summary": "Sammanfattning",
    "report.times": "Tid till kvittering och till plats",
    "report.byKind": "Larm per typ och prioritet",
    "report.escalations": "Eskalerade larm",
    "report.floods": "Larmstormar (många kvitteringar på kort tid)",
    "report.stale": "Larm som väntade för länge på kvittering",
    "report.chattering": "Enheter som larmar om och om igen",
    "report.none": "Inga",
    "report.noOrgs": "Det finns ingen organisation att visa.",
    "report.role": "Rapporten kräver rollen samordnare, granskare eller administratör.",
    "sum.night": "Natten",
    "sum.alerts": "Larm",
    "sum.unacknowledged": "Aldrig kvitterade",
    "sum.escalations": "Eskalerade",
    "sum.floods": "Larmstormar",
    "sum.stale": "Väntade över {min} min",
    "sum.asOf": "Beräknad",
    "sum.floodRule": "Larmstorm: fler än {count} kvitteringar av samma person inom {min} min.",
    "col.priority": "Prioritet",
    "col.alerts": "Larm",
    "col.ackCount": "Kvitterade",
    "col.ackMedian": "Kvittering, median",
    "col.ackP90": "Kvittering, p90",
    "col.ackWorst": "Kvittering, längst",
    "col.arrCount": "Framme",
    "col.arrMedian": "Till plats, median",
    "col.arrP90": "Till plats, p90",
    "col.arrWorst": "Till plats, längst",
    "col.kind": "Typ",
    "col.count": "Antal",
    "col.opened": "Larmet kom",
    "col.device": "Enhet",
    "col.staff": "Personal",
    "col.from": "Från",
    "col.to": "Till",
    "col.acks": "Kvitteringar",
    "col.waited": "Väntade",
    "col.acknowledged": "Kvitterat",
    "col.repeats": "Upprepningar",
    "prio.all": "Alla",
    "stale.open": "Fortfarande öppet",
    "stale.never": "Aldrig (stängdes av enheten)",
  },
  en: {
    "report.title": "Alarm handling per night",
    "report.choose": "Choose a night",
    "report.date": "The night starting",
    "report.org": "Organisation",
    "report.show": "Show report",
    "report.csv": "Download CSV",
    "report.pdf": "Download PDF",
    "report.tonight": "Tonight",
    "report.tonightRule": "The report opens on tonight: the night by the rule set's night window, on the Stockholm clock. During the day that is the coming night, after midnight the one in progress.",
    "report.charts": "Charts",
    "report.chartsFailed": "The charts could not be loaded ({status}): {detail}",
    "night.tonight": "Tonight",
    "night.other": "The night starting {date}",
    "night.window": "night window {window}, {tz}",
    "night.coming": "The night has not begun yet.",
    "night.in_progress": "The night is in progress: figures up to {time}.",
    "night.ended": "The night is over.",
    "report.summary": "Summary",
    "report.times": "Time to acknowledge and to arrive",
    "report.byKind": "Alerts by kind and priority",
    "report.escalations": "Escalated alerts",
    "report.floods": "Floods (many acknowledgements in a short time)",
    "report.stale": "Alerts that waited too long to be acknowledged",
    "report.chattering": "Devices alerting again and again",
    "report.none": "None",
    "report.noOrgs": "There is no organisation to show.",
    "report.role": "The report needs the coordinator, auditor or administrator role.",
    "sum.night": "Night",
    "sum.alerts": "Alerts",
    "sum.unacknowledged": "Never acknowledged",
    "sum.escalations": "Escalated",
    "sum.floods": "Floods",
    "sum.stale": "Waited over {min} min",
    "sum.asOf": "Computed",
    "sum.floodRule": "Flood: more than {count} acknowledgements by one person within {min} min.",
    "col.priority": "Priority",
    "col.alerts": "Alerts",
    "col.ackCount": "Acknowledged",
    "col.ackMedian": "Acknowledge, median",
    "col.ackP90": "Acknowledge, p90",
    "col.ackWorst": "Acknowledge, worst",
    "col.arrCount": "Arrived",
    "col.arrMedian": "To arrival, median",
    "col.arrP90": "To arrival, p90",
    "col.arrWorst": "To arrival, worst",
    "col.kind": "Kind",
    "col.count": "Count",
    "col.opened": "Raised",
    "col.device": "Device",
    "col.staff": "Staff",
    "col.from": "From",
    "col.to": "To",
    "col.acks": "Acknowledgements",
    "col.waited": "Waited",
    "col.acknowledged": "Acknowledged",
    "col.repeats": "Repeats",
    "prio.all": "All",
    "stale.open": "Still open",
    "stale.never": "Never (the device cleared it)",
  },
};

const CHARTS = ["hourly", "spread"];

const state = { report: null, charts: 0 };

/** The rule's title from the rule set, in the page's language; the kind for a rule no longer in it. */
function ruleLabel({ rule_id: ruleId, kind }) {
  const titles = state.report.titles[ruleId];
  return titles ? titles[getLang()] : kind;
}

function fill(tableId, rows) {
  const table = $(tableId);
  const body = table.querySelector("tbody");
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(t("report.none"), "empty-row");
    td.colSpan = table.querySelectorAll("thead th").length;
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...rows.map(({ cells, data }) => {
      const tr = document.createElement("tr");
      Object.assign(tr.dataset, data ?? {});
      tr.append(...cells.map(([text, className]) => cell(text, className)));
      return tr;
    }),
  );
}

function summaryItem(label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function draw() {
  const r = state.report;
  if (!r) {
    return;
  }
  $("report").hidden = false;
  const note = $("report-night");
  note.dataset.phase = r.phase;
  note.dataset.tonight = String(r.tonight);
  const which = r.tonight ? t("night.tonight") : t("night.other", { date: r.date });
  const phase = t(`night.${r.phase}`, { time: formatTime(r.as_of) });
  note.textContent = `${which} (${t("night.window", { window: r.window, tz: r.timezone })}). ${phase}`;
  $("report-summary").replaceChildren(
    ...summaryItem(t("sum.night"), `${formatTime(r.start)} – ${formatTime(r.end)}`),
    ...summaryItem(t("sum.alerts"), String(r.alerts)),
    ...summaryItem(t("sum.unacknowledged"), String(r.unacknowledged)),
    ...summaryItem(t("sum.escalations"), String(r.escalations.length)),
    ...summaryItem(t("sum.floods"), String(r.floods.length)),
    ...summaryItem(t("sum.stale", { min: r.stale_after_min }), String(r.stale.length)),
    ...summaryItem(t("sum.asOf"), formatTime(r.as_of)),
  );
  const floodRule = document.createElement("p");
  floodRule.className = "muted small";
  floodRule.textContent = t("sum.floodRule", { count: r.flood_count, min: r.flood_window_min });
  $("report-summary").append(floodRule);

  const timing = (priority, alerts, ack, arr) => ({
    data: { priority: priority ?? "all" },
    cells: [
      [priority === null ? t("prio.all") : String(priority)],
      [String(alerts), "num"],
      [String(ack.count), "num"],
      [formatDuration(ack.median_s), "num"],
      [formatDuration(ack.p90_s), "num"],
      [formatDuration(ack.worst_s), "num"],
      [String(arr.count), "num"],
      [formatDuration(arr.median_s), "num"],
      [formatDuration(arr.p90_s), "num"],
      [formatDuration(arr.worst_s), "num"],
    ],
  });
  fill("report-times", [
    timing(null, r.alerts, r.acknowledge, r.arrival),
    ...r.by_priority.map((p) => timing(p.priority, p.alerts, p.acknowledge, p.arrival)),
  ]);
  fill(
    "report-by-kind",
    r.by_kind.map((k) => ({
      data: { kind: k.kind, priority: String(k.priority) },
      cells: [[String(k.priority)], [ruleLabel(k)], [String(k.count), "num"]],
    })),
  );
  fill(
    "report-escalations",
    r.escalations.map((e) => ({
      data: { alertId: e.alert_id },
      cells: [[formatTime(e.opened_at), "nowrap"], [String(e.priority)], [ruleLabel(e)], [e.device_id, "mono"]],
    })),
  );
  fill(
    "report-floods",
    r.floods.map((f) => ({
      data: { actor: f.actor },
      cells: [[f.actor, "mono"], [formatTime(f.start), "nowrap"], [formatTime(f.end), "nowrap"], [String(f.count), "num"]],
    })),
  );
  fill(
    "report-stale",
    r.stale.map((s) => ({
      data: { alertId: s.alert_id, stillOpen: String(s.still_open) },
      cells: [
        [formatTime(s.opened_at), "nowrap"],
        [String(s.priority)],
        [ruleLabel(s)],
        [s.device_id, "mono"],
        [formatDuration(s.waited_s), "num"],
        [s.acknowledged_at ? formatTime(s.acknowledged_at) : t(s.still_open ? "stale.open" : "stale.never")],
      ],
    })),
  );
  fill(
    "report-chattering",
    r.chattering.map((c) => ({
      data: { device: c.device_id },
      cells: [[c.device_id, "mono"], [c.rules.map(ruleLabel).join(", ")], [String(c.alerts), "num"], [String(c.repeats), "num"]],
    })),
  );
}

/** The query of the night chosen: no date asks the server for tonight. */
function params(extra = {}) {
  const p = new URLSearchParams({ org: $("r-org").value, ...extra });
  if ($("r-date").value) {
    p.set("date", $("r-date").value);
  }
  return p;
}

function updateLinks() {
  $("report-csv").href = `/api/reports/night?${params({ format: "csv" })}`;
  $("report-pdf").href = `/api/reports/night.pdf?${params({ lang: getLang() })}`;
}

/** One chart as an SVG element, parsed as XML (never as HTML) from the server's drawing. */
async function fetchChart(name) {
  const path = `/api/reports/night.svg?${params({ chart: name, lang: getLang() })}`;
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "image/svg+xml" }, credentials: "same-origin" });
  } catch {
    throw new HttpError(0, t("page.network"));
  }
  const body = await response.text();
  if (!response.ok) {
    throw new HttpError(response.status, response.statusText);
  }
  const parsed = new DOMParser().parseFromString(body, "image/svg+xml");
  return document.importNode(parsed.documentElement, true);
}

async function drawCharts() {
  // A newer request (another night, a language switch) wins over a slower older one.
  const mine = ++state.charts;
  try {
    const lang = getLang();
    const drawn = await Promise.all(CHARTS.map(fetchChart));
    if (mine === state.charts) {
      CHARTS.forEach((name, i) => {
        const box = $(`chart-${name}`);
        box.replaceChildren(drawn[i]);
        // Which language the drawing is in: a test (or a reader) can tell a redraw has come.
        box.dataset.lang = lang;
      });
    }
  } catch (exc) {
    if (mine === state.charts) {
      const status = exc instanceof HttpError ? exc.status : 0;
      showError({ key: "report.chartsFailed", params: { status, detail: exc.message } });
    }
  }
}

function redraw() {
  draw();
  if (state.report) {
    updateLinks();
    drawCharts();
  }
}

const showError = errorLine("report-error");

async function show() {
  showError("");
  if (!$("r-org").value) {
    return;
  }
  const submit = $("report-submit");
  submit.disabled = true;
  try {
    state.report = await getJson(`/api/reports/night?${params()}`, PAGE);
    // Tonight asked without a date: show which date the server took it to be.
    $("r-date").value = state.report.date;
    updateLinks();
    draw();
    await drawCharts();
  } catch (exc) {
    state.report = null;
    $("report").hidden = true;
    showError(describeError(exc));
  } finally {
    submit.disabled = false;
  }
}

function onShow(event) {
  event.preventDefault();
  show();
}

function onTonight() {
  $("r-date").value = "";
  show();
}

async function start() {
  initPage(MESSAGES, redraw);
  $("report-form").addEventListener("submit", onShow);
  $("report-form").addEventListener("input", updateLinks);
  $("report-tonight").addEventListener("click", onTonight);
  const me = await signedInReader({
    page: PAGE,
    roleMessage: "report.role",
    showError,
    submit: "report-submit",
  });
  if (me === null) {
    $("report-tonight").disabled = true;
    return;
  }
  let orgs = [];
  try {
    orgs = await getJson("/api/reports/organisations", PAGE);
  } catch (exc) {
    showError(describeError(exc));
  }
  if (orgs.length === 0) {
    orgs = me.orgs.filter((o) => o !== "*");
  }
  $("r-org").replaceChildren(
    ...orgs.map((org) => {
      const option = document.createElement("option");
      option.value = org;
      option.textContent = org;
      return option;
    }),
  );
  if (orgs.length === 0) {
    showError({ key: "report.noOrgs" });
  }
  updateLinks();
  // It opens on tonight: the night in progress, or the coming one during the day.
  if (orgs.length > 0) {
    await show();
  }
  document.body.dataset.ready = "true";
}

start();
