// Translations for the welfare-gateway pages: Swedish first, English switchable.
//
// API: t(key, params?), getLang(), setLang(lang), applyTranslations(root),
// addMessages({sv: {...}, en: {...}}) for a page's own keys. Elements with
// data-i18n="key" get their text; data-i18n-placeholder, data-i18n-title and
// data-i18n-aria-label fill those attributes. setLang fires "wgw:lang" on
// document so scripts can relabel what they drew themselves.

const STORAGE_KEY = "wgw.lang";
const LANGS = ["sv", "en"];
const DEFAULT_LANG = "sv";

const MESSAGES = {
  sv: {
    "app.title": "Nattpatrullen",
    "app.subtitle": "Larmkö",
    "lang.switch": "English",
    "lang.switchLabel": "Byt språk till engelska",
    "nav.label": "Huvudmeny",
    "nav.console": "Larmkö",
    "nav.audit": "Granskning",
    "nav.report": "Rapport",
    "logout": "Logga ut",

    "login.heading": "Logga in",
    "login.intro": "Logga in med ditt personalkonto.",
    "login.username": "Användarnamn",
    "login.password": "Lösenord",
    "login.submit": "Logga in",
    "login.busy": "Loggar in…",
    "login.failed": "Fel användarnamn eller lösenord.",
    "login.rateLimited": "För många misslyckade försök.",
    "login.error": "Inloggningen misslyckades ({status}). Försök igen.",
    "login.network": "Servern svarar inte. Försök igen.",

    "role.operator": "Nattpatrull",
    "role.coordinator": "Samordnare",
    "role.auditor": "Granskare",
    "role.admin": "Administratör",

    "sound.on": "Ljud på",
    "sound.off": "Ljud av",
    "sound.label": "Larmljud för prioritet 1",
    "sound.blocked": "Tryck här för att slå på larmljudet",

    "conn.lost": "Ingen anslutning — försöker igen…",
    "conn.lostDetail": "Kön kan vara inaktuell tills anslutningen är tillbaka.",
    "conn.connecting": "Ansluter…",
    "conn.live": "Direkt",

    "queue.heading": "Öppna larm",
    "queue.empty": "Inga öppna larm.",
    "queue.emptyFiltered": "Inga öppna larm i det valda området.",
    "queue.count": "{n} öppna",
    "queue.hint": "Tangentbord: ↑ ↓ välj larm · Enter nästa steg · M ljud av/på",
    "filter.area": "Område",
    "filter.allAreas": "Alla områden",

    "health.heading": "Enhetsstatus",
    "health.empty": "Alla enheter har kontakt och batteri.",
    "health.offline": "Ingen kontakt",
    "health.batteryLow": "Låg batterinivå",
    "health.battery": "{n} %",
    "health.lastContact": "senast hörd {time}",
    "health.never": "ej hörd sedan start",
    "health.error": "Kunde inte hämta enhetsstatus.",
    "health.updated": "Uppdaterad {time}",

    "incident.banner": "Avbrott: {n} enheter utan kontakt sedan {time}",

    "gateway.broker_down": "Ingen kontakt med MQTT-brokern – larm tas inte emot",
    "gateway.broker_refused": "MQTT-brokern nekar gatewayn (inloggning eller övertagen session) – larm kan utebli",
    "gateway.spool_write_failed": "Lokal buffert kan inte skrivas – larm tas inte emot",
    "gateway.spool_full": "Gatewayn: lokal buffert full – larm tas inte emot förrän databasen är ikapp",
    "gateway.database_down": "Databasen nås inte – larm visas ändå, händelser sparas lokalt",
    "gateway.rules_behind": "Gatewayn ligger efter – nya larm kan dröja",
    "gateway.unknown": "Problem i gatewayn",

    "alert.new": "Nytt larm",
    "alert.unit": "Brukare",
    "alert.area": "Område",
    "alert.device": "Enhet",
    "alert.position": "Position",
    "alert.positionAt": "kl. {time}",
    "alert.positionMap": "Öppna positionen i kartan",
    "alert.handledBy": "Hanteras av {name}",
    "alert.unhandled": "Ingen har kvitterat",
    "alert.escalated": "Eskalerat",
    "alert.late": "Försenat",
    "alert.count": "{n} gånger",
    "alert.age": "Tid sedan larmet",
    "alert.priority": "Prioritet {n}",

    "state.open": "Nytt",
    "state.acknowledged": "Kvitterat",
    "state.en_route": "På väg",
    "state.on_site": "På plats",
    "state.resolved": "Åtgärdat",
    "state.cleared": "Återställt av enheten",

    "action.acknowledge": "Kvittera",
    "action.en-route": "På väg",
    "action.on-site": "På plats",
    "action.resolve": "Åtgärdat…",

    "resolve.heading": "Avsluta larm",
    "resolve.outcome": "Utfall",
    "resolve.note": "Anteckning (frivillig)",
    "resolve.confirm": "Åtgärdat",
    "resolve.cancel": "Avbryt",

    "outcome.help_given": "Hjälp given",
    "outcome.referred": "Vidare till sjuksköterska, läkare eller ambulans",
    "outcome.no_action_needed": "Ingen åtgärd behövdes",
    "outcome.false_alarm": "Falsklarm",
    "outcome.device_fault": "Tekniskt fel",

    "msg.conflict": "Någon annan har redan ändrat larmet. Kön är uppdaterad.",
    "msg.failed": "Det gick inte: {detail}",
    "msg.done.acknowledge": "Larmet är kvitterat.",
    "msg.done.en-route": "Markerat: på väg.",
    "msg.done.on-site": "Markerat: på plats.",
    "msg.done.resolve": "Larmet är åtgärdat.",

    "rule.alarm": "Larm",
    "rule.fall": "Fall",
    "rule.unauthorised_opening": "Obehörig öppning",
    "rule.unauthorised_access": "Obehörig öppning",
    "rule.bathroom_too_long": "För länge i badrummet",
    "rule.sensor_lost": "Tillsynssensorn har tappat kontakten",
    "rule.tamper": "Enheten manipulerad",
    "rule.lock_jammed": "Låset har fastnat",
    "rule.device_error": "Enhetsfel",
    "rule.power_lost": "Strömavbrott",
    "rule.refill_low": "Dosrullen tar slut",
    "rule.not_back_in_bed": "Ej tillbaka i sängen",
    "rule.dose_not_taken": "Missad dos",
    "rule.door_open_too_long": "Dörr öppen",
    "rule.no_contact": "Ingen kontakt",
    "rule.battery_low": "Låg batterinivå",

    "kind.alarm.button": "Larm",
    "kind.alarm.automatic": "Automatiskt larm",
    "kind.alarm.assistance": "Assistanslarm",
    "kind.alarm.fall": "Fall",
    "kind.alarm.unauthorised_access": "Obehörig öppning",
    "kind.sensor.fall": "Fall",
    "kind.sensor.left_bed": "Lämnat sängen",
    "kind.sensor.left_room": "Lämnat rummet",
    "kind.sensor.bathroom_too_long": "För länge i badrummet",
    "kind.sensor.lost": "Tillsynssensorn har tappat kontakten",
    "kind.lock.unlocked": "Obehörig öppning",
    "kind.lock.door_opened": "Dörr öppen",
    "kind.lock.jammed": "Låset har fastnat",
    "kind.dispenser.dose_due": "Missad dos",
    "kind.dispenser.dose_missed": "Missad dos",
    "kind.dispenser.refill_low": "Dosrullen tar slut",
    "kind.dispenser.cabinet_opened": "Obehörig öppning",
    "kind.device.offline": "Ingen kontakt",
    "kind.device.battery_low": "Låg batterinivå",
    "kind.device.power_lost": "Strömavbrott",
    "kind.device.error": "Enhetsfel",
    "kind.device.tamper": "Enheten manipulerad",
  },
  en: {
    "app.title": "Night patrol",
    "app.subtitle": "Alert queue",
    "lang.switch": "Svenska",
    "lang.switchLabel": "Switch language to Swedish",
    "nav.label": "Main menu",
    "nav.console": "Alert queue",
    "nav.audit": "Audit",
    "nav.report": "Report",
    "logout": "Log out",

    "login.heading": "Log in",
    "login.intro": "Log in with your staff account.",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.busy": "Logging in…",
    "login.failed": "Wrong user name or password.",
    "login.rateLimited": "Too many failed attempts.",
    "login.error": "Login failed ({status}). Try again.",
    "login.network": "The server does not answer. Try again.",

    "role.operator": "Night patrol",
    "role.coordinator": "Coordinator",
    "role.auditor": "Auditor",
    "role.admin": "Administrator",

    "sound.on": "Sound on",
    "sound.off": "Sound off",
    "sound.label": "Alert sound for priority 1",
    "sound.blocked": "Tap here to turn on the alert sound",

    "conn.lost": "No connection — retrying…",
    "conn.lostDetail": "The queue may be out of date until the connection is back.",
    "conn.connecting": "Connecting…",
    "conn.live": "Live",

    "queue.heading": "Open alerts",
    "queue.empty": "No open alerts.",
    "queue.emptyFiltered": "No open alerts in the chosen area.",
    "queue.count": "{n} open",
    "queue.hint": "Keyboard: ↑ ↓ choose alert · Enter next step · M sound on/off",
    "filter.area": "Area",
    "filter.allAreas": "All areas",

    "health.heading": "Device health",
    "health.empty": "Every device is in contact and has battery.",
    "health.offline": "No contact",
    "health.batteryLow": "Battery low",
    "health.battery": "{n} %",
    "health.lastContact": "last heard {time}",
    "health.never": "not heard since start",
    "health.error": "Could not load device health.",
    "health.updated": "Updated {time}",

    "incident.banner": "Outage: {n} devices without contact since {time}",

    "gateway.broker_down": "No contact with the MQTT broker – alarms are not received",
    "gateway.broker_refused": "The MQTT broker refuses the gateway (login or session taken over) – alarms may be missed",
    "gateway.spool_write_failed": "The local buffer cannot be written – alarms are not received",
    "gateway.spool_full": "Gateway: local buffer full – alarms are not received until the database has caught up",
    "gateway.database_down": "The database cannot be reached – alerts are still shown, events are kept locally",
    "gateway.rules_behind": "The gateway is behind – new alerts may be late",
    "gateway.unknown": "Gateway problem",

    "alert.new": "New alert",
    "alert.unit": "Care recipient",
    "alert.area": "Area",
    "alert.device": "Device",
    "alert.position": "Position",
    "alert.positionAt": "at {time}",
    "alert.positionMap": "Open the position in maps",
    "alert.handledBy": "Handled by {name}",
    "alert.unhandled": "Not acknowledged",
    "alert.escalated": "Escalated",
    "alert.late": "Late",
    "alert.count": "{n} times",
    "alert.age": "Time since the alert",
    "alert.priority": "Priority {n}",

    "state.open": "New",
    "state.acknowledged": "Acknowledged",
    "state.en_route": "En route",
    "state.on_site": "On site",
    "state.resolved": "Resolved",
    "state.cleared": "Cleared by the device",

    "action.acknowledge": "Acknowledge",
    "action.en-route": "En route",
    "action.on-site": "On site",
    "action.resolve": "Resolve…",

    "resolve.heading": "Resolve alert",
    "resolve.outcome": "Outcome",
    "resolve.note": "Note (optional)",
    "resolve.confirm": "Resolve",
    "resolve.cancel": "Cancel",

    "outcome.help_given": "Help given",
    "outcome.referred": "Referred to nurse, doctor or ambulance",
    "outcome.no_action_needed": "No action needed",
    "outcome.false_alarm": "False alarm",
    "outcome.device_fault": "Device fault",

    "msg.conflict": "Someone else already changed this alert. The queue has been refreshed.",
    "msg.failed": "That did not work: {detail}",
    "msg.done.acknowledge": "Alert acknowledged.",
    "msg.done.en-route": "Marked: en route.",
    "msg.done.on-site": "Marked: on site.",
    "msg.done.resolve": "Alert resolved.",

    "rule.alarm": "Alarm",
    "rule.fall": "Fall",
    "rule.unauthorised_opening": "Unauthorised opening",
    "rule.unauthorised_access": "Unauthorised opening",
    "rule.bathroom_too_long": "Too long in the bathroom",
    "rule.sensor_lost": "Supervision sensor lost contact",
    "rule.tamper": "Device tampered with",
    "rule.lock_jammed": "Lock jammed",
    "rule.device_error": "Device error",
    "rule.power_lost": "Power failure",
    "rule.refill_low": "Dose roll running low",
    "rule.not_back_in_bed": "Not back in bed",
    "rule.dose_not_taken": "Missed dose",
    "rule.door_open_too_long": "Door left open",
    "rule.no_contact": "No contact",
    "rule.battery_low": "Battery low",

    "kind.alarm.button": "Alarm",
    "kind.alarm.automatic": "Automatic alarm",
    "kind.alarm.assistance": "Assistance call",
    "kind.alarm.fall": "Fall",
    "kind.alarm.unauthorised_access": "Unauthorised opening",
    "kind.sensor.fall": "Fall",
    "kind.sensor.left_bed": "Left the bed",
    "kind.sensor.left_room": "Left the room",
    "kind.sensor.bathroom_too_long": "Too long in the bathroom",
    "kind.sensor.lost": "Supervision sensor lost contact",
    "kind.lock.unlocked": "Unauthorised opening",
    "kind.lock.door_opened": "Door open",
    "kind.lock.jammed": "Lock jammed",
    "kind.dispenser.dose_due": "Missed dose",
    "kind.dispenser.dose_missed": "Missed dose",
    "kind.dispenser.refill_low": "Dose roll running low",
    "kind.dispenser.cabinet_opened": "Unauthorised opening",
    "kind.device.offline": "No contact",
    "kind.device.battery_low": "Battery low",
    "kind.device.power_lost": "Power failure",
    "kind.device.error": "Device error",
    "kind.device.tamper": "Device tampered with",
  },
};

