// Choosing a password through a one-time link: no session, so no CSRF token; the link's token
// is the credential. It travels in this page's fragment (after the #), which the browser never
// sends to a server or proxy: it is read here, removed from the address bar at once (so the
// tab's history does not keep it), and only ever leaves in the body of a POST.

const section = document.getElementById("account");
const title = document.getElementById("account-title");
const checking = document.getElementById("account-checking");
const ready = document.getElementById("account-ready");
const refusal = document.getElementById("account-refusal");
const refused = document.getElementById("account-refused");
const retry = document.getElementById("account-retry");
const form = document.getElementById("account-form");
const password = document.getElementById("account-password");
const repeat = document.getElementById("account-repeat");
const hint = document.getElementById("password-hint");
const error = document.getElementById("account-error");
const minLength = Number(form.dataset.minLength);
const firstHint = hint.textContent;

function takeToken() {
  const hash = location.hash.slice(1);
  if (location.hash) history.replaceState(history.state, "", location.pathname + location.search);
  try {
    return decodeURIComponent(hash);
  } catch {
    return hash; // not percent-encoded as it should be: central will not know it
  }
}

let token = takeToken();

const REFUSALS = {
  weak_password: `The password needs at least ${minLength} characters.`,
  link_used: "This link was used already. Ask an admin for a new one.",
  link_expired: "This link has expired. Ask an admin for a new one.",
  link_revoked: "This link was replaced or withdrawn. Ask an admin for a new one.",
  link_unknown: "This link is not known. Check that the whole link was copied.",
  too_many_attempts: "Too many attempts. Wait a moment and try again.",
};
// What central answers about a link, each with its reason in the page.
const LINK_REFUSALS = new Set(["link_unknown", "link_used", "link_expired", "link_revoked", "too_many_attempts"]);
// Refusals that a new link would not cure: the same link may work in a moment.
const PASSING = new Set(["too_many_attempts", "link_check_failed"]);

function showRefusal(code, failure = "") {
  title.textContent = title.dataset.refused;
  document.title = `${title.dataset.refused} · Locker network operations`;
  refused.dataset.code = code;
  for (const reason of refused.querySelectorAll("[data-reason]")) {
    reason.hidden = reason.dataset.reason !== code;
  }
  document.getElementById("account-failure").textContent = failure;
  refused.querySelector("[data-ask-admin]").hidden = PASSING.has(code);
  retry.hidden = !PASSING.has(code) || !token;
  ready.hidden = true;
  refusal.hidden = false;
}

function showForm(link) {
  title.textContent = title.dataset[link.purpose];
  for (const intro of ready.querySelectorAll("[data-purpose]")) {
    intro.hidden = intro.dataset.purpose !== link.purpose;
  }
  document.getElementById("account-email").value = link.email;
  refusal.hidden = true;
  ready.hidden = false;
  password.focus();
}

let checks = 0; // a link pasted while another is checked: only the latest answer counts

async function checkLink() {
  const check = ++checks;
  checking.hidden = false;
  ready.hidden = true;
  refusal.hidden = true;
  section.setAttribute("aria-busy", "true");
  try {
    if (!token) return showRefusal("link_missing");
    const response = await fetch("/ops/api/account/link", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token }),
      credentials: "omit",
      cache: "no-store",
    });
    const data = await response.json().catch(() => null);
    if (check !== checks) return;
    if (response.ok) return showForm(data);
    const code = data && data.error;
    if (LINK_REFUSALS.has(code)) return showRefusal(code);
    // Too long to be one of central's tokens: a mangled link.
    if (code === "validation_error") return showRefusal("link_unknown");
    return showRefusal("link_check_failed", (data && data.detail) || `error ${response.status}`);
  } catch (e) {
    if (check === checks) showRefusal("link_check_failed", e.message);
  } finally {
    if (check === checks) {
      checking.hidden = true;
      section.removeAttribute("aria-busy");
    }
  }
}

retry.addEventListener("click", checkLink);

// Another link pasted into the address bar of this page changes only the fragment: no new page.
window.addEventListener("hashchange", () => {
  if (!location.hash) return; // our own removal of it
  token = takeToken();
  form.reset();
  hint.textContent = firstHint;
  form.hidden = false;
  error.hidden = true;
  document.getElementById("account-done").hidden = true;
  checkLink();
});

// A rough hint, not a rule: length matters most, then variety.
function strength(value) {
  if (value.length < minLength) {
    const left = minLength - value.length;
    return `${left} more character${left === 1 ? "" : "s"} needed (at least ${minLength}).`;
  }
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(value)).length;
  const words = value.trim().split(/\s+/).length;
  if (value.length >= 20 || words >= 4 || (value.length >= 16 && kinds >= 3)) return "Strong.";
  if (kinds >= 2) return "Good. Longer is stronger.";
  return "Acceptable. Longer, or a few unrelated words, is stronger.";
}

password.addEventListener("input", () => {
  hint.textContent = strength(password.value);
});

function refuse(message, field) {
  error.textContent = message;
  error.hidden = false;
  if (field) field.focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  if (password.value.length < minLength) return refuse(REFUSALS.weak_password, password);
  if (password.value !== repeat.value) return refuse("The two passwords differ.", repeat);
  const button = document.getElementById("account-submit");
  button.disabled = true;
  try {
    const response = await fetch("/ops/api/account/password", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token, password: password.value }),
      credentials: "omit",
      cache: "no-store",
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const code = data && data.error;
      return refuse(REFUSALS[code] || `Could not set the password: ${(data && data.detail) || response.status}`, password);
    }
    form.hidden = true;
    document.getElementById("account-done").hidden = false;
    document.getElementById("account-sign-in").focus();
  } catch (e) {
    refuse(`Could not set the password: ${e.message}`);
  } finally {
    button.disabled = false;
  }
});

checkLink();
