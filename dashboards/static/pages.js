// The page shell every view shares: the nav built from views.json (the one
// list of pages, which the server routes too), the signed-in user's name and
// the language switch; for the reading views (audit, report) also reading the
// API (401 sends the user to the console's login and back) and Stockholm
// times. Those views only read, so no CSRF token is needed.
//
// A new view is one HTML file (as audit.html: the head, an empty
// <header class="topbar" data-title="its.title.key"> that the shell draws, its
// <main>), one script that calls initPage and signedInReader, and one entry in
// views.json.

import { HttpError, readJson } from "./http.js";
import { addMessages, applyTranslations, getLang, setI18n, setLang, t } from "./i18n.js";

// The rule set's zone: times are shown and typed on the Stockholm wall clock,
// whatever zone the browser happens to run in.
export const ZONE = "Europe/Stockholm";

export const $ = (id) => document.getElementById(id);

/** GET a JSON resource; on 401 go to the login with ?next= set to this page. */
export async function getJson(path, page) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  } catch (exc) {
    throw new HttpError(0, t("page.network"));
  }
  if (response.status === 401) {
    window.location.assign(`/?next=${page}`);
    throw new HttpError(401, t("page.loginNeeded"));
  }
  return readJson(response);
}

/**
 * A message for a failed request with the server's detail: {key, params}, so
 * it is said in whichever language is chosen when it is shown (messageText).
 */
export function describeError(exc) {
  if (!(exc instanceof HttpError)) {
    return String(exc);
  }
  if (exc.status === 403) {
    return { key: "page.forbidden", params: { detail: exc.detail } };
  }
  if (exc.status === 0) {
    return { key: "page.network" };
  }
  return { key: "page.failed", params: { status: exc.status, detail: exc.detail } };
}

/** The text of a message: a string as it is, {key, params} in the current language. */
export function messageText(message) {
  return typeof message === "string" ? message : t(message.key, message.params);
}

function locale() {
  return getLang() === "sv" ? "sv-SE" : "en-GB";
}

/** An ISO instant as Stockholm date and time. */
export function formatTime(iso) {
  if (!iso) {
    return "";
  }
  return new Intl.DateTimeFormat(locale(), {
    timeZone: ZONE,
    dateStyle: "short",
    timeStyle: "medium",
  }).format(new Date(iso));
}

/** Seconds as "12 min 5 s" or "1 h 20 min"; a dash when there is no value. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) {
    return "–";
  }
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) {
    return `${h} h ${m} min`;
  }
  return m > 0 ? `${m} min ${s} s` : `${s} s`;
}

function zoneOffsetMs(utcMs) {
  // The zone's offset at an instant, from how Intl writes that instant there.
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: ZONE,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(utcMs));
  const v = Object.fromEntries(parts.map((p) => [p.type, Number(p.value)]));
  return Date.UTC(v.year, v.month - 1, v.day, v.hour, v.minute, v.second) - utcMs;
}

/** A datetime-local value ("2025-11-20T22:00") read on the Stockholm clock, as an ISO instant. */
export function stockholmToIso(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || "");
  if (!match) {
    return "";
  }
  const [, y, mo, d, h, mi] = match.map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  // Two rounds settle the offset on either side of a DST switch.
  let utc = wall - zoneOffsetMs(wall);
  utc = wall - zoneOffsetMs(utc);
  return new Date(utc).toISOString();
}

/** An instant as a datetime-local value on the Stockholm clock. */
export function isoToStockholmLocal(date) {
  const shifted = new Date(date.getTime() + zoneOffsetMs(date.getTime()));
  return shifted.toISOString().slice(0, 16);
}

/** Today's date (YYYY-MM-DD) on the Stockholm clock, moved by ``days``. */
export function stockholmDate(days = 0) {
  const now = Date.now() + days * 86_400_000;
  return new Date(now + zoneOffsetMs(now)).toISOString().slice(0, 10);
}

/** A table cell with text (never HTML: everything shown comes from the log). */
export function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) {
    td.className = className;
  }
  return td;
}

