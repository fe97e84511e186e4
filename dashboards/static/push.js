// Web Push for the console: the installable app's service worker, the button that
// turns pages on the phone on and off, and the link that opens one alert.
//
// The link contract: "/?alert=<alert id>" opens the console on that alert (a
// tapped notification opens it; the service worker tells an open console with
// a message instead). The console scrolls to the alert's card and marks it,
// and fires "wgw:open-alert" on document with {alertId}, for a detail view.

import { HttpError } from "./http.js";
import { getLang, t } from "./i18n.js";

const WORKER_URL = "/sw.js";
// How long a linked alert's card waits to appear (the queue fills from the stream).
const LINK_WAIT_MS = 30_000;

const push = {
  api: null, // the console's api(method, path, body), which sends the CSRF token
  notify: null, // the console's notify(text, kind)
  registration: null,
  subscribed: false,
  busy: false,
};

const $ = (id) => document.getElementById(id);

function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** Register the service worker (it makes the console installable) and follow its messages. */
export function registerWorker() {
  if (!("serviceWorker" in navigator)) {
    return;
  }
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data?.type === "open-alert" && event.data.alert_id) {
      showLinkedAlert(event.data.alert_id);
    } else if (event.data?.type === "subscription-changed") {
      resend();
    }
  });
  // The notifications are written in the console's language: a switch is told to the gateway.
  document.addEventListener("wgw:lang", () => resend());
  navigator.serviceWorker
    .register(WORKER_URL, { scope: "/" })
    .then((registration) => {
      push.registration = registration;
      document.body.dataset.worker = "registered";
    })
    .catch(() => {
      // Without the worker the console works as before, only without phone pages.
      document.body.dataset.worker = "failed";
    });
}

/** After login: show the push button, with whether this browser already gets pages. */
export async function startPush(api, notify) {
  push.api = api;
  push.notify = notify;
  const button = $("push-toggle");
  button.hidden = !supported();
  if (button.hidden) {
    return;
  }
  const registration = await navigator.serviceWorker.ready;
  push.registration = registration;
  const subscription = await registration.pushManager.getSubscription();
  push.subscribed = subscription !== null && Notification.permission === "granted";
  renderPush();
  if (push.subscribed) {
    // Told again at each start: the browser may have renewed it, the gateway may have
    // dropped it, or another account used this browser last (it is this one's now).
    await tellGateway(subscription);
  }
}

/** Send the gateway this browser's subscription, with the language to write its pages in. */
function tellGateway(subscription) {
  return push.api("POST", "/api/push/subscribe", { ...subscription.toJSON(), lang: getLang() });
}

/** Send the subscription again (renewed, or the language switched), if pages are on. */
async function resend() {
  if (!push.api || !push.subscribed) {
    return;
  }
  const subscription = await push.registration?.pushManager.getSubscription();
  if (subscription) {
    try {
      await tellGateway(subscription);
    } catch (exc) {
      push.notify(t("push.failed", { detail: exc.message || String(exc) }), "error");
    }
  }
}

/** At logout: this browser stops getting the account's pages (a phone may be shared). */
export async function stopPush() {
  $("push-toggle").hidden = true;
  const subscription = await push.registration?.pushManager.getSubscription();
  if (subscription) {
    await forget(subscription);
  }
}

export function renderPush() {
  const button = $("push-toggle");
  button.setAttribute("aria-pressed", String(push.subscribed));
  const label = button.querySelector(".label");
  label.dataset.i18n = push.subscribed ? "push.on" : "push.off";
  label.textContent = t(label.dataset.i18n);
}

export async function togglePush() {
  if (push.busy) {
    return;
  }
  push.busy = true;
  $("push-toggle").disabled = true;
  try {
    if (push.subscribed) {
      const subscription = await push.registration.pushManager.getSubscription();
      if (subscription) {
        await forget(subscription);
      }
      push.subscribed = false;
      push.notify(t("push.turnedOff"), "ok");
    } else if (await turnOn()) {
      push.subscribed = true;
      push.notify(t("push.turnedOn"), "ok");
    }
  } catch (exc) {
    push.notify(t("push.failed", { detail: exc.message || String(exc) }), "error");
  } finally {
    push.busy = false;
    $("push-toggle").disabled = false;
    renderPush();
  }
}

async function turnOn() {
  if ((await Notification.requestPermission()) !== "granted") {
    push.notify(t("push.denied"), "error");
    return false;
  }
  const { public_key: publicKey, paged_priorities: paged } = await push.api("GET", "/api/push/key");
  const subscription = await push.registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: publicKey,
  });
  await tellGateway(subscription);
  if (!paged.length) {
    push.notify(t("push.nothingPaged"), "error");
  }
  return true;
}

async function forget(subscription) {
  try {
    await push.api("POST", "/api/push/unsubscribe", { endpoint: subscription.endpoint });
  } catch (exc) {
    // Unknown there already (404), or logged out (401): the browser side still goes.
    if (!(exc instanceof HttpError && [401, 404].includes(exc.status))) {
      throw exc;
    }
  }
  await subscription.unsubscribe();
}

// ---------------------------------------------------------------- the alert link

let linkObserver = null;

/** Open the alert the URL names (?alert=<id>), once its card is in the queue. */
export function showLinkedAlertFromUrl() {
  const alertId = new URLSearchParams(window.location.search).get("alert");
  if (alertId) {
    showLinkedAlert(alertId);
  }
}

function showLinkedAlert(alertId) {
  const url = new URL(window.location.href);
  url.searchParams.set("alert", alertId);
  window.history.replaceState(null, "", url);
  linkObserver?.disconnect();
  const queue = $("queue");
  const mark = () => {
    const card = queue.querySelector(`[data-alert-id="${CSS.escape(alertId)}"]`);
    if (!card) {
      return false;
    }
    queue.querySelectorAll(".linked").forEach((el) => el.classList.remove("linked"));
    card.classList.add("linked");
    card.scrollIntoView({ block: "center" });
    card.focus({ preventScroll: true });
    document.dispatchEvent(new CustomEvent("wgw:open-alert", { detail: { alertId } }));
    return true;
  };
  if (mark()) {
    return;
  }
  const observer = new MutationObserver(() => {
    if (mark()) {
      observer.disconnect();
    }
  });
  linkObserver = observer;
  observer.observe(queue, { childList: true });
  // Gone or never ours (resolved meanwhile, another organisation): stop looking.
  window.setTimeout(() => observer.disconnect(), LINK_WAIT_MS);
}
