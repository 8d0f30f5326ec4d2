// Paging: my subscriptions (add, change, remove); for admins the webhook targets (add, test,
// disable, delete), everyone's subscriptions and the recent pages (polled).
import { api, esc, humanize, isAdmin, poll, reportError, setStatus, timeTag } from "./ops.js";

const admin = isAdmin();
const form = document.getElementById("subscription-form");
const idInput = document.getElementById("subscription-id");
const kindBoxes = [...document.querySelectorAll('input[name="kind"]')];
const kindsAll = document.getElementById("kinds-all");
const kindsChosen = document.getElementById("kinds-chosen");
const banksAll = document.getElementById("banks-all");
const banksChosen = document.getElementById("banks-chosen");
const bankSelect = document.getElementById("bank-select");
const emailBox = document.getElementById("channel-email");
const targetSelect = document.getElementById("channel-target");
const onResolve = document.getElementById("on-resolve");
const submit = document.getElementById("subscription-submit");
const cancel = document.getElementById("subscription-cancel");

let kindLabels = new Map(kindBoxes.map((box) => [box.value, box.parentElement.textContent.trim()]));
let mine = [];

const PAGE_STATUS = { pending: "waiting", sent: "sent", failed: "failed", cancelled: "cancelled", unsent: "not sent" };

function kindsText(types) {
  if (!types) return "All kinds";
  return types.map((t) => kindLabels.get(t) || humanize(t)).join(", ");
}

function banksText(banks) {
  return banks ? banks.join(", ") : "All banks";
}

function channelsText(s) {
  const parts = [];
  if (s.email) parts.push("Email");
  if (s.target_name) parts.push(`Webhook: ${s.target_name}`);
  return parts.join(" · ") || "—";
}

function subscriptionCells(s) {
  return `<td>${esc(kindsText(s.alert_types))}</td><td>${esc(banksText(s.bank_ids))}</td>` +
    `<td>${esc(channelsText(s))}</td><td>${s.on_resolve ? "Paged" : "Not paged"}</td>`;
}

function renderMine() {
  const rows = document.getElementById("my-subscriptions");
  rows.innerHTML = mine.length
    ? mine.map((s) => `<tr data-subscription="${s.id}">${subscriptionCells(s)}<td class="row-actions">` +
        `<button type="button" class="button small" data-edit="${s.id}">Change</button> ` +
        `<button type="button" class="button small" data-delete="${s.id}">Remove</button></td></tr>`).join("")
    : `<tr><td colspan="5" class="muted">You are not paged for anything yet.</td></tr>`;
}

async function loadMine() {
  mine = (await api("GET", "/ops/api/paging/subscriptions")).subscriptions;
  renderMine();
}

async function loadOptions() {
  const options = await api("GET", "/ops/api/paging/options");
  kindLabels = new Map(options.alert_kinds.map((k) => [k.type, k.label]));
  bankSelect.innerHTML = options.banks.map((b) =>
    `<option value="${esc(b.id)}">${esc(b.name === b.id ? b.id : `${b.name} (${b.id})`)}</option>`).join("");
  document.getElementById("email-note").hidden = options.email_configured;
}

async function loadTargets() {
  const { targets } = await api("GET", "/ops/api/paging/targets");
  const chosen = targetSelect.value;
  targetSelect.innerHTML = `<option value="">None</option>` + targets.filter((t) => t.enabled)
    .map((t) => `<option value="${t.id}">${esc(t.name)} (${esc(t.host)})</option>`).join("");
  targetSelect.value = chosen;
  if (!admin) return;
  document.getElementById("targets").innerHTML = targets.length
    ? targets.map((t) => `<tr data-target="${t.id}" data-enabled="${t.enabled ? "yes" : "no"}">` +
        `<td>${esc(t.name)}</td><td>${esc(t.host)}</td><td>${t.enabled ? "Enabled" : "Disabled"}</td>` +
        `<td class="row-actions"><button type="button" class="button small" data-test="${t.id}">Send a test</button> ` +
        `<button type="button" class="button small" data-toggle="${t.id}" data-to="${t.enabled ? "off" : "on"}">${t.enabled ? "Disable" : "Enable"}</button> ` +
        `<button type="button" class="button small" data-remove="${t.id}">Delete</button></td></tr>`).join("")
    : `<tr><td colspan="4" class="muted">No webhook targets.</td></tr>`;
}

