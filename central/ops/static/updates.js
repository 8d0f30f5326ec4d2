// Node updates on the fleet page: the active rollouts, each node's progress, and (admins) the
// form that sets the wanted version or stops the rollouts.
import { api, esc, isAdmin, poll, reportError, timeTag } from "./ops.js";

const rows = document.getElementById("updates-rows");
const rollouts = document.getElementById("updates-rollouts");
const status = document.getElementById("updates-status");
const form = document.getElementById("rollout-form");

const STATE_WORDS = {
  idle: "idle",
  installing: "installing",
  switching: "switching",
  verifying: "verifying",
  healthy: "healthy",
  failed: "failed",
  rolled_back: "rolled back",
};
const STATE_PILL = { healthy: "ok", failed: "alert", rolled_back: "alert" };

function rolloutText(r) {
  const where = r.all ? "every bank" : `banks ${r.bank_ids.join(", ")}`;
  return `Version <strong>${esc(r.version)}</strong> for ${esc(where)}, set ${timeTag(r.set_at)}${r.set_by ? ` by ${esc(r.set_by)}` : ""}`;
}

function stateOf(node) {
  // A node that already runs the wanted version is done, whatever it last reported.
  if (node.wanted && node.running === node.wanted && !["failed", "rolled_back"].includes(node.state)) {
    return "healthy";
  }
  return node.state;
}

function render(data) {
  rollouts.innerHTML = data.rollouts.length
    ? `<ul class="rollouts">${data.rollouts.map((r) => `<li>${rolloutText(r)}</li>`).join("")}</ul>`
    : `<p class="muted">No rollout active: every node keeps the version it runs.</p>`;
  if (!data.banks.length) {
    rows.innerHTML = `<tr><td colspan="7" class="muted">No enrolled nodes.</td></tr>`;
    return;
  }
  rows.innerHTML = data.banks.map((n) => {
    const state = stateOf(n);
    const pill = STATE_PILL[state] || "";
    const offline = n.online ? "" : ` <span class="pill off">offline</span>`;
    return `<tr data-bank="${esc(n.bank_id)}" data-state="${esc(state)}">` +
      `<td><a href="/ops/banks/${encodeURIComponent(n.bank_id)}">${esc(n.bank_name)}</a> <span class="muted">${esc(n.bank_id)}</span></td>` +
      `<td>${esc(n.node_id)}${offline}</td>` +
      `<td>${esc(n.wanted || "—")}</td><td>${esc(n.running || "unknown")}</td>` +
      `<td><span class="pill ${pill}">${esc(STATE_WORDS[state] || state)}</span></td>` +
      `<td>${n.since ? timeTag(n.since) : ""}</td>` +
      `<td class="update-detail">${esc(n.detail || "")}</td></tr>`;
  }).join("");
}

const refresh = poll(async () => render(await api("GET", "/ops/api/updates")));

function bankIds() {
  return document.getElementById("rollout-banks").value.split(/[\s,]+/).filter(Boolean);
}

if (form && isAdmin()) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const version = document.getElementById("rollout-version").value.trim();
    const all = document.getElementById("rollout-all").checked;
    const reason = document.getElementById("rollout-reason").value.trim();
    const body = all ? { version, all: true } : { version, bank_ids: bankIds() };
    if (reason) body.reason = reason;
    if (!all && !body.bank_ids.length) {
      status.textContent = "Name at least one bank, or choose every bank.";
      return;
    }
    status.textContent = "Saving…";
    try {
      render(await api("PUT", "/ops/api/updates", body));
      status.textContent = `Wanted version ${version} set; nodes pick it up on their next heartbeat.`;
    } catch (error) {
      status.textContent = `Not set: ${error.message}`;
      reportError(error);
    }
  });
  document.getElementById("rollout-stop").addEventListener("click", async () => {
    status.textContent = "Stopping…";
    try {
      const out = await api("DELETE", "/ops/api/updates");
      status.textContent = `${out.stopped} rollout(s) stopped; nodes keep what they run.`;
      await refresh();
    } catch (error) {
      status.textContent = `Not stopped: ${error.message}`;
      reportError(error);
    }
  });
}
