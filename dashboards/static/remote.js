// Remote supervision (fjärrtillsyn) in the console: the night's planned checks,
// a remote check judged by the gateway, and what the check found.
//
// The gateway shows no video: the vendor's viewer does. This panel asks the
// gateway whether the check is allowed (consent, agreed times, shift, grant;
// logged either way), shows a refusal with its reasons, and records "seen and
// well" or "not seen". The second "not seen" of a check raises an alert to the
// patrol, which arrives in the queue through the live stream like any other.

import { api } from "./console.js";
import { HttpError } from "./http.js";
import { getLang, t } from "./i18n.js";

// Overdue marks move with the clock; the list is asked for again this often.
const REFRESH_MS = 30_000;
const HANDLER_ROLES = new Set(["operator", "coordinator", "admin"]);
// Planned times are agreed on the Swedish wall clock, whatever the phone's zone.
const ZONE = "Europe/Stockholm";

const remote = {
  user: null,
  timer: 0,
  answer: null, // the last GET /api/remote/checks, redrawn on a language switch
  failed: false,
  decisions: new Map(), // "<device>|<planned_at>" → the gateway's decision
  errors: new Map(), // the same keys → why the last request for the check failed
  busy: new Set(), // the same keys, while a request for them is on its way
  acting: "", // the key of the check last acted on, which keeps the focus
};

const $ = (id) => document.getElementById(id);

function keyOf(check) {
  return `${check.device_id}|${check.planned_at}`;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString(getLang() === "sv" ? "sv-SE" : "en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    timeZone: ZONE,
  });
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) {
    el.className = className;
  }
  if (text !== undefined) {
    el.textContent = text;
  }
  return el;
}

function reasonText(code) {
  const key = `remote.reason.${code}`;
  const text = t(key);
  return text === key ? code : text;
}

// ---------------------------------------------------------------- start and stop

function onConsole(event) {
  window.clearInterval(remote.timer);
  remote.user = event.detail.user;
  remote.decisions.clear();
  remote.errors.clear();
  remote.acting = "";
  remote.answer = null;
  const section = $("remote-checks");
  // Only those who handle alarms make checks; the API refuses the others anyway.
  section.hidden = !remote.user || !HANDLER_ROLES.has(remote.user.role);
  if (section.hidden) {
    $("remote-list").replaceChildren();
    return;
  }
  refresh();
  remote.timer = window.setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  const before = JSON.stringify([remote.answer, remote.failed]);
  try {
    remote.answer = await api("GET", "/api/remote/checks");
    remote.failed = false;
  } catch (exc) {
    if (exc instanceof HttpError && exc.status === 401) {
      return; // the console shows the login; it stops this panel
    }
    remote.failed = true;
  }
  // Redrawn only when something changed: a button under the finger stays put.
  if (JSON.stringify([remote.answer, remote.failed]) !== before) {
    render();
  }
}

// ---------------------------------------------------------------- drawing

function render() {
  const status = $("remote-status");
  const answer = remote.answer;
  let message = "";
  if (remote.failed) {
    message = t("remote.error");
  } else if (answer && !answer.directory_imported) {
    message = t("remote.noDirectory");
  } else if (answer && answer.checks.length === 0) {
    message = t("remote.empty");
  }
  status.textContent = message;
  status.hidden = !message;
  const list = $("remote-list");
  // Keyboard and screen-reader users stay on the check they were acting on
  // (its buttons are redrawn, and disabled while a request is on its way).
  const active = document.activeElement;
  const keep = active === document.body || list.contains(active);
  list.replaceChildren(...(answer ? answer.checks.map(item) : []));
  const acting = [...list.children].find((li) => li.dataset.key === remote.acting);
  if (keep && acting) {
    (acting.querySelector("button:not(:disabled)") ?? acting).focus();
  }
}

