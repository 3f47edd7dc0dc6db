// "New conversation": a named group with the people picked, or, with no name and one person,
// the direct conversation with them (the server returns the existing one if there is one).

import type { Chat } from "../chat";
import { ApiError } from "../api";
import type { User } from "../types";
import { fullName, h } from "../util";

export function mountNewConversation(chat: Chat, onCreated: (groupId: string) => void): { element: HTMLDialogElement; open: () => void } {
  const picked = new Map<string, User>();
  const name = h("input", { type: "text", maxlength: 100, placeholder: "Group name (optional)", "data-testid": "new-group-name" });
  const search = h("input", { type: "search", placeholder: "Search people by name or email", "data-testid": "user-search" });
  const results = h("ul", { class: "user-results", "data-testid": "user-results" });
  const chips = h("div", { class: "chips", "data-testid": "selected-members" });
  const hint = h("p", { class: "muted small-text" });
  const error = h("p", { class: "form-error", "data-testid": "new-conversation-error", role: "alert" });
  const create = h("button", { type: "submit", class: "primary", "data-testid": "create-conversation", disabled: true }, "Create");
  const form = h(
    "form",
    { method: "dialog", class: "new-conversation" },
    h("h2", {}, "New conversation"),
    name,
    search,
    results,
    chips,
    hint,
    error,
    h(
      "div",
      { class: "dialog-actions" },
      h("button", { type: "button", "data-testid": "cancel-conversation", onclick: () => element.close() }, "Cancel"),
      create,
    ),
  );
  const element = h("dialog", { "data-testid": "new-conversation-dialog" }, form);

  const refresh = () => {
    chips.replaceChildren(
      ...[...picked.values()].map((u) =>
        h(
          "button",
          { type: "button", class: "chip", title: "Remove", onclick: () => toggle(u) },
          `${fullName(u)} ×`,
        ),
      ),
    );
    const direct = picked.size === 1 && !name.value.trim();
    create.disabled = picked.size === 0;
    create.textContent = direct ? "Start direct conversation" : "Create group";
    hint.textContent =
      picked.size === 0 ? "Pick at least one person." : direct ? "No name and one person: a direct conversation." : "";
    for (const box of results.querySelectorAll<HTMLInputElement>("input[type=checkbox]")) {
      box.checked = picked.has(box.value);
    }
  };

  const toggle = (user: User) => {
    if (picked.has(user.id)) picked.delete(user.id);
    else picked.set(user.id, user);
    refresh();
  };

  let searchTimer: ReturnType<typeof setTimeout> | undefined;
  let searchRound = 0;
  const runSearch = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const round = ++searchRound;
      try {
        const users = await chat.searchUsers(search.value.trim());
        if (round !== searchRound) return; // a newer search is under way
        results.replaceChildren(
          ...users.map((u) =>
            h(
              "li",
              {},
              h(
                "label",
                { class: "user-result", "data-testid": "user-result", "data-user-id": u.id },
                h("input", { type: "checkbox", value: u.id, onchange: () => toggle(u) }),
                h("span", { class: "user-name" }, fullName(u)),
                h("span", { class: "muted" }, u.email),
              ),
            ),
          ),
        );
        if (users.length === 0) results.append(h("li", { class: "muted" }, "Nobody found"));
        refresh();
      } catch (e) {
        error.textContent = e instanceof ApiError ? e.message : "Search failed.";
      }
    }, 250);
  };
  search.addEventListener("input", runSearch);
  name.addEventListener("input", refresh);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    create.disabled = true;
    error.textContent = "";
    try {
      const id = await chat.createGroup(name.value.trim() || undefined, [...picked.keys()]);
      element.close();
      onCreated(id);
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : "The server cannot be reached.";
    } finally {
      create.disabled = picked.size === 0;
    }
  });

  return {
    element,
    open: () => {
      picked.clear();
      name.value = "";
      search.value = "";
      error.textContent = "";
      results.replaceChildren();
      refresh();
      element.showModal();
      runSearch();
      search.focus();
    },
  };
}
