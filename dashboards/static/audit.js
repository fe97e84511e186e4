// The audit view: who opened which door, when, and were they allowed to.
//
// Searches /api/audit/entries (every search is itself written to the access
// log by the server), flags openings the access directory does not allow,
// offers the same search as CSV, and shows whether the log's chain verifies.

import { t } from "./i18n.js";
import {
  $,
  cell,
  describeError,
  errorLine,
  formatTime,
  getJson,
  initPage,
  isoToStockholmLocal,
  messageText,
  signedInReader,
  stockholmToIso,
} from "./pages.js";

const PAGE = "/audit";

const MESSAGES = {
  sv: {
    "audit.title": "Granskning av åtkomstloggen",
    "audit.search": "Sök",
    "audit.door": "Dörr / enhet",
    "audit.doorHint": "t.ex. lock-0001",
    "audit.person": "Brukare",
    "audit.personHint": "t.ex. Lgh 1101",
    "audit.key": "Nyckel / personal",
    "audit.keyHint": "t.ex. key-0042",
    "audit.org": "Organisation",
    "audit.orgHint": "alla",
    "audit.since": "Från",
    "audit.until": "Till",
    "audit.outside": "Bara öppningar utanför plan eller arbetspass",
    "audit.zoneNote": "Tider i svensk tid (Europe/Stockholm).",
    "audit.submit": "Sök",
    "audit.csv": "Exportera CSV",
    "audit.extract": "Registerutdrag för brukaren (CSV)",
    "audit.results": "Träffar",
    "audit.notYet": "Sök för att visa poster.",
    "audit.count": "{n} poster",
    "audit.none": "Inga poster matchar sökningen.",
    "audit.truncated": "Visar de första {n} posterna – begränsa sökningen för att se resten.",
    "audit.notJudged": "Ingen behörighetskatalog är importerad, så öppningar bedöms inte.",
    "audit.badRange": "”Från” måste vara före ”Till”.",
    "audit.role": "Granskning kräver rollen granskare eller administratör.",
    "audit.refusedRow": "Utanför plan/pass",
    "chain.checking": "Kontrollerar loggens kedja…",
    "chain.ok": "Loggens kedja är obruten: {checked} poster kontrollerade.",
    "chain.broken": "Loggen har ändrats: {org}, post {seq} – {why}",
    "chain.error": "Kedjan kunde inte kontrolleras: {detail}",
    "col.time": "Tid",
    "col.door": "Dörr / enhet",
    "col.person": "Brukare",
    "col.actor": "Nyckel / personal",
    "col.action": "Händelse",
    "col.refused": "Avvikelse",
    "col.org": "Organisation",
    "action.unlock": "Upplåst",
    "action.lock": "Låst",
    "action.door_opened": "Dörr öppnad",
    "action.door_closed": "Dörr stängd",
    "action.cabinet_opened": "Skåp öppnat",
    "action.cabinet_closed": "Skåp stängt",
    "action.read": "Läsning",
    "action.acknowledge": "Kvittering",
    "action.resolve": "Åtgärdat",
    "action.change": "Ändring",
    "action.remote_view": "Fjärrtillsyn",
    "action.export": "Export",
    "action.security": "Säkerhetshändelse",
    // The server's own labels (rules/access.py, REASON_LABELS); a reason this
    // page does not know yet is shown as the server labels it.
    "reason.unknown_key": "okänd nyckel",
    "reason.key_blocked": "spärrad nyckel",
    "reason.key_expired": "nyckel utanför giltighetstid",
    "reason.not_granted": "ej behörig för dörren",
    "reason.off_shift": "utanför arbetspass",
    "reason.outside_visit_plan": "utanför besöksplan",
    "reason.unknown_staff": "okänd personal",
    "reason.view_not_granted": "ej behörig för tillsyn",
    "reason.no_consent": "samtycke saknas",
    "reason.outside_agreed_times": "utanför överenskommen tid",
  },
  en: {
    "audit.title": "Access log audit",
    "audit.search": "Search",
    "audit.door": "Door / device",
    "audit.doorHint": "e.g. lock-0001",
    "audit.person": "Care recipient",
    "audit.personHint": "e.g. Lgh 1101",
    "audit.key": "Key / staff",
    "audit.keyHint": "e.g. key-0042",
    "audit.org": "Organisation",
    "audit.orgHint": "all",
    "audit.since": "From",
    "audit.until": "To",
    "audit.outside": "Only openings outside the visit plan or shift",
    "audit.zoneNote": "Times in Swedish time (Europe/Stockholm).",
    "audit.submit": "Search",
    "audit.csv": "Export CSV",
    "audit.extract": "Extract for the care recipient (CSV)",
    "audit.results": "Results",
    "audit.notYet": "Search to show entries.",
    "audit.count": "{n} entries",
    "audit.none": "No entries match the search.",
    "audit.truncated": "Showing the first {n} entries – narrow the search to see the rest.",
    "audit.notJudged": "No access directory has been imported, so openings are not judged.",
    "audit.badRange": "“From” must be before “To”.",
    "audit.role": "The audit view needs the auditor or administrator role.",
    "audit.refusedRow": "Outside plan/shift",
    "chain.checking": "Checking the log's chain…",
    "chain.ok": "The log's chain is intact: {checked} entries checked.",
    "chain.broken": "The log has been altered: {org}, entry {seq} – {why}",
    "chain.error": "The chain could not be checked: {detail}",
    "col.time": "Time",
    "col.door": "Door / device",
    "col.person": "Care recipient",
    "col.actor": "Key / staff",
    "col.action": "Action",
    "col.refused": "Deviation",
    "col.org": "Organisation",
    "action.unlock": "Unlocked",
    "action.lock": "Locked",
    "action.door_opened": "Door opened",
    "action.door_closed": "Door closed",
    "action.cabinet_opened": "Cabinet opened",
    "action.cabinet_closed": "Cabinet closed",
    "action.read": "Read",
    "action.acknowledge": "Acknowledged",
    "action.resolve": "Resolved",
    "action.change": "Change",
    "action.remote_view": "Remote view",
    "action.export": "Export",
    "action.security": "Security event",
    "reason.unknown_key": "unknown key",
    "reason.key_blocked": "blocked key",
    "reason.key_expired": "key outside its validity",
    "reason.not_granted": "not granted for the door",
    "reason.off_shift": "off shift",
    "reason.outside_visit_plan": "outside the visit plan",
    "reason.unknown_staff": "unknown staff",
    "reason.view_not_granted": "not granted remote supervision",
    "reason.no_consent": "no consent on record",
    "reason.outside_agreed_times": "outside the agreed times",
  },
};

