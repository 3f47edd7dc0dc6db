// Pieces several views share.

import type { Chat, GroupState } from "../chat";
import type { Message } from "../types";
import { h } from "../util";

/** Runs `fn` once after the current task, however often it is asked for before then. */
export function coalesce(fn: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn();
    });
  };
}

/** A presence dot for a person. */
export function presenceDot(chat: Chat, userId: string): HTMLElement {
  const online = chat.isOnline(userId);
  return h("span", {
    class: `presence-dot${online ? " online" : ""}`,
    "data-testid": "presence-dot",
    "data-online": String(online),
    title: online ? "online" : "offline",
  });
}

/** "Ada is typing…", "Ada and Bob are typing…", "3 people are typing…", or "". */
export function typingText(chat: Chat, state: GroupState): string {
  const names = [...state.typing.keys()].map((id) => chat.users.get(id)?.firstName ?? "Someone");
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

/** One line about a message, for the group list. */
export function preview(chat: Chat, state: GroupState, message: Message): string {
  const body = message.deleted
    ? "Message deleted"
    : message.content || (message.attachment ? `Attachment: ${message.attachment.filename}` : "");
  if (message.senderId === chat.me.id) return `You: ${body}`;
  if (state.group.direct) return body;
  return `${chat.users.get(message.senderId)?.firstName ?? "…"}: ${body}`;
}
