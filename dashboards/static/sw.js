// The console's service worker: Web Push pages as notifications with the console
// closed, and a tap on one opens that alert.
//
// Served as /sw.js so its scope is the whole console (/). It keeps no copy of
// any page or answer (no fetch handler, no cache): alerts are personal data,
// and a stale queue would mislead; offline, the console says it is offline.
//
// A push carries JSON from gateway/push.py (push_payload):
//   {alert_id, title, priority, place, escalated, tier, url}
// where url is "/?alert=<alert id>", the console's link to one alert.

const TEXT = {
  sv: {
    priority: "Prio {n}",
    escalated: "Eskalerat",
    fallback: "Nytt larm i Nattpatrullen",
  },
  en: {
    priority: "Priority {n}",
    escalated: "Escalated",
    fallback: "New alert in Nattpatrullen",
  },
};
// Swedish unless the phone is set to English (the console's own default is Swedish).
const LANG = (self.navigator.language || "sv").toLowerCase().startsWith("en") ? "en" : "sv";

function text(key, n) {
  return TEXT[LANG][key].replace("{n}", String(n));
}

self.addEventListener("install", () => {
  // A new version takes over at once: an old worker must not show old texts for long.
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

/** The notification for one push: title, place, and what a tap opens. */
function notificationOf(payload) {
  if (!payload || typeof payload.alert_id !== "string") {
    // Every push must show something (browsers insist); this one says only "an alert".
    return [text("fallback"), { tag: "wgw-alert", data: { url: "/" } }];
  }
  const head = [text("priority", payload.priority), payload.title].join(" · ");
  const title = payload.escalated ? `${text("escalated")}: ${head}` : head;
  return [
    title,
    {
      body: payload.place || "",
      tag: `alert:${payload.alert_id}`,
      renotify: true,
      // A priority 1 stays on the screen until someone deals with it.
      requireInteraction: payload.priority === 1,
      vibrate: payload.priority === 1 ? [300, 150, 300, 150, 600] : [200],
      icon: "/static/icons/icon-192.png",
      badge: "/static/icons/icon-192.png",
      lang: LANG,
      data: { alert_id: payload.alert_id, url: payload.url || "/" },
    },
  ];
}

function payloadOf(data) {
  try {
    return data ? data.json() : null;
  } catch {
    return null;
  }
}

self.addEventListener("push", (event) => {
  const [title, options] = notificationOf(payloadOf(event.data));
  event.waitUntil(self.registration.showNotification(title, options));
});

/**
 * Open the alert a notification is about: an open console is told to show it
 * (and brought forward); with none open, a new window opens on the alert's URL.
 */
async function openAlert(data) {
  const url = new URL((data && data.url) || "/", self.location.origin).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).pathname === "/");
  if (!open) {
    return self.clients.openWindow(url);
  }
  open.postMessage({ type: "open-alert", alert_id: data && data.alert_id, url });
  try {
    return await open.focus();
  } catch {
    // Focus is allowed only on a tap; the console was told and shows the alert anyway.
    return open;
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openAlert(event.notification.data));
});
