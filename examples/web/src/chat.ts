// The client's state and its one Socket.IO connection: groups with unread counts, the messages
// of the conversations opened so far, pending sends, receipts, typing and presence. Views read
// the state and subscribe to changes; every REST call and socket event goes through here.

import { io, type Socket } from "socket.io-client";
import { ApiError, type Api } from "./api";
import type {
  Ack,
  Attachment,
  DeletedEvent,
  DeliveredEvent,
  Group,
  HistoryPage,
  MemberRemovedEvent,
  MembersAddedEvent,
  Message,
  PresenceEntry,
  Receipt,
  ResyncEvent,
  RoleChangedEvent,
  SeenEvent,
  TypingEvent,
  User,
  UserPage,
} from "./types";
import { sleep, uuid } from "./util";

/** Messages per history page ("load older"). */
const PAGE_SIZE = 30;
/** How long a send waits for its ack before it is sent again (the server answers within 10 s). */
const SEND_TIMEOUT_MS = 12_000;
const SEND_ATTEMPTS = 6;
const ACK_TIMEOUT_MS = 8_000;
/** Typing: a start is repeated this often while typing (the server drops repeats within 2 s)… */
const TYPING_REPEAT_MS = 2_500;
/** …and ends after this long without a key press. */
const TYPING_IDLE_MS = 3_000;
/** Someone else's "typing" is shown this long unless refreshed. */
const TYPING_SHOWN_MS = 5_000;
/** At most one round of delivery receipts this often. */
const DELIVERED_THROTTLE_MS = 1_000;
const HEARTBEAT_MS = 30_000;
/** Ack error codes worth sending again (same `clientMessageId` for a message). */
const TRANSIENT = new Set(["timeout", "unavailable", "rate_limited"]);

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "restarting";
/** Whether the server has a feature: not known until it answers. */
export type Support = "unknown" | "yes" | "no";

export interface PendingMessage {
  clientMessageId: string;
  groupId: string;
  content?: string;
  attachment?: Attachment;
  createdAt: string;
  state: "sending" | "failed";
  error?: string;
}

export interface GroupState {
  group: Group;
  lastMessage?: Message;
  unread: number;
  /** The highest seq reflected in `unread` and `lastMessage`. */
  countedSeq: number;
  /** The highest seq of a message from someone else that this client knows of. */
  latestFromOthers: number;
  /** Messages by seq, once the conversation has been opened. */
  messages?: Map<number, Message>;
  /** Older messages exist than those held. */
  hasMore: boolean;
  loadingOlder: boolean;
  /** Sends not acknowledged yet, by clientMessageId. */
  pending: Map<string, PendingMessage>;
  /**
   * The group's sends, one at a time: the next goes out when the previous one is acknowledged.
   * Sends in flight together may be stored in any order, and a conversation must keep the order
   * in which its messages were written.
   */
  sending: Promise<void>;
  /** The other members' positions: what their devices received and what they have seen. */
  receipts: Map<string, { deliveredSeq: number; seenSeq: number }>;
  /** Who is typing, until when (ms since the epoch). */
  typing: Map<string, number>;
  /** This user's seen position as the server last told it, and when it last moved. */
  seenSeq: number;
  seenMovedAt: number;
  /** Delivery receipts: the position this device reported, and the one it is about to. */
  deliveredSent: number;
  deliveredWanted: number;
  /** When this state was made (a group list fetched before it may not contain it yet). */
  since: number;
}

export type Change =
  | { kind: "groups" }
  | { kind: "messages"; groupId: string }
  | { kind: "receipts"; groupId: string }
  | { kind: "typing"; groupId: string }
  | { kind: "members"; groupId: string }
  | { kind: "users" }
  | { kind: "presence" }
  | { kind: "connection" }
  | { kind: "notice"; text: string };

/** Thrown when an acknowledged request gets no answer in time or the connection drops meanwhile. */
class NoAnswer extends Error {}

export class Chat {
  readonly groups = new Map<string, GroupState>();
  readonly users = new Map<string, User>();
  readonly presence = new Map<string, PresenceEntry>();
  readonly socket: Socket;
  connection: ConnectionState = "connecting";
  /** Does the server take `chat.message.delivered`? Without it there are no delivered ticks. */
  deliveredSupport: Support = "unknown";
  /** Does the server have `GET /groups/:id/receipts`? */
  receiptsSupport: Support = "unknown";
  /** The `lastSeq` of the last handshake (for debugging and the end-to-end test). */
  lastHandshake: { lastSeq: Record<string, number> } | null = null;
  /** The conversation on screen, and whether its newest message is in view. */
  openGroupId: string | null = null;
  private atBottom = true;