function item(check) {
  const key = keyOf(check);
  const li = element("li", "remote-check");
  li.dataset.deviceId = check.device_id;
  li.dataset.plannedAt = check.planned_at;
  li.dataset.status = check.status;
  li.dataset.overdue = String(check.overdue);
  li.dataset.key = key;
  li.tabIndex = -1;

  const head = element("span", "remote-head");
  head.append(
    element("time", "remote-time", clock(check.planned_at)),
    element("span", "remote-unit", [check.unit, check.device_id].filter(Boolean).join(" · ")),
  );
  const flags = element("span", "health-flags");
  flags.append(
    element("span", `flag ${check.consent_on_record ? "flag-consent" : "flag-no-consent"}`,
      t(check.consent_on_record ? "remote.consent" : "remote.noConsent")),
    element("span", `flag flag-${check.status}`,
      t(`remote.status.${check.status}`, { n: check.not_seen })),
  );
  if (check.overdue) {
    flags.append(element("span", "flag flag-overdue", t("remote.overdue")));
  }
  const agreed = element("span", "remote-agreed muted",
    [check.area, t("remote.agreed", { windows: check.windows.join(", ") })]
      .filter(Boolean).join(" · "));
  li.append(head, flags, agreed);

  const decision = remote.decisions.get(key);
  if (decision) {
    li.append(decisionLine(decision));
  }
  const error = remote.errors.get(key);
  if (error) {
    const line = element("p", "remote-decision remote-refused", t("remote.failed", { detail: error }));
    line.setAttribute("role", "alert");
    li.append(line);
  }
  const actions = element("div", "remote-actions");
  if (check.status !== "seen") {
    if (decision?.allowed) {
      actions.append(
        button(t("remote.seen"), "seen", () => record(check, "seen"), "primary"),
        button(t("remote.notSeen"), "not_seen", () => record(check, "not_seen"), "secondary"),
      );
    } else {
      actions.append(button(t("remote.check"), "view", () => ask(check), "primary"));
    }
  }
  for (const b of actions.querySelectorAll("button")) {
    b.disabled = remote.busy.has(key);
  }
  li.append(actions);
  return li;
}

function decisionLine(decision) {
  if (decision.allowed) {
    return element("p", "remote-decision remote-allowed", t("remote.allowed", { time: clock(decision.at) }));
  }
  const line = element("p", "remote-decision remote-refused",
    t("remote.refused", { reasons: decision.reasons.map(reasonText).join(", ") }));
  line.setAttribute("role", "alert");
  return line;
}

function button(label, action, onClick, kind) {
  const b = element("button", kind, label);
  b.type = "button";
  b.dataset.remoteAction = action;
  b.addEventListener("click", onClick);
  return b;
}

// ---------------------------------------------------------------- actions

async function withBusy(check, work) {
  const key = keyOf(check);
  if (remote.busy.has(key)) {
    return;
  }
  remote.busy.add(key);
  remote.acting = key;
  remote.errors.delete(key);
  render();
  try {
    await work(key);
  } catch (exc) {
    // The gateway could not answer or refused the request itself (a check
    // moved, a sensor outside the scope): say so; the next try asks afresh.
    remote.decisions.delete(key);
    remote.errors.set(key, exc.message);
  } finally {
    remote.busy.delete(key);
    render();
  }
}

function ask(check) {
  return withBusy(check, async (key) => {
    const decision = await api("POST", "/api/remote/checks/view", {
      device_id: check.device_id,
      planned_at: check.planned_at,
    });
    remote.decisions.set(key, decision);
  });
}

function record(check, outcome) {
  return withBusy(check, async (key) => {
    const answer = await api("POST", "/api/remote/checks/result", {
      device_id: check.device_id,
      planned_at: check.planned_at,
      outcome,
    });
    // A new try needs a new decision: the next look is judged (and logged) again.
    // A refused result (the agreed time ended meanwhile) shows its reasons.
    if (answer.recorded) {
      remote.decisions.delete(key);
    } else {
      remote.decisions.set(key, answer.decision);
    }
    if (remote.answer) {
      remote.answer.checks = remote.answer.checks.map((c) => (keyOf(c) === key ? answer.check : c));
    }
  });
}

document.addEventListener("wgw:console", onConsole);
document.addEventListener("wgw:lang", render);
