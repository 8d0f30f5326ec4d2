// Guarded opens on a bank's page: ask to open all (or selected) doors, which waits for a second
// admin's approval; the bank's requests still waiting, each with the time it has left.
import { api, esc, isAdmin, poll, reportError, setStatus, timeTag } from "./ops.js";

// "all doors" or "3 doors: A01, A02, A03" (the labels cut short past a few).
export function doorsText(request) {
  if (request.all) return request.door_count ? `all doors (${request.door_count})` : "all doors";
  const labels = request.labels || [];
  const shown = labels.slice(0, 8).join(", ");
  return `${labels.length} doors: ${shown}${labels.length > 8 ? ", …" : ""}`;
}

// "7:32 left", from the request's expiry and the browser's clock.
export function timeLeft(expiresAt, now = Date.now()) {
  const seconds = Math.max(0, Math.floor((new Date(expiresAt).getTime() - now) / 1000));
  if (seconds === 0) return "expired";
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")} left`;
}

// Every element with data-expires shows its time left, once a second.
export function tickCountdowns(root = document) {
  const update = () => {
    for (const element of root.querySelectorAll("[data-expires]")) {
      element.textContent = timeLeft(element.dataset.expires);
    }
  };
  update();
  return setInterval(update, 1000);
}

function me() {
  const element = document.getElementById("operator-email");
  return element ? element.textContent.trim() : "";
}

function startBankPartial(section) {
  const bankId = document.body.dataset.bankId;
  const list = document.getElementById("mass-open-pending");
  const status = document.getElementById("mass-open-status");
  const form = document.getElementById("mass-open-form");
  const labels = document.getElementById("mass-open-labels");
  let lastKey = "";

  function item(r) {
    const cancel = isAdmin() && r.requested_by === me()
      ? ` <button type="button" class="button small" data-cancel="${esc(r.id)}">Cancel</button>`
      : "";
    return `<li data-request-id="${esc(r.id)}" data-status="${esc(r.status)}"><span><strong>${esc(doorsText(r))}</strong>` +
      `<span class="sub"> asked by ${esc(r.requested_by || "")} ${timeTag(r.requested_at)}: ${esc(r.reason)}</span></span>` +
      `<span><span class="countdown" data-expires="${esc(r.expires_at)}">${esc(timeLeft(r.expires_at))}</span>${cancel}</span></li>`;
  }

  async function refresh() {
    const params = new URLSearchParams({ status: "pending", bank_id: bankId });
    const data = await api("GET", `/ops/api/open-requests?${params}`);
    const key = JSON.stringify(data.requests);
    if (key === lastKey) return;
    lastKey = key;
    list.innerHTML = data.requests.length
      ? data.requests.map(item).join("")
      : `<li class="muted">None.</li>`;
  }
  const refreshNow = poll(refresh);
  tickCountdowns(section);

  list.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-cancel]");
    if (!button) return;
    try {
      await api("POST", `/ops/api/open-requests/${encodeURIComponent(button.dataset.cancel)}/cancel`, {});
      status.textContent = "Request cancelled: nothing opens.";
      lastKey = "";
      refreshNow();
    } catch (error) {
      reportError(error);
    }
  });

  if (!form) return;
  api("GET", `/ops/api/banks/${encodeURIComponent(bankId)}`).then((bank) => {
    labels.innerHTML = (bank.compartments || [])
      .map((c) => `<option value="${esc(c.label)}">${esc(c.label)} (${esc(c.size)})</option>`)
      .join("");
  }).catch(reportError);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = document.getElementById("mass-open-reason").value.trim();
    if (!reason) return;
    const all = !event.submitter || event.submitter.value === "all";
    const body = { reason };
    if (all) {
      body.all = true;
    } else {
      body.labels = [...labels.selectedOptions].map((option) => option.value);
      if (body.labels.length < 2) {
        status.textContent = "Pick two or more doors; open a single door from its compartment.";
        return;
      }
    }
    try {
      const request = await api("POST", `/ops/api/banks/${encodeURIComponent(bankId)}/open-requests`, body);
      form.reset();
      status.textContent = `Request ${request.id} (${doorsText(request)}) is waiting for a second admin's approval; nothing opens until then.`;
      setStatus("");
      lastKey = "";
      refreshNow();
    } catch (error) {
      status.textContent = "";
      reportError(error);
    }
  });
}

const section = document.getElementById("mass-open");
if (section) startBankPartial(section);