function resetForm() {
  form.reset();
  idInput.value = "";
  kindsAll.checked = true;
  banksAll.checked = true;
  onResolve.checked = true;
  [...bankSelect.options].forEach((o) => { o.selected = false; });
  submit.textContent = "Subscribe";
  cancel.hidden = true;
  document.getElementById("subscribe-title").textContent = "Add a subscription";
}

function editForm(s) {
  resetForm();
  idInput.value = String(s.id);
  (s.alert_types ? kindsChosen : kindsAll).checked = true;
  kindBoxes.forEach((box) => { box.checked = Boolean(s.alert_types && s.alert_types.includes(box.value)); });
  (s.bank_ids ? banksChosen : banksAll).checked = true;
  [...bankSelect.options].forEach((o) => { o.selected = Boolean(s.bank_ids && s.bank_ids.includes(o.value)); });
  emailBox.checked = s.email;
  targetSelect.value = s.target_id ? String(s.target_id) : "";
  onResolve.checked = s.on_resolve;
  submit.textContent = "Save the change";
  cancel.hidden = false;
  document.getElementById("subscribe-title").textContent = "Change a subscription";
  form.scrollIntoView({ block: "start" });
}

function formBody() {
  const body = { email: emailBox.checked, on_resolve: onResolve.checked };
  body.alert_types = kindsChosen.checked ? kindBoxes.filter((b) => b.checked).map((b) => b.value) : null;
  body.bank_ids = banksChosen.checked ? [...bankSelect.selectedOptions].map((o) => o.value) : null;
  body.target_id = targetSelect.value ? Number(targetSelect.value) : null;
  return body;
}

// Choosing a kind or a bank means "only these".
kindBoxes.forEach((box) => box.addEventListener("change", () => { if (box.checked) kindsChosen.checked = true; }));
bankSelect.addEventListener("change", () => { if (bankSelect.selectedOptions.length) banksChosen.checked = true; });

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = idInput.value;
  try {
    if (id) await api("PUT", `/ops/api/paging/subscriptions/${encodeURIComponent(id)}`, formBody());
    else await api("POST", "/ops/api/paging/subscriptions", formBody());
    setStatus(id ? "Subscription changed." : "Subscribed.");
    resetForm();
    await loadMine();
    if (admin) refreshAdmin();
  } catch (error) {
    reportError(error);
  }
});
cancel.addEventListener("click", resetForm);

document.getElementById("my-subscriptions").addEventListener("click", async (event) => {
  const edit = event.target.closest("[data-edit]");
  if (edit) {
    const found = mine.find((s) => String(s.id) === edit.dataset.edit);
    if (found) editForm(found);
    return;
  }
  const remove = event.target.closest("[data-delete]");
  if (!remove || !confirm("Remove this subscription?")) return;
  try {
    await api("DELETE", `/ops/api/paging/subscriptions/${encodeURIComponent(remove.dataset.delete)}`);
    setStatus("Subscription removed.");
    if (idInput.value === remove.dataset.delete) resetForm();
    await loadMine();
    if (admin) refreshAdmin();
  } catch (error) {
    reportError(error);
  }
});

// Admins ------------------------------------------------------------------------------------------

