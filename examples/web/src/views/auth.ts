// Sign in / create an account.

import { ApiError, type Api } from "../api";
import { h } from "../util";

export function renderAuth(root: HTMLElement, api: Api, onSignedIn: () => void, notice?: string): void {
  const error = h("p", { class: "form-error", "data-testid": "auth-error", role: "alert" }, notice ?? "");

  const field = (label: string, input: HTMLInputElement) => h("label", { class: "field" }, h("span", {}, label), input);
  const input = (testid: string, type: string, autocomplete: string, extra: Record<string, string | number | boolean> = {}) =>
    h("input", { type, autocomplete, required: true, "data-testid": testid, ...extra });

  const loginEmail = input("login-email", "email", "username");
  const loginPassword = input("login-password", "password", "current-password");
  const login = h(
    "form",
    { class: "auth-form", "data-testid": "login-form" },
    field("Email", loginEmail),
    field("Password", loginPassword),
    h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in"),
  );

  const first = input("register-first-name", "text", "given-name", { maxlength: 100 });
  const last = input("register-last-name", "text", "family-name", { maxlength: 100 });
  const email = input("register-email", "email", "username");
  const password = input("register-password", "password", "new-password", { minlength: 8, maxlength: 128 });
  const register = h(
    "form",
    { class: "auth-form", "data-testid": "register-form", hidden: true },
    h("div", { class: "field-row" }, field("First name", first), field("Last name", last)),
    field("Email", email),
    field("Password (8 characters or more)", password),
    h("button", { type: "submit", class: "primary", "data-testid": "register-submit" }, "Create account"),
  );

  const loginTab = h("button", { type: "button", role: "tab", "data-testid": "auth-tab-login" }, "Sign in");
  const registerTab = h("button", { type: "button", role: "tab", "data-testid": "auth-tab-register" }, "Create account");
  const show = (form: HTMLFormElement) => {
    login.hidden = form !== login;
    register.hidden = form !== register;
    loginTab.setAttribute("aria-selected", String(form === login));
    registerTab.setAttribute("aria-selected", String(form === register));
    error.textContent = "";
  };
  loginTab.addEventListener("click", () => show(login));
  registerTab.addEventListener("click", () => show(register));
  const tabs = h("div", { class: "tabs", role: "tablist" }, loginTab, registerTab);
  show(login);
  error.textContent = notice ?? "";

  const submit = (form: HTMLFormElement, action: () => Promise<void>) =>
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button[type=submit]") as HTMLButtonElement;
      button.disabled = true;
      error.textContent = "";
      try {
        await action();
        onSignedIn();
      } catch (err) {
        error.textContent = err instanceof ApiError ? err.message : "The server cannot be reached.";
      } finally {
        button.disabled = false;
      }
    });
  submit(login, () => api.login({ email: loginEmail.value, password: loginPassword.value }));
  submit(register, () =>
    api.register({ firstName: first.value, lastName: last.value, email: email.value, password: password.value }),
  );

  root.replaceChildren(
    h(
      "main",
      { class: "auth", "data-testid": "auth-view" },
      h(
        "section",
        { class: "auth-card" },
        h("h1", {}, "Scalable Chat"),
        h("p", { class: "muted" }, "Reference web client"),
        tabs,
        login,
        register,
        error,
      ),
    ),
  );
}
