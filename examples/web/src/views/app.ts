// The signed-in screen: a bar with the connection status and the user, the group list, and the
// open conversation (named in the URL's hash, `#/g/<groupId>`, so a reload keeps it open).

import type { Api } from "../api";
import { Chat, type ConnectionState } from "../chat";
import { fullName, h } from "../util";
import { revokeAll } from "./assets";
import { mountConversation, type ConversationView } from "./conversation";
import { mountNewConversation } from "./newConversation";
import { mountSidebar } from "./sidebar";

const STATUS_TEXT: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  restarting: "Server restarting, reconnecting…",
};

declare global {
  interface Window {
    /** The running client, for debugging from the console and for the end-to-end test. */
    __chat?: Chat;
  }
}

/** Shows the app for the signed-in user; `onSignOut` after a logout. Returns a teardown. */
export function mountApp(root: HTMLElement, api: Api, onSignOut: () => void): () => void {
  const me = api.user;
  if (!me) throw new Error("not signed in");
  const chat = new Chat(api, me);
  window.__chat = chat;

  const status = h("span", { class: "status", "data-testid": "connection-status", role: "status" });
  const noticeBox = h("div", { class: "notice", "data-testid": "notice", role: "alert", hidden: true });
  let noticeTimer: ReturnType<typeof setTimeout> | undefined;
  const notice = (text: string) => {
    noticeBox.textContent = text;
    noticeBox.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (noticeBox.hidden = true), 6000);
  };

  let stopped = false;
  const teardown = () => {
    if (stopped) return;
    stopped = true;
    conversation?.destroy();
    chat.stop();
    revokeAll();
    window.removeEventListener("hashchange", route);
    if (window.__chat === chat) delete window.__chat;
  };
  const logout = async () => {
    teardown();
    await api.logout();
    history.replaceState(null, "", location.pathname + location.search);
    onSignOut();
  };

  const dialog = mountNewConversation(chat, (id) => (location.hash = `#/g/${id}`));
  const sidebar = mountSidebar(chat, dialog.open);
  const main = h("main", { class: "main" });
  const layout = h("div", { class: "layout" }, sidebar.element, main);
  root.replaceChildren(
    h(
      "div",
      { class: "app", "data-testid": "app-view" },
      h(
        "header",
        { class: "topbar" },
        h("strong", { class: "brand" }, "Scalable Chat"),
        status,
        h("span", { class: "spacer" }),
        h("span", { class: "me", "data-testid": "current-user" }, fullName(me)),
        h("button", { type: "button", class: "small", "data-testid": "logout", onclick: logout }, "Sign out"),
      ),
      layout,
      noticeBox,
      dialog.element,
    ),
  );

  let conversation: ConversationView | undefined;
  /** The group on screen; `undefined` until the first route. */
  let shown: string | null | undefined;
  /** Opens the conversation the hash names (or none). */
  function route(): void {
    const match = /^#\/g\/([^/]+)$/.exec(location.hash);
    const id = match && chat.groups.has(match[1]) ? match[1] : null;
    if (id === shown) return;
    conversation?.destroy();
    conversation = undefined;
    shown = id;
    const state = id ? chat.groups.get(id) : undefined;
    if (state) {
      conversation = mountConversation(chat, state, notice, () => (location.hash = ""));
      main.replaceChildren(conversation.element);
    } else {
      void chat.open(null);
      main.replaceChildren(h("div", { class: "placeholder muted" }, "Pick a conversation, or start one with New."));
    }
    layout.classList.toggle("has-conversation", Boolean(state));
    sidebar.render();
  }

  const renderStatus = () => {
    status.dataset.state = chat.connection;
    status.replaceChildren(h("span", { class: "dot" }), STATUS_TEXT[chat.connection]);
  };
  chat.subscribe((change) => {
    if (change.kind === "connection") renderStatus();
    if (change.kind === "notice") notice(change.text);
    // The open group went away (this user was removed): close it.
    if (change.kind === "groups" && shown && !chat.groups.has(shown)) route();
  });
  renderStatus();
  window.addEventListener("hashchange", route);
  route();
  chat.start().then(route, (e: Error) => notice(`Could not load your conversations: ${e.message}`));
  return teardown;
}