const state = { page: null, chain: null, chainError: "" };

function filters() {
  const params = new URLSearchParams();
  const text = { door: "f-door", person: "f-person", key: "f-key", org: "f-org" };
  for (const [name, id] of Object.entries(text)) {
    const value = $(id).value.trim();
    if (value) {
      params.set(name, value);
    }
  }
  for (const [name, id] of [["since", "f-since"], ["until", "f-until"]]) {
    const iso = stockholmToIso($(id).value);
    if (iso) {
      params.set(name, iso);
    }
  }
  if ($("f-outside").checked) {
    params.set("outside_plan", "true");
  }
  return params;
}

function updateLinks() {
  // The export always carries the filters on screen, searched or not yet.
  const params = filters();
  params.set("format", "csv");
  $("audit-csv").href = `/api/audit/entries?${params}`;
  const person = $("f-person").value.trim();
  const extract = $("audit-extract");
  extract.hidden = !person;
  if (person) {
    const p = new URLSearchParams({ person, format: "csv" });
    const org = $("f-org").value.trim();
    if (org) {
      p.set("org", org);
    }
    extract.href = `/api/audit/extract?${p}`;
  }
}

function reasonLabel(code, swedish) {
  const key = `reason.${code}`;
  const translated = t(key);
  return translated === key ? swedish || code : translated;
}

