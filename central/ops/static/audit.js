// The audit log, newest first, polled.
import { api, esc, humanize, poll, timeTag } from "./ops.js";

const rows = document.getElementById("audit-rows");

poll(async () => {
  const data = await api("GET", "/ops/api/audit?limit=200");
  rows.innerHTML = data.entries.length
    ? data.entries.map((e) => `<tr><td>${timeTag(e.at)}</td><td>${esc(e.operator)}</td><td>${esc(humanize(e.action))}</td>` +
      `<td>${esc(e.target)}</td><td>${esc(e.reason || "")}</td><td><span class="pill ${e.outcome === "ok" ? "outcome-ok" : "outcome-bad"}">${esc(e.outcome)}</span></td></tr>`).join("")
    : `<tr><td colspan="6" class="muted">No entries yet.</td></tr>`;
});
