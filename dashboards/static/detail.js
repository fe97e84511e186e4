// The alert detail, phone first: a tap on a card opens the whole story of the
// alarm (its trail, comments, the home's last hours, earlier alarms, devices,
// position and the way in) in a dialog over the queue. Also the takeover
// question asked before a step on an alert someone else is handling.
//
// Every opening and refresh is a GET of /api/alerts/{id}, which the server
// writes to the access log as a read; nothing of it is kept after closing.

import { recipientsLabel } from "./escalation.js";
import { HttpError } from "./http.js";
import { getLang, has, t } from "./i18n.js";
import { renderPosition } from "./position.js";

const FINAL_STATES = new Set(["resolved", "cleared"]);

const hooks = {
  api: null, // (method, path, body) → JSON, with the session's CSRF token
  alertLabel: (alert) => alert.title || alert.kind,
  canAct: () => false,
  onUnauthorised: () => {},
};

const view = {
  alertId: null,
  data: null, // the last answer of GET /api/alerts/{id}
  loading: 0, // a counter: only the newest answer is drawn
};

const $ = (id) => document.getElementById(id);

/** Wire the detail dialog; console.js hands in what it owns. */
export function initDetail(options) {
  Object.assign(hooks, options);
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-refresh").addEventListener("click", () => loadDetail());
  $("detail-dialog").addEventListener("close", onClosed);
  $("detail-comment-form").addEventListener("submit", onComment);
  document.addEventListener("wgw:lang", () => view.data && renderDetail());
}

/** The name to show for who is handling an alert: the display name, else the account. */
export function handlerName(alert) {
  return alert.handled_by_name || alert.handled_by || "";
}

/** Open the detail of one alert and load it. */
export async function openDetail(alertId) {
  view.alertId = alertId;
  view.data = null;
  $("detail-body").replaceChildren();
  $("detail-title").textContent = t("detail.loading");
  $("detail-summary").textContent = "";
  $("detail-comment-form").hidden = true;
  $("detail-error").hidden = true;
  const dialog = $("detail-dialog");
  if (!dialog.open) {
    dialog.showModal();
  }
  $("detail-close").focus();
  await loadDetail();
}

/** Close the detail (on logout, or its own button). */
export function closeDetail() {
  const dialog = $("detail-dialog");
  if (dialog.open) {
    dialog.close();
  }
}

/** Told of every alert change on the live stream: the open detail follows its alert. */
export function detailAlertChanged(alert) {
  if (view.alertId === alert.alert_id && $("detail-dialog").open) {
    loadDetail();
  }
}

/** Ask "Ta över från …?"; resolves true when the user takes the alert over. */
export function confirmTakeover(name) {
  const dialog = $("takeover-dialog");
  $("takeover-question").textContent = t("takeover.question", { name });
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "takeover"), {
      once: true,
    });
    dialog.returnValue = "";
    dialog.showModal();
    $("takeover-cancel").focus();
  });
}

function onClosed() {
  const alertId = view.alertId;
  view.alertId = null;
  view.data = null;
  view.loading += 1; // an answer still on its way is not drawn
  $("detail-body").replaceChildren();
  // Back to the card it was opened from.
  const li = alertId && document.querySelector(`#queue [data-alert-id="${CSS.escape(alertId)}"]`);
  li?.focus();
}

async function loadDetail() {
  const alertId = view.alertId;
  if (!alertId) {
    return;
  }
  const ticket = ++view.loading;
  try {
    const data = await hooks.api("GET", `/api/alerts/${encodeURIComponent(alertId)}`);
    if (ticket === view.loading) {
      view.data = data;
      $("detail-error").hidden = true;
      renderDetail();
    }
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      closeDetail();
      hooks.onUnauthorised();
    } else if (ticket === view.loading) {
      showError(t("detail.error", { detail: exc.message }));
    }
  }
}

function showError(text) {
  const box = $("detail-error");
  box.textContent = text;
  box.hidden = false;
}

async function onComment(event) {
  event.preventDefault();
  const field = $("detail-comment");
  const note = field.value.trim();
  if (!note || !view.alertId) {
    field.focus();
    return;
  }
  const alertId = view.alertId;
  try {
    const comment = await hooks.api(
      "POST",
      `/api/alerts/${encodeURIComponent(alertId)}/comment`,
      { note },
    );
    field.value = "";
    // Stored with the next write: shown at once here, from the server on the next load.
    if (view.alertId === alertId && view.data) {
      view.data.comments.push(comment);
      renderDetail();
    }
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      closeDetail();
      hooks.onUnauthorised();
    } else {
      showError(t("detail.commentFailed", { detail: exc.message }));
    }
  }
}

// ---------------------------------------------------------------- drawing

function renderDetail() {
  const { alert } = view.data;
  $("detail-title").textContent = hooks.alertLabel(alert);
  $("detail-summary").textContent = [
    t(`state.${alert.state}`),
    alert.handled_by ? t("alert.handledBy", { name: handlerName(alert) }) : t("alert.unhandled"),
    alert.unit,
    alert.area,
  ]
    .filter(Boolean)
    .join(" · ");
  const sections = [
    positionSection(alert.position),
    entrySection(view.data.entry_notes),
    section("trail", t("detail.trail"), trailItems(view.data)),
    commentSection(),
    section("events", t("detail.events"), view.data.events.map(eventItem), t("detail.noEvents")),
    section(
      "earlier",
      t("detail.earlier"),
      view.data.earlier_alerts.map(earlierItem),
      t("detail.noEarlier"),
    ),
    section("devices", t("detail.devices"), view.data.devices.map(deviceItem)),
  ];
  $("detail-body").replaceChildren(...sections.filter(Boolean));
  const canComment = hooks.canAct() && !FINAL_STATES.has(alert.state);
  $("detail-comment-form").hidden = !canComment;
}

