// The console's service worker: Web Push pages as notifications with the console
// closed, and a tap on one opens that alert.
//
// Served as /sw.js so its scope is the whole console (/). It keeps no copy of
// any page or answer (no fetch handler, no cache): alerts are personal data,
// and a stale queue would mislead; offline, the console says it is offline.
//
// A push carries JSON from gateway/push.py (push_payload):
//   {alert_id, lang, title, body, priority, escalated, tier, url}
// where url is "/?alert=<alert id>", the console's link to one alert. Title and
// body come written in the language the console had when it subscribed (the
// gateway keeps it with the subscription and has the rule set's titles); the
// worker cannot know the console's language, only the phone's.

// Only for a push that is not the gateway's JSON: then the phone's language is all there is.
const FALLBACK = (self.navigator.language || "sv").toLowerCase().startsWith("en")
  ? ["en", "New alert in Nattpatrullen"]
  : ["sv", "Nytt larm i Nattpatrullen"];

self.addEventListener("install", () => {
  // A new version takes over at once: an old worker must not show old texts for long.
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

/** The notification for one push: title, place, and what a tap opens. */
function notificationOf(payload) {
  if (!payload || typeof payload.alert_id !== "string" || typeof payload.title !== "string") {
    // Every push must show something (browsers insist); this one says only "an alert".
    const [lang, title] = FALLBACK;
    return [title, { tag: "wgw-alert", lang, data: { url: "/" } }];
  }
  return [
    payload.title,
    {
      body: payload.body || "",
      tag: `alert:${payload.alert_id}`,
      renotify: true,
      // A priority 1 stays on the screen until someone deals with it.
      requireInteraction: payload.priority === 1,
      vibrate: payload.priority === 1 ? [300, 150, 300, 150, 600] : [200],
      icon: "/static/icons/icon-192.png",
      badge: "/static/icons/icon-192.png",
      lang: payload.lang,
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

/**
 * The push service replaced the subscription (expired, keys renewed): subscribe
 * again with the same key and tell an open console, which sends it to the
 * gateway. The worker does not send it itself: it has no CSRF token, and a
 * POST with the session cookie alone is what the token is there to refuse.
 * With no console open, its next start sends the subscription it finds
 * (push.js startPush); meanwhile the old endpoint answers 404 or 410 and the
 * gateway forgets it.
 */
async function renewSubscription(event) {
  const old = event.oldSubscription;
  const renewed = event.newSubscription
    ?? (old && (await self.registration.pushManager.subscribe(old.options)));
  if (!renewed) {
    return;
  }
  const windows = await self.clients.matchAll({ type: "window" });
  for (const client of windows) {
    client.postMessage({ type: "subscription-changed" });
  }
}

self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(renewSubscription(event));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openAlert(event.notification.data));
});
