// Bank settings on the bank page: maintenance of the bank or a compartment, and the policy with
// its opening hours. Admins change them (each change audited by the API); viewers read them.
import { api, esc, isAdmin, poll, timeTag } from "./ops.js";

const bankId = document.body.dataset.bankId;
const base = `/ops/api/banks/${encodeURIComponent(bankId)}`;
const admin = isAdmin();
const DAYS = [
  ["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"],
  ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"],
];

const el = (id) => document.getElementById(id);
const maintenanceStatus = el("maintenance-status");
const policyStatus = el("policy-status");
const policyForm = el("policy-form");
let current = null;
// The policy form is filled from the server until the operator starts editing it, and again
// after each save: a refresh never overwrites what is being typed.
let policyDirty = false;

function say(box, message, isError = false) {
  box.textContent = message;
  box.classList.toggle("error", isError);
}

function failure(error) {
  return `${error.code || error.status || "error"}: ${error.message}`;
}

function describeMaintenance(m) {
  const until = m.until ? `, expected to end ${timeTag(m.until)}` : "";
  const overdue = m.overdue ? ` <span class="pill alert">overdue</span>` : "";
  return `since ${timeTag(m.since)}${until}: ${esc(m.reason)}${overdue}`;
}

function renderMaintenance(settings) {
  const m = settings.maintenance;
  el("maintenance-banner").hidden = !m;
  el("maintenance-none").hidden = Boolean(m);
  el("maintenance-summary").innerHTML = m ? describeMaintenance(m) : "";
  const list = el("compartment-maintenance");
  list.innerHTML = settings.compartments_in_maintenance.length
    ? settings.compartments_in_maintenance.map((c) =>
      `<li data-label="${esc(c.label)}"><strong>${esc(c.label)}</strong> ${describeMaintenance(c)}` +
      (admin ? ` <button type="button" class="button small" data-end="${esc(c.label)}" aria-label="End maintenance of ${esc(c.label)}">End</button>` : "") +
      "</li>").join("")
    : `<li class="muted">None.</li>`;
  const target = el("maintenance-target");
  if (target && target.options.length === 1) {
    for (const label of settings.compartments) target.add(new Option(`Compartment ${label}`, label));
  }
}

function hoursText(periods) {
  return (periods || []).map(([open, close]) => `${open}-${close}`).join(", ");
}

function renderDays() {
  el("hours-days").innerHTML = DAYS.map(([key, name]) =>
    `<label for="hours-${key}">${name}</label>` +
    `<input id="hours-${key}" data-day="${key}" autocomplete="off" placeholder="closed">`).join("");
}

function fillPolicy(settings) {
  const p = settings.policy;
  el("policy-version").textContent = `Settings version ${settings.settings_version}; times in the bank's zone, ${p.timezone}.`;
  el("hours-zone").textContent = `(${p.timezone})`;
  el("policy-hold-hours").value = p.hold_hours;
  el("policy-pickup-hours").value = p.pickup_hours;
  el("policy-reminder-hours").value = p.reminder_hours;
  el("policy-max-extension-hours").value = p.max_extension_hours;
  el("policy-max-extensions").value = p.max_extensions ?? "";
  el("policy-walk-ups").checked = p.allow_walk_up;
  el("policy-upsize").checked = p.allow_upsize;
  el("hours-always").checked = p.opening_hours === null;
  for (const [key] of DAYS) el(`hours-${key}`).value = hoursText(p.opening_hours && p.opening_hours[key]);
  showDays();
}

function showDays() {
  el("hours-days").hidden = el("hours-always").checked;
}

// "08:00-12:00, 14:00-20:00" -> [["08:00", "12:00"], ["14:00", "20:00"]]; the API checks the times.
function parsePeriods(text, day) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  return trimmed.split(",").map((part) => {
    const pair = part.split("-").map((t) => t.trim());
    if (pair.length !== 2 || !pair[0] || !pair[1]) throw new Error(`${day}: write periods like 08:00-20:00`);
    return pair;
  });
}

function policyBody() {
  const number = (id) => Number(el(id).value);
  const extensions = el("policy-max-extensions").value.trim();
  let hours = null;
  if (!el("hours-always").checked) {
    hours = {};
    for (const [key, name] of DAYS) {
      const periods = parsePeriods(el(`hours-${key}`).value, name);
      if (periods.length) hours[key] = periods;
    }
  }
  return {
    hold_hours: number("policy-hold-hours"),
    pickup_hours: number("policy-pickup-hours"),
    reminder_hours: number("policy-reminder-hours"),
    max_extension_hours: number("policy-max-extension-hours"),
    max_extensions: extensions === "" ? null : Number(extensions),
    allow_walk_up: el("policy-walk-ups").checked,
    allow_upsize: el("policy-upsize").checked,
    opening_hours: hours,
  };
}

function show(settings) {
  current = settings;
  renderMaintenance(settings);
  if (!policyDirty) fillPolicy(settings);
}

async function load() {
  show(await api("GET", `${base}/settings`));
}

function maintenancePath(label) {
  return label ? `${base}/compartments/${encodeURIComponent(label)}/maintenance` : `${base}/maintenance`;
}

async function startMaintenance(event) {
  event.preventDefault();
  const label = el("maintenance-target").value;
  const until = el("maintenance-until").value;
  const body = { reason: el("maintenance-reason").value.trim() };
  if (until) body.until = new Date(until).toISOString();
  const button = el("maintenance-start");
  button.disabled = true;
  try {
    show(await api("POST", maintenancePath(label), body));
    say(maintenanceStatus, label ? `Compartment ${label} is in maintenance.` : "The bank is in maintenance.");
    el("maintenance-form").reset();
  } catch (error) {
    say(maintenanceStatus, failure(error), true);
  } finally {
    button.disabled = false;
  }
}

async function endMaintenance(label) {
  try {
    show(await api("DELETE", maintenancePath(label)));
    say(maintenanceStatus, label ? `Compartment ${label} is back in service.` : "The bank is out of maintenance.");
  } catch (error) {
    say(maintenanceStatus, failure(error), true);
  }
}

async function savePolicy(event) {
  event.preventDefault();
  let body;
  try {
    body = policyBody();
  } catch (error) {
    say(policyStatus, error.message, true);
    return;
  }
  const button = el("policy-save");
  button.disabled = true;
  try {
    policyDirty = false;
    show(await api("PUT", `${base}/policy`, body));
    say(policyStatus, `Saved (settings version ${current.settings_version}); the bank's node picks it up from its feed.`);
  } catch (error) {
    policyDirty = true;
    say(policyStatus, failure(error), true);
  } finally {
    button.disabled = false;
  }
}

function wire() {
  renderDays();
  el("hours-always").addEventListener("change", showDays);
  policyForm.addEventListener("input", () => { policyDirty = true; });
  if (!admin) return;
  el("maintenance-form").addEventListener("submit", startMaintenance);
  el("maintenance-end").addEventListener("click", () => endMaintenance(null));
  el("compartment-maintenance").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-end]");
    if (button) endMaintenance(button.dataset.end);
  });
  policyForm.addEventListener("submit", savePolicy);
}

wire();
poll(load, 10000);
