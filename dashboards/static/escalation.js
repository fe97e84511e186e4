// Escalation on the alert cards: whom it reached, a countdown to the next tier,
// and "escalated to you" for the people the current tier names.
//
// Each alert from the server carries `escalation`: {tier, to, next_at, next_to}
// (tier 0: not escalated yet). A recipient is "role:<role>" or "group:<name>"
// (the rule set's escalation tiers); the logged-in account (/api/auth/me) has a
// role and a list of groups.

import { t } from "./i18n.js";

const NONE = { tier: 0, to: [], next_at: null, next_to: null };

/** Whether a tier's recipients name this account, by its role or one of its groups. */
export function namesUser(recipients, user) {
  if (!user || !recipients) {
    return false;
  }
  const own = new Set([`role:${user.role}`, ...(user.groups ?? []).map((g) => `group:${g}`)]);
  return recipients.some((r) => own.has(r));
}

/** A tier's recipients as the console says them: roles translated, groups by name. */
export function recipientsLabel(recipients) {
  return recipients
    .map((r) => {
      const [kind, name] = r.split(":", 2);
      return kind === "role" ? t(`role.${name}`) : t("escalation.group", { name });
    })
    .join(", ");
}

/** The box's element of class `key`, made (with `className`) on first use. */
function part(box, key, className = key) {
  let el = box.querySelector(`.${key}`);
  if (!el) {
    el = document.createElement("span");
    el.className = className;
    box.append(el);
  }
  return el;
}

/**
 * Draw an alert's escalation on its card (created on first use, inside .alert-main).
 * `formatDuration(ms)` is the console's clock format, shared with the alert's age.
 */
export function renderEscalation(li, alert, user, formatDuration) {
  let box = li.querySelector(".escalation");
  if (!box) {
    box = document.createElement("div");
    box.className = "escalation";
    li.querySelector(".alert-main").append(box);
  }
  const escalation = alert.escalation ?? NONE;
  // Only a call to act: once someone has taken the alert it is no longer "to you".
  const open = alert.state === "open";
  const toMe = open && escalation.tier > 0 && namesUser(escalation.to, user);
  li.classList.toggle("escalated-to-me", toMe);
  li.dataset.escalationTier = String(escalation.tier);

  const mine = part(box, "badge-to-me", "badge badge-to-me");
  mine.hidden = !toMe;
  mine.textContent = t("escalation.toYou");

  const reached = part(box, "escalation-to");
  reached.hidden = escalation.tier === 0 || toMe;
  reached.textContent = escalation.tier ? t("escalation.reached", {
    to: recipientsLabel(escalation.to),
  }) : "";

  const next = part(box, "escalation-next");
  const due = open && escalation.next_at ? Date.parse(escalation.next_at) : NaN;
  next.dataset.due = Number.isNaN(due) ? "" : String(due);
  next.dataset.to = Number.isNaN(due) ? "" : recipientsLabel(escalation.next_to ?? []);
  next.setAttribute("role", "timer");
  tickCountdown(next, Date.now(), formatDuration);
  box.hidden = mine.hidden && reached.hidden && next.hidden;
}

function tickCountdown(el, now, formatDuration) {
  if (!el.dataset.due) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  el.hidden = false;
  const left = Number(el.dataset.due) - now;
  // At zero the gateway's next tick escalates it; the stream then brings the new tier.
  el.textContent = left > 0
    ? t("escalation.next", { time: formatDuration(left), to: el.dataset.to })
    : t("escalation.due", { to: el.dataset.to });
}

/** Move every countdown under `root` on by the clock (called once a second). */
export function tickEscalations(root, now, formatDuration) {
  for (const el of root.querySelectorAll(".escalation-next")) {
    tickCountdown(el, now, formatDuration);
  }
}
