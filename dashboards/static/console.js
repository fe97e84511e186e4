// The night-patrol console: log in, follow the live alert queue, act on alerts.
//
// State comes from the server: a snapshot on (re)connect of /api/stream, then
// one event per change. Actions are POSTs with the session's CSRF token; the
// stream confirms them to every console, this one included.

// The remote-check panel hooks in through the "wgw:console" event (one script per page).
import "./remote.js";
import { renderEscalation, tickEscalations } from "./escalation.js";
import {
  closeDetail, confirmTakeover, detailAlertChanged, handlerName, initDetail, openDetail,
} from "./detail.js";
import { HttpError, readJson } from "./http.js";
import { getLang, has, setI18n, t } from "./i18n.js";
import { initPage, renderNav } from "./pages.js";
import {
  registerWorker, renderPush, showLinkedAlertFromUrl, startPush, stopPush, togglePush,
} from "./push.js";
import { renderPosition } from "./position.js";

const MUTE_KEY = "wgw.mute";
const AREA_KEY = "wgw.area";
const HEALTH_REFRESH_MS = 30_000;
// How often the gateway's own health (/healthz: spool, database, broker) is asked for.
const GATEWAY_HEALTH_MS = 5_000;
// Gateway problems that mean alarms are not being received at all: shown like a priority 1.
const CRITICAL_PROBLEMS = new Set([
  "broker_down",
  "broker_refused",
  "spool_full",
  "spool_write_failed",
]);
// Retry a stream the browser gave up on (an HTTP error rather than a network one).
const STREAM_RETRY_MS = 3_000;
// Several pages at once (a replay after a reconnect) make one sound, not a din.
const SOUND_GAP_MS = 2_500;
// An unacknowledged priority 1 sounds again this often, until acknowledged or muted.
const PAGE_REPEAT_MS = 15_000;

const HANDLER_ROLES = new Set(["operator", "coordinator", "admin"]);
const FINAL_STATES = new Set(["resolved", "cleared"]);
// How far along an alert is; an older answer never moves one back.
const STATE_RANK = { open: 0, acknowledged: 1, en_route: 2, on_site: 3, resolved: 4, cleared: 4 };
// The next steps from each state (rules/model.py, ALLOWED_TRANSITIONS); the first is Enter's.
const NEXT_ACTIONS = {
  open: ["acknowledge"],
  acknowledged: ["en-route", "resolve"],
  en_route: ["on-site", "resolve"],
  on_site: ["resolve"],
};
// Alerts of these categories change what the device-health panel shows.
const HEALTH_CATEGORIES = new Set(["contact", "battery"]);
const DEFAULT_OUTCOMES = ["help_given", "referred", "no_action_needed", "false_alarm", "device_fault"];

const state = {
  user: null,
  csrf: "",
  alerts: new Map(), // alert_id → alert JSON as the server sent it
  incidents: new Map(), // incident_id → incident JSON
  outcomes: DEFAULT_OUTCOMES,
  // Organisation (null: the shared rule set) → rule id → {category, icon, titles}
  // from /api/rules: how each rule's alerts are shown.
  presentation: new Map(),
  areas: [],
  area: readStorage(AREA_KEY) ?? "",
  muted: readStorage(MUTE_KEY) === "1",
  stream: null,
  streamRetry: 0,
  healthTimer: 0,
  ageTimer: 0,
  lastSound: 0,
  audio: null,
  resolving: null, // the alert id the resolve dialog is for
  // "<alert id> <action>" on its way to the server. Per action, not per alert:
  // the next step's button appears (from the live stream) before the last
  // step's answer is back, and a quick tap on it must not be lost.
  busy: new Set(),
  hadSnapshot: false, // whether this login's stream has sent its first snapshot
  pendingSound: false, // a page could not sound: audio is blocked until a gesture
  lastHealth: null, // the last device-health answer, redrawn on a language switch
  gatewayProblems: [], // [{code, detail}] from /healthz, most serious first
  gatewayTimer: 0,
  repeatTimer: 0,
};

const $ = (id) => document.getElementById(id);

function readStorage(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeStorage(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    // Only the preference is lost; the console still works.
  }
}

// ---------------------------------------------------------------- HTTP

/** A call to the API with the session's CSRF token; remote.js uses it too. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  if (method !== "GET" && state.csrf) {
    headers["X-CSRF-Token"] = state.csrf;
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return readJson(response);
}

// ---------------------------------------------------------------- login

/** A same-origin path from ?next=, or "" if there is none or it leads elsewhere. */
function safeNext() {
  const next = new URLSearchParams(window.location.search).get("next");
  // "//host" and "/\host" are read by browsers as another origin.
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) {
    return "";
  }
  try {
    const url = new URL(next, window.location.origin);
    return url.origin === window.location.origin ? url.pathname + url.search + url.hash : "";
  } catch {
    return "";
  }
}

function showLogin() {
  stopConsole();
  $("console").hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("mute-toggle").hidden = true;
  $("push-toggle").hidden = true;
  $("user-name").hidden = true;
  $("connection-lost").hidden = true;
  $("incidents").hidden = true;
  $("gateway-health").hidden = true;
  $("sound-blocked").hidden = true;
  $("login").hidden = false;
  $("login-password").value = "";
  $("login-username").focus();
}