function row(entry) {
  const tr = document.createElement("tr");
  tr.dataset.actor = entry.actor;
  tr.dataset.subject = entry.subject;
  tr.dataset.org = entry.org;
  tr.dataset.seq = String(entry.seq);
  tr.dataset.action = entry.action;
  tr.append(cell(formatTime(entry.at), "nowrap"));
  tr.append(cell(entry.subject, "mono"));
  tr.append(cell(entry.person ?? ""));
  tr.append(cell(entry.actor, "mono"));
  const actionKey = `action.${entry.action}`;
  const action = t(actionKey);
  tr.append(cell(action === actionKey ? entry.action : action));
  const refused = cell("");
  if (entry.refused.length > 0) {
    tr.classList.add("refused");
    tr.dataset.refused = entry.refused.join(" ");
    const label = document.createElement("span");
    label.className = "sr-only";
    label.textContent = `${t("audit.refusedRow")}: `;
    refused.append(label);
    entry.refused.forEach((code, i) => {
      const flag = document.createElement("span");
      flag.className = "flag flag-refused";
      flag.dataset.reason = code;
      flag.textContent = reasonLabel(code, entry.refused_labels[i]);
      refused.append(flag);
    });
  }
  tr.append(refused);
  tr.append(cell(entry.org, "muted"));
  return tr;
}

function setStatus(text) {
  // Drawn by the script from now on: a language switch must not reset it.
  const status = $("audit-status");
  status.removeAttribute("data-i18n");
  status.textContent = text;
}

function drawResults() {
  const page = state.page;
  if (!page) {
    return;
  }
  const body = $("audit-results").querySelector("tbody");
  body.replaceChildren(...page.entries.map(row));
  const notes = [page.count === 0 ? t("audit.none") : t("audit.count", { n: page.count })];
  if (page.truncated) {
    notes.push(t("audit.truncated", { n: page.limit }));
  }
  if (!page.judged) {
    notes.push(t("audit.notJudged"));
  }
  setStatus(notes.join(" "));
}

function drawChain() {
  const status = $("chain-status");
  const text = $("chain-text");
  text.removeAttribute("data-i18n");
  if (state.chainError) {
    status.dataset.state = "error";
    text.textContent = t("chain.error", { detail: messageText(state.chainError) });
    return;
  }
  const chain = state.chain;
  if (!chain) {
    status.dataset.state = "unknown";
    text.textContent = t("chain.checking");
    return;
  }
  status.dataset.state = chain.ok ? "ok" : "broken";
  if (chain.ok) {
    text.textContent = t("chain.ok", { checked: chain.checked });
  } else {
    const b = chain.broken[0];
    text.textContent = t("chain.broken", { org: b.org, seq: b.seq, why: b.why });
    status.dataset.brokenOrg = b.org;
    status.dataset.brokenSeq = String(b.seq);
  }
}

async function checkChain() {
  const org = $("f-org").value.trim();
  state.chain = null;
  state.chainError = "";
  drawChain();
  try {
    state.chain = await getJson(`/api/audit/verify${org ? `?${new URLSearchParams({ org })}` : ""}`, PAGE);
  } catch (exc) {
    state.chainError = describeError(exc);
  }
  drawChain();
}

const showError = errorLine("audit-error");

async function onSearch(event) {
  event.preventDefault();
  showError("");
  const params = filters();
  if (params.has("since") && params.has("until") && params.get("since") >= params.get("until")) {
    showError({ key: "audit.badRange" });
    return;
  }
  updateLinks();
  const submit = $("audit-submit");
  submit.disabled = true;
  setStatus(t("page.loading"));
  $("audit-results").setAttribute("aria-busy", "true");
  try {
    state.page = await getJson(`/api/audit/entries?${params}`, PAGE);
    drawResults();
  } catch (exc) {
    state.page = null;
    $("audit-results").querySelector("tbody").replaceChildren();
    setStatus("");
    showError(describeError(exc));
  } finally {
    submit.disabled = false;
    $("audit-results").removeAttribute("aria-busy");
  }
  // A search names an organisation, perhaps another: show that chain's state.
  checkChain();
}

function redraw() {
  drawResults();
  drawChain();
}

async function start() {
  initPage(MESSAGES, redraw);
  $("f-since").value = isoToStockholmLocal(new Date(Date.now() - 24 * 3600 * 1000));
  updateLinks();
  $("audit-form").addEventListener("submit", onSearch);
  $("audit-form").addEventListener("input", updateLinks);
  const me = await signedInReader({
    page: PAGE,
    roleMessage: "audit.role",
    showError,
    submit: "audit-submit",
  });
  if (me === null) {
    return;
  }
  document.body.dataset.ready = "true";
  checkChain();
}

start();