function pageRow(p) {
  const status = `<span class="nt nt-${esc(p.status)}">${p.status === "failed" ? `<span aria-hidden="true">⚠ </span>` : ""}${esc(PAGE_STATUS[p.status] || p.status)}</span>`;
  const when = p.status === "sent" ? `sent ${timeTag(p.sent_at)}` : p.status === "pending" ? `next try ${timeTag(p.next_attempt_at)}` : "";
  const digest = p.digest_size ? `<div class="sub">in a digest of ${p.digest_size}</div>` : "";
  return `<tr data-page="${p.id}" data-page-status="${esc(p.status)}" data-channel="${esc(p.channel)}">` +
    `<td>${timeTag(p.created_at)}</td>` +
    `<td>${esc(kindLabels.get(p.alert_type) || humanize(p.alert_type))}<div class="sub">${esc(p.bank_id || "network")} · alert ${p.alert_id}</div></td>` +
    `<td>${esc(p.transition)}</td><td>${esc(p.channel === "email" ? "Email" : "Webhook")}<div class="sub">${esc(p.destination)}</div></td>` +
    `<td>${status}${when ? `<div class="sub">${when}</div>` : ""}${digest}</td><td class="num">${esc(p.attempts)}</td>` +
    `<td class="notice-error">${esc(p.last_error || "")}</td></tr>`;
}

async function refreshAdmin() {
  const status = document.getElementById("outbox-status").value;
  const [everyone, outbox] = await Promise.all([
    api("GET", "/ops/api/paging/subscriptions?all=true"),
    api("GET", `/ops/api/paging/outbox${status ? `?status=${encodeURIComponent(status)}` : ""}`),
  ]);
  document.getElementById("all-subscriptions").innerHTML = everyone.subscriptions.length
    ? everyone.subscriptions.map((s) => `<tr><td>${esc(s.operator)}</td>${subscriptionCells(s)}</tr>`).join("")
    : `<tr><td colspan="5" class="muted">Nobody is paged yet.</td></tr>`;
  document.getElementById("outbox").innerHTML = outbox.pages.length
    ? outbox.pages.map(pageRow).join("")
    : `<tr><td colspan="7" class="muted">No pages.</td></tr>`;
}

if (admin) {
  const targetForm = document.getElementById("target-form");
  targetForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = document.getElementById("target-name").value.trim();
    const url = document.getElementById("target-url").value.trim();
    try {
      await api("POST", "/ops/api/paging/targets", { name, url });
      targetForm.reset();
      setStatus(`Webhook target ${name} added.`);
      await loadTargets();
    } catch (error) {
      reportError(error);
    }
  });
  document.getElementById("targets").addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    try {
      if (button.dataset.test) {
        setStatus("Sending a test page…");
        const out = await api("POST", `/ops/api/paging/targets/${button.dataset.test}/test`);
        setStatus(out.delivered ? `Test page delivered: ${out.detail}.` : `Test page not delivered: ${out.detail}`, !out.delivered);
      } else if (button.dataset.toggle) {
        await api("PATCH", `/ops/api/paging/targets/${button.dataset.toggle}`, { enabled: button.dataset.to === "on" });
        setStatus(button.dataset.to === "on" ? "Target enabled." : "Target disabled: nothing more is paged to it.");
      } else if (button.dataset.remove) {
        if (!confirm("Delete this webhook target? Its waiting pages are cancelled.")) return;
        await api("DELETE", `/ops/api/paging/targets/${button.dataset.remove}`);
        setStatus("Target deleted.");
      }
      await loadTargets();
      await loadMine();
      refreshAdmin();
    } catch (error) {
      reportError(error);
    }
  });
  document.getElementById("outbox-status").addEventListener("change", () => refreshAdmin().catch(reportError));
  document.getElementById("outbox-filters").addEventListener("submit", (event) => event.preventDefault());
}

(async () => {
  try {
    await loadOptions();
    await Promise.all([loadTargets(), loadMine()]);
    if (admin) poll(refreshAdmin);
  } catch (error) {
    reportError(error);
  }
})();