async function onLogin(event) {
  event.preventDefault();
  const error = $("login-error");
  const submit = $("login-submit");
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  if (!username || !password) {
    setI18n(error, "login.failed");
    error.hidden = false;
    return;
  }
  error.hidden = true;
  submit.disabled = true;
  submit.textContent = t("login.busy");
  try {
    const user = await api("POST", "/api/auth/login", { username, password });
    const next = safeNext();
    if (next) {
      window.location.assign(next);
      return;
    }
    $("login").hidden = true;
    startConsole(user);
  } catch (exc) {
    if (!(exc instanceof HttpError)) {
      setI18n(error, "login.network");
    } else if (exc.status === 401) {
      setI18n(error, "login.failed");
    } else if (exc.status === 429) {
      setI18n(error, "login.rateLimited", { detail: exc.detail });
    } else {
      setI18n(error, "login.error", { status: exc.status });
    }
    error.hidden = false;
    $("login-password").select();
  } finally {
    submit.disabled = false;
    submit.textContent = t("login.submit");
  }
}

async function onLogout() {
  try {
    await stopPush().catch(() => {}); // best effort: a logout must never be held up
    await api("POST", "/api/auth/logout");
  } catch (exc) {
    // Already logged out (401) is what we wanted; anything else is worth telling.
    if (!(exc instanceof HttpError && exc.status === 401)) {
      notify({ key: "msg.failed", params: { detail: exc.message } }, "error");
    }
  }
  state.user = null;
  state.csrf = "";
  showLogin();
}

// ---------------------------------------------------------------- console

function isHandler() {
  return state.user !== null && HANDLER_ROLES.has(state.user.role);
}

function startConsole(user) {
  state.user = user;
  state.csrf = user.csrf_token;
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
  $("mute-toggle").hidden = false;
  renderUser();
  renderNav(user.role);
  // Device health is for those who handle alerts; others filter by the areas in the queue.
  $("device-health").hidden = !isHandler();
  renderMute();
  loadRules();
  if (isHandler()) {
    loadAreas();
    refreshHealth();
    state.healthTimer = window.setInterval(refreshHealth, HEALTH_REFRESH_MS);
  }
  state.ageTimer = window.setInterval(tickAges, 1000);
  refreshGatewayHealth();
  state.gatewayTimer = window.setInterval(refreshGatewayHealth, GATEWAY_HEALTH_MS);
  state.repeatTimer = window.setInterval(repeatPage, PAGE_REPEAT_MS);
  connectStream();
  // Panels in files of their own (remote.js) start and stop with the console.
  document.dispatchEvent(new CustomEvent("wgw:console", { detail: { user } }));
  startPush(api, notify).catch(() => {});
  showLinkedAlertFromUrl();
}

function stopConsole() {
  if (state.stream) {
    state.stream.close();
    state.stream = null;
  }
  window.clearTimeout(state.streamRetry);
  window.clearInterval(state.healthTimer);
  window.clearInterval(state.ageTimer);
  window.clearInterval(state.gatewayTimer);
  window.clearInterval(state.repeatTimer);
  state.gatewayProblems = [];
  state.alerts.clear();
  state.incidents.clear();
  state.hadSnapshot = false;
  $("queue").replaceChildren();
  closeDetail();
  document.dispatchEvent(new CustomEvent("wgw:console", { detail: { user: null } }));
}

function renderUser() {
  const el = $("user-name");
  if (!state.user) {
    el.hidden = true;
    return;
  }
  el.textContent = `${state.user.display_name || state.user.username} · ${t(`role.${state.user.role}`)}`;
  el.hidden = false;
}

async function loadRules() {
  try {
    const rulesets = await api("GET", "/api/rules");
    if (rulesets.length && rulesets[0].outcomes.length) {
      state.outcomes = rulesets[0].outcomes;
    }
    state.presentation = new Map(rulesets.map((r) => [r.org, r.presentation ?? {}]));
    renderQueue();
  } catch {
    // The shipped outcomes and the alerts' stored titles serve until the rule set can be read.
  }
}

/** How a rule's alerts are shown ({category, icon, titles}), from the rule set in force for its org. */
function presentationOf(alert) {
  const own = state.presentation.get(alert.org)?.[alert.rule_id];
  return own ?? state.presentation.get(null)?.[alert.rule_id] ?? null;
}

async function loadAreas() {
  try {
    state.areas = await api("GET", "/api/devices/areas");
  } catch {
    state.areas = [];
  }
  renderAreaOptions();
}

function renderAreaOptions() {
  const select = $("area-filter");
  const known = new Set(state.areas);
  for (const alert of state.alerts.values()) {
    if (alert.area) {
      known.add(alert.area);
    }
  }
  if (state.area) {
    known.add(state.area);
  }
  const wanted = [...known].sort((a, b) => a.localeCompare(b, "sv"));
  const have = [...select.options].slice(1).map((o) => o.value);
  if (wanted.join("\n") !== have.join("\n")) {
    const all = select.options[0];
    const options = wanted.map((area) => {
      const option = document.createElement("option");
      option.value = area;
      option.textContent = area;
      return option;
    });
    select.replaceChildren(all, ...options);
  }
  select.value = state.area;
}

