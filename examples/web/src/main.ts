// Entry point. The server is this page's own origin (chat-server serves the client at `/`), or
// the one named by `?api=http://host:port` (a client served from elsewhere: that origin must be
// in the server's CORS_ALLOWED_ORIGINS).

import { Api } from "./api";
import { renderAuth } from "./views/auth";
import { mountApp } from "./views/app";

const base = (new URLSearchParams(location.search).get("api") ?? location.origin).replace(/\/+$/, "");
const api = new Api(base);
const root = document.getElementById("app") as HTMLElement;
let teardown: (() => void) | undefined;

function signedIn(): void {
  teardown = mountApp(root, api, () => signedOut());
}

function signedOut(notice?: string): void {
  teardown?.();
  teardown = undefined;
  renderAuth(root, api, signedIn, notice);
}

// A refresh token refused (expired, or the session ended elsewhere): sign in again.
api.onSignedOut = () => signedOut("Your session has ended. Please sign in again.");

if (api.user) signedIn();
else signedOut();
