// What alerts, timeline entries and recipient notices mean, in words for operators; the raw
// details go behind a toggle (rawDetails) for whoever needs the ids.
import { esc, fmtTime, humanize, timeTag } from "./ops.js";

function seconds(value) {
  const s = Number(value);
  if (!Number.isFinite(s)) return "";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function labels(list) {
  return (list || []).join(", ");
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

// The node's own detail of a compartment event (door left open, fault, out of service).
function nodeDetail(detail) {
  return (detail && typeof detail.detail === "object" && detail.detail) || {};
}

function layoutWords(d) {
  const parts = [];
  if (d.missing_on_node && d.missing_on_node.length) parts.push(`missing on the node: ${labels(d.missing_on_node)}`);
  if (d.unknown_to_central && d.unknown_to_central.length) parts.push(`unknown to central: ${labels(d.unknown_to_central)}`);
  const resized = Object.entries(d.size_differs || {});
  if (resized.length) {
    parts.push(`other size: ${resized.map(([label, s]) => `${label} (central ${s.central}, node ${s.node})`).join(", ")}`);
  }
  return parts.length ? ` (${parts.join("; ")})` : "";
}

// The reasons a recipient can give on their parcel's page (central/parcel_page).
const PROBLEM_WORDS = {
  door_did_not_open: "the door did not open",
  code_does_not_work: "the code does not work",
  parcel_damaged: "a damaged parcel",
  parcel_missing: "a missing or wrong parcel",
  not_me: "a parcel collected by someone else",
  other: "a problem",
};

const ALERT_WORDS = {
  door_left_open: (d, a) => {
    const open = nodeDetail(d).open_for_s;
    return `Door ${d.compartment || a.subject} left open${open !== undefined ? ` for ${seconds(open)}` : ""}`;
  },
  door_fault: (d, a) => {
    const why = nodeDetail(d).reason || nodeDetail(d).error;
    return `Door ${d.compartment || a.subject} is faulty (jammed or not responding)${why ? `: ${why}` : ""}`;
  },
  door_forced_open: (d, a) => `Door ${d.compartment || a.subject} opened without a command (forced open?)`,
  compartment_out_of_service: (d, a) => {
    const why = nodeDetail(d).reason;
    return `Compartment ${d.compartment || a.subject} out of service${why ? `: ${why}` : ""}`;
  },
  bank_offline: (d, a) => `Bank ${a.bank_id} offline since ${fmtTime(d.last_seen_at || a.created_at)}`,
  layout_mismatch: (d, a) => `Compartments of bank ${a.bank_id} differ from its node's${layoutWords(d)}`,
  parcel_past_deadline: (d) => {
    const count = d.count ?? (d.parcels || []).length;
    const numbers = (d.parcels || []).slice(-5).map((p) => p.tracking_number).filter(Boolean);
    return `${plural(count, "parcel", "parcels")} past the pickup deadline, waiting to go back to the carrier` +
      (numbers.length ? ` (${numbers.join(", ")}${count > numbers.length ? ", …" : ""})` : "");
  },
  recipient_problem: (d) => {
    const what = PROBLEM_WORDS[d.reason] || d.reason || "a problem";
    const where = d.compartment ? ` at ${d.compartment}` : "";
    const note = d.message ? `: “${d.message}”` : "";
    const more = (d.earlier_reports || []).length ? ` (${plural(d.earlier_reports.length, "earlier report", "earlier reports")})` : "";
    return `Recipient of ${d.tracking_number || "a parcel"}${where} reports ${what}${note}${more}`;
  },
  webhook_failing: (d) => {
    const last = d.last_error ? `; last error: ${d.last_error}` : "";
    return `Webhook endpoint of ${d.carrier || "a carrier"} failing since ${fmtTime(d.failing_since)}` +
      (d.host ? ` (${d.host}${last})` : last ? ` (${last.slice(2)})` : "");
  },
  update_failed: (d, a) => {
    const what = d.state === "rolled_back" ? "rolled back from" : "failed to install";
    return `Node of bank ${a.bank_id} ${what} version ${d.version || "?"} (runs ${d.running || "?"})` +
      (d.reason ? `: ${d.reason}` : "");
  },
  manual: (d) => `${d.note || "Raised by an operator"}${d.raised_by ? ` (raised by ${d.raised_by})` : ""}`,
  remote_open_budget_exhausted: (d) =>
    "Remote opens reached the fleet's budget: further opens are refused" +
    (d.bank_id ? ` (the last refused: ${d.bank_id}/${d.compartment || "?"} by ${d.operator || "?"})` : ""),
  maintenance_overdue: (d, a) => {
    const what = d.compartment ? `Compartment ${d.compartment} of bank ${a.bank_id}` : `Bank ${a.bank_id}`;
    return `${what} still in maintenance past its expected end (${fmtTime(d.until)})` +
      (d.reason ? `: ${d.reason}` : "");
  },
  mass_open_requested: (d, a) => {
    const what = d.doors === "all" ? "every door" : `${d.doors || "several"} doors`;
    return `${d.requested_by || "An admin"} asks to open ${what} of bank ${a.bank_id}; ` +
      `a second admin must approve by ${fmtTime(d.expires_at)}` + (d.reason ? ` (${d.reason})` : "");
  },
  mass_open_approved: (d, a) =>
    `${d.approved_by || "A second admin"} approved opening ${d.door_count || "several"} doors of bank ${a.bank_id}` +
    (d.requested_by ? `, asked by ${d.requested_by}` : ""),
  // Fleet health (central.nodes.health): what the node's heartbeat said when it was raised.
  power_lost: (d, a) => `Bank ${a.bank_id} lost mains power: its UPS runs on battery`,
  battery_low: (d, a) => `UPS battery of bank ${a.bank_id} is low${d.power === "battery" ? " and the bank runs on it" : ""}`,
  overheating: (d, a) => {
    const what = (d.sensor || a.subject) === "enclosure" ? "Enclosure" : "CPU";
    const reading = Number.isFinite(d.temp_c) ? ` at ${d.temp_c.toFixed(1)} °C` : "";
    const limit = Number.isFinite(d.max_c) ? ` (limit ${d.max_c} °C)` : "";
    return `${what} of bank ${a.bank_id} too hot${reading}${limit}`;
  },
  disk_low: (d, a) => {
    const free = Number.isFinite(d.free_bytes) ? ` (${(d.free_bytes / 1e9).toFixed(2)} GB free${Number.isFinite(d.free_pct) ? `, ${d.free_pct} %` : ""})` : "";
    return `Disk of bank ${a.bank_id}'s node almost full${free}`;
  },
};

// An alert in one sentence: `alert` has the alerts API's shape (type, subject, bank_id, detail).
export function alertWords(alert) {
  const words = ALERT_WORDS[alert.type];
  const detail = alert.detail || {};
  if (words) return words(detail, alert);
  return humanize(alert.type);
}

const NODE_WORDS = {
  "parcel.deposited": (d) => `Parcel ${d.tracking_number || ""} deposited in ${d.compartment}`,
  "parcel.picked_up": (d) => `Parcel ${d.tracking_number || ""} picked up from ${d.compartment}${d.via ? ` by ${d.via === "qr" ? "QR code" : "pickup code"}` : ""}`,
  "parcel.returned": (d) => `Parcel ${d.tracking_number || ""} taken back by the carrier from ${d.compartment}`,
  "parcel.code_reissued": (d) => `New pickup code issued for parcel ${d.tracking_number || ""} in ${d.compartment}`,
  "door.left_open": (d) => {
    const open = nodeDetail(d).open_for_s;
    return `Door ${d.compartment} left open${open !== undefined ? ` for ${seconds(open)}` : ""}`;
  },
  "door.forced_open": (d) => `Door ${d.compartment} opened without a command (forced open?)`,
  "door.fault": (d) => `Door ${d.compartment} is faulty (jammed or not responding)`,
  "compartment.out_of_service": (d) => {
    const why = nodeDetail(d).reason;
    return `Compartment ${d.compartment} out of service${why ? `: ${why}` : ""}`;
  },
  "compartment.in_service": (d) => `Compartment ${d.compartment} back in service`,
};

function parcelWords(entry, tracking) {
  const d = entry.detail || {};
  const parcel = tracking ? `Parcel ${tracking}` : "A parcel";
  const by = d.actor ? ` by the ${d.actor}` : "";
  const why = d.reason ? `: ${d.reason}` : "";
  if (entry.type === "extended") return `${parcel}: pickup deadline extended${by}${why}`;
  if (entry.type === "reminder") return `${parcel}: pickup reminder sent${why}`;
  return `${parcel} ${humanize(d.to || entry.type)}${by}${why}`;
}

// A timeline entry (kind parcel, node or alert) in one sentence. `tracking` maps reservation ids
// to tracking numbers, for parcel entries that carry only the id.
export function timelineWords(entry, bankId, tracking = new Map()) {
  const d = entry.detail || {};
  if (entry.kind === "alert") return `Alert: ${alertWords({ type: entry.type, detail: d, bank_id: bankId, subject: d.compartment })}`;
  if (entry.kind === "parcel") return parcelWords(entry, tracking.get(entry.reservation_id));
  const words = NODE_WORDS[entry.type];
  const tn = d.tracking_number || tracking.get(entry.reservation_id) || "";
  let text = words ? words({ ...d, tracking_number: tn }).replace(/\s+/g, " ") : `${humanize(entry.type)}${d.compartment ? ` at ${d.compartment}` : ""}`;
  if (d.status === "rejected") text += ` (central did not apply it${d.error ? `: ${humanize(d.error)}` : ""})`;
  return text;
}

// The raw detail behind a toggle: ids and the JSON as stored, for whoever needs them.
export function rawDetails(detail, extra = {}) {
  const shown = { ...extra, ...(detail || {}) };
  if (!Object.keys(shown).length) return "";
  return `<details class="raw"><summary>Details</summary><pre>${esc(JSON.stringify(shown, null, 2))}</pre></details>`;
}

// Recipient notices (email, SMS). A status is always said in words; its colour only repeats it.
export const NOTICE_STATUS = { sent: "sent", failed: "failed", pending: "waiting", unsent: "not sent" };
const NOTICE_STATUS_ORDER = ["sent", "failed", "pending", "unsent"];
const NOTICE_KIND = {
  ready: "Ready for pickup",
  reminder: "Pickup reminder",
  extended: "Deadline extended",
  reissued: "New pickup code",
  collected: "Picked up",
  returned: "Returned to the carrier",
};
const NOTICE_CHANNEL = { email: "Email", sms: "SMS" };

function noticeStatus(status) {
  return NOTICE_STATUS[status] || humanize(status);
}

function noticeParts(counts) {
  const known = NOTICE_STATUS_ORDER.filter((s) => counts && counts[s] > 0);
  const other = Object.keys(counts || {}).filter((s) => !NOTICE_STATUS_ORDER.includes(s) && counts[s] > 0);
  return [...known, ...other].map((s) => [s, counts[s]]);
}

// "2 sent · 1 failed", or "none": for labels, dialogs and anything that is text only.
export function noticeSummaryText(counts) {
  const parts = noticeParts(counts);
  return parts.length ? parts.map(([s, n]) => `${n} ${noticeStatus(s)}`).join(" · ") : "none";
}

// The same summary as badges; a failure is marked by a sign as well as its colour.
export function noticeSummary(counts) {
  const parts = noticeParts(counts);
  if (!parts.length) return `<span class="muted">none</span>`;
  return `<span class="notice-summary">${parts.map(([s, n]) =>
    `<span class="nt nt-${esc(s)}" data-notice-count="${esc(s)}">${s === "failed" ? `<span aria-hidden="true">⚠ </span>` : ""}${n} ${esc(noticeStatus(s))}</span>`,
  ).join(`<span class="sep" aria-hidden="true"> · </span>`)}</span>`;
}

function noticeWhen(n) {
  if (n.status === "sent") return `sent ${timeTag(n.sent_at)}`;
  if (n.status === "pending") return `next try ${timeTag(n.next_attempt_at)}`;
  return `queued ${timeTag(n.created_at)}`;
}

// Every notice of a parcel, oldest first: what, how, to whom (masked), its outcome and why.
export function noticeTable(notices) {
  if (!notices || !notices.length) return `<p class="muted">No notices to the recipient.</p>`;
  const cell = (label, html, cls = "") => `<td data-label="${label}"${cls ? ` class="${cls}"` : ""}>${html}</td>`;
  const rows = notices.map((n) =>
    `<tr data-notice-status="${esc(n.status)}" data-notice-kind="${esc(n.kind)}">` +
    cell("Notice", esc(NOTICE_KIND[n.kind] || humanize(n.kind)), "kind") +
    cell("Channel", esc(NOTICE_CHANNEL[n.channel] || n.channel)) +
    cell("To", esc(n.destination_hint), "dest") +
    cell("Status", `<span class="nt nt-${esc(n.status)}">${n.status === "failed" ? `<span aria-hidden="true">⚠ </span>` : ""}${esc(noticeStatus(n.status))}</span>`) +
    cell("Attempts", esc(n.attempts), "num") +
    cell("When", noticeWhen(n)) +
    (n.last_error ? cell("Last error", esc(n.last_error), "notice-error") : `<td class="notice-error empty"></td>`) +
    `</tr>`).join("");
  return `<div class="table-wrap"><table class="data notices"><thead><tr>` +
    `<th scope="col">Notice</th><th scope="col">Channel</th><th scope="col">To</th><th scope="col">Status</th>` +
    `<th scope="col">Attempts</th><th scope="col">When</th><th scope="col">Last error</th>` +
    `</tr></thead><tbody>${rows}</tbody></table></div>`;
}