function onAreaChange() {
  state.area = $("area-filter").value;
  writeStorage(AREA_KEY, state.area);
  renderQueue();
}

// ---------------------------------------------------------------- live stream

function connectStream() {
  if (state.stream) {
    state.stream.close();
  }
  const source = new EventSource("/api/stream");
  state.stream = source;
  source.addEventListener("open", () => {
    setConnected(true);
    refreshGatewayHealth(); // back after a break: say at once what the gateway reports now
  });
  source.addEventListener("error", () => {
    if (state.stream !== source) {
      return;
    }
    setConnected(false);
    // A network error keeps the EventSource reconnecting (with Last-Event-ID).
    // An HTTP error closes it for good: find out why, then open a new one.
    if (source.readyState === EventSource.CLOSED) {
      state.stream = null;
      state.streamRetry = window.setTimeout(recoverStream, STREAM_RETRY_MS);
    }
  });
  source.addEventListener("snapshot", (event) => {
    const data = JSON.parse(event.data);
    // After a reconnect the snapshot may hold priority-1 alarms raised meanwhile:
    // they page as they would have live. The first snapshot only fills the queue.
    const fresh = data.alerts.some(
      (a) => a.priority === 1 && a.state === "open" && !state.alerts.has(a.alert_id),
    );
    state.alerts = new Map(data.alerts.map((a) => [a.alert_id, a]));
    state.incidents = new Map(data.incidents.map((i) => [i.incident_id, i]));
    renderAll();
    if (fresh && state.hadSnapshot) {
      page();
    }
    state.hadSnapshot = true;
  });
  source.addEventListener("alert", (event) => {
    onAlertChange(JSON.parse(event.data));
  });
  source.addEventListener("incident", (event) => {
    const { incident } = JSON.parse(event.data);
    if (incident.cleared_at) {
      state.incidents.delete(incident.incident_id);
    } else {
      state.incidents.set(incident.incident_id, incident);
    }
    renderIncidents();
  });
}

async function recoverStream() {
  if (!state.user) {
    return;
  }
  try {
    const user = await api("GET", "/api/auth/me");
    state.user = user;
    state.csrf = user.csrf_token;
    connectStream();
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      showLogin();
      return;
    }
    state.streamRetry = window.setTimeout(recoverStream, STREAM_RETRY_MS);
  }
}

function setConnected(connected) {
  $("connection-lost").hidden = connected;
  $("queue").classList.toggle("stale", !connected);
  document.body.dataset.connection = connected ? "live" : "lost";
}

function onAlertChange(change) {
  const alert = change.alert;
  if (FINAL_STATES.has(alert.state)) {
    state.alerts.delete(alert.alert_id);
  } else {
    const known = state.alerts.get(alert.alert_id);
    // Unit and area come with stream bodies; keep them if one ever lacks them.
    state.alerts.set(alert.alert_id, { ...known, ...alert });
  }
  if (change.pages && alert.priority === 1 && !FINAL_STATES.has(alert.state)) {
    page();
  }
  if (change.effect === "AlertOpened" && (!state.area || alert.area === state.area)) {
    // Screen readers hear a new alert without having to look for it.
    $("announcer").textContent = [t("alert.new"), alertLabel(alert), alert.unit, alert.area]
      .filter(Boolean)
      .join(", ");
  }
  if (isHandler() && HEALTH_CATEGORIES.has(alert.category)) {
    scheduleHealth();
  }
  renderQueue();
  detailAlertChanged(alert);
}

// ---------------------------------------------------------------- queue

function byPriorityThenAge(a, b) {
  return a.priority - b.priority || Date.parse(a.opened_at) - Date.parse(b.opened_at) ||
    a.alert_id.localeCompare(b.alert_id);
}

function visibleAlerts() {
  return [...state.alerts.values()]
    .filter((a) => !state.area || a.area === state.area)
    .sort(byPriorityThenAge);
}

function renderAll() {
  renderAreaOptions();
  renderQueue();
  renderIncidents();
}

