// Approvals: requests to open several doors that wait for a second admin (approve, refuse, or
// cancel one's own), and recent decisions with what the node made of the resulting command.
import { api, esc, followCommand, humanize, isAdmin, poll, reportError, setStatus, timeTag } from "./ops.js";
import { doorsText, tickCountdowns, timeLeft } from "./mass_open.js";

const pendingRows = document.getElementById("pending-rows");
const decidedRows = document.getElementById("decided-rows");
const admin = isAdmin();
const me = (document.getElementById("operator-email")?.textContent || "").trim();

const OUTCOME = {
  approved: "approved",
  refused: "refused",
  cancelled: "cancelled by the requester",
  expired: "expired without a second admin",
};
const COMMAND = {
  pending: "sent, waiting for the node",
  acknowledged: "done, acknowledged by the node",
  failed: "failed on the node",
  expired: "expired before the node took it",
};

function bankCell(r) {
  return `<a href="/ops/banks/${encodeURIComponent(r.bank_id)}">${esc(r.bank_name || r.bank_id)}</a><div class="sub">${esc(r.bank_id)}</div>`;
}

function actions(r) {
  if (!admin) return "";
  const buttons = r.requested_by === me
    ? `<button type="button" class="button small" data-act="cancel" data-id="${esc(r.id)}">Cancel</button>`
    : `<button type="button" class="button small primary" data-act="approve" data-id="${esc(r.id)}">Approve</button> ` +
      `<button type="button" class="button small" data-act="refuse" data-id="${esc(r.id)}">Refuse</button>`;
  return `<td class="row-actions">${buttons}</td>`;
}

function pendingRow(r) {
  return `<tr data-request-id="${esc(r.id)}" data-status="pending"><td>${timeTag(r.requested_at)}</td><td>${bankCell(r)}</td>` +
    `<td>${esc(doorsText(r))}</td><td>${esc(r.reason)}</td><td>${esc(r.requested_by || "")}</td>` +
    `<td><span class="countdown" data-expires="${esc(r.expires_at)}">${esc(timeLeft(r.expires_at))}</span></td>${actions(r)}</tr>`;
}

// What the node answered: {"opened": [...], "failed": {...}} in the ack's detail.
function nodeResult(r) {
  if (!r.command_id) return "—";
  let words = COMMAND[r.command_status] || humanize(r.command_status);
  const detail = r.command_result && r.command_result.detail;
  if (detail) {
    try {
      const parsed = JSON.parse(detail);
      const opened = parsed.opened ? parsed.opened.length : parsed.opened_count;
      const failed = Object.keys(parsed.failed || {});
      words += `: ${opened ?? 0} opened`;
      if (failed.length) words += `, not opened: ${failed.join(", ")}`;
    } catch {
      words += `: ${detail}`;
    }
  }
  return `<span class="command-state" data-command-status="${esc(r.command_status || "")}">${esc(words)}</span>`;
}

function decidedRow(r) {
  const ok = r.status === "approved";
  return `<tr data-request-id="${esc(r.id)}" data-status="${esc(r.status)}"><td>${timeTag(r.requested_at)}</td><td>${bankCell(r)}</td>` +
    `<td>${esc(doorsText(r))}<div class="sub">${esc(r.reason)}</div></td><td>${esc(r.requested_by || "")}</td>` +
    `<td><span class="pill ${ok ? "outcome-ok" : "outcome-bad"}">${esc(OUTCOME[r.status] || r.status)}</span>` +
    `${r.decision_reason ? `<div class="sub">${esc(r.decision_reason)}</div>` : ""}</td>` +
    `<td>${r.decided_by ? `${esc(r.decided_by)}<div class="sub">${timeTag(r.decided_at)}</div>` : "—"}</td><td>${nodeResult(r)}</td></tr>`;
}

let lastKey = "";
async function refresh() {
  const data = await api("GET", "/ops/api/open-requests?status=all&limit=100");
  const key = JSON.stringify(data.requests);
  if (key === lastKey) return;
  lastKey = key;
  const pending = data.requests.filter((r) => r.status === "pending");
  const decided = data.requests.filter((r) => r.status !== "pending");
  pendingRows.innerHTML = pending.length
    ? pending.map(pendingRow).join("")
    : `<tr><td colspan="${admin ? 7 : 6}" class="muted">Nothing is waiting.</td></tr>`;
  decidedRows.innerHTML = decided.length
    ? decided.map(decidedRow).join("")
    : `<tr><td colspan="7" class="muted">No decisions yet.</td></tr>`;
}

const refreshNow = poll(refresh);
tickCountdowns(pendingRows);

const TITLES = {
  approve: ["Approve: the doors open", "Approve and open"],
  refuse: ["Refuse: nothing opens", "Refuse"],
  cancel: ["Cancel your request", "Cancel the request"],
};

const dialog = document.getElementById("decision-dialog");
if (dialog) {
  const kind = document.getElementById("decision-kind");
  const id = document.getElementById("decision-id");
  const reason = document.getElementById("decision-reason");
  pendingRows.addEventListener("click", (event) => {
    const button = event.target.closest("[data-act]");
    if (!button) return;
    kind.value = button.dataset.act;
    id.value = button.dataset.id;
    reason.value = "";
    const row = button.closest("tr");
    const [title, label] = TITLES[kind.value];
    document.getElementById("decision-title").textContent = title;
    document.getElementById("decision-submit").textContent = label;
    document.getElementById("decision-summary").textContent =
      `${row.children[2].textContent} at ${row.children[1].querySelector(".sub").textContent}, asked by ${row.children[4].textContent}.`;
    dialog.showModal();
  });

  document.getElementById("decision-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    const act = kind.value;
    try {
      const request = await api("POST", `/ops/api/open-requests/${encodeURIComponent(id.value)}/${act}`, text ? { reason: text } : {});
      dialog.close();
      lastKey = "";
      refreshNow();
      if (act !== "approve") {
        setStatus(act === "refuse" ? "Request refused: nothing opens." : "Request cancelled: nothing opens.");
        return;
      }
      setStatus(`Approved: ${doorsText(request)} at ${request.bank_id}, sent to the node.`);
      await followCommand(request.command_id, (command) => {
        setStatus(`Approved: ${doorsText(request)} at ${request.bank_id}, ${COMMAND[command.status] || command.status}.`);
        if (command.status !== "pending") {
          lastKey = "";
          refreshNow();
        }
      });
    } catch (error) {
      dialog.close();
      lastKey = "";
      refreshNow();
      reportError(error);
    }
  });
}