function storedLang() {
  try {
    const value = window.localStorage.getItem(STORAGE_KEY);
    return LANGS.includes(value) ? value : DEFAULT_LANG;
  } catch {
    // Storage can be off (private mode, policy): Swedish, not a broken page.
    return DEFAULT_LANG;
  }
}

let current = storedLang();

/** The language in use: "sv" or "en". */
export function getLang() {
  return current;
}

/** Whether a key has a text in either language. */
export function has(key) {
  return key in MESSAGES[current] || key in MESSAGES[DEFAULT_LANG];
}

/** The text of a key in the current language; {name} placeholders are filled from params. */
export function t(key, params) {
  const text = MESSAGES[current][key] ?? MESSAGES[DEFAULT_LANG][key] ?? key;
  if (!params) {
    return text;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole,
  );
}

/** Add a page's own texts: {sv: {key: text}, en: {key: text}}. */
export function addMessages(dictionaries) {
  for (const lang of LANGS) {
    Object.assign(MESSAGES[lang], dictionaries[lang] ?? {});
  }
}

const ATTRIBUTES = [
  ["data-i18n-placeholder", "placeholder"],
  ["data-i18n-title", "title"],
  ["data-i18n-aria-label", "aria-label"],
];

/** Fill every element under root that names a key in data-i18n (and its attribute forms). */
export function applyTranslations(root = document) {
  const base = root === document ? document.documentElement : root;
  const selector = "[data-i18n], [data-i18n-placeholder], [data-i18n-title], [data-i18n-aria-label]";
  const elements = [...(base.matches?.(selector) ? [base] : []), ...base.querySelectorAll(selector)];
  for (const el of elements) {
    const key = el.getAttribute("data-i18n");
    if (key) {
      el.textContent = t(key);
    }
    for (const [data, attribute] of ATTRIBUTES) {
      const attrKey = el.getAttribute(data);
      if (attrKey) {
        el.setAttribute(attribute, t(attrKey));
      }
    }
  }
  if (root === document) {
    document.documentElement.lang = current;
  }
}

/** Switch language, remember it, relabel the page and tell scripts through "wgw:lang". */
export function setLang(lang) {
  if (!LANGS.includes(lang)) {
    throw new Error(`unknown language ${lang}; use one of ${LANGS.join(", ")}`);
  }
  current = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered across visits, but the switch still works for this page.
  }
  applyTranslations(document);
  document.dispatchEvent(new CustomEvent("wgw:lang", { detail: { lang } }));
}