function renderQueue() {
  const list = $("queue");
  const focusedId = document.activeElement?.closest?.("[data-alert-id]")?.dataset.alertId;
  const focusedAction = document.activeElement?.dataset?.action;
  const existing = new Map([...list.children].map((li) => [li.dataset.alertId, li]));
  const focusedIndex = focusedId ? [...existing.keys()].indexOf(focusedId) : -1;
  const alerts = visibleAlerts();
  const wanted = new Set(alerts.map((a) => a.alert_id));
  for (const [id, li] of existing) {
    if (!wanted.has(id)) {
      li.remove();
      existing.delete(id);
    }
  }
  // Move only what is out of place: moving a node takes focus from it.
  let cursor = list.firstElementChild;
  for (const alert of alerts) {
    let li = existing.get(alert.alert_id);
    if (!li) {
      li = createItem(alert);
    }
    updateItem(li, alert);
    if (li === cursor) {
      cursor = cursor.nextElementSibling;
    } else {
      list.insertBefore(li, cursor);
    }
  }
  if (focusedId && wanted.has(focusedId) && !list.contains(document.activeElement)) {
    const li = list.querySelector(`[data-alert-id="${CSS.escape(focusedId)}"]`);
    const button = focusedAction && li.querySelector(`[data-action="${CSS.escape(focusedAction)}"]`);
    (button || li).focus();
  } else if (focusedIndex >= 0 && !wanted.has(focusedId)) {
    // The focused alert left the queue: keyboard users carry on from the same place.
    const items = list.children;
    (items[Math.min(focusedIndex, items.length - 1)] || $("queue-section")).focus();
  }
  renderAreaOptions();
  const total = state.alerts.size;
  $("queue-count").textContent = total ? `(${t("queue.count", { n: alerts.length })})` : "";
  const empty = $("queue-empty");
  empty.hidden = alerts.length > 0;
  empty.textContent = total ? t("queue.emptyFiltered") : t("queue.empty");
  document.title = alerts.length ? `(${alerts.length}) ${t("app.title")}` : t("app.title");
}

function createItem(alert) {
  const li = document.createElement("li");
  li.className = "alert";
  li.tabIndex = 0;
  li.dataset.alertId = alert.alert_id;
  const titleId = `alert-title-${alert.alert_id}`;
  li.setAttribute("aria-labelledby", titleId);

  const icon = document.createElement("div");
  icon.className = "alert-icon";
  icon.setAttribute("aria-hidden", "true");

  const main = document.createElement("div");
  main.className = "alert-main";
  const head = document.createElement("div");
  head.className = "alert-head";
  const prio = span("prio");
  const title = span("alert-title");
  title.id = titleId;
  const escalated = span("badge badge-escalated");
  escalated.dataset.i18n = "alert.escalated";
  const late = span("badge badge-late");
  late.dataset.i18n = "alert.late";
  const count = span("badge badge-count");
  head.append(prio, title, escalated, late, count);

  const meta = document.createElement("div");
  meta.className = "alert-meta";
  meta.append(span("unit"), span("area"), span("device"), span("position"));

  const status = document.createElement("div");
  status.className = "alert-status";
  status.append(span("state-label"), span("handler"));
  main.append(head, meta, status);

  const age = document.createElement("time");
  age.className = "alert-age";

  const actions = document.createElement("div");
  actions.className = "alert-actions";

  li.append(icon, main, age, actions);
  return li;
}

function span(className) {
  const el = document.createElement("span");
  el.className = className;
  return el;
}

function labelled(label, value) {
  return value ? `${label}: ${value}` : "";
}

/** Fill an item from its alert; its buttons are rebuilt only when its state changed. */
function updateItem(li, alert) {
  // The rule's look comes with the alert (and from /api/rules); "device" is the neutral one.
  const category = alert.category || presentationOf(alert)?.category || "device";
  const icon = alert.icon || presentationOf(alert)?.icon || "device";
  li.dataset.category = category;
  if (li.dataset.icon !== icon) {
    li.dataset.icon = icon;
    li.querySelector(".alert-icon").replaceChildren(iconSvg(icon));
  }
  li.dataset.deviceId = alert.device_id;
  li.dataset.area = alert.area ?? "";
  li.dataset.priority = String(alert.priority);
  li.dataset.kind = alert.kind;
  li.dataset.rule = alert.rule_id;
  li.classList.toggle("escalated", Boolean(alert.escalated));

  const prio = li.querySelector(".prio");
  prio.textContent = `P${alert.priority}`;
  prio.title = t("alert.priority", { n: alert.priority });
  li.querySelector(".alert-title").textContent = alertLabel(alert);
  const escalated = li.querySelector(".badge-escalated");
  escalated.hidden = !alert.escalated;
  escalated.textContent = t("alert.escalated");
  const late = li.querySelector(".badge-late");
  late.hidden = !alert.late;
  late.textContent = t("alert.late");
  const count = li.querySelector(".badge-count");
  count.hidden = !(alert.count > 1);
  count.textContent = t("alert.count", { n: alert.count });

  setText(li.querySelector(".unit"), labelled(t("alert.unit"), alert.unit));
  setText(li.querySelector(".area"), labelled(t("alert.area"), alert.area));
  li.querySelector(".device").textContent = labelled(t("alert.device"), alert.device_id);
  renderPosition(li.querySelector(".position"), alert.position, formatClock);
  li.querySelector(".state-label").textContent = t(`state.${alert.state}`);
  li.querySelector(".handler").textContent = alert.handled_by
    ? t("alert.handledBy", { name: handlerName(alert) })
    : t("alert.unhandled");

  const age = li.querySelector(".alert-age");
  age.dateTime = alert.opened_at;
  age.dataset.since = String(Date.parse(alert.opened_at));
  age.setAttribute("aria-label", t("alert.age"));
  age.textContent = formatAge(Date.now() - Date.parse(alert.opened_at));
  renderEscalation(li, alert, state.user, formatAge);

  if (li.dataset.state !== alert.state || li.dataset.buttonsFor !== String(isHandler())) {
    const hadFocus = li.contains(document.activeElement) && document.activeElement !== li;
    li.dataset.state = alert.state;
    li.dataset.buttonsFor = String(isHandler());
    renderActions(li, alert);
    if (hadFocus) {
      // The button pressed is gone: carry on from the next step, not the page top.
      (li.querySelector("[data-action]") || li).focus();
    }
  }
}

