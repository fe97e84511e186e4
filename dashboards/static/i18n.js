// Translations for the welfare-gateway pages: Swedish first, English switchable.
//
// API: t(key, params?), getLang(), setLang(lang), applyTranslations(root),
// setI18n(el, key, params?), addMessages({sv: {...}, en: {...}}) for a page's
// own keys. Elements with data-i18n="key" get their text (filled from the JSON
// in data-i18n-params, which setI18n writes, so a text a script drew follows a
// language switch); data-i18n-placeholder, data-i18n-title and
// data-i18n-aria-label fill those attributes. setLang fires "wgw:lang" on
// document so scripts can relabel what they drew themselves.
//
// Every key is in both languages: tests/dashboards/test_i18n.py reads these
// dictionaries (and each page's own) and fails on a key missing in either.

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
    "login.rateLimited": "För många misslyckade försök. {detail}",
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
    "push.on": "Avisering på",
    "push.off": "Avisering av",
    "push.label": "Larm i telefonen när konsolen är stängd",
    "push.turnedOn": "Larm visas nu i den här enheten även när konsolen är stängd.",
    "push.turnedOff": "Den här enheten får inte längre larm.",
    "push.denied": "Aviseringar är blockerade i webbläsaren. Tillåt dem i webbplatsens inställningar och försök igen.",
    "push.nothingPaged": "Din roll får inga larm i telefonen; fråga en administratör.",
    "push.failed": "Aviseringar kunde inte slås på eller av: {detail}",

    "conn.lost": "Ingen anslutning — försöker igen…",
    "conn.lostDetail": "Kön kan vara inaktuell tills anslutningen är tillbaka.",
    "conn.connecting": "Ansluter…",
    "conn.live": "Direkt",

    "queue.heading": "Öppna larm",
    "queue.empty": "Inga öppna larm.",
    "queue.emptyFiltered": "Inga öppna larm i det valda området.",
    "queue.count": "{n} öppna",
    "queue.hint": "Tangentbord: ↑ ↓ välj larm · Enter nästa steg · I detaljer · M ljud av/på",
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

    "remote.heading": "Tillsyn i natt",
    "remote.hint": "Planerade fjärrtillsyner. Bilden visas i leverantörens visning; här noteras beslut och utfall.",
    "remote.empty": "Inga planerade fjärrtillsyner i natt.",
    "remote.noDirectory": "Ingen åtkomstkatalog är inläst, så inga tillsyner är planerade.",
    "remote.error": "Kunde inte hämta nattens tillsyner.",
    "remote.consent": "Samtycke finns",
    "remote.noConsent": "Samtycke saknas",
    "remote.agreed": "överenskommen tid {windows}",
    "remote.status.pending": "Planerad",
    "remote.status.seen": "Sedd och välmående",
    "remote.status.not_seen": "Ej sedd – försök igen ({n})",
    "remote.status.alerted": "Ej sedd – larm till patrullen",
    "remote.overdue": "Försenad",
    "remote.check": "Fjärrtillsyn",
    "remote.allowed": "Tillåten {time} – öppna leverantörens visning.",
    "remote.refused": "Nekad: {reasons}",
    "remote.seen": "Sedd och välmående",
    "remote.notSeen": "Ej sedd",
    "remote.failed": "Tillsynen kunde inte noteras: {detail}",
    "remote.reason.unknown_staff": "ditt konto är inte kopplat till någon personal i åtkomstkatalogen",
    "remote.reason.view_not_granted": "ej behörig för tillsyn",
    "remote.reason.off_shift": "utanför arbetspass",
    "remote.reason.no_consent": "samtycke saknas",
    "remote.reason.outside_agreed_times": "utanför överenskommen tid",

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
    "escalation.toYou": "Eskalerat till dig",
    "escalation.reached": "Eskalerat till {to}",
    "escalation.next": "Eskaleras om {time} till {to}",
    "escalation.due": "Eskaleras nu till {to}",
    "escalation.group": "gruppen {name}",
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

    "msg.conflict": "Någon annan har redan ändrat larmet. Kön är uppdaterad. ({detail})",
    "msg.failed": "Det gick inte: {detail}",
    "msg.done.acknowledge": "Larmet är kvitterat.",
    "msg.done.en-route": "Markerat: på väg.",
    "msg.done.on-site": "Markerat: på plats.",
    "msg.done.resolve": "Larmet är åtgärdat.",

    "detail.loading": "Hämtar larmet…",
    "detail.refresh": "Uppdatera",
    "detail.close": "Stäng",
    "detail.error": "Kunde inte hämta larmet: {detail}",
    "detail.commentFailed": "Kommentaren sparades inte: {detail}",
    "detail.trail": "Händelseförlopp",
    "detail.tookOver": "{to} tog över från {from}",
    "detail.escalated": "Eskalerat till {to} (nivå {tier})",
    "detail.actor.rule": "larmregeln",
    "detail.actor.device": "enheten",
    "detail.comments": "Kommentarer",
    "detail.noComments": "Inga kommentarer.",
    "detail.addComment": "Lägg till kommentar",
    "detail.send": "Spara kommentar",
    "detail.events": "Hemmet de senaste timmarna",
    "detail.noEvents": "Inga händelser i hemmet de senaste timmarna.",
    "detail.earlier": "Tidigare larm (30 dagar)",
    "detail.noEarlier": "Inga tidigare larm de senaste 30 dagarna.",
    "detail.devices": "Enheter i hemmet",
    "detail.position": "Position",
    "detail.entry": "Att komma in",
    "detail.noEntry": "Inga anteckningar om nyckel eller kod.",
    "detail.key": "nyckel {key}",
    "detail.until": "till {time}",
    "detail.kind.sensor.left_bed": "Lämnade sängen",
    "detail.kind.sensor.in_bed": "Tillbaka i sängen",
    "detail.kind.sensor.sitting_up": "Satte sig upp",
    "detail.kind.sensor.left_room": "Lämnade rummet",
    "detail.kind.sensor.left_chair": "Lämnade stolen",
    "detail.kind.sensor.fall": "Fall",
    "detail.kind.sensor.bathroom_too_long": "Länge i badrummet",
    "detail.kind.lock.unlocked": "Upplåst",
    "detail.kind.lock.locked": "Låst",
    "detail.kind.lock.door_opened": "Dörren öppnades",
    "detail.kind.lock.door_closed": "Dörren stängdes",
    "detail.kind.alarm.button": "Larmknapp",
    "detail.kind.device.heartbeat_gap": "Ingen kontakt",
    "detail.kind.device.battery_low": "Låg batterinivå",
    "takeover.question": "Ta över från {name}?",
    "takeover.explain": "Steget tar över larmet. Övertagandet sparas i larmets historik med båda namnen.",
    "takeover.confirm": "Ta över",
    "takeover.cancel": "Avbryt",
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
    "login.rateLimited": "Too many failed attempts. {detail}",
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
    "push.on": "Notifications on",
    "push.off": "Notifications off",
    "push.label": "Alerts on this phone while the console is closed",
    "push.turnedOn": "Alerts now reach this device even when the console is closed.",
    "push.turnedOff": "This device no longer gets alerts.",
    "push.denied": "Notifications are blocked in the browser. Allow them in the site settings and try again.",
    "push.nothingPaged": "Your role gets no alerts on the phone; ask an administrator.",
    "push.failed": "Notifications could not be turned on or off: {detail}",

    "conn.lost": "No connection — retrying…",
    "conn.lostDetail": "The queue may be out of date until the connection is back.",
    "conn.connecting": "Connecting…",
    "conn.live": "Live",

    "queue.heading": "Open alerts",
    "queue.empty": "No open alerts.",
    "queue.emptyFiltered": "No open alerts in the chosen area.",
    "queue.count": "{n} open",
    "queue.hint": "Keyboard: ↑ ↓ choose alert · Enter next step · I details · M sound on/off",
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

    "remote.heading": "Tonight's supervision",
    "remote.hint": "Planned remote checks. The picture is in the vendor's viewer; the decision and outcome are recorded here.",
    "remote.empty": "No remote checks planned tonight.",
    "remote.noDirectory": "No access directory has been imported, so no checks are planned.",
    "remote.error": "Could not load tonight's checks.",
    "remote.consent": "Consent on record",
    "remote.noConsent": "No consent on record",
    "remote.agreed": "agreed time {windows}",
    "remote.status.pending": "Planned",
    "remote.status.seen": "Seen and well",
    "remote.status.not_seen": "Not seen – try again ({n})",
    "remote.status.alerted": "Not seen – patrol alerted",
    "remote.overdue": "Overdue",
    "remote.check": "Remote check",
    "remote.allowed": "Allowed {time} – open the vendor's viewer.",
    "remote.refused": "Refused: {reasons}",
    "remote.seen": "Seen and well",
    "remote.notSeen": "Not seen",
    "remote.failed": "The check could not be recorded: {detail}",
    "remote.reason.unknown_staff": "your account is not linked to a staff member in the access directory",
    "remote.reason.view_not_granted": "not granted remote supervision",
    "remote.reason.off_shift": "off shift",
    "remote.reason.no_consent": "no consent on record",
    "remote.reason.outside_agreed_times": "outside the agreed times",

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
    "escalation.toYou": "Escalated to you",
    "escalation.reached": "Escalated to {to}",
    "escalation.next": "Escalates in {time} to {to}",
    "escalation.due": "Escalating now to {to}",
    "escalation.group": "group {name}",
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

    "msg.conflict": "Someone else already changed this alert. The queue has been refreshed. ({detail})",
    "msg.failed": "That did not work: {detail}",
    "msg.done.acknowledge": "Alert acknowledged.",
    "msg.done.en-route": "Marked: en route.",
    "msg.done.on-site": "Marked: on site.",
    "msg.done.resolve": "Alert resolved.",

    "detail.loading": "Loading the alert…",
    "detail.refresh": "Refresh",
    "detail.close": "Close",
    "detail.error": "Could not load the alert: {detail}",
    "detail.commentFailed": "The comment was not saved: {detail}",
    "detail.trail": "Trail",
    "detail.tookOver": "{to} took over from {from}",
    "detail.escalated": "Escalated to {to} (tier {tier})",
    "detail.actor.rule": "the alarm rule",
    "detail.actor.device": "the device",
    "detail.comments": "Comments",
    "detail.noComments": "No comments.",
    "detail.addComment": "Add a comment",
    "detail.send": "Save comment",
    "detail.events": "The home in the last hours",
    "detail.noEvents": "No events in the home in the last hours.",
    "detail.earlier": "Earlier alerts (30 days)",
    "detail.noEarlier": "No earlier alerts in the last 30 days.",
    "detail.devices": "Devices in the home",
    "detail.position": "Position",
    "detail.entry": "Getting in",
    "detail.noEntry": "No notes on key or code.",
    "detail.key": "key {key}",
    "detail.until": "until {time}",
    "detail.kind.sensor.left_bed": "Left the bed",
    "detail.kind.sensor.in_bed": "Back in bed",
    "detail.kind.sensor.sitting_up": "Sat up",
    "detail.kind.sensor.left_room": "Left the room",
    "detail.kind.sensor.left_chair": "Left the chair",
    "detail.kind.sensor.fall": "Fall",
    "detail.kind.sensor.bathroom_too_long": "Long in the bathroom",
    "detail.kind.lock.unlocked": "Unlocked",
    "detail.kind.lock.locked": "Locked",
    "detail.kind.lock.door_opened": "Door opened",
    "detail.kind.lock.door_closed": "Door closed",
    "detail.kind.alarm.button": "Alarm button",
    "detail.kind.device.heartbeat_gap": "No contact",
    "detail.kind.device.battery_low": "Battery low",
    "takeover.question": "Take over from {name}?",
    "takeover.explain": "The step takes the alert over. The takeover is kept in the alert's trail with both names.",
    "takeover.confirm": "Take over",
    "takeover.cancel": "Cancel",
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
      const params = el.getAttribute("data-i18n-params");
      el.textContent = t(key, params ? JSON.parse(params) : undefined);
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

/** Give an element a key's text that is relabelled on a language switch; "" empties it. */
export function setI18n(el, key, params) {
  if (!key) {
    el.removeAttribute("data-i18n");
    el.removeAttribute("data-i18n-params");
    el.textContent = "";
    return;
  }
  el.setAttribute("data-i18n", key);
  if (params) {
    el.setAttribute("data-i18n-params", JSON.stringify(params));
  } else {
    el.removeAttribute("data-i18n-params");
  }
  el.textContent = t(key, params);
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
