// Thin wrappers over Chart.js (loaded from /ops/static/vendor, built from npm) for the dashboard.

const COLORS = {
  occupied: "#2f6fb3",
  reserved: "#e0a526",
  total: "#8a94a6",
  deposits: "#2f6fb3",
  pickups: "#3c9a5f",
  door_left_open: "#e0a526",
  door_jammed: "#c0504d",
  forced_open: "#7a3db8",
  count: "#2f6fb3",
};

function shortTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  // The zone as every other time on the dashboard shows it.
  return date.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
}

function shortDay(value) {
  const date = new Date(`${value}T00:00:00`);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

const BASE_OPTIONS = {
  responsive: true,
  maintainAspectRatio: false,
  animation: false,
  interaction: { mode: "index", intersect: false },
  plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
  scales: { x: { ticks: { maxTicksLimit: 8, autoSkip: true, maxRotation: 0 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
};

// One chart on a canvas; `show` replaces its data (or says there is none) without re-creating it.
function makeChart(canvas, type, datasetKeys, labelOf, options = {}) {
  if (!canvas) return { show() {} };
  if (!window.Chart) {
    // The vendor file is built from npm by `make assets`; without it the rest still works.
    canvas.closest("figure")?.classList.add("is-missing");
    return { show() {} };
  }
  const chart = new window.Chart(canvas, {
    type,
    data: {
      labels: [],
      datasets: datasetKeys.map(([key, label]) => ({
        label,
        data: [],
        borderColor: COLORS[key],
        backgroundColor: type === "line" ? `${COLORS[key]}33` : COLORS[key],
        fill: type === "line" && key !== "total",
        borderDash: key === "total" ? [4, 4] : undefined,
        pointRadius: 0,
        borderWidth: type === "line" ? 2 : 0,
        tension: 0.2,
      })),
    },
    options: { ...BASE_OPTIONS, ...options },
  });
  const figure = canvas.closest("figure");
  return {
    show(rows) {
      const list = rows || [];
      chart.data.labels = list.map(labelOf);
      datasetKeys.forEach(([key], index) => {
        chart.data.datasets[index].data = list.map((row) => row[key] ?? 0);
      });
      chart.update("none");
      if (figure) {
        figure.dataset.points = String(list.length);
        const empty = list.every((row) => datasetKeys.every(([key]) => key === "total" || !row[key]));
        figure.classList.toggle("is-empty", empty);
      }
    },
  };
}

export function lineChart(canvas) {
  return makeChart(canvas, "line",
    [["occupied", "Occupied"], ["reserved", "Reserved"], ["total", "Compartments"]],
    (row) => shortTime(row.at));
}

export function throughputChart(canvas) {
  return makeChart(canvas, "bar", [["deposits", "Deposits"], ["pickups", "Pickups"]],
    (row) => shortTime(row.hour));
}

export function dwellChart(canvas) {
  return makeChart(canvas, "bar", [["count", "Parcels"]], (row) => row.label,
    { plugins: { legend: { display: false } } });
}

export function faultsChart(canvas) {
  return makeChart(canvas, "bar",
    [["door_left_open", "Door left open"], ["door_jammed", "Door jammed"], ["forced_open", "Forced open"]],
    (row) => shortDay(row.day),
    { scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } });
}