function setText(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

function renderActions(li, alert) {
  const box = li.querySelector(".alert-actions");
  const actions = isHandler() ? (NEXT_ACTIONS[alert.state] ?? []) : [];
  box.replaceChildren(
    ...actions.map((action, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = index === 0 ? "primary" : "secondary";
      button.dataset.action = action;
      button.dataset.i18n = `action.${action}`;
      button.textContent = t(`action.${action}`);
      return button;
    }),
  );
}

function alertLabel(alert) {
  const titles = presentationOf(alert)?.titles;
  // Before the rule set is read, or for a rule no longer in it: the title it was raised with.
  return titles?.[getLang()] || titles?.sv || alert.title || alert.kind;
}

// Stroke drawings on a 24×24 grid, drawn as SVG nodes: the CSP allows no inline markup styles.
const ICONS = {
  alarm: [["path", "M6 16v-5a6 6 0 0 1 12 0v5l2 2H4z"], ["path", "M10 21a2 2 0 0 0 4 0"]],
  fall: [
    ["circle", 17, 5, 2],
    ["path", "M15 8l-6 5"],
    ["path", "M9 13l-5-1"],
    ["path", "M9 13l-2 6"],
    ["path", "M13 10l4 3"],
    ["path", "M3 22h18"],
  ],
  bed: [["path", "M3 19V6"], ["path", "M3 15h18v4"], ["path", "M21 15v-3a2 2 0 0 0-2-2h-8v5"],
    ["circle", 7, 12, 2]],
  access: [["circle", 8, 15, 4], ["path", "M11 12l9-9"], ["path", "M16 7l3 3"], ["path", "M18 5l2 2"]],
  lock: [["path", "M5 11h14v10H5z"], ["path", "M8 11V8a4 4 0 0 1 8 0v3"], ["path", "M12 15v2"]],
  dispenser: [["path", "M10.5 20.5a5 5 0 0 1-7-7l6-6a5 5 0 0 1 7 7z"], ["path", "M8.5 8.5l7 7"]],
  contact: [["path", "M2 9a15 15 0 0 1 20 0"], ["path", "M5 12.5a10 10 0 0 1 14 0"],
    ["path", "M8.5 16a5 5 0 0 1 7 0"], ["path", "M12 20h.01"], ["path", "M3 3l18 18"]],
  battery: [["path", "M2 7h16v10H2z"], ["path", "M22 11v2"], ["path", "M5 10v4"]],
  power: [["path", "M13 2L4 14h7l-1 8 9-12h-7z"]],
  time: [["circle", 12, 12, 9], ["path", "M12 7v5l3 2"]],
  supervision: [["path", "M2 12s4-7 10-7 10 7 10 7-4 7-10 7S2 12 2 12z"], ["circle", 12, 12, 3]],
  device: [["path", "M12 3l10 18H2z"], ["path", "M12 10v5"], ["path", "M12 18h.01"]],
};

function iconSvg(category) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "2");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  for (const [tag, ...args] of ICONS[category] ?? ICONS.device) {
    const shape = document.createElementNS(ns, tag);
    if (tag === "path") {
      shape.setAttribute("d", args[0]);
    } else {
      shape.setAttribute("cx", String(args[0]));
      shape.setAttribute("cy", String(args[1]));
      shape.setAttribute("r", String(args[2]));
    }
    svg.append(shape);
  }
  return svg;
}