const SHARED_MESSAGES = {
  sv: {
    "page.network": "Servern svarar inte. Försök igen.",
    "page.loginNeeded": "Inloggning krävs.",
    "page.forbidden": "Ditt konto har inte behörighet till detta ({detail})",
    "page.failed": "Det gick inte ({status}): {detail}",
    "page.loading": "Hämtar…",
  },
  en: {
    "page.network": "The server does not answer. Try again.",
    "page.loginNeeded": "You need to log in.",
    "page.forbidden": "Your account may not do this ({detail})",
    "page.failed": "That did not work ({status}): {detail}",
    "page.loading": "Loading…",
  },
};

/**
 * A function that shows a message in the page's error line (an empty one hides
 * it); one given as {key, params} is relabelled on a language switch.
 */
export function errorLine(id) {
  return (message) => {
    const line = $(id);
    if (typeof message === "string") {
      setI18n(line, "");
      line.textContent = message;
    } else {
      setI18n(line, message.key, message.params);
    }
    line.hidden = !message;
  };
}

let viewList = null;

/** The site's pages from views.json, read once. */
function views() {
  viewList ??= fetch("/static/views.json", { credentials: "same-origin" })
    .then(readJson)
    .catch((exc) => {
      viewList = null; // asked again next time, not failed for good
      throw exc;
    });
  return viewList;
}

/** Fill #nav with links to the other views a role may open; hidden when there are none. */
export async function renderNav(role) {
  const nav = $("nav");
  let shown = [];
  try {
    shown = (await views()).filter((v) => v.path !== window.location.pathname && v.roles.includes(role));
  } catch {
    // Without the list the page still works; only the links to the others are missing.
  }
  nav.replaceChildren(
    ...shown.map((view) => {
      const link = document.createElement("a");
      link.id = `link-${view.name}`;
      link.href = view.path;
      link.dataset.i18n = view.label;
      link.textContent = t(view.label);
      return link;
    }),
  );
  nav.hidden = shown.length === 0;
}

/**
 * The logged-in account if its role may read this page; else null, with the reason shown.
 * The roles are the page's in views.json unless ``roles`` (a Set) is given.
 */
export async function signedInReader({ page, roles, roleMessage, showError, submit }) {
  let me;
  let allowed = roles;
  try {
    me = await getJson("/api/auth/me", page);
    allowed ??= new Set((await views()).find((v) => v.path === page)?.roles ?? []);
  } catch (exc) {
    showError(describeError(exc));
    return null;
  }
  $("user-name").textContent = me.display_name || me.username;
  renderNav(me.role);
  if (!allowed.has(me.role)) {
    showError({ key: roleMessage });
    $(submit).disabled = true;
    return null;
  }
  return me;
}

/**
 * Draw the shell's topbar into an empty <header class="topbar" data-title="key">:
 * the page's title, the nav, the user's name and the language switch. The
 * console has a topbar of its own markup with the same ids and more controls.
 */
function drawTopbar() {
  const header = document.querySelector("header.topbar[data-title]");
  if (!header || header.childElementCount > 0) {
    return;
  }
  const make = (tag, props, i18n = {}) => {
    const el = Object.assign(document.createElement(tag), props);
    for (const [attribute, key] of Object.entries(i18n)) {
      el.setAttribute(attribute, key);
    }
    return el;
  };
  const brand = make("div", { className: "brand" });
  brand.append(make("h1", {}, { "data-i18n": header.dataset.title }));
  const nav = make("nav", { id: "nav", className: "nav", hidden: true }, { "data-i18n-aria-label": "nav.label" });
  const controls = make("div", { className: "controls" });
  controls.append(
    make("span", { id: "user-name", className: "user" }),
    make("button", { id: "lang-switch", className: "ghost", type: "button" }, {
      "data-i18n": "lang.switch",
      "data-i18n-aria-label": "lang.switchLabel",
    }),
  );
  header.replaceChildren(brand, nav, controls);
}

/** Draw the shell, add the page's texts, label the page, wire the language switch (redraw on change). */
export function initPage(messages, redraw) {
  drawTopbar();
  addMessages(SHARED_MESSAGES);
  addMessages(messages);
  applyTranslations(document);
  const button = $("lang-switch");
  const label = () => {
    button.lang = getLang() === "sv" ? "en" : "sv";
  };
  label();
  button.addEventListener("click", () => setLang(getLang() === "sv" ? "en" : "sv"));
  document.addEventListener("wgw:lang", () => {
    label();
    redraw();
  });
}