  private readonly listeners = new Set<(change: Change) => void>();
  private readonly usersLoading = new Set<string>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private typingSweep: ReturnType<typeof setInterval> | undefined;
  private seenTimer: ReturnType<typeof setTimeout> | undefined;
  private deliveredTimer: ReturnType<typeof setTimeout> | undefined;
  private lastDeliveredFlush = 0;
  private groupsRefresh: ReturnType<typeof setTimeout> | undefined;
  private everConnected = false;
  private stopped = false;
  /** This user's own typing in the open conversation. */
  private typingSentAt = 0;
  private typingGroup: string | null = null;
  private typingIdle: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly api: Api,
    readonly me: User,
  ) {
    this.users.set(me.id, me);
    this.socket = io(api.base, {
      autoConnect: false,
      // A function, so every (re)connect sends the current token and what this client holds.
      auth: (cb) => {
        this.api.freshToken().then(
          (token) => {
            const lastSeq = this.lastSeqs();
            this.lastHandshake = { lastSeq };
            cb({ token, lastSeq });
          },
          () => cb({}),
        );
      },
    });
    this.wireSocket();
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  /** Loads the group list, then connects (so the handshake can name what this client holds). */
  async start(): Promise<void> {
    await this.refreshGroups();
    if (!this.stopped) this.socket.connect();
  }

  stop(): void {
    this.stopped = true;
    this.stopTyping();
    this.socket.disconnect();
    clearInterval(this.heartbeat);
    clearInterval(this.typingSweep);
    clearTimeout(this.seenTimer);
    clearTimeout(this.deliveredTimer);
    clearTimeout(this.groupsRefresh);
    for (const t of this.timers) clearTimeout(t);
    document.removeEventListener("visibilitychange", this.onVisibility);
    this.listeners.clear();
  }

  subscribe(listener: (change: Change) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(change: Change): void {
    for (const listener of this.listeners) listener(change);
  }

  // ---------------------------------------------------------------- groups

  /** Groups, most recently active first. */
  sortedGroups(): GroupState[] {
    const activity = (g: GroupState) => g.lastMessage?.createdAt ?? g.group.createdAt;
    return [...this.groups.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
  }

  /** `GET /groups`: adds new groups, drops those this user left, takes the server's unread counts. */
  async refreshGroups(): Promise<void> {
    const asked = Date.now();
    const list = await this.api.get<Group[]>("/groups");
    if (this.stopped) return;
    const present = new Set(list.map((g) => g.id));
    for (const [id, state] of this.groups) {
      if (!present.has(id) && state.since < asked) this.dropGroup(id);
    }
    for (const group of list) {
      const state = this.upsertGroup(group);
      const seq = group.lastMessage?.seq ?? 0;
      // The list is at least as recent as what this client counted: take its numbers, except an
      // unread count that a seen receipt since the list was asked for, or the reader, overtook.
      if (seq >= state.countedSeq) {
        state.countedSeq = seq;
        state.lastMessage = group.lastMessage;
        if (state.seenMovedAt < asked && !this.reading(group.id)) state.unread = group.unreadCount ?? 0;
        if (group.lastMessage && group.lastMessage.senderId !== this.me.id) {
          state.latestFromOthers = Math.max(state.latestFromOthers, seq);
        }
      }
    }
    this.notify({ kind: "groups" });
    this.markSeen(); // what the open conversation shows is not unread
  }

  /** Many events at once (a seen receipt from another device, say) refresh the list once. */
  private scheduleGroupsRefresh(): void {
    clearTimeout(this.groupsRefresh);
    this.groupsRefresh = setTimeout(() => this.refreshGroups().catch(() => undefined), 500);
  }

  private upsertGroup(group: Group): GroupState {
    let state = this.groups.get(group.id);
    if (state) {
      state.group = { ...group, lastMessage: undefined, unreadCount: undefined };
    } else {
      state = {
        group: { ...group, lastMessage: undefined, unreadCount: undefined },
        unread: 0,
        countedSeq: 0,
        latestFromOthers: 0,
        hasMore: false,
        loadingOlder: false,
        pending: new Map(),
        sending: Promise.resolve(),
        receipts: new Map(),
        typing: new Map(),
        seenSeq: 0,
        seenMovedAt: 0,
        deliveredSent: 0,
        deliveredWanted: 0,
        since: Date.now(),
      };
      this.groups.set(group.id, state);
    }
    this.ensureUsers(group.members.map((m) => m.userId));
    return state;
  }

  private dropGroup(id: string): void {
    this.groups.delete(id);
    if (this.openGroupId === id) this.openGroupId = null;
  }

  /** `POST /groups`: a named group, or (no name, one other person) their direct conversation. */
  async createGroup(name: string | undefined, memberIds: string[]): Promise<string> {
    const group = await this.api.post<Group>("/groups", name ? { name, memberIds } : { memberIds });
    this.upsertGroup(group);
    this.notify({ kind: "groups" });
    this.requestPresence();
    return group.id;
  }

  /** `GET /users?search=`: other people, for the member picker. */
  async searchUsers(search: string): Promise<User[]> {
    const page = await this.api.get<UserPage>(`/users?search=${encodeURIComponent(search)}&limit=20`);
    for (const user of page.data) this.users.set(user.id, user);
    return page.data.filter((u) => u.id !== this.me.id);
  }

  /** Fetches the people not known yet (`GET /users/:id`), for names; a failure is retried next time. */
  ensureUsers(ids: string[]): void {
    const missing = ids.filter((id) => !this.users.has(id) && !this.usersLoading.has(id));
    for (const id of missing) {
      this.usersLoading.add(id);
      this.api
        .get<User>(`/users/${encodeURIComponent(id)}`)
        .then((user) => {
          this.users.set(id, user);
          if (!this.stopped) this.notify({ kind: "users" });
        })
        .catch(() => undefined)
        .finally(() => this.usersLoading.delete(id));
    }
  }

  /** The group's title: its name, the other person of a direct conversation, or the members. */
  title(group: Group): string {
    if (group.name) return group.name;
    const others = group.members.filter((m) => m.userId !== this.me.id);
    const names = others.map((m) => {
      const u = this.users.get(m.userId);
      return u ? `${u.firstName} ${u.lastName}` : "…";
    });
    return names.join(", ") || "Only you";
  }

  /** The other person of a direct conversation. */
  peer(group: Group): string | undefined {
    return group.direct ? group.members.find((m) => m.userId !== this.me.id)?.userId : undefined;
  }

  isAdmin(group: Group): boolean {
    return group.members.some((m) => m.userId === this.me.id && m.role === "admin");
  }

  // ---------------------------------------------------------------- the open conversation

  /** Shows a conversation: loads its latest page the first time, its receipts, marks it seen. */
  async open(groupId: string | null): Promise<void> {
    if (this.openGroupId && this.openGroupId !== groupId) this.stopTyping();
    this.openGroupId = groupId;
    this.atBottom = true;
    const state = groupId ? this.groups.get(groupId) : undefined;
    if (!state) return;
    const loads: Promise<void>[] = [this.loadReceipts(state)];
    if (!state.messages) loads.push(this.loadLatest(state));
    await Promise.all(loads);
    this.markSeen();
  }

  /** The view says whether the newest message is on screen (then it counts as seen). */
  setAtBottom(atBottom: boolean): void {
    this.atBottom = atBottom;
    if (atBottom) this.markSeen();
  }

  private readonly onVisibility = () => this.markSeen();

  /** The user can see the newest messages of this group right now. */
  private reading(groupId: string): boolean {
    return this.openGroupId === groupId && this.atBottom && document.visibilityState === "visible";
  }

  private async loadLatest(state: GroupState): Promise<void> {
    // Made before the request, so live messages that arrive meanwhile are kept.
    state.messages = new Map();
    try {
      const page = await this.history(state, `limit=${PAGE_SIZE}`);
      state.hasMore = page.hasMore;
    } catch (e) {
      state.messages = undefined; // fetched again next time the conversation opens
      throw e;
    } finally {
      this.notify({ kind: "messages", groupId: state.group.id });
    }
  }

  /** "Load older": the page before the oldest message held. */
  async loadOlder(groupId: string): Promise<void> {
    const state = this.groups.get(groupId);
    if (!state?.messages || state.loadingOlder || !state.hasMore) return;
    const oldest = Math.min(...state.messages.keys());
    state.loadingOlder = true;
    try {
      const page = await this.history(state, `before=${oldest}&limit=${PAGE_SIZE}`);
      state.hasMore = page.hasMore;
    } finally {
      state.loadingOlder = false;
      this.notify({ kind: "messages", groupId });
    }
  }

  /** After a jump in seq (messages this socket missed): everything after `after`, page by page. */
  private async fillGap(state: GroupState, after: number): Promise<void> {
    for (;;) {
      const page = await this.history(state, `after=${after}&limit=100`);
      this.notify({ kind: "messages", groupId: state.group.id });
      if (!page.hasMore || page.data.length === 0) return;
      after = Math.max(...page.data.map((m) => m.seq));
    }
  }

  private async history(state: GroupState, query: string): Promise<HistoryPage> {
    const page = await this.api.get<HistoryPage>(`/groups/${state.group.id}/messages?${query}`);
    for (const message of page.data) this.merge(state, message);
    this.ensureUsers(page.data.map((m) => m.senderId));
    const fromOthers = page.data.filter((m) => m.senderId !== this.me.id).map((m) => m.seq);
    if (fromOthers.length) this.noteArrived(state, Math.max(...fromOthers));
    return page;
  }

  /** Keeps one message per seq: a newer state (edited, deleted) is never replaced by an older one. */
  private merge(state: GroupState, message: Message): void {
    if (!state.messages) return;
    const held = state.messages.get(message.seq);
    const older =
      held && ((held.deleted && !message.deleted) || (held.editedAt ?? "") > (message.editedAt ?? ""));
    if (!older) state.messages.set(message.seq, message);
    if (message.senderId === this.me.id) state.pending.delete(message.clientMessageId);
  }

  /** What the handshake's `lastSeq` names for a group: the newest message this client holds. */
  private lastSeqs(): Record<string, number> {
    const lastSeq: Record<string, number> = {};
    for (const [id, state] of this.groups) {
      lastSeq[id] = state.messages?.size ? Math.max(...state.messages.keys()) : state.countedSeq;
    }
    return lastSeq;
  }

  // ---------------------------------------------------------------- sending

  /** Sends a message; it shows as pending until acknowledged, and is resent with the same id. */
  send(groupId: string, content: string | undefined, attachment?: Attachment): void {
    const state = this.groups.get(groupId);
    if (!state) return;
    const pending: PendingMessage = {
      clientMessageId: uuid(),
      groupId,
      content,
      attachment,
      createdAt: new Date().toISOString(),
      state: "sending",
    };
    state.pending.set(pending.clientMessageId, pending);
    this.stopTyping();
    this.notify({ kind: "messages", groupId });
    this.enqueue(state, pending);
  }

  /** Sends a failed message again (same `clientMessageId`: never a duplicate). */
  retry(groupId: string, clientMessageId: string): void {
    const state = this.groups.get(groupId);
    const pending = state?.pending.get(clientMessageId);
    if (!state || !pending || pending.state !== "failed") return;
    pending.state = "sending";
    pending.error = undefined;
    this.notify({ kind: "messages", groupId });
    this.enqueue(state, pending);
  }

  discard(groupId: string, clientMessageId: string): void {
    this.groups.get(groupId)?.pending.delete(clientMessageId);
    this.notify({ kind: "messages", groupId });
  }

  private enqueue(state: GroupState, pending: PendingMessage): void {
    state.sending = state.sending.then(() => this.deliver(pending));
  }

  /** Sends until acknowledged (or refused, or out of attempts); never rejects. */
  private async deliver(pending: PendingMessage): Promise<void> {
    const payload = {
      groupId: pending.groupId,
      content: pending.content,
      attachment: pending.attachment ? { url: pending.attachment.url } : undefined,
      clientMessageId: pending.clientMessageId,
    };
    let error = "no answer from the server";
    for (let attempt = 1; attempt <= SEND_ATTEMPTS && !this.stopped; attempt++) {
      await this.whenConnected();
      let ack: Ack<{ message: Message }>;
      try {
        ack = await this.request<Ack<{ message: Message }>>("chat.message.send", payload, SEND_TIMEOUT_MS);
      } catch {
        continue; // no ack (the connection dropped, or too slow): resend once connected
      }
      if (ack.ok) {
        this.addMessage(ack.message);
        return;
      }
      error = ack.error.message;
      if (!TRANSIENT.has(ack.error.code)) break;
      await sleep((ack.error.retryAfter ?? 1) * 1000);
    }
    const state = this.groups.get(pending.groupId);
    if (!state?.pending.has(pending.clientMessageId)) return; // stored after all (seen incoming)
    pending.state = "failed";
    pending.error = error;
    this.notify({ kind: "messages", groupId: pending.groupId });
  }

  /** `chat.message.edit`: the new text, within the edit window; throws the refusal. */
  async edit(groupId: string, messageId: string, content: string): Promise<void> {
    const ack = await this.request<Ack<{ message: Message }>>("chat.message.edit", { groupId, messageId, content });
    if (!ack.ok) throw new Error(ack.error.message);
    this.onEdited(ack.message);
  }

  /** `chat.message.delete` (the sender, or an admin); throws the refusal. */
  async remove(groupId: string, messageId: string): Promise<void> {
    const ack = await this.request<Ack<{ messageId: string }>>("chat.message.delete", { groupId, messageId });
    if (!ack.ok) throw new Error(ack.error.message);
  }

  /** The composer calls this on every key press: `chat.typing` starts, repeated while typing. */
  typing(groupId: string): void {
    const now = Date.now();
    if (this.typingGroup !== groupId || now - this.typingSentAt >= TYPING_REPEAT_MS) {
      this.typingGroup = groupId;
      this.typingSentAt = now;
      this.socket.volatile.emit("chat.typing", { groupId, typing: true });
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  /** `typing: false`, if a start went out (on send, idle, or leaving the conversation). */
  stopTyping(): void {
    clearTimeout(this.typingIdle);
    if (!this.typingGroup) return;
    this.socket.volatile.emit("chat.typing", { groupId: this.typingGroup, typing: false });
    this.typingGroup = null;
    this.typingSentAt = 0;
  }

  // ---------------------------------------------------------------- receipts

  /**
   * `chat.message.seen` up to the newest message, when the open conversation shows it, the page
   * is visible and something from someone else is unread. Debounced: a burst is one receipt.
   */
  markSeen(): void {
    clearTimeout(this.seenTimer);
    this.seenTimer = setTimeout(() => {
      const state = this.openGroupId ? this.groups.get(this.openGroupId) : undefined;
      if (!state || !this.reading(state.group.id) || !this.socket.connected) return;
      if (state.latestFromOthers <= state.seenSeq && state.unread === 0) return;
      this.request<Ack<{ seq: number }>>("chat.message.seen", { groupId: state.group.id, seq: state.countedSeq })
        .then((ack) => ack.ok && this.applyOwnSeen(state, ack.seq))
        .catch(() => undefined);
    }, 250);
  }

  /** This user's seen position moved (this device's ack, or another device's event). */
  private applyOwnSeen(state: GroupState, seq: number): void {
    if (seq > state.seenSeq) {
      state.seenSeq = seq;
      state.seenMovedAt = Date.now();
    }
    if (state.seenSeq >= Math.max(state.latestFromOthers, state.countedSeq)) {
      state.unread = 0;
    } else {
      this.scheduleGroupsRefresh(); // only the server can count what is left
    }
    this.notify({ kind: "groups" });
  }

  /** Messages from others reached this device: report it (throttled), unless seen already. */
  private noteArrived(state: GroupState, seq: number): void {
    if (this.deliveredSupport === "no" || seq <= state.deliveredWanted) return;
    state.deliveredWanted = seq;
    this.scheduleDelivered();
  }

  private scheduleDelivered(): void {
    if (this.deliveredTimer || this.deliveredSupport === "no") return;
    const wait = Math.max(50, this.lastDeliveredFlush + DELIVERED_THROTTLE_MS - Date.now());
    this.deliveredTimer = setTimeout(() => {
      this.deliveredTimer = undefined;
      this.lastDeliveredFlush = Date.now();
      void this.flushDelivered();
    }, wait);
  }

  /**
   * `chat.message.delivered {groupId, seq}` for every group with news. A server without delivery
   * receipts answers with an error or not at all: then they stay off, and nothing else changes.
   * Once one was accepted, a refusal concerns that receipt only (a group just left, say).
   */
  private async flushDelivered(): Promise<void> {
    let retry = false;
    for (const state of this.groups.values()) {
      const seq = state.deliveredWanted;
      if (seq <= Math.max(state.deliveredSent, state.seenSeq)) continue;
      if (this.deliveredSupport === "no" || !this.socket.connected) return;
      try {
        const ack = await this.request<Ack<{ seq?: number }>>(
          "chat.message.delivered",
          { groupId: state.group.id, seq },
          5_000,
        );
        if (ack.ok) {
          this.deliveredSupport = "yes";
          state.deliveredSent = Math.max(state.deliveredSent, ack.seq ?? seq);
        } else if (TRANSIENT.has(ack.error.code)) {
          retry = true;
        } else {
          if (this.deliveredSupport === "unknown") this.unsupported(`${ack.error.code}/${ack.error.reason}`);
          state.deliveredSent = Math.max(state.deliveredSent, seq); // refused for good: not again
        }
      } catch {
        // Unanswered while still connected: the server does not know the event.
        if (this.socket.connected && this.deliveredSupport === "unknown") this.unsupported("no acknowledgement");
        return; // disconnected: the next connect flushes again
      }
    }
    if (retry) this.scheduleDelivered();
  }

  private unsupported(why: string): void {
    this.deliveredSupport = "no";
    console.info(`delivery receipts are off: the server answered chat.message.delivered with ${why}`);
  }

  /** `GET /groups/:id/receipts`: every member's positions (a server without it: live events only). */
  private async loadReceipts(state: GroupState): Promise<void> {
    if (this.receiptsSupport === "no") return;
    try {
      const receipts = await this.api.get<Receipt[]>(`/groups/${state.group.id}/receipts`);
      this.receiptsSupport = "yes";
      for (const r of receipts) {
        if (r.userId === this.me.id) {
          state.seenSeq = Math.max(state.seenSeq, r.seenSeq);
          state.deliveredSent = Math.max(state.deliveredSent, r.deliveredSeq);
        } else {
          this.raiseReceipt(state, r.userId, r.deliveredSeq, r.seenSeq);
        }
      }
      this.notify({ kind: "receipts", groupId: state.group.id });
    } catch (e) {
      if (e instanceof ApiError && e.reason === "no_such_route") this.receiptsSupport = "no";
    }
  }

  /** Positions only move forward; seen implies delivered. */
  private raiseReceipt(state: GroupState, userId: string, deliveredSeq: number, seenSeq: number): void {
    const r = state.receipts.get(userId) ?? { deliveredSeq: 0, seenSeq: 0 };
    r.seenSeq = Math.max(r.seenSeq, seenSeq);
    r.deliveredSeq = Math.max(r.deliveredSeq, deliveredSeq, r.seenSeq);
    state.receipts.set(userId, r);
  }

  /**
   * How one of this user's messages stands: `sent` (stored), `delivered` (to every other member's
   * device), `seen` (by every other member); and how many others have seen it.
   */
  receiptOf(state: GroupState, seq: number): { state: "sent" | "delivered" | "seen"; seenBy: number } {
    const others = state.group.members.filter((m) => m.userId !== this.me.id);
    const positions = others.map((m) => state.receipts.get(m.userId) ?? { deliveredSeq: 0, seenSeq: 0 });
    const seenBy = positions.filter((r) => r.seenSeq >= seq).length;
    if (others.length === 0) return { state: "sent", seenBy };
    if (seenBy === others.length) return { state: "seen", seenBy };
    return { state: positions.every((r) => r.deliveredSeq >= seq) ? "delivered" : "sent", seenBy };
  }

  // ---------------------------------------------------------------- presence

  private requestPresence(): void {
    this.request<Ack<{ users: PresenceEntry[] }>>("user.presence", undefined)
      .then((ack) => ack.ok && this.applyPresence(ack.users))
      .catch(() => undefined);
  }

  private applyPresence(users: PresenceEntry[]): void {
    for (const entry of users) this.presence.set(entry.userId, entry);
    this.notify({ kind: "presence" });
  }

  isOnline(userId: string): boolean {
    return this.presence.get(userId)?.isOnline ?? false;
  }

  // ---------------------------------------------------------------- the socket

  /** An acknowledged emit that fails (NoAnswer) on timeout or when the connection drops first. */
  private request<T>(event: string, payload: unknown, timeout = ACK_TIMEOUT_MS): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onDisconnect = () => reject(new NoAnswer(`${event}: disconnected`));
      this.socket.once("disconnect", onDisconnect);
      const args = payload === undefined ? [] : [payload];
      this.socket.timeout(timeout).emit(event, ...args, (err: Error | null, answer: T) => {
        this.socket.off("disconnect", onDisconnect);
        if (err) reject(new NoAnswer(`${event}: no answer in ${timeout} ms`));
        else resolve(answer);
      });
    });
  }

  private whenConnected(): Promise<void> {
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("connect", () => resolve()));
  }

  private setConnection(connection: ConnectionState): void {
    this.connection = connection;
    this.notify({ kind: "connection" });
  }

  private wireSocket(): void {
    const socket = this.socket;
    socket.on("connect", () => {
      this.setConnection("connected");
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => socket.volatile.emit("user.heartbeat"), HEARTBEAT_MS);
      if (this.everConnected) {
        // Groups created and members changed while away; receipts moved while away.
        this.refreshGroups().catch(() => undefined);
        const open = this.openGroupId ? this.groups.get(this.openGroupId) : undefined;
        if (open) void this.loadReceipts(open);
      }
      this.everConnected = true;
      this.markSeen();
      this.scheduleDelivered();
    });
    socket.on("disconnect", (reason) => {
      clearInterval(this.heartbeat);
      if (this.stopped) return;
      if (this.connection !== "restarting") this.setConnection("reconnecting");
      // The server closed the socket itself (not a network failure): the stock client leaves
      // such a socket closed, so reconnect by hand.
      if (reason === "io server disconnect") this.reconnectLater();
    });
    socket.io.on("reconnect_attempt", () => {
      if (this.connection === "connected") this.setConnection("reconnecting");
    });
    socket.on("connect_error", (err) => {
      if (this.stopped) return;
      if (this.connection === "connected") this.setConnection("reconnecting");
      // Refused by the server (a bad or ended token): the stock client stops retrying, so renew
      // the token and try again. Transport failures it retries by itself (socket.active).
      if (!socket.active) {
        console.warn(`connection refused: ${err.message}`);
        this.api.refresh().then(
          () => this.reconnectLater(),
          // A refused refresh signed the user out; anything else (no network) is worth retrying.
          (e) => (e instanceof ApiError && e.status === 401) || this.reconnectLater(),
        );
      }
    });

    socket.on("chat.message.incoming", (message: Message) => this.addMessage(message));
    socket.on("chat.message.edited", (message: Message) => this.onEdited(message));
    socket.on("chat.message.deleted", (event: DeletedEvent) => this.onDeleted(event));
    socket.on("chat.message.seen", (event: SeenEvent) => {
      const state = this.groups.get(event.groupId);
      if (!state) return;
      if (event.userId === this.me.id) {
        this.applyOwnSeen(state, event.seq);
      } else {
        this.raiseReceipt(state, event.userId, event.seq, event.seq);
        this.notify({ kind: "receipts", groupId: event.groupId });
      }
    });
    socket.on("chat.message.delivered", (event: DeliveredEvent) => {
      const state = this.groups.get(event.groupId);
      if (!state || event.userId === this.me.id) return;
      this.raiseReceipt(state, event.userId, event.seq, 0);
      this.notify({ kind: "receipts", groupId: event.groupId });
    });
    socket.on("chat.typing", (event: TypingEvent) => this.onTyping(event));
    socket.on("chat.resync", (event: ResyncEvent) => this.onResync(event));

    socket.on("user.presence", (snapshot: { users: PresenceEntry[] }) => this.applyPresence(snapshot.users));
    socket.on("user.online", ({ userId }: { userId: string }) => {
      const entry = this.presence.get(userId);
      this.presence.set(userId, { userId, isOnline: true, lastSeenAt: entry?.lastSeenAt ?? null });
      this.notify({ kind: "presence" });
    });
    socket.on("user.offline", ({ userId, lastSeenAt }: { userId: string; lastSeenAt: string }) => {
      this.presence.set(userId, { userId, isOnline: false, lastSeenAt });
      this.notify({ kind: "presence" });
    });

    socket.on("group.created", (group: Group) => {
      const known = this.groups.has(group.id);
      this.upsertGroup(group);
      this.notify({ kind: "groups" });
      if (!known) this.requestPresence();
    });
    socket.on("group.members.added", (event: MembersAddedEvent) => this.onMembersAdded(event));
    socket.on("group.member.removed", (event: MemberRemovedEvent) => this.onMemberRemoved(event));
    socket.on("group.member.role_changed", (event: RoleChangedEvent) => {
      const state = this.groups.get(event.groupId);
      const member = state?.group.members.find((m) => m.userId === event.userId);
      if (!state || !member) return;
      member.role = event.role;
      this.notify({ kind: "members", groupId: event.groupId });
    });
    socket.on("server.restarting", () => {
      // The connection closes next; the stock client reconnects by itself and replays.
      this.setConnection("restarting");
    });
  }

  /** A manual reconnect after a refusal, a little later (the stock client does not retry those). */
  private reconnectLater(): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped && !this.socket.connected) this.socket.connect();
    }, 1000 + Math.random() * 1000);
    this.timers.add(timer);
  }

  /** A message, live or replayed after a reconnect, or this client's own send acknowledged. */
  private addMessage(message: Message): void {
    const state = this.groups.get(message.groupId);
    if (!state) {
      this.scheduleGroupsRefresh(); // a group this client has not heard of yet
      return;
    }
    const fromOther = message.senderId !== this.me.id;
    if (state.typing.delete(message.senderId)) this.notify({ kind: "typing", groupId: message.groupId });
    if (state.messages) {
      const newest = state.messages.size ? Math.max(...state.messages.keys()) : 0;
      this.merge(state, message);
      // A jump: this socket missed messages (README: refetch after the last seq you hold).
      if (newest > 0 && message.seq > newest + 1) this.fillGap(state, newest).catch(() => undefined);
    }
    if (message.seq > state.countedSeq) {
      state.countedSeq = message.seq;
      state.lastMessage = message;
      if (fromOther && !this.reading(message.groupId)) state.unread += 1;
    } else if (state.lastMessage?.seq === message.seq) {
      state.lastMessage = message;
    }
    if (fromOther) {
      state.latestFromOthers = Math.max(state.latestFromOthers, message.seq);
      this.noteArrived(state, message.seq);
      this.ensureUsers([message.senderId]);
    }
    this.notify({ kind: "messages", groupId: message.groupId });
    this.notify({ kind: "groups" });
    if (fromOther) this.markSeen();
  }

  private onEdited(message: Message): void {
    const state = this.groups.get(message.groupId);
    if (!state) return;
    this.merge(state, message);
    if (state.lastMessage?.id === message.id) state.lastMessage = message;
    this.notify({ kind: "messages", groupId: message.groupId });
    this.notify({ kind: "groups" });
  }

  private onDeleted(event: DeletedEvent): void {
    const state = this.groups.get(event.groupId);
    if (!state) return;
    const tombstone = (m: Message): Message => ({ ...m, deleted: true, content: undefined, attachment: undefined });
    const held = state.messages?.get(event.seq);
    if (held) state.messages?.set(event.seq, tombstone(held));
    if (state.lastMessage?.seq === event.seq) state.lastMessage = tombstone(state.lastMessage);
    this.notify({ kind: "messages", groupId: event.groupId });
    this.notify({ kind: "groups" });
  }

  private onTyping(event: TypingEvent): void {
    const state = this.groups.get(event.groupId);
    if (!state || event.userId === this.me.id) return;
    if (event.typing) state.typing.set(event.userId, Date.now() + TYPING_SHOWN_MS);
    else state.typing.delete(event.userId);
    this.ensureUsers([event.userId]);
    this.notify({ kind: "typing", groupId: event.groupId });
    // One sweep while anyone types: drops what was not refreshed in time.
    if (!this.typingSweep) {
      this.typingSweep = setInterval(() => {
        const now = Date.now();
        let anyone = false;
        for (const [groupId, s] of this.groups) {
          for (const [userId, until] of s.typing) {
            if (until > now) {
              anyone = true;
            } else {
              s.typing.delete(userId);
              this.notify({ kind: "typing", groupId });
            }
          }
        }
        if (!anyone) {
          clearInterval(this.typingSweep);
          this.typingSweep = undefined;
        }
      }, 500);
    }
  }

  /**
   * Too much was missed for a replay, or the replica may have missed facts: drop what is held
   * and fetch again. A group not known here is one this user was added to meanwhile.
   */
  private onResync(event: ResyncEvent): void {
    const state = this.groups.get(event.groupId);
    if (!state) {
      this.scheduleGroupsRefresh();
      return;
    }
    state.messages = undefined;
    if (this.openGroupId === event.groupId) {
      this.loadLatest(state).catch(() => undefined);
      this.loadReceipts(state).catch(() => undefined);
    }
    this.scheduleGroupsRefresh();
    this.notify({ kind: "messages", groupId: event.groupId });
  }

  private onMembersAdded(event: MembersAddedEvent): void {
    const known = this.groups.has(event.groupId);
    if (event.group) {
      this.upsertGroup(event.group);
    } else {
      this.api
        .get<Group>(`/groups/${event.groupId}`)
        .then((group) => {
          this.upsertGroup(group);
          this.notify({ kind: "members", groupId: group.id });
          this.notify({ kind: "groups" });
        })
        .catch(() => undefined);
    }
    this.ensureUsers(event.userIds);
    this.requestPresence();
    if (!known) this.scheduleGroupsRefresh(); // this user was added: get the unread count too
    this.notify({ kind: "members", groupId: event.groupId });
    this.notify({ kind: "groups" });
  }

  private onMemberRemoved(event: MemberRemovedEvent): void {
    const state = this.groups.get(event.groupId);
    if (!state) return;
    if (event.userId === this.me.id) {
      const title = this.title(state.group);
      this.dropGroup(event.groupId);
      this.notify({ kind: "notice", text: `You are no longer a member of ${title}.` });
      this.notify({ kind: "groups" });
      return;
    }
    state.group.members = state.group.members.filter((m) => m.userId !== event.userId);
    state.receipts.delete(event.userId);
    state.typing.delete(event.userId);
    this.notify({ kind: "members", groupId: event.groupId });
    this.notify({ kind: "groups" });
  }
}