function formatAge(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mmss = `${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
  return h ? `${h}:${mmss}` : mmss;
}

function tickAges() {
  const now = Date.now();
  for (const el of document.querySelectorAll("#queue .alert-age")) {
    el.textContent = formatAge(now - Number(el.dataset.since));
  }
  tickEscalations($("queue"), now, formatAge);
}

function renderIncidents() {
  const box = $("incidents");
  const open = [...state.incidents.values()].filter((i) => !i.cleared_at);
  box.replaceChildren(
    ...open.map((incident) => {
      const p = document.createElement("p");
      p.dataset.incidentId = incident.incident_id;
      p.textContent = `${t("incident.banner", {
        n: incident.devices,
        time: formatClock(incident.opened_at),
      })} (${incident.org})`;
      return p;
    }),
  );
  box.hidden = open.length === 0;
}

// ---------------------------------------------------------------- gateway health

/** Ask /healthz (no login, no personal data) what stands in the gateway's way now. */
async function refreshGatewayHealth() {
  if (document.body.dataset.connection === "lost") {
    return; // the connection banner says it all; the stream's "open" asks again at once
  }
  let health;
  try {
    const response = await fetch("/healthz", {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    // 503 is an answer too: it carries the problems that make the gateway unhealthy.
    health = await response.json();
  } catch {
    return; // unreachable: the connection banner tells that; keep what was last known
  }
  if (!state.user || !Array.isArray(health?.problems)) {
    return;
  }
  const problems = health.problems.filter((p) => p && typeof p.code === "string");
  const before = state.gatewayProblems.map((p) => p.code).join(" ");
  state.gatewayProblems = problems;
  // Redrawn only on a change: the banner is a live region, read out when it changes.
  if (problems.map((p) => p.code).join(" ") !== before) {
    renderGatewayHealth();
  }
}

function renderGatewayHealth() {
  const box = $("gateway-health");
  const problems = state.gatewayProblems;
  box.replaceChildren(
    ...problems.map((problem) => {
      const p = document.createElement("p");
      p.dataset.code = problem.code;
      const key = `gateway.${problem.code}`;
      // A problem this page does not know yet is still shown, in the server's words.
      p.textContent = has(key) ? t(key) : `${t("gateway.unknown")}: ${problem.detail}`;
      if (problem.detail) {
        p.title = problem.detail;
      }
      return p;
    }),
  );
  const critical = problems.some((p) => CRITICAL_PROBLEMS.has(p.code));
  box.dataset.severity = critical ? "critical" : "warning";
  box.hidden = problems.length === 0;
  document.body.dataset.gatewayProblems = problems.map((p) => p.code).join(" ");
}

function formatClock(iso) {
  return new Date(iso).toLocaleTimeString(getLang() === "sv" ? "sv-SE" : "en-GB", {
    hour: "2-digit",
    minute: "2-digit",
  });
}

// ---------------------------------------------------------------- actions

/** Whether a step on this alert would take it from someone else (the API asks for takeover). */
function needsTakeover(alert) {
  return Boolean(alert?.handled_by) && alert.handled_by !== state.user?.username;
}

async function act(alertId, action, body) {
  const known = state.alerts.get(alertId);
  if (!body.takeover && needsTakeover(known)) {
    if (!(await confirmTakeover(handlerName(known)))) {
      return false;
    }
    body = { ...body, takeover: true };
  }
  try {
    const moved = await api("POST", `/api/alerts/${encodeURIComponent(alertId)}/${action}`, body);
    const known = state.alerts.get(alertId);
    // The stream may already have brought a later step; never go back.
    if (FINAL_STATES.has(moved.state)) {
      state.alerts.delete(alertId);
    } else if (!known || STATE_RANK[moved.state] >= STATE_RANK[known.state]) {
      state.alerts.set(alertId, { ...known, ...moved });
    }
    renderQueue();
    notify({ key: `msg.done.${action}` }, "ok");
    return true;
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      showLogin();
    } else if (exc instanceof HttpError && exc.status === 409) {
      notify({ key: "msg.conflict", params: { detail: exc.detail } }, "error");
      await refreshQueue();
      // Someone took it meanwhile: ask, as for a takeover seen in advance.
      if (!body.takeover && needsTakeover(state.alerts.get(alertId))) {
        return act(alertId, action, body);
      }
    } else {
      notify({ key: "msg.failed", params: { detail: exc.message } }, "error");
    }
    return false;
  }
}

async function refreshQueue() {
  try {
    const alerts = await api("GET", "/api/alerts");
    state.alerts = new Map(alerts.map((a) => [a.alert_id, a]));
    renderQueue();
  } catch {
    // The stream will bring the queue up to date when it can.
  }
}

function onQueueClick(event) {
  const button = event.target.closest("button[data-action]");
  const li = event.target.closest("[data-alert-id]");
  if (button) {
    runAction(li.dataset.alertId, button.dataset.action, button);
  } else if (li) {
    openDetail(li.dataset.alertId); // a tap on the card opens its whole story
  }
}

async function runAction(alertId, action, button) {
  if (action === "resolve") {
    openResolve(alertId);
    return;
  }
  // A double tap must not send the same step twice. The button is marked busy
  // rather than disabled, because disabling it would throw away focus.
  const key = `${alertId} ${action}`;
  if (state.busy.has(key)) {
    return;
  }
  state.busy.add(key);
  button?.setAttribute("aria-busy", "true");
  try {
    await act(alertId, action, { note: "" });
  } finally {
    state.busy.delete(key);
    button?.removeAttribute("aria-busy");
  }
}

function openResolve(alertId) {
  const alert = state.alerts.get(alertId);
  if (!alert) {
    return;
  }
  state.resolving = alertId;
  renderResolveWhat();
  renderOutcomes();
  $("resolve-note").value = "";
  $("resolve-dialog").showModal();
  $("resolve-outcomes").querySelector("input")?.focus();
}

function renderResolveWhat() {
  const alert = state.alerts.get(state.resolving);
  $("resolve-what").textContent = alert
    ? [alertLabel(alert), alert.unit, alert.area].filter(Boolean).join(" · ")
    : "";
}

function renderOutcomes() {
  const box = $("resolve-outcomes");
  const checked = box.querySelector("input:checked")?.value;
  box.replaceChildren(
    ...state.outcomes.map((outcome) => {
      const label = document.createElement("label");
      label.className = "outcome";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "outcome";
      input.value = outcome;
      input.required = true;
      input.checked = outcome === checked;
      const text = span("");
      text.textContent = has(`outcome.${outcome}`) ? t(`outcome.${outcome}`) : outcome;
      label.append(input, text);
      return label;
    }),
  );
}

async function onResolveSubmit(event) {
  event.preventDefault();
  const form = $("resolve-form");
  if (!form.reportValidity()) {
    return;
  }
  const outcome = form.querySelector("input[name=outcome]:checked").value;
  const note = $("resolve-note").value.trim();
  const alertId = state.resolving;
  const key = `${alertId} resolve`;
  if (state.busy.has(key)) {
    return;
  }
  state.busy.add(key);
  let done = false;
  try {
    done = await act(alertId, "resolve", { outcome, note });
  } finally {
    state.busy.delete(key);
  }
  if (done || !state.alerts.has(alertId)) {
    closeResolve();
  }
}

function closeResolve() {
  const dialog = $("resolve-dialog");
  if (dialog.open) {
    dialog.close();
  }
  const alertId = state.resolving;
  state.resolving = null;
  const li = alertId && $("queue").querySelector(`[data-alert-id="${CSS.escape(alertId)}"]`);
  (li || $("queue").firstElementChild || $("queue-section")).focus();
}

function onQueueKey(event) {
  const li = event.target.closest?.("[data-alert-id]");
  if (!li || event.altKey || event.ctrlKey || event.metaKey) {
    return;
  }
  const items = [...$("queue").children];
  const index = items.indexOf(li);
  let target = null;
  if (event.key === "ArrowDown") target = items[index + 1];
  else if (event.key === "ArrowUp") target = items[index - 1];
  else if (event.key === "Home") target = items[0];
  else if (event.key === "End") target = items[items.length - 1];
  else if (event.key === "i" && event.target === li) {
    event.preventDefault();
    openDetail(li.dataset.alertId);
    return;
  }
  else if ((event.key === "Enter" || event.key === " ") && event.target === li) {
    // Enter on the item takes its next step, as one tap on its first button.
    const button = li.querySelector("button[data-action]");
    if (button) {
      event.preventDefault();
      runAction(li.dataset.alertId, button.dataset.action, button);
    }
    return;
  } else {
    return;
  }
  event.preventDefault();
  target?.focus();
}

function onGlobalKey(event) {
  const field = event.target.closest?.("input, textarea, select, dialog");
  if (field || event.altKey || event.ctrlKey || event.metaKey || !state.user) {
    return;
  }
  if (event.key === "m" || event.key === "M") {
    toggleMute();
  } else if (event.key === "j" && !$("queue").contains(event.target)) {
    // A way into the queue from anywhere on the page.
    $("queue").firstElementChild?.focus();
  }
}

// ---------------------------------------------------------------- device health

let healthSoon = 0;

function scheduleHealth() {
  window.clearTimeout(healthSoon);
  healthSoon = window.setTimeout(refreshHealth, 1000);
}

async function refreshHealth() {
  if (!isHandler()) {
    return;
  }
  const status = $("health-status");
  try {
    const devices = await api("GET", "/api/devices?problems_only=true");
    renderHealth(devices);
    setI18n(status, "health.updated", { time: formatClock(new Date().toISOString()) });
    status.classList.remove("form-error");
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      showLogin();
      return;
    }
    setI18n(status, "health.error");
    status.classList.add("form-error");
  }
}

function renderHealth(devices) {
  const list = $("health-list");
  const visible = devices.filter((d) => !state.area || d.area === state.area);
  list.replaceChildren(
    ...visible.map((device) => {
      const li = document.createElement("li");
      li.dataset.deviceId = device.device_id;
      li.className = device.offline ? "health-offline" : "health-battery";
      const name = span("health-device");
      name.textContent = [device.unit, device.device_id].filter(Boolean).join(" · ");
      const flags = span("health-flags");
      if (device.offline) {
        const flag = span("flag flag-offline");
        flag.textContent = t("health.offline");
        flags.append(flag);
      }
      if (device.battery_low) {
        const flag = span("flag flag-battery");
        flag.textContent = device.battery === null
          ? t("health.batteryLow")
          : `${t("health.batteryLow")} ${t("health.battery", { n: device.battery })}`;
        flags.append(flag);
      }
      const seen = span("health-seen muted");
      seen.textContent = device.last_contact
        ? t("health.lastContact", { time: formatClock(device.last_contact) })
        : t("health.never");
      const where = span("health-area muted");
      where.textContent = device.area;
      li.append(name, flags, where, seen);
      return li;
    }),
  );
  $("health-empty").hidden = visible.length > 0;
  state.lastHealth = devices;
}

// ---------------------------------------------------------------- sound

function audioContext() {
  if (!state.audio) {
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    if (!AudioCtx) {
      return null;
    }
    state.audio = new AudioCtx();
  }
  return state.audio;
}

/** Browsers start audio only after a gesture: every tap or key tries to unlock it. */
function unlockAudio() {
  const ctx = audioContext();
  if (ctx && ctx.state === "suspended") {
    ctx.resume().then(renderSoundBlocked, renderSoundBlocked);
  } else {
    renderSoundBlocked();
  }
}

function renderSoundBlocked() {
  const blocked = !state.muted && state.user !== null &&
    (!state.audio || state.audio.state !== "running") && state.pendingSound === true;
  $("sound-blocked").hidden = !blocked;
  if (!blocked) {
    state.pendingSound = false;
  }
}

/** A priority-1 page (or its repeat): three short rising tones, unless muted. */
function page(repeat = false) {
  const counted = repeat ? "repeats" : "pages";
  document.body.dataset[counted] = String(Number(document.body.dataset[counted] || 0) + 1);
  if (state.muted) {
    return;
  }
  const now = Date.now();
  if (now - state.lastSound < SOUND_GAP_MS) {
    return;
  }
  state.lastSound = now;
  const ctx = audioContext();
  if (!ctx || ctx.state !== "running") {
    // Blocked until the user touches the page: say so, play on the next page.
    state.pendingSound = true;
    renderSoundBlocked();
    ctx?.resume().catch(() => {});
    return;
  }
  const start = ctx.currentTime + 0.02;
  [880, 988, 1175].forEach((frequency, i) => {
    const at = start + i * 0.22;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.setValueAtTime(frequency, at);
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.18);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + 0.2);
  });
  document.body.dataset.soundsPlayed = String(Number(document.body.dataset.soundsPlayed || 0) + 1);
}

/** A priority 1 keeps sounding until someone acknowledges it (or this user mutes). */
function repeatPage() {
  if ([...state.alerts.values()].some((a) => a.priority === 1 && a.state === "open")) {
    page(true);
  }
}

function toggleMute() {
  state.muted = !state.muted;
  writeStorage(MUTE_KEY, state.muted ? "1" : "0");
  renderMute();
  renderSoundBlocked();
}

function renderMute() {
  const button = $("mute-toggle");
  button.setAttribute("aria-pressed", String(state.muted));
  button.classList.toggle("muted", state.muted);
  const label = button.querySelector(".label");
  label.dataset.i18n = state.muted ? "sound.off" : "sound.on";
  label.textContent = t(label.dataset.i18n);
}

// ---------------------------------------------------------------- notices and language

let noticeTimer = 0;

/** Show a notice: a text as it is, or {key, params}, which follows a language switch. */
function notify(message, kind) {
  const box = $("notice");
  if (typeof message === "string") {
    setI18n(box, "");
    box.textContent = message;
  } else {
    setI18n(box, message.key, message.params);
  }
  box.dataset.kind = kind;
  box.hidden = false;
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => {
    box.hidden = true;
  }, kind === "error" ? 10_000 : 4_000);
}

function onLanguageChange() {
  // An announcement is said once; relabelled it would be read out again.
  $("announcer").textContent = "";
  renderUser();
  renderMute();
  renderPush();
  renderQueue();
  renderIncidents();
  renderGatewayHealth();
  if (state.lastHealth) {
    renderHealth(state.lastHealth);
  }
  if ($("resolve-dialog").open) {
    renderOutcomes();
    renderResolveWhat();
  }
}

// ---------------------------------------------------------------- start

async function main() {
  // The shell (pages.js) labels the page and runs the language switch.
  initPage({}, onLanguageChange);
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", onLogout);
  $("mute-toggle").addEventListener("click", toggleMute);
  $("push-toggle").addEventListener("click", togglePush);
  registerWorker();
  $("sound-blocked").addEventListener("click", unlockAudio);
  $("area-filter").addEventListener("change", onAreaChange);
  $("queue").addEventListener("click", onQueueClick);
  $("queue").addEventListener("keydown", onQueueKey);
  $("resolve-form").addEventListener("submit", onResolveSubmit);
  $("resolve-cancel").addEventListener("click", closeResolve);
  $("resolve-dialog").addEventListener("cancel", (event) => {
    event.preventDefault();
    closeResolve();
  });
  document.addEventListener("keydown", onGlobalKey);
  initDetail({ api, alertLabel, canAct: isHandler, onUnauthorised: showLogin });
  // A tapped notification or an alert link (/?alert=<id>) opens that alert's detail.
  document.addEventListener("wgw:open-alert", (event) => openDetail(event.detail.alertId));
  document.addEventListener("pointerdown", unlockAudio, { capture: true });
  document.addEventListener("keydown", unlockAudio, { capture: true });

  try {
    startConsole(await api("GET", "/api/auth/me"));
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      showLogin();
    } else {
      // Not reachable now: the login form is the way to try again.
      showLogin();
      const error = $("login-error");
      if (exc instanceof HttpError) {
        setI18n(error, "login.error", { status: exc.status });
      } else {
        setI18n(error, "login.network");
      }
      error.hidden = false;
    }
  }
  document.body.dataset.ready = "true";
}

main();
