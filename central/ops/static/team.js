// Team (admins only): the operators (polled), invitations, role changes, disabling, password
// resets with a confirmation, and the one-time link each invitation or reset answers with.
import { ApiError, api, esc, fmtTime, poll, reportError, setStatus, timeTag } from "./ops.js";

const rows = document.getElementById("team-rows");
const STATES = {
  active: "Active",
  invited: "Invited",
  reset_pending: "Password reset pending",
  disabled: "Disabled",
};
const REFUSALS = {
  operator_exists: "An operator with this email exists already.",
  invalid_email: "This is not an email address.",
  last_admin: "This is the last active admin: the network needs one.",
  not_yourself: "Another admin must do this to your own account.",
  operator_disabled: "Enable the operator first.",
};

function stateCell(o) {
  const kind = o.state === "active" ? "ok" : o.state === "disabled" ? "off" : "";
  const until = o.link_expires_at ? `<div class="sub">link valid until ${timeTag(o.link_expires_at)}</div>` : "";
  return `<span class="pill ${kind}">${esc(STATES[o.state] || o.state)}</span>${until}`;
}

function actions(o, you) {
  if (o.id === you) return `<span class="muted">You</span>`;
  const button = (act, label) =>
    `<button type="button" class="button small" data-act="${act}" data-id="${o.id}" data-email="${esc(o.email)}">${label}</button>`;
  const role = o.role === "admin" ? button("viewer", "Make viewer") : button("admin", "Make admin");
  const toggle = o.state === "disabled" ? button("enable", "Enable") : button("disable", "Disable");
  const pending = o.state === "invited";
  const reset = o.state === "disabled" ? "" : button("reset", pending ? "New invitation link" : "Reset password");
  return [role, toggle, reset].filter(Boolean).join(" ");
}

function row(o, you) {
  return `<tr data-operator="${esc(o.email)}" data-state="${esc(o.state)}" data-role="${esc(o.role)}">` +
    `<th scope="row">${esc(o.email)}</th><td>${esc(o.role)}</td><td>${stateCell(o)}</td>` +
    `<td>${o.last_login_at ? timeTag(o.last_login_at) : `<span class="muted">never</span>`}</td>` +
    `<td class="row-actions">${actions(o, you)}</td></tr>`;
}

let lastKey = "";
async function refresh() {
  const data = await api("GET", "/ops/api/operators");
  const key = JSON.stringify(data);
  if (key === lastKey) return;
  lastKey = key;
  rows.innerHTML = data.operators.map((o) => row(o, data.you)).join("");
}
const refreshNow = poll(refresh);
function refreshSoon() {
  lastKey = "";
  return refreshNow();
}

// The one-time link -------------------------------------------------------------------------------

const panel = document.getElementById("link-panel");
const linkInput = document.getElementById("link-url");
const copied = document.getElementById("link-copied");

function showLink(out) {
  const invite = out.purpose === "invite";
  document.getElementById("link-title").textContent = invite ? `Invitation for ${out.email}` : `Password reset for ${out.email}`;
  document.getElementById("link-intro").textContent = invite
    ? `${out.email} chooses a password with this link, then signs in.`
    : `${out.email}'s old password no longer works and their sessions ended. They choose a new password with this link.`;
  linkInput.value = out.link;
  const until = fmtTime(out.expires_at);
  let mail;
  if (out.emailed) mail = `Emailed to ${out.email}. The link works once, until ${until}.`;
  else if (out.email_error) mail = `Could not email it (${out.email_error}): give it to ${out.email} yourself. It works once, until ${until}.`;
  else mail = `Email is not configured: give it to ${out.email} yourself. It works once, until ${until}.`;
  document.getElementById("link-mail").textContent = mail;
  copied.textContent = "";
  panel.hidden = false;
  document.getElementById("link-title").focus();
}

document.getElementById("link-copy").addEventListener("click", async () => {
  linkInput.select();
  try {
    await navigator.clipboard.writeText(linkInput.value);
    copied.textContent = "Link copied.";
  } catch {
    copied.textContent = "Copying was refused by the browser: the link is selected, copy it with Ctrl+C.";
  }
});

// Invite ------------------------------------------------------------------------------------------

const inviteForm = document.getElementById("invite-form");
const inviteError = document.getElementById("invite-error");
inviteForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  inviteError.hidden = true;
  const email = inviteForm.email.value.trim();
  if (!email) {
    inviteError.textContent = "Enter the operator's email.";
    inviteError.hidden = false;
    return;
  }
  const button = document.getElementById("invite-submit");
  button.disabled = true;
  try {
    const out = await api("POST", "/ops/api/operators", { email, role: inviteForm.role.value });
    inviteForm.reset();
    setStatus(`${out.email} invited.`);
    showLink(out);
    refreshSoon();
  } catch (error) {
    inviteError.textContent = (error instanceof ApiError && REFUSALS[error.code]) || `Could not invite: ${error.message}`;
    inviteError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

// Row actions, each confirmed first ---------------------------------------------------------------

const dialog = document.getElementById("team-dialog");
const dialogTitle = document.getElementById("team-dialog-title");
const dialogText = document.getElementById("team-dialog-text");
const confirmButton = document.getElementById("team-confirm-submit");
let pending = null;

const ACTIONS = {
  admin: {
    title: "Make admin",
    text: (email) => `${email} will be able to act on banks and parcels and to manage the team.`,
    run: (id) => api("PATCH", `/ops/api/operators/${id}`, { role: "admin" }),
    done: (email) => `${email} is now an admin.`,
  },
  viewer: {
    title: "Make viewer",
    text: (email) => `${email} will only be able to look, from their next request on.`,
    run: (id) => api("PATCH", `/ops/api/operators/${id}`, { role: "viewer" }),
    done: (email) => `${email} is now a viewer.`,
  },
  disable: {
    title: "Disable operator",
    text: (email) => `${email} is signed out everywhere at once and cannot sign in until enabled again.`,
    run: (id) => api("PATCH", `/ops/api/operators/${id}`, { disabled: true }),
    done: (email) => `${email} is disabled.`,
  },
  enable: {
    title: "Enable operator",
    text: (email) => `${email} can sign in again with their password.`,
    run: (id) => api("PATCH", `/ops/api/operators/${id}`, { disabled: false }),
    done: (email) => `${email} is enabled.`,
  },
  reset: {
    title: "Reset password",
    text: (email) => `${email}'s password stops working and their sessions end now; you get a one-time link for them to choose a new one.`,
    run: (id) => api("POST", `/ops/api/operators/${id}/password-reset`),
    done: (email) => `New link for ${email}.`,
  },
};

rows.addEventListener("click", (event) => {
  const button = event.target.closest("[data-act]");
  if (!button) return;
  const action = ACTIONS[button.dataset.act];
  pending = { action, id: button.dataset.id, email: button.dataset.email };
  dialogTitle.textContent = action.title;
  dialogText.textContent = action.text(pending.email);
  confirmButton.textContent = action.title;
  dialog.showModal();
});

document.getElementById("team-cancel").addEventListener("click", () => dialog.close());

document.getElementById("team-confirm").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!pending) return;
  const { action, id, email } = pending;
  pending = null;
  confirmButton.disabled = true;
  try {
    const out = await action.run(encodeURIComponent(id));
    dialog.close();
    setStatus(action.done(email));
    if (out && out.link) showLink(out);
    refreshSoon();
  } catch (error) {
    dialog.close();
    if (error instanceof ApiError && REFUSALS[error.code]) setStatus(REFUSALS[error.code], true);
    else reportError(error);
  } finally {
    confirmButton.disabled = false;
  }
});
