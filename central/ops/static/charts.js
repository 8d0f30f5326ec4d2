// Network-wide or per-bank charts: occupancy, dwell time, throughput and door faults.
import { api, poll } from "./ops.js";
import { dwellChart, faultsChart, lineChart, throughputChart } from "./chartkit.js";

const form = document.getElementById("chart-filters");
const bankInput = document.getElementById("chart-bank");
const hoursInput = document.getElementById("chart-hours");
const params = new URLSearchParams(location.search);
bankInput.value = params.get("bank_id") || "";
if (params.get("hours")) hoursInput.value = params.get("hours");

const charts = {
  occupancy: lineChart(document.getElementById("occupancy-chart")),
  dwell: dwellChart(document.getElementById("dwell-chart")),
  throughput: throughputChart(document.getElementById("throughput-chart")),
  faults: faultsChart(document.getElementById("faults-chart")),
};

function scope() {
  const bank = bankInput.value.trim();
  return bank ? `bank_id=${encodeURIComponent(bank)}&` : "";
}

async function refresh() {
  const s = scope();
  const hours = encodeURIComponent(hoursInput.value);
  const [occupancy, dwell, throughput, faults] = await Promise.all([
    api("GET", `/ops/api/charts/occupancy?${s}hours=${hours}`),
    api("GET", `/ops/api/charts/dwell?${s}days=30`),
    api("GET", `/ops/api/charts/throughput?${s}hours=${hours}`),
    api("GET", `/ops/api/charts/faults?${s}days=14`),
  ]);
  charts.occupancy.show(occupancy.series);
  charts.dwell.show(dwell.buckets);
  charts.throughput.show(throughput.series);
  charts.faults.show(faults.series);
}

const refreshNow = poll(refresh, 30000);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const next = new URLSearchParams();
  if (bankInput.value.trim()) next.set("bank_id", bankInput.value.trim());
  next.set("hours", hoursInput.value);
  history.replaceState(null, "", `?${next}`);
  refreshNow();
});