function section(name, heading, items, empty = "") {
  const box = document.createElement("section");
  box.className = "detail-section";
  box.dataset.section = name;
  const h = document.createElement("h3");
  h.textContent = heading;
  box.append(h);
  if (items.length) {
    const list = document.createElement("ul");
    list.className = "detail-list";
    list.append(...items);
    box.append(list);
  } else if (empty) {
    box.append(text("p", empty, "muted"));
  }
  return box;
}

function text(tag, content, className = "") {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) {
    el.className = className;
  }
  return el;
}

function item(when, ...parts) {
  const li = document.createElement("li");
  const time = text("time", formatWhen(when), "detail-when");
  time.dateTime = when;
  li.append(time, ...parts.filter(Boolean).map((p) => (typeof p === "string" ? text("span", p) : p)));
  return li;
}

function formatWhen(iso) {
  const at = new Date(iso);
  const locale = getLang() === "sv" ? "sv-SE" : "en-GB";
  const clock = at.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  // Today's times alone; older ones with their date, for the earlier alarms.
  if (at.toDateString() === new Date().toDateString()) {
    return clock;
  }
  return `${at.toLocaleDateString(locale, { day: "numeric", month: "short" })} ${clock}`;
}

function positionSection(position) {
  if (!position || typeof position.lat !== "number" || typeof position.lon !== "number") {
    return null;
  }
  // The card's rendering (position.js): coordinates as a geo: link to the phone's own
  // map app; no map tiles are fetched from anywhere.
  const line = text("p", "", "detail-coordinates");
  renderPosition(line, position, formatWhen);
  const box = section("position", t("detail.position"), []);
  box.append(line);
  return box;
}

function entrySection(notes) {
  // null: this role does not act on alarms and is not told the way in.
  if (!Array.isArray(notes)) {
    return null;
  }
  const box = section("entry", t("detail.entry"), []);
  box.append(
    ...(notes.length ? notes.map((n) => text("p", n, "detail-entry")) : [text("p", t("detail.noEntry"), "muted")]),
  );
  return box;
}

/** The transitions and the escalation tiers reached, in time order (a tie: the move first). */
function trailItems({ transitions, escalations }) {
  const rows = [
    ...transitions.map((row) => ({ at: row.at, draw: () => transitionItem(row) })),
    ...(escalations ?? []).map((row) => ({ at: row.at, draw: () => escalationItem(row) })),
  ];
  // A stable sort: each list is in order already, and a tie keeps the transition first.
  rows.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  return rows.map((row) => row.draw());
}

function escalationItem(row) {
  const li = item(row.at, t("detail.escalated", { to: recipientsLabel(row.recipients), tier: row.tier }));
  li.classList.add("detail-escalation");
  li.dataset.tier = String(row.tier);
  return li;
}

function transitionItem(row) {
  if (row.took_over_from) {
    return item(row.at, t("detail.tookOver", { to: row.actor_name, from: row.took_over_from_name }));
  }
  return item(row.at, t(`state.${row.to_state}`), actorLabel(row), row.note && `“${row.note}”`);
}

/** Staff by their display names; the engine's own moves ("rule:fall", "device:…") in words. */
function actorLabel(row) {
  const [source] = row.actor.split(":", 1);
  return row.actor.includes(":") && has(`detail.actor.${source}`)
    ? t(`detail.actor.${source}`)
    : row.actor_name;
}

function commentSection() {
  const rows = view.data.comments.map((c) => item(c.at, c.actor_name, c.note));
  return section("comments", t("detail.comments"), rows, t("detail.noComments"));
}

function eventItem(event) {
  const key = `detail.kind.${event.kind}`;
  const label = has(key) ? t(key) : event.kind;
  const parts = [label, event.device_id];
  if (event.actor) {
    parts.push(t("detail.key", { key: event.actor }));
  }
  if (event.until) {
    parts.push(t("detail.until", { time: formatWhen(event.until) }));
  }
  const li = item(event.at, ...parts);
  li.dataset.kind = event.kind;
  return li;
}

function earlierItem(alert) {
  const outcome = alert.outcome && has(`outcome.${alert.outcome}`) ? t(`outcome.${alert.outcome}`) : alert.outcome;
  const li = item(alert.opened_at, hooks.alertLabel(alert), t(`state.${alert.state}`), outcome,
    alert.handled_by && handlerName(alert));
  li.dataset.alertId = alert.alert_id;
  return li;
}

function deviceItem(device) {
  const status = [];
  if (device.offline) status.push(t("health.offline"));
  if (device.battery_low) status.push(t("health.batteryLow"));
  if (device.battery !== null) status.push(t("health.battery", { n: device.battery }));
  status.push(device.last_contact
    ? t("health.lastContact", { time: formatWhen(device.last_contact) })
    : t("health.never"));
  const li = document.createElement("li");
  li.dataset.deviceId = device.device_id;
  li.classList.toggle("problem", device.offline || device.battery_low);
  li.append(text("span", device.device_id, "detail-device"), text("span", status.join(" · ")));
  return li;
}
