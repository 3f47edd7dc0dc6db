// REST with a bearer token that stays fresh: the session (tokens) lives in memory and in
// sessionStorage (so a reload keeps you signed in, a new tab does not), the access token is
// renewed with `POST /auth/refresh` a minute before it expires, and a request answered 401 is
// retried once after a refresh.

import type { ErrorInfo, Session, User } from "./types";

const STORAGE_KEY = "scalable-chat.session";
/** Refresh this long before the access token expires (a quarter of its life if that is shorter). */
const REFRESH_MARGIN_MS = 60_000;

interface StoredSession {
  user: User;
  accessToken: string;
  refreshToken: string;
  /** When to renew the access token (ms since the epoch). */
  refreshAt: number;
}

/** A REST error answer (or a network failure, with status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }

  static async from(res: Response): Promise<ApiError> {
    let error: ErrorInfo | undefined;
    try {
      error = ((await res.json()) as { error?: ErrorInfo }).error;
    } catch {
      // Not the documented error body (a proxy's page, say): fall back on the status.
    }
    return new ApiError(
      res.status,
      error?.code ?? "http_error",
      error?.reason ?? "http_error",
      error?.message ?? `${res.status} ${res.statusText}`,
    );
  }
}

export class Api {
  private session: StoredSession | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Called when the session ended on its own (refresh refused): back to the sign-in form. */
  onSignedOut: () => void = () => {};

  /** `base`: the server's origin (REST and Socket.IO), without a trailing slash. */
  constructor(readonly base: string) {
    const stored = sessionStorage.getItem(STORAGE_KEY);
    if (stored) {
      try {
        this.session = JSON.parse(stored) as StoredSession;
        this.scheduleRefresh();
      } catch {
        sessionStorage.removeItem(STORAGE_KEY);
      }
    }
  }

  get user(): User | null {
    return this.session?.user ?? null;
  }

  url(path: string): string {
    return this.base + path;
  }

  async register(body: { firstName: string; lastName: string; email: string; password: string }) {
    this.adopt(await this.post<Session>("/auth/register", body, false));
  }

  async login(body: { email: string; password: string }) {
    this.adopt(await this.post<Session>("/auth/login", body, false));
  }

  /** Ends the session on the server (its access tokens stop working at once) and here. */
  async logout(): Promise<void> {
    const refreshToken = this.session?.refreshToken;
    this.forget();
    if (refreshToken) {
      await this.post("/auth/logout", { refreshToken }, false).catch(() => undefined);
    }
  }

  /** An access token valid for at least a little while: refreshed first if it is about to expire. */
  async freshToken(): Promise<string> {
    if (!this.session) throw new ApiError(401, "unauthorized", "missing_token", "not signed in");
    if (Date.now() >= this.session.refreshAt) await this.refresh();
    return this.session.accessToken;
  }

  /**
   * Exchanges the refresh token for a new pair. Refresh tokens work once, so concurrent callers
   * share one request. A refusal ends the session.
   */
  refresh(): Promise<void> {
    if (!this.refreshing) {
      const refreshToken = this.session?.refreshToken;
      this.refreshing = (async () => {
        if (!refreshToken) throw new ApiError(401, "unauthorized", "missing_token", "not signed in");
        try {
          this.adopt(await this.post<Session>("/auth/refresh", { refreshToken }, false));
        } catch (e) {
          if (e instanceof ApiError && e.status === 401) {
            this.forget();
            this.onSignedOut();
          }
          throw e;
        }
      })().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  post<T>(path: string, body: unknown, auth = true): Promise<T> {
    return this.request<T>("POST", path, body, auth);
  }

  /** A JSON request; 401 → refresh and retry once. 204 resolves to `undefined`. */
  async request<T>(method: string, path: string, body?: unknown, auth = true): Promise<T> {
    const res = await this.send(auth, (token) => {
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers["content-type"] = "application/json";
      return fetch(this.url(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    });
    if (!res.ok) throw await ApiError.from(res);
    return (res.status === 204 ? undefined : await res.json()) as T;
  }

  /** The bytes of an asset (`/assets/:id` needs the bearer token). */
  async blob(path: string): Promise<Blob> {
    const res = await this.send(true, (token) =>
      fetch(this.url(path), { headers: { authorization: `Bearer ${token}` } }),
    );
    if (!res.ok) throw await ApiError.from(res);
    return res.blob();
  }

  /**
   * A multipart POST through XMLHttpRequest, which (unlike fetch) reports upload progress:
   * `onProgress(bytesSent)`.
   */
  async upload<T>(path: string, form: FormData, onProgress: (sent: number) => void): Promise<T> {
    const res = await this.send(true, (token) =>
      new Promise<Response>((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", this.url(path));
        xhr.setRequestHeader("authorization", `Bearer ${token}`);
        xhr.upload.onprogress = (e) => onProgress(e.loaded);
        xhr.onload = () =>
          resolve(
            new Response(xhr.status === 204 ? null : xhr.responseText, {
              status: xhr.status,
              statusText: xhr.statusText,
            }),
          );
        xhr.onerror = () => reject(new TypeError("network error"));
        xhr.send(form);
      }),
    );
    if (!res.ok) throw await ApiError.from(res);
    return (await res.json()) as T;
  }

  /** Runs `attempt` with the current token; on a 401, refreshes (unless another call just did) and runs it once more. */
  private async send(auth: boolean, attempt: (token?: string) => Promise<Response>): Promise<Response> {
    if (!auth) return attempt();
    const token = await this.freshToken();
    const res = await attempt(token);
    if (res.status !== 401 || !this.session) return res;
    if (this.session.accessToken === token) await this.refresh();
    return attempt(this.session.accessToken);
  }

  private adopt(session: Session): void {
    const now = Date.now();
    const life = session.expiresIn * 1000;
    this.session = {
      user: session.user,
      accessToken: session.accessToken,
      refreshToken: session.refreshToken,
      refreshAt: now + life - Math.min(REFRESH_MARGIN_MS, life / 4),
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.session));
    this.scheduleRefresh();
  }

  private forget(): void {
    this.session = null;
    sessionStorage.removeItem(STORAGE_KEY);
    clearTimeout(this.refreshTimer);
  }

  /** Renews the access token ahead of its expiry, so sockets and requests never meet a stale one. */
  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    if (!this.session) return;
    const wait = Math.max(0, this.session.refreshAt - Date.now());
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => undefined), wait);
  }
}
