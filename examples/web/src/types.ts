// The shapes of the REST answers and Socket.IO payloads this client uses, as README.md
// ("API") documents them.

export interface User {
  id: string;
  firstName: string;
  lastName: string;
  email: string;
  profileUrl?: string;
  createdAt: string;
  updatedAt: string;
}

/** What `/auth/register`, `/auth/login` and `/auth/refresh` answer. */
export interface Session {
  user: User;
  accessToken: string;
  refreshToken: string;
  tokenType: "Bearer";
  /** Seconds the access token is valid. */
  expiresIn: number;
  refreshExpiresIn: number;
}

export type Role = "admin" | "member";

export interface Member {
  userId: string;
  role: Role;
  joinedAt: string;
}

export interface Group {
  id: string;
  name?: string;
  imageUrl?: string;
  direct: boolean;
  members: Member[];
  createdAt: string;
  updatedAt: string;
  /** Only in `GET /groups`. */
  lastMessage?: Message;
  /** Only in `GET /groups`. */
  unreadCount?: number;
}

export interface Attachment {
  filename: string;
  url: string;
  type: string;
  size: number;
}

export interface Message {
  id: string;
  groupId: string;
  /** 1, 2, 3, … per group, without gaps. */
  seq: number;
  senderId: string;
  clientMessageId: string;
  content?: string;
  attachment?: Attachment;
  deleted: boolean;
  createdAt: string;
  editedAt?: string;
}

export interface HistoryPage {
  data: Message[];
  hasMore: boolean;
}

export interface UserPage {
  data: User[];
  page: number;
  limit: number;
  total: number;
}

/** `POST /assets/complete-upload`. */
export interface StoredFile {
  id: string;
  url: string;
  filename: string;
  type: string;
  size: number;
  sha256: string;
  createdAt: string;
}

/** One member's read positions (`GET /groups/:id/receipts`). */
export interface Receipt {
  userId: string;
  deliveredSeq: number;
  seenSeq: number;
}

/** The error body of REST answers and of failed socket acks. */
export interface ErrorInfo {
  code: string;
  reason: string;
  message: string;
  /** Seconds to wait before resending (socket acks of `overloaded`). */
  retryAfter?: number;
}

export type Ack<T> = ({ ok: true } & T) | { ok: false; error: ErrorInfo };

export interface PresenceEntry {
  userId: string;
  isOnline: boolean;
  lastSeenAt: string | null;
}

// Server → client events.
export interface SeenEvent {
  groupId: string;
  userId: string;
  seq: number;
  seenAt: string;
}
export interface DeliveredEvent {
  groupId: string;
  userId: string;
  seq: number;
  deliveredAt: string;
}
export interface DeletedEvent {
  groupId: string;
  messageId: string;
  seq: number;
  deletedBy: string;
}
export interface TypingEvent {
  groupId: string;
  userId: string;
  typing: boolean;
}
export interface MembersAddedEvent {
  groupId: string;
  userIds: string[];
  /** The group as it now is (sent by the server, not in the README's table). */
  group?: Group;
}
export interface MemberRemovedEvent {
  groupId: string;
  userId: string;
}
export interface RoleChangedEvent {
  groupId: string;
  userId: string;
  role: Role;
  changedBy: string;
}
export interface ResyncEvent {
  groupId: string;
  fromSeq: number;
}
