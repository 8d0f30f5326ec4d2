// Shared by every dashboard page: the JSON API client (session, CSRF), polling, formatting.

const POLL_MS = 5000;
let sessionPromise = null;

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function session() {
  if (!sessionPromise) {
    sessionPromise = api("GET", "/ops/api/session").catch((error) => {
      sessionPromise = null;
      throw error;
    });
  }
  return sessionPromise;
}

export function isAdmin() {
  return document.body.dataset.role === "admin";
}

function toLogin() {
  const here = location.pathname + location.search;
  location.assign(`/ops/login?next=${encodeURIComponent(here)}`);
}

// Calls the API; state-changing calls carry the session's CSRF token. A lost session sends the
// operator back to the sign-in page; other errors are thrown as ApiError with the API's code.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    if (path !== "/ops/api/session" || method !== "POST") {
      headers["X-CSRF-Token"] = (await session()).csrf_token;
    }
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const code = data && data.error;
    if (response.status === 401 && code === "not_signed_in" && !location.pathname.startsWith("/ops/login")) {
      toLogin();
    }
    throw new ApiError(response.status, code, data && data.detail);
  }
  return data;
}

// Runs `task` now and every few seconds while the tab is visible; returns a function to run it
// at once (after an action), whose promise settles once the page shows fresh data. A slow answer
// never overlaps the next one; a refresh asked for during a run runs straight after it, so an
// action's outcome is never lost to a poll that was already on its way.
export function poll(task, intervalMs = POLL_MS) {
  let timer = null;
  let running = null;
  let again = false;
  let failed = false;
  async function runOnce() {
    try {
      await task();
      if (failed) setStatus("");
      failed = false;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        failed = true;
        setStatus(`Could not refresh: ${error.message}`, true);
      }
    }
  }
  function tick() {
    clearTimeout(timer);
    timer = null;
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await runOnce();
      } while (again);
    })().finally(() => {
      running = null;
      if (!document.hidden) timer = setTimeout(tick, intervalMs);
    });
    return running;
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else if (!timer && !running) {
      tick();
    }
  });
  tick();
  return tick;
}

export function setStatus(message, isError = false) {
  const box = document.getElementById("status");
  if (!box) return;
  box.textContent = message;
  box.classList.toggle("error", Boolean(isError && message));
  box.classList.toggle("shown", Boolean(message));
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Every time is shown in the operator's browser zone, and says which zone that is ("14:02 CET"):
// the API's times are UTC, banks and operators are not.
export const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;

export function fmtTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
  if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
  return date.toLocaleString(undefined, options);
}

export function timeTag(value) {
  if (!value) return "—";
  const date = new Date(value);
  const exact = Number.isNaN(date.getTime()) ? "" : ` title="${esc(`${date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "long" })} (${TIME_ZONE})`)}"`;
  return `<time datetime="${esc(value)}"${exact}>${esc(fmtTime(value))}</time>`;
}

export function fmtHours(hours) {
  if (hours === null || hours === undefined) return "—";
  const h = Number(hours);
  if (h < 1) return `${Math.round(h * 60)} min`;
  if (h < 48) return `${h.toFixed(1)} h`;
  return `${(h / 24).toFixed(1)} d`;
}

export function fmtPct(value) {
  if (value === null || value === undefined) return "—";
  return `${Number(value).toFixed(0)} %`;
}

export function humanize(code) {
  return String(code ?? "").replaceAll("_", " ").replaceAll(".", " ");
}

export function occupancyClass(pct, online = true) {
  if (!online) return "occ-offline";
  if (pct >= 85) return "occ-high";
  if (pct >= 50) return "occ-mid";
  return "occ-low";
}

// A stacked bar (occupied, reserved, out of service, free) as SVG: widths are attributes, so no
// inline style is needed under the pages' Content-Security-Policy.
export function stackBar(counts, width = 120, height = 10) {
  const total = counts.total || 0;
  if (!total) return `<svg class="bar" width="${width}" height="${height}" aria-hidden="true"></svg>`;
  let x = 0;
  const parts = [];
  for (const key of ["occupied", "reserved", "out_of_service"]) {
    const w = ((counts[key] || 0) / total) * width;
    if (w > 0) parts.push(`<rect class="seg-${key}" x="${x.toFixed(1)}" width="${w.toFixed(1)}" height="${height}"/>`);
    x += w;
  }
  return `<svg class="bar" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true"><rect class="seg-free" width="${width}" height="${height}"/>${parts.join("")}</svg>`;
}

export function wireLogout() {
  const button = document.getElementById("logout");
  if (!button) return;
  button.addEventListener("click", async () => {
    try {
      await api("DELETE", "/ops/api/session");
    } finally {
      location.assign("/ops/login");
    }
  });
}

// A page reports API errors in one place: the status line.
export function reportError(error) {
  const message = error instanceof ApiError ? `${error.code || error.status}: ${error.message}` : String(error);
  setStatus(message, true);
}

// Follows a node command until the node acknowledges it (or it fails or expires).
export async function followCommand(commandId, onUpdate) {
  for (let i = 0; i < 120; i += 1) {
    const command = await api("GET", `/ops/api/commands/${encodeURIComponent(commandId)}`);
    onUpdate(command);
    if (command.status !== "pending") return command;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return null;
}

// The page says once which zone its times are in (each time says it again, abbreviated).
function showTimeZone() {
  const box = document.getElementById("time-zone");
  if (box) box.textContent = `Times in ${TIME_ZONE}`;
}

wireLogout();
showTimeZone();
