// Where a social alarm's unit was when it alarmed (SCAIP <lge>, the alert's position):
// shown on the alert card and in its detail as a geo: link (RFC 5870), which opens the phone's map app, so the
// night patrol can find someone who fell outdoors.

import { t } from "./i18n.js";

/**
 * Fill `el` with the alert's position and its fix time, or hide it when there is none.
 * `formatClock` renders an ISO time as the console shows times of day.
 */
export function renderPosition(el, position, formatClock) {
  el.hidden = !position;
  if (!position) {
    el.replaceChildren();
    return;
  }
  // Five decimals are shown (about a metre, finer than any alarm unit's fix);
  // the link keeps every digit the unit sent.
  const lat = position.lat.toFixed(5);
  const lon = position.lon.toFixed(5);
  const link = document.createElement("a");
  link.href = `geo:${position.lat},${position.lon}`;
  link.title = t("alert.positionMap");
  link.textContent = `${lat}, ${lon}`;
  const parts = [`${t("alert.position")}: `, link];
  if (position.at) {
    parts.push(` (${t("alert.positionAt", { time: formatClock(position.at) })})`);
  }
  el.replaceChildren(...parts);
}
