// One conversation: its history ("load older"), live messages, pending sends, edits and deletes,
// receipts on this user's messages, who is typing, the members, and the composer with uploads.

import type { Chat, GroupState, PendingMessage } from "../chat";
import type { Message } from "../types";
import { uploadFile } from "../upload";
import { formatTime, fullName, h } from "../util";
import { renderAttachment } from "./assets";
import { coalesce, presenceDot, typingText } from "./common";

/** Within this many pixels of the end, the newest message counts as in view. */
const BOTTOM_SLACK_PX = 48;
/** A message this soon after the previous one from the same sender goes without a header. */
const RUN_MS = 5 * 60_000;

export interface ConversationView {
  element: HTMLElement;
  destroy: () => void;
}

export function mountConversation(
  chat: Chat,
  state: GroupState,
  notice: (text: string) => void,
  onBack: () => void,
): ConversationView {
  const groupId = state.group.id;
  const title = h("h2", { "data-testid": "conversation-title" });
  const subtitle = h("p", { class: "muted", "data-testid": "conversation-subtitle" });
  const headDot = h("span", { class: "head-dot" });
  const members = h("ul", { class: "members-panel", "data-testid": "members-panel", hidden: true });
  const older = h(
    "button",
    { type: "button", class: "load-older", "data-testid": "load-older", hidden: true },
    "Load older messages",
  );
  const olderBox = h("div", { class: "older" }, older);
  const list = h("div", { class: "message-list", "data-testid": "message-list" }, olderBox);
  const typing = h("div", { class: "typing", "data-testid": "typing-indicator", "aria-live": "polite" });

  // Uploads: a bar with the file name and its progress.
  const uploadName = h("span", { class: "upload-name" });
  const progress = h("progress", { max: 100, value: 0, "data-testid": "upload-progress" });
  const percent = h("span", { class: "upload-percent", "data-testid": "upload-percent" });
  const upload = h("div", { class: "upload", "data-testid": "upload", hidden: true }, uploadName, progress, percent);
  upload.addEventListener("click", () => {
    if (upload.classList.contains("failed")) upload.hidden = true; // dismiss the error
  });
  const fileInput = h("input", { type: "file", hidden: true, "data-testid": "file-input" });
  const attach = h(
    "button",
    { type: "button", class: "attach", title: "Attach a file", "data-testid": "attach-button", onclick: () => fileInput.click() },
    "Attach",
  );
  const input = h("textarea", {
    rows: 1,
    placeholder: "Write a message",
    maxlength: 4000,
    "data-testid": "composer-input",
  });
  const composer = h(
    "form",
    { class: "composer" },
    attach,
    fileInput,
    input,
    h("button", { type: "submit", class: "primary", "data-testid": "send-button" }, "Send"),
  );

  const element = h(
    "section",
    { class: "conversation", "data-testid": "conversation", "data-group-id": groupId },
    h(
      "header",
      { class: "conversation-head" },
      h("button", { type: "button", class: "back", title: "Back", "data-testid": "back", onclick: onBack }, "‹"),
      headDot,
      h("div", { class: "conversation-titles" }, title, subtitle),
      h(
        "button",
        {
          type: "button",
          class: "small",
          "data-testid": "members-toggle",
          onclick: () => (members.hidden = !members.hidden),
        },
        "Members",
      ),
    ),
    members,
    list,
    typing,
    upload,
    composer,
  );

  // ------------------------------------------------------------ the head and the members

  const renderHead = () => {
    title.textContent = chat.title(state.group);
    const peer = chat.peer(state.group);
    headDot.replaceChildren(peer ? presenceDot(chat, peer) : "");
    if (peer) {
      const seen = chat.presence.get(peer)?.lastSeenAt;
      subtitle.textContent = chat.isOnline(peer) ? "online" : seen ? `last seen ${formatTime(seen)}` : "offline";
    } else {
      const online = state.group.members.filter((m) => m.userId !== chat.me.id && chat.isOnline(m.userId)).length;
      subtitle.textContent = `${state.group.members.length} members, ${online} online`;
    }
    members.replaceChildren(
      ...state.group.members.map((m) =>
        h(
          "li",
          { "data-testid": "member", "data-user-id": m.userId },
          presenceDot(chat, m.userId),
          h("span", {}, m.userId === chat.me.id ? "You" : fullName(chat.users.get(m.userId))),
          m.role === "admin" ? h("span", { class: "role" }, "admin") : null,
        ),
      ),
    );
  };

  // ------------------------------------------------------------ messages

  /** Message and pending elements by key, with the state they were drawn from. */
  const drawn = new Map<string, { element: HTMLElement; version: string }>();
  /** Keep the newest message in view while it was (new messages, images loading). */
  let stick = true;

  const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < BOTTOM_SLACK_PX;
  const toBottom = () => {
    list.scrollTop = list.scrollHeight;
  };

  const receiptElement = (m: Message): HTMLElement => {
    const { state: status, seenBy } = chat.receiptOf(state, m.seq);
    const ticks = status === "sent" ? "✓" : "✓✓";
    let label = "";
    if (state.group.direct) label = seenBy ? "Seen" : "";
    else if (seenBy) label = status === "seen" ? "Seen by all" : `Seen by ${seenBy}`;
    return h(
      "span",
      {
        class: `receipt ${status}`,
        "data-testid": "receipt",
        "data-state": status,
        "data-seen-count": seenBy,
        title: status === "sent" ? "Stored" : status === "delivered" ? "Delivered" : "Seen",
      },
      h("span", { class: "ticks" }, ticks),
      label ? h("span", { class: "receipt-label" }, label) : null,
    );
  };

  const editForm = (m: Message, text: HTMLElement) => {
    const area = h("textarea", { class: "edit-input", "data-testid": "edit-input", maxlength: 4000, value: m.content ?? "" });
    const form = h(
      "form",
      { class: "edit-form" },
      area,
      h("button", { type: "submit", class: "primary small", "data-testid": "edit-save" }, "Save"),
      h("button", { type: "button", class: "small", onclick: () => form.replaceWith(text) }, "Cancel"),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const content = area.value.trim();
      if (!content || content === m.content) return form.replaceWith(text);
      chat.edit(groupId, m.id, content).catch((err: Error) => notice(`Not edited: ${err.message}`));
    });
    text.replaceWith(form);
    area.focus();
  };

  /** `continued`: it follows the same sender's previous message closely (no name, no time). */
  const messageElement = (m: Message, continued: boolean): HTMLElement => {
    const mine = m.senderId === chat.me.id;
    const text = h("div", { class: "text", "data-testid": "message-text" }, m.deleted ? "This message was deleted" : m.content ?? "");
    const actions = h("div", { class: "actions" });
    if (!m.deleted && mine && m.content !== undefined) {
      actions.append(
        h("button", { type: "button", class: "link", "data-testid": "edit-message", onclick: () => editForm(m, text) }, "Edit"),
      );
    }
    if (!m.deleted && (mine || chat.isAdmin(state.group))) {
      actions.append(
        h(
          "button",
          {
            type: "button",
            class: "link",
            "data-testid": "delete-message",
            onclick: () => {
              if (confirm("Delete this message for everyone?")) {
                chat.remove(groupId, m.id).catch((err: Error) => notice(`Not deleted: ${err.message}`));
              }
            },
          },
          "Delete",
        ),
      );
    }
    const attachment = !m.deleted && m.attachment ? renderAttachment(chat.api, m.attachment) : null;
    attachment?.querySelector("img")?.addEventListener("load", () => stick && toBottom());
    return h(
      "article",
      {
        class: `message${mine ? " mine" : ""}${m.deleted ? " deleted" : ""}${continued ? " continued" : ""}`,
        "data-testid": "message",
        "data-id": m.id,
        "data-seq": m.seq,
        "data-mine": String(mine),
        "data-deleted": String(m.deleted),
      },
      continued && !m.editedAt
        ? null
        : h(
            "div",
            { class: "meta" },
            mine || continued ? null : h("span", { class: "author" }, fullName(chat.users.get(m.senderId))),
            h("time", { datetime: m.createdAt }, formatTime(m.createdAt)),
            m.editedAt && !m.deleted ? h("span", { class: "edited", "data-testid": "edited" }, "edited") : null,
          ),
      h("div", { class: "bubble" }, m.deleted || m.content ? text : null, attachment),
      actions.childElementCount || (mine && !m.deleted)
        ? h("div", { class: "foot" }, actions.childElementCount ? actions : null, mine && !m.deleted ? receiptElement(m) : null)
        : null,
    );
  };

  const pendingElement = (p: PendingMessage): HTMLElement =>
    h(
      "article",
      { class: `message mine pending ${p.state}`, "data-testid": "message", "data-pending": p.state },
      h("div", { class: "meta" }, h("time", {}, formatTime(p.createdAt))),
      h(
        "div",
        { class: "bubble" },
        p.content ? h("div", { class: "text", "data-testid": "message-text" }, p.content) : null,
        p.attachment ? h("div", { class: "muted" }, p.attachment.filename) : null,
      ),
      h(
        "div",
        { class: "foot" },
        p.state === "sending"
          ? h("span", { class: "receipt sending", "data-testid": "receipt", "data-state": "sending", title: "Sending" }, "…")
          : h(
              "span",
              { class: "send-failed", "data-testid": "send-failed" },
              `Not sent: ${p.error ?? "error"} `,
              h("button", { type: "button", class: "link", onclick: () => chat.retry(groupId, p.clientMessageId) }, "Retry"),
              h("button", { type: "button", class: "link", onclick: () => chat.discard(groupId, p.clientMessageId) }, "Discard"),
            ),
      ),
    );

  /**
   * Brings the list in line with the state, reusing the elements of unchanged messages, and
   * keeps the reader's place: at the bottom if they were there, else on the same message.
   */
  const renderMessages = coalesce(() => {
    const wasAtBottom = stick;
    // The first message at the top of the view (the list is the elements' offsetParent).
    const anchor = [...list.children].find(
      (e): e is HTMLElement => e !== olderBox && e instanceof HTMLElement && e.offsetTop >= list.scrollTop,
    );
    const anchorTop = anchor?.offsetTop ?? 0;

    const messages = [...(state.messages?.values() ?? [])].sort((a, b) => a.seq - b.seq);
    const wanted: { key: string; version: string; draw: () => HTMLElement }[] = messages.map((m, i) => {
      const before = messages[i - 1];
      const continued =
        before?.seq === m.seq - 1 &&
        before.senderId === m.senderId &&
        Date.parse(m.createdAt) - Date.parse(before.createdAt) < RUN_MS;
      const author = fullName(chat.users.get(m.senderId));
      return {
        key: `m${m.seq}`,
        version: [m.id, m.deleted, m.editedAt, m.content, author, chat.isAdmin(state.group), continued].join("|"),
        draw: () => messageElement(m, continued),
      };
    });
    for (const p of state.pending.values()) {
      wanted.push({ key: `p${p.clientMessageId}`, version: `${p.state}|${p.error}`, draw: () => pendingElement(p) });
    }

    const keep = new Set(wanted.map((w) => w.key));
    for (const [key, d] of drawn) {
      if (!keep.has(key)) {
        d.element.remove();
        drawn.delete(key);
      }
    }
    let previous: Element = olderBox;
    for (const w of wanted) {
      let d = drawn.get(w.key);
      if (!d || d.version !== w.version) {
        const element = w.draw();
        if (d) d.element.replaceWith(element);
        d = { element, version: w.version };
        drawn.set(w.key, d);
      }
      if (previous.nextElementSibling !== d.element) previous.after(d.element);
      previous = d.element;
    }
    older.hidden = !state.hasMore;
    older.disabled = state.loadingOlder;
    older.textContent = state.loadingOlder ? "Loading…" : "Load older messages";

    if (wasAtBottom) toBottom();
    else if (anchor?.isConnected) list.scrollTop += anchor.offsetTop - anchorTop;
  });

  /** Receipts change often; only the status of this user's messages is redrawn. */
  const renderReceipts = coalesce(() => {
    for (const m of state.messages?.values() ?? []) {
      if (m.senderId !== chat.me.id || m.deleted) continue;
      drawn.get(`m${m.seq}`)?.element.querySelector("[data-testid=receipt]")?.replaceWith(receiptElement(m));
    }
  });

  const renderTyping = () => {
    typing.textContent = typingText(chat, state);
  };

  list.addEventListener("scroll", () => {
    stick = nearBottom();
    chat.setAtBottom(stick);
  });
  older.addEventListener("click", () => {
    chat.loadOlder(groupId).catch(() => notice("Could not load older messages."));
  });

  // ------------------------------------------------------------ composing

  const send = () => {
    const content = input.value.trim();
    if (!content) return;
    input.value = "";
    stick = true;
    chat.send(groupId, content);
  };
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  input.addEventListener("input", () => {
    if (input.value.trim()) chat.typing(groupId);
    else chat.stopTyping();
  });
  input.addEventListener("blur", () => chat.stopTyping());

  fileInput.addEventListener("change", async () => {
    const file = fileInput.files?.[0];
    fileInput.value = "";
    if (!file) return;
    attach.disabled = true;
    upload.hidden = false;
    upload.classList.remove("failed");
    uploadName.textContent = file.name;
    const show = (fraction: number) => {
      const value = Math.round(fraction * 100);
      progress.value = value;
      percent.textContent = `${value}%`;
      upload.dataset.percent = String(value);
    };
    show(0);
    try {
      const stored = await uploadFile(chat.api, file, show);
      upload.hidden = true;
      stick = true;
      chat.send(groupId, undefined, stored);
    } catch (err) {
      upload.classList.add("failed");
      percent.textContent = `failed: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      attach.disabled = false;
    }
  });

  const unsubscribe = chat.subscribe((change) => {
    switch (change.kind) {
      case "messages":
        if (change.groupId === groupId) renderMessages();
        break;
      case "receipts":
        if (change.groupId === groupId) renderReceipts();
        break;
      case "typing":
        if (change.groupId === groupId) renderTyping();
        break;
      case "members":
        if (change.groupId === groupId) {
          renderHead();
          renderMessages();
        }
        break;
      case "users":
      case "presence":
        renderHead();
        renderMessages();
        renderTyping();
        break;
    }
  });

  renderHead();
  renderMessages();
  renderTyping();
  chat.open(groupId).catch(() => notice("Could not load this conversation."));
  queueMicrotask(() => input.focus());

  return {
    element,
    destroy: () => {
      unsubscribe();
      chat.stopTyping();
    },
  };
}
