// The sign-in form: POST /ops/api/session, then on to the page the operator asked for.
import { api, ApiError } from "./ops.js";

const form = document.getElementById("login-form");
const error = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  const button = document.getElementById("login-submit");
  button.disabled = true;
  try {
    await api("POST", "/ops/api/session", {
      email: form.email.value.trim(),
      password: form.password.value,
    });
    location.assign(form.dataset.next || "/ops");
  } catch (e) {
    const messages = {
      invalid_credentials: "Wrong email or password.",
      too_many_attempts: "Too many attempts. Wait a moment and try again.",
    };
    error.textContent = (e instanceof ApiError && messages[e.code]) || `Could not sign in: ${e.message}`;
    error.hidden = false;
    form.password.value = "";
    form.password.focus();
  } finally {
    button.disabled = false;
  }
});
