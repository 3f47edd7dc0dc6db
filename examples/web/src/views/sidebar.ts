// The group list: most recent first, with unread badges, the last message (or who is typing)
// and, for direct conversations, the other person's presence.

import type { Chat, GroupState } from "../chat";
import { formatTime, h, initials } from "../util";
import { coalesce, presenceDot, preview, typingText } from "./common";

export function mountSidebar(
  chat: Chat,
  onNew: () => void,
): { element: HTMLElement; render: () => void } {
  const list = h("ul", { class: "group-list", "data-testid": "group-list" });
  const empty = h("p", { class: "empty muted" }, "No conversations yet. Start one with New.");
  const element = h(
    "aside",
    { class: "sidebar", "data-testid": "sidebar" },
    h(
      "div",
      { class: "sidebar-head" },
      h("h2", {}, "Chats"),
      h("button", { type: "button", class: "primary small", "data-testid": "new-conversation", onclick: onNew }, "New"),
    ),
    empty,
    list,
  );

  const item = (state: GroupState): HTMLElement => {
    const { group } = state;
    const peer = chat.peer(group);
    const typing = typingText(chat, state);
    const active = chat.openGroupId === group.id;
    return h(
      "li",
      {},
      h(
        "a",
        {
          class: `group-item${active ? " active" : ""}${state.unread ? " unread" : ""}`,
          href: `#/g/${group.id}`,
          "data-testid": "group-item",
          "data-group-id": group.id,
          "data-unread": state.unread,
          "aria-current": active ? "page" : false,
        },
        h(
          "span",
          { class: `avatar${group.direct ? "" : " group"}` },
          peer ? initials(chat.users.get(peer)) : "#",
          peer ? presenceDot(chat, peer) : null,
        ),
        h(
          "span",
          { class: "group-main" },
          h("span", { class: "group-name", "data-testid": "group-name" }, chat.title(group)),
          h(
            "span",
            { class: `group-preview${typing ? " typing" : ""}`, "data-testid": "group-preview" },
            typing || (state.lastMessage ? preview(chat, state, state.lastMessage) : "No messages yet"),
          ),
        ),
        h(
          "span",
          { class: "group-side" },
          state.lastMessage ? h("time", {}, formatTime(state.lastMessage.createdAt)) : null,
          state.unread ? h("span", { class: "badge", "data-testid": "unread-badge" }, state.unread) : null,
        ),
      ),
    );
  };

  const render = coalesce(() => {
    const groups = chat.sortedGroups();
    list.replaceChildren(...groups.map(item));
    empty.hidden = groups.length > 0;
  });
  chat.subscribe((change) => {
    if (["groups", "typing", "presence", "users", "members"].includes(change.kind)) render();
  });
  render();
  return { element, render };
}
