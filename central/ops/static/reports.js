// The daily report per bank as a table, and the same report as a CSV download.
import { api, esc, fmtPct, humanize, reportError } from "./ops.js";

const form = document.getElementById("report-form");
const dateInput = document.getElementById("report-date");
const bankInput = document.getElementById("report-bank");
const csv = document.getElementById("report-csv");
const rows = document.getElementById("report-rows");

function yesterday() {
  const d = new Date(Date.now() - 86400000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function query() {
  const params = new URLSearchParams({ date: dateInput.value });
  if (bankInput.value.trim()) params.set("bank_id", bankInput.value.trim());
  return params.toString();
}

function failures(f) {
  return Object.entries(f || {}).filter(([, n]) => n).map(([k, n]) => `${esc(humanize(k))}: ${n}`).join(", ") || "none";
}

function num(value, digits = 1) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

async function show() {
  csv.href = `/ops/api/reports/daily.csv?${query()}`;
  history.replaceState(null, "", `?${query()}`);
  try {
    const data = await api("GET", `/ops/api/reports/daily?${query()}`);
    rows.innerHTML = data.banks.length
      ? data.banks.map((b) => `<tr data-bank="${esc(b.bank_id)}"><th scope="row"><a href="/ops/banks/${encodeURIComponent(b.bank_id)}">${esc(b.bank_id)}</a></th>` +
        `<td>${fmtPct(b.utilisation_pct)}</td><td>${b.deposits}</td><td>${b.pickups}</td><td>${b.returns}</td>` +
        `<td>${num(b.turnover_per_compartment, 2)}</td><td>${num(b.dwell_hours?.p50)} / ${num(b.dwell_hours?.p90)} / ${num(b.dwell_hours?.p99)}</td>` +
        `<td>${failures(b.failures)}</td></tr>`).join("")
      : `<tr><td colspan="8" class="muted">No banks in this report.</td></tr>`;
  } catch (error) {
    reportError(error);
  }
}

const params = new URLSearchParams(location.search);
dateInput.value = params.get("date") || yesterday();
bankInput.value = params.get("bank_id") || "";
form.addEventListener("submit", (event) => {
  event.preventDefault();
  show();
});
show();
