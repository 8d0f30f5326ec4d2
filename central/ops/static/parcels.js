// Parcel search by exact tracking number, with each match's full history and recipient notices.
import { api, esc, humanize, reportError, timeTag } from "./ops.js";
import { noticeSummary, noticeTable } from "./words.js";

const form = document.getElementById("parcel-search");
const input = document.getElementById("tracking");
const results = document.getElementById("parcel-results");

function card(p) {
  const history = (p.history || []).map((h) =>
    `<tr><td>${timeTag(h.at)}</td><td>${esc(humanize(h.status))}</td><td>${esc(h.actor)}</td><td>${esc(h.reason || "")}</td></tr>`).join("");
  const facts = [
    ["Reservation", p.reservation_id],
    ["Carrier", p.carrier],
    ["Status", humanize(p.status)],
    ["Size", p.size],
    ["Compartment", p.compartment || "—"],
  ];
  return `<section class="card parcel" data-reservation="${esc(p.reservation_id)}">` +
    `<h2>${esc(p.tracking_number)} <span class="pill">${esc(humanize(p.status))}</span></h2>` +
    `<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${esc(v)}</dd>`).join("")}` +
    `<dt>Bank</dt><dd><a href="/ops/banks/${encodeURIComponent(p.bank_id)}">${esc(p.bank_id)}</a></dd>` +
    `<dt>Created</dt><dd>${timeTag(p.created_at)}</dd><dt>Reserved until</dt><dd>${timeTag(p.reserved_until)}</dd>` +
    `<dt>Pickup deadline</dt><dd>${timeTag(p.pickup_deadline)}</dd></dl>` +
    `<h3>History</h3><div class="table-wrap"><table class="data history"><thead><tr><th scope="col">When</th><th scope="col">Status</th><th scope="col">Actor</th><th scope="col">Reason</th></tr></thead><tbody>${history}</tbody></table></div>` +
    `<h3 class="notices-head">Notices to the recipient ${noticeSummary(p.notice_counts)}</h3>` +
    `<div class="parcel-notices">${noticeTable(p.notices)}</div></section>`;
}

async function search(tracking) {
  results.setAttribute("aria-busy", "true");
  try {
    const data = await api("GET", `/ops/api/parcels?tracking_number=${encodeURIComponent(tracking)}`);
    results.innerHTML = data.parcels.length
      ? data.parcels.map(card).join("")
      : `<p class="muted">No parcel with tracking number <strong>${esc(tracking)}</strong>.</p>`;
  } catch (error) {
    reportError(error);
  } finally {
    results.setAttribute("aria-busy", "false");
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const tracking = input.value.trim();
  if (!tracking) return;
  history.replaceState(null, "", `?tracking_number=${encodeURIComponent(tracking)}`);
  search(tracking);
});

const initial = new URLSearchParams(location.search).get("tracking_number");
if (initial) {
  input.value = initial;
  search(initial);
} else {
  input.focus();
}
