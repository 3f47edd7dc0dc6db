var __defProp = Object.defineProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};

// src/api.ts
var STORAGE_KEY = "scalable-chat.session";
var REFRESH_MARGIN_MS = 6e4;
var ApiError = class _ApiError extends Error {
  constructor(status, code, reason, message) {
    super(message);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
  static async from(res) {
    let error;
    try {
      error = (await res.json()).error;
    } catch {
    }
    return new _ApiError(
      res.status,
      error?.code ?? "http_error",
      error?.reason ?? "http_error",
      error?.message ?? `${res.status} ${res.statusText}`
    );
  }
};
var Api = class {
  /** `base`: the server's origin (REST and Socket.IO), without a trailing slash. */
  constructor(base2) {
    this.base = base2;
    this.session = null;
    this.refreshing = null;
    /** Called when the session ended on its own (refresh refused): back to the sign-in form. */
    this.onSignedOut = () => {
    };
    const stored = sessionStorage.getItem(STORAGE_KEY);
    if (stored) {
      try {
        this.session = JSON.parse(stored);
        this.scheduleRefresh();
      } catch {
        sessionStorage.removeItem(STORAGE_KEY);
      }
    }
  }
  get user() {
    return this.session?.user ?? null;
  }
  url(path) {
    return this.base + path;
  }
  async register(body) {
    this.adopt(await this.post("/auth/register", body, false));
  }
  async login(body) {
    this.adopt(await this.post("/auth/login", body, false));
  }
  /** Ends the session on the server (its access tokens stop working at once) and here. */
  async logout() {
    const refreshToken = this.session?.refreshToken;
    this.forget();
    if (refreshToken) {
      await this.post("/auth/logout", { refreshToken }, false).catch(() => void 0);
    }
  }
  /** An access token valid for at least a little while: refreshed first if it is about to expire. */
  async freshToken() {
    if (!this.session) throw new ApiError(401, "unauthorized", "missing_token", "not signed in");
    if (Date.now() >= this.session.refreshAt) await this.refresh();
    return this.session.accessToken;
  }
  /**
   * Exchanges the refresh token for a new pair. Refresh tokens work once, so concurrent callers
   * share one request. A refusal ends the session.
   */
  refresh() {
    if (!this.refreshing) {
      const refreshToken = this.session?.refreshToken;
      this.refreshing = (async () => {
        if (!refreshToken) throw new ApiError(401, "unauthorized", "missing_token", "not signed in");
        try {
          this.adopt(await this.post("/auth/refresh", { refreshToken }, false));
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
  get(path) {
    return this.request("GET", path);
  }
  post(path, body, auth = true) {
    return this.request("POST", path, body, auth);
  }
  /** A JSON request; 401 → refresh and retry once. 204 resolves to `undefined`. */
  async request(method, path, body, auth = true) {
    const res = await this.send(auth, (token) => {
      const headers = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== void 0) headers["content-type"] = "application/json";
      return fetch(this.url(path), {
        method,
        headers,
        body: body === void 0 ? void 0 : JSON.stringify(body)
      });
    });
    if (!res.ok) throw await ApiError.from(res);
    return res.status === 204 ? void 0 : await res.json();
  }
  /** The bytes of an asset (`/assets/:id` needs the bearer token). */
  async blob(path) {
    const res = await this.send(
      true,
      (token) => fetch(this.url(path), { headers: { authorization: `Bearer ${token}` } })
    );
    if (!res.ok) throw await ApiError.from(res);
    return res.blob();
  }
  /**
   * A multipart POST through XMLHttpRequest, which (unlike fetch) reports upload progress:
   * `onProgress(bytesSent)`.
   */
  async upload(path, form, onProgress) {
    const res = await this.send(
      true,
      (token) => new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open("POST", this.url(path));
        xhr.setRequestHeader("authorization", `Bearer ${token}`);
        xhr.upload.onprogress = (e) => onProgress(e.loaded);
        xhr.onload = () => resolve(
          new Response(xhr.status === 204 ? null : xhr.responseText, {
            status: xhr.status,
            statusText: xhr.statusText
          })
        );
        xhr.onerror = () => reject(new TypeError("network error"));
        xhr.send(form);
      })
    );
    if (!res.ok) throw await ApiError.from(res);
    return await res.json();
  }
  /** Runs `attempt` with the current token; on a 401, refreshes (unless another call just did) and runs it once more. */
  async send(auth, attempt) {
    if (!auth) return attempt();
    const token = await this.freshToken();
    const res = await attempt(token);
    if (res.status !== 401 || !this.session) return res;
    if (this.session.accessToken === token) await this.refresh();
    return attempt(this.session.accessToken);
  }
  adopt(session) {
    const now = Date.now();
    const life = session.expiresIn * 1e3;
    this.session = {
      user: session.user,
      accessToken: session.accessToken,
      refreshToken: session.refreshToken,
      refreshAt: now + life - Math.min(REFRESH_MARGIN_MS, life / 4)
    };
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(this.session));
    this.scheduleRefresh();
  }
  forget() {
    this.session = null;
    sessionStorage.removeItem(STORAGE_KEY);
    clearTimeout(this.refreshTimer);
  }
  /** Renews the access token ahead of its expiry, so sockets and requests never meet a stale one. */
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    if (!this.session) return;
    const wait = Math.max(0, this.session.refreshAt - Date.now());
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => void 0), wait);
  }
};

// src/util.ts
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value2] of Object.entries(attrs)) {
    if (value2 === false || value2 === null || value2 === void 0) continue;
    if (key.startsWith("on") && typeof value2 === "function") {
      el.addEventListener(key.slice(2), value2);
    } else if (key === "value" && "value" in el) {
      el.value = String(value2);
    } else {
      el.setAttribute(key, value2 === true ? "" : String(value2));
    }
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const child of children) {
    if (child === null || child === void 0 || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}
function uuid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = b[6] & 15 | 64;
  b[8] = b[8] & 63 | 128;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
function fullName(user) {
  return user ? `${user.firstName} ${user.lastName}`.trim() : "…";
}
function initials(user) {
  return user ? `${user.firstName.charAt(0)}${user.lastName.charAt(0)}`.toUpperCase() : "?";
}
function formatTime(iso) {
  const date = new Date(iso);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === (/* @__PURE__ */ new Date()).toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}
function formatBytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// src/views/auth.ts
function renderAuth(root2, api2, onSignedIn, notice) {
  const error = h("p", { class: "form-error", "data-testid": "auth-error", role: "alert" }, notice ?? "");
  const field = (label, input2) => h("label", { class: "field" }, h("span", {}, label), input2);
  const input = (testid, type, autocomplete, extra = {}) => h("input", { type, autocomplete, required: true, "data-testid": testid, ...extra });
  const loginEmail = input("login-email", "email", "username");
  const loginPassword = input("login-password", "password", "current-password");
  const login = h(
    "form",
    { class: "auth-form", "data-testid": "login-form" },
    field("Email", loginEmail),
    field("Password", loginPassword),
    h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in")
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
    h("button", { type: "submit", class: "primary", "data-testid": "register-submit" }, "Create account")
  );
  const loginTab = h("button", { type: "button", role: "tab", "data-testid": "auth-tab-login" }, "Sign in");
  const registerTab = h("button", { type: "button", role: "tab", "data-testid": "auth-tab-register" }, "Create account");
  const show = (form) => {
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
  const submit = (form, action) => form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
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
  submit(login, () => api2.login({ email: loginEmail.value, password: loginPassword.value }));
  submit(
    register,
    () => api2.register({ firstName: first.value, lastName: last.value, email: email.value, password: password.value })
  );
  root2.replaceChildren(
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
        error
      )
    )
  );
}

// node_modules/engine.io-parser/build/esm/commons.js
var PACKET_TYPES = /* @__PURE__ */ Object.create(null);
PACKET_TYPES["open"] = "0";
PACKET_TYPES["close"] = "1";
PACKET_TYPES["ping"] = "2";
PACKET_TYPES["pong"] = "3";
PACKET_TYPES["message"] = "4";
PACKET_TYPES["upgrade"] = "5";
PACKET_TYPES["noop"] = "6";
var PACKET_TYPES_REVERSE = /* @__PURE__ */ Object.create(null);
Object.keys(PACKET_TYPES).forEach((key) => {
  PACKET_TYPES_REVERSE[PACKET_TYPES[key]] = key;
});
var ERROR_PACKET = { type: "error", data: "parser error" };

// node_modules/engine.io-parser/build/esm/encodePacket.browser.js
var withNativeBlob = typeof Blob === "function" || typeof Blob !== "undefined" && Object.prototype.toString.call(Blob) === "[object BlobConstructor]";
var withNativeArrayBuffer = typeof ArrayBuffer === "function";
var isView = (obj) => {
  return typeof ArrayBuffer.isView === "function" ? ArrayBuffer.isView(obj) : obj && obj.buffer instanceof ArrayBuffer;
};
var encodePacket = ({ type, data }, supportsBinary, callback) => {
  if (withNativeBlob && data instanceof Blob) {
    if (supportsBinary) {
      return callback(data);
    } else {
      return encodeBlobAsBase64(data, callback);
    }
  } else if (withNativeArrayBuffer && (data instanceof ArrayBuffer || isView(data))) {
    if (supportsBinary) {
      return callback(data);
    } else {
      return encodeBlobAsBase64(new Blob([data]), callback);
    }
  }
  return callback(PACKET_TYPES[type] + (data || ""));
};
var encodeBlobAsBase64 = (data, callback) => {
  const fileReader = new FileReader();
  fileReader.onload = function() {
    const content = fileReader.result.split(",")[1];
    callback("b" + (content || ""));
  };
  return fileReader.readAsDataURL(data);
};
function toArray(data) {
  if (data instanceof Uint8Array) {
    return data;
  } else if (data instanceof ArrayBuffer) {
    return new Uint8Array(data);
  } else {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
}
var TEXT_ENCODER;
function encodePacketToBinary(packet, callback) {
  if (withNativeBlob && packet.data instanceof Blob) {
    return packet.data.arrayBuffer().then(toArray).then(callback);
  } else if (withNativeArrayBuffer && (packet.data instanceof ArrayBuffer || isView(packet.data))) {
    return callback(toArray(packet.data));
  }
  encodePacket(packet, false, (encoded) => {
    if (!TEXT_ENCODER) {
      TEXT_ENCODER = new TextEncoder();
    }
    callback(TEXT_ENCODER.encode(encoded));
  });
}

// node_modules/engine.io-parser/build/esm/contrib/base64-arraybuffer.js
var chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
var lookup = typeof Uint8Array === "undefined" ? [] : new Uint8Array(256);
for (let i = 0; i < chars.length; i++) {
  lookup[chars.charCodeAt(i)] = i;
}
var decode = (base64) => {
  let bufferLength = base64.length * 0.75, len = base64.length, i, p = 0, encoded1, encoded2, encoded3, encoded4;
  if (base64[base64.length - 1] === "=") {
    bufferLength--;
    if (base64[base64.length - 2] === "=") {
      bufferLength--;
    }
  }
  const arraybuffer = new ArrayBuffer(bufferLength), bytes = new Uint8Array(arraybuffer);
  for (i = 0; i < len; i += 4) {
    encoded1 = lookup[base64.charCodeAt(i)];
    encoded2 = lookup[base64.charCodeAt(i + 1)];
    encoded3 = lookup[base64.charCodeAt(i + 2)];
    encoded4 = lookup[base64.charCodeAt(i + 3)];
    bytes[p++] = encoded1 << 2 | encoded2 >> 4;
    bytes[p++] = (encoded2 & 15) << 4 | encoded3 >> 2;
    bytes[p++] = (encoded3 & 3) << 6 | encoded4 & 63;
  }
  return arraybuffer;
};

// node_modules/engine.io-parser/build/esm/decodePacket.browser.js
var withNativeArrayBuffer2 = typeof ArrayBuffer === "function";
var decodePacket = (encodedPacket, binaryType) => {
  if (typeof encodedPacket !== "string") {
    return {
      type: "message",
      data: mapBinary(encodedPacket, binaryType)
    };
  }
  const type = encodedPacket.charAt(0);
  if (type === "b") {
    return {
      type: "message",
      data: decodeBase64Packet(encodedPacket.substring(1), binaryType)
    };
  }
  const packetType = PACKET_TYPES_REVERSE[type];
  if (!packetType) {
    return ERROR_PACKET;
  }
  return encodedPacket.length > 1 ? {
    type: PACKET_TYPES_REVERSE[type],
    data: encodedPacket.substring(1)
  } : {
    type: PACKET_TYPES_REVERSE[type]
  };
};
var decodeBase64Packet = (data, binaryType) => {
  if (withNativeArrayBuffer2) {
    const decoded = decode(data);
    return mapBinary(decoded, binaryType);
  } else {
    return { base64: true, data };
  }
};
var mapBinary = (data, binaryType) => {
  switch (binaryType) {
    case "blob":
      if (data instanceof Blob) {
        return data;
      } else {
        return new Blob([data]);
      }
    case "arraybuffer":
    default:
      if (data instanceof ArrayBuffer) {
        return data;
      } else {
        return data.buffer;
      }
  }
};

// node_modules/engine.io-parser/build/esm/index.js
var SEPARATOR = String.fromCharCode(30);
var encodePayload = (packets, callback) => {
  const length = packets.length;
  const encodedPackets = new Array(length);
  let count = 0;
  packets.forEach((packet, i) => {
    encodePacket(packet, false, (encodedPacket) => {
      encodedPackets[i] = encodedPacket;
      if (++count === length) {
        callback(encodedPackets.join(SEPARATOR));
      }
    });
  });
};
var decodePayload = (encodedPayload, binaryType) => {
  const encodedPackets = encodedPayload.split(SEPARATOR);
  const packets = [];
  for (let i = 0; i < encodedPackets.length; i++) {
    const decodedPacket = decodePacket(encodedPackets[i], binaryType);
    packets.push(decodedPacket);
    if (decodedPacket.type === "error") {
      break;
    }
  }
  return packets;
};
function createPacketEncoderStream() {
  return new TransformStream({
    transform(packet, controller) {
      encodePacketToBinary(packet, (encodedPacket) => {
        const payloadLength = encodedPacket.length;
        let header;
        if (payloadLength < 126) {
          header = new Uint8Array(1);
          new DataView(header.buffer).setUint8(0, payloadLength);
        } else if (payloadLength < 65536) {
          header = new Uint8Array(3);
          const view = new DataView(header.buffer);
          view.setUint8(0, 126);
          view.setUint16(1, payloadLength);
        } else {
          header = new Uint8Array(9);
          const view = new DataView(header.buffer);
          view.setUint8(0, 127);
          view.setBigUint64(1, BigInt(payloadLength));
        }
        if (packet.data && typeof packet.data !== "string") {
          header[0] |= 128;
        }
        controller.enqueue(header);
        controller.enqueue(encodedPacket);
      });
    }
  });
}
var TEXT_DECODER;
function totalLength(chunks) {
  return chunks.reduce((acc, chunk) => acc + chunk.length, 0);
}
function concatChunks(chunks, size) {
  if (chunks[0].length === size) {
    return chunks.shift();
  }
  const buffer = new Uint8Array(size);
  let j = 0;
  for (let i = 0; i < size; i++) {
    buffer[i] = chunks[0][j++];
    if (j === chunks[0].length) {
      chunks.shift();
      j = 0;
    }
  }
  if (chunks.length && j < chunks[0].length) {
    chunks[0] = chunks[0].slice(j);
  }
  return buffer;
}
function createPacketDecoderStream(maxPayload, binaryType) {
  if (!TEXT_DECODER) {
    TEXT_DECODER = new TextDecoder();
  }
  const chunks = [];
  let state = 0;
  let expectedLength = -1;
  let isBinary2 = false;
  return new TransformStream({
    transform(chunk, controller) {
      chunks.push(chunk);
      while (true) {
        if (state === 0) {
          if (totalLength(chunks) < 1) {
            break;
          }
          const header = concatChunks(chunks, 1);
          isBinary2 = (header[0] & 128) === 128;
          expectedLength = header[0] & 127;
          if (expectedLength < 126) {
            state = 3;
          } else if (expectedLength === 126) {
            state = 1;
          } else {
            state = 2;
          }
        } else if (state === 1) {
          if (totalLength(chunks) < 2) {
            break;
          }
          const headerArray = concatChunks(chunks, 2);
          expectedLength = new DataView(headerArray.buffer, headerArray.byteOffset, headerArray.length).getUint16(0);
          state = 3;
        } else if (state === 2) {
          if (totalLength(chunks) < 8) {
            break;
          }
          const headerArray = concatChunks(chunks, 8);
          const view = new DataView(headerArray.buffer, headerArray.byteOffset, headerArray.length);
          const n = view.getUint32(0);
          if (n > Math.pow(2, 53 - 32) - 1) {
            controller.enqueue(ERROR_PACKET);
            break;
          }
          expectedLength = n * Math.pow(2, 32) + view.getUint32(4);
          state = 3;
        } else {
          if (totalLength(chunks) < expectedLength) {
            break;
          }
          const data = concatChunks(chunks, expectedLength);
          controller.enqueue(decodePacket(isBinary2 ? data : TEXT_DECODER.decode(data), binaryType));
          state = 0;
        }
        if (expectedLength === 0 || expectedLength > maxPayload) {
          controller.enqueue(ERROR_PACKET);
          break;
        }
      }
    }
  });
}
var protocol = 4;

// node_modules/@socket.io/component-emitter/lib/esm/index.js
function Emitter(obj) {
  if (obj) return mixin(obj);
}
function mixin(obj) {
  for (var key in Emitter.prototype) {
    obj[key] = Emitter.prototype[key];
  }
  return obj;
}
Emitter.prototype.on = Emitter.prototype.addEventListener = function(event, fn) {
  this._callbacks = this._callbacks || {};
  (this._callbacks["$" + event] = this._callbacks["$" + event] || []).push(fn);
  return this;
};
Emitter.prototype.once = function(event, fn) {
  function on2() {
    this.off(event, on2);
    fn.apply(this, arguments);
  }
  on2.fn = fn;
  this.on(event, on2);
  return this;
};
Emitter.prototype.off = Emitter.prototype.removeListener = Emitter.prototype.removeAllListeners = Emitter.prototype.removeEventListener = function(event, fn) {
  this._callbacks = this._callbacks || {};
  if (0 == arguments.length) {
    this._callbacks = {};
    return this;
  }
  var callbacks = this._callbacks["$" + event];
  if (!callbacks) return this;
  if (1 == arguments.length) {
    delete this._callbacks["$" + event];
    return this;
  }
  var cb;
  for (var i = 0; i < callbacks.length; i++) {
    cb = callbacks[i];
    if (cb === fn || cb.fn === fn) {
      callbacks.splice(i, 1);
      break;
    }
  }
  if (callbacks.length === 0) {
    delete this._callbacks["$" + event];
  }
  return this;
};
Emitter.prototype.emit = function(event) {
  this._callbacks = this._callbacks || {};
  var args = new Array(arguments.length - 1), callbacks = this._callbacks["$" + event];
  for (var i = 1; i < arguments.length; i++) {
    args[i - 1] = arguments[i];
  }
  if (callbacks) {
    callbacks = callbacks.slice(0);
    for (var i = 0, len = callbacks.length; i < len; ++i) {
      callbacks[i].apply(this, args);
    }
  }
  return this;
};
Emitter.prototype.emitReserved = Emitter.prototype.emit;
Emitter.prototype.listeners = function(event) {
  this._callbacks = this._callbacks || {};
  return this._callbacks["$" + event] || [];
};
Emitter.prototype.hasListeners = function(event) {
  return !!this.listeners(event).length;
};

// node_modules/engine.io-client/build/esm/globals.js
var nextTick = (() => {
  const isPromiseAvailable = typeof Promise === "function" && typeof Promise.resolve === "function";
  if (isPromiseAvailable) {
    return (cb) => Promise.resolve().then(cb);
  } else {
    return (cb, setTimeoutFn) => setTimeoutFn(cb, 0);
  }
})();
var globalThisShim = (() => {
  if (typeof self !== "undefined") {
    return self;
  } else if (typeof window !== "undefined") {
    return window;
  } else {
    return Function("return this")();
  }
})();
var defaultBinaryType = "arraybuffer";
function createCookieJar() {
}

// node_modules/engine.io-client/build/esm/util.js
function pick(obj, ...attr) {
  return attr.reduce((acc, k) => {
    if (obj.hasOwnProperty(k)) {
      acc[k] = obj[k];
    }
    return acc;
  }, {});
}
var NATIVE_SET_TIMEOUT = globalThisShim.setTimeout;
var NATIVE_CLEAR_TIMEOUT = globalThisShim.clearTimeout;
function installTimerFunctions(obj, opts) {
  if (opts.useNativeTimers) {
    obj.setTimeoutFn = NATIVE_SET_TIMEOUT.bind(globalThisShim);
    obj.clearTimeoutFn = NATIVE_CLEAR_TIMEOUT.bind(globalThisShim);
  } else {
    obj.setTimeoutFn = globalThisShim.setTimeout.bind(globalThisShim);
    obj.clearTimeoutFn = globalThisShim.clearTimeout.bind(globalThisShim);
  }
}
var BASE64_OVERHEAD = 1.33;
function byteLength(obj) {
  if (typeof obj === "string") {
    return utf8Length(obj);
  }
  return Math.ceil((obj.byteLength || obj.size) * BASE64_OVERHEAD);
}
function utf8Length(str) {
  let c = 0, length = 0;
  for (let i = 0, l = str.length; i < l; i++) {
    c = str.charCodeAt(i);
    if (c < 128) {
      length += 1;
    } else if (c < 2048) {
      length += 2;
    } else if (c < 55296 || c >= 57344) {
      length += 3;
    } else {
      i++;
      length += 4;
    }
  }
  return length;
}
function randomString() {
  return Date.now().toString(36).substring(3) + Math.random().toString(36).substring(2, 5);
}

// node_modules/engine.io-client/build/esm/contrib/parseqs.js
function encode(obj) {
  let str = "";
  for (let i in obj) {
    if (obj.hasOwnProperty(i)) {
      if (str.length)
        str += "&";
      str += encodeURIComponent(i) + "=" + encodeURIComponent(obj[i]);
    }
  }
  return str;
}
function decode2(qs) {
  let qry = {};
  let pairs = qs.split("&");
  for (let i = 0, l = pairs.length; i < l; i++) {
    let pair = pairs[i].split("=");
    qry[decodeURIComponent(pair[0])] = decodeURIComponent(pair.slice(1).join("="));
  }
  return qry;
}

// node_modules/engine.io-client/build/esm/transport.js
var TransportError = class extends Error {
  constructor(reason, description, context) {
    super(reason);
    this.description = description;
    this.context = context;
    this.type = "TransportError";
  }
};
var Transport = class extends Emitter {
  /**
   * Transport abstract constructor.
   *
   * @param {Object} opts - options
   * @protected
   */
  constructor(opts) {
    super();
    this.writable = false;
    installTimerFunctions(this, opts);
    this.opts = opts;
    this.query = opts.query;
    this.socket = opts.socket;
    this.supportsBinary = !opts.forceBase64;
  }
  /**
   * Emits an error.
   *
   * @param {String} reason
   * @param description
   * @param context - the error context
   * @return {Transport} for chaining
   * @protected
   */
  onError(reason, description, context) {
    super.emitReserved("error", new TransportError(reason, description, context));
    return this;
  }
  /**
   * Opens the transport.
   */
  open() {
    this.readyState = "opening";
    this.doOpen();
    return this;
  }
  /**
   * Closes the transport.
   */
  close() {
    if (this.readyState === "opening" || this.readyState === "open") {
      this.doClose();
      this.onClose();
    }
    return this;
  }
  /**
   * Sends multiple packets.
   *
   * @param {Array} packets
   */
  send(packets) {
    if (this.readyState === "open") {
      this.write(packets);
    } else {
    }
  }
  /**
   * Called upon open
   *
   * @protected
   */
  onOpen() {
    this.readyState = "open";
    this.writable = true;
    super.emitReserved("open");
  }
  /**
   * Called with data.
   *
   * @param {String} data
   * @protected
   */
  onData(data) {
    const packet = decodePacket(data, this.socket.binaryType);
    this.onPacket(packet);
  }
  /**
   * Called with a decoded packet.
   *
   * @protected
   */
  onPacket(packet) {
    super.emitReserved("packet", packet);
  }
  /**
   * Called upon close.
   *
   * @protected
   */
  onClose(details) {
    this.readyState = "closed";
    super.emitReserved("close", details);
  }
  /**
   * Pauses the transport, in order not to lose packets during an upgrade.
   *
   * @param onPause
   */
  pause(onPause) {
  }
  createUri(schema, query = {}) {
    return schema + "://" + this._hostname() + this._port() + this.opts.path + this._query(query);
  }
  _hostname() {
    const hostname = this.opts.hostname;
    return hostname.indexOf(":") === -1 ? hostname : "[" + hostname + "]";
  }
  _port() {
    if (this.opts.port && (this.opts.secure && Number(this.opts.port) !== 443 || !this.opts.secure && Number(this.opts.port) !== 80)) {
      return ":" + this.opts.port;
    } else {
      return "";
    }
  }
  _query(query) {
    const encodedQuery = encode(query);
    return encodedQuery.length ? "?" + encodedQuery : "";
  }
};

// node_modules/engine.io-client/build/esm/transports/polling.js
var Polling = class extends Transport {
  constructor() {
    super(...arguments);
    this._polling = false;
  }
  get name() {
    return "polling";
  }
  /**
   * Opens the socket (triggers polling). We write a PING message to determine
   * when the transport is open.
   *
   * @protected
   */
  doOpen() {
    this._poll();
  }
  /**
   * Pauses polling.
   *
   * @param {Function} onPause - callback upon buffers are flushed and transport is paused
   * @package
   */
  pause(onPause) {
    this.readyState = "pausing";
    const pause = () => {
      this.readyState = "paused";
      onPause();
    };
    if (this._polling || !this.writable) {
      let total = 0;
      if (this._polling) {
        total++;
        this.once("pollComplete", function() {
          --total || pause();
        });
      }
      if (!this.writable) {
        total++;
        this.once("drain", function() {
          --total || pause();
        });
      }
    } else {
      pause();
    }
  }
  /**
   * Starts polling cycle.
   *
   * @private
   */
  _poll() {
    this._polling = true;
    this.doPoll();
    this.emitReserved("poll");
  }
  /**
   * Overloads onData to detect payloads.
   *
   * @protected
   */
  onData(data) {
    const callback = (packet) => {
      if ("opening" === this.readyState && packet.type === "open") {
        this.onOpen();
      }
      if ("close" === packet.type) {
        this.onClose({ description: "transport closed by the server" });
        return false;
      }
      this.onPacket(packet);
    };
    decodePayload(data, this.socket.binaryType).forEach(callback);
    if ("closed" !== this.readyState) {
      this._polling = false;
      this.emitReserved("pollComplete");
      if ("open" === this.readyState) {
        this._poll();
      } else {
      }
    }
  }
  /**
   * For polling, send a close packet.
   *
   * @protected
   */
  doClose() {
    const close = () => {
      this.write([{ type: "close" }]);
    };
    if ("open" === this.readyState) {
      close();
    } else {
      this.once("open", close);
    }
  }
  /**
   * Writes a packets payload.
   *
   * @param {Array} packets - data packets
   * @protected
   */
  write(packets) {
    this.writable = false;
    encodePayload(packets, (data) => {
      this.doWrite(data, () => {
        this.writable = true;
        this.emitReserved("drain");
      });
    });
  }
  /**
   * Generates uri for connection.
   *
   * @private
   */
  uri() {
    const schema = this.opts.secure ? "https" : "http";
    const query = this.query || {};
    if (false !== this.opts.timestampRequests) {
      query[this.opts.timestampParam] = randomString();
    }
    if (!this.supportsBinary && !query.sid) {
      query.b64 = 1;
    }
    return this.createUri(schema, query);
  }
};

// node_modules/engine.io-client/build/esm/contrib/has-cors.js
var value = false;
try {
  value = typeof XMLHttpRequest !== "undefined" && "withCredentials" in new XMLHttpRequest();
} catch (err) {
}
var hasCORS = value;

// node_modules/engine.io-client/build/esm/transports/polling-xhr.js
function empty() {
}
var BaseXHR = class extends Polling {
  /**
   * XHR Polling constructor.
   *
   * @param {Object} opts
   * @package
   */
  constructor(opts) {
    super(opts);
    if (typeof location !== "undefined") {
      const isSSL = "https:" === location.protocol;
      let port = location.port;
      if (!port) {
        port = isSSL ? "443" : "80";
      }
      this.xd = typeof location !== "undefined" && opts.hostname !== location.hostname || port !== opts.port;
    }
  }
  /**
   * Sends data.
   *
   * @param {String} data - data to send.
   * @param {Function} fn - called upon flush.
   * @private
   */
  doWrite(data, fn) {
    const req = this.request({
      method: "POST",
      data
    });
    req.on("success", fn);
    req.on("error", (xhrStatus, context) => {
      this.onError("xhr post error", xhrStatus, context);
    });
  }
  /**
   * Starts a poll cycle.
   *
   * @private
   */
  doPoll() {
    const req = this.request();
    req.on("data", this.onData.bind(this));
    req.on("error", (xhrStatus, context) => {
      this.onError("xhr poll error", xhrStatus, context);
    });
    this.pollXhr = req;
  }
};
var Request = class _Request extends Emitter {
  /**
   * Request constructor
   *
   * @param {Object} options
   * @package
   */
  constructor(createRequest, uri, opts) {
    super();
    this.createRequest = createRequest;
    installTimerFunctions(this, opts);
    this._opts = opts;
    this._method = opts.method || "GET";
    this._uri = uri;
    this._data = void 0 !== opts.data ? opts.data : null;
    this._create();
  }
  /**
   * Creates the XHR object and sends the request.
   *
   * @private
   */
  _create() {
    var _a;
    const opts = pick(this._opts, "agent", "pfx", "key", "passphrase", "cert", "ca", "ciphers", "rejectUnauthorized", "autoUnref");
    opts.xdomain = !!this._opts.xd;
    const xhr = this._xhr = this.createRequest(opts);
    try {
      xhr.open(this._method, this._uri, true);
      try {
        if (this._opts.extraHeaders) {
          xhr.setDisableHeaderCheck && xhr.setDisableHeaderCheck(true);
          for (let i in this._opts.extraHeaders) {
            if (this._opts.extraHeaders.hasOwnProperty(i)) {
              xhr.setRequestHeader(i, this._opts.extraHeaders[i]);
            }
          }
        }
      } catch (e) {
      }
      if ("POST" === this._method) {
        try {
          xhr.setRequestHeader("Content-type", "text/plain;charset=UTF-8");
        } catch (e) {
        }
      }
      try {
        xhr.setRequestHeader("Accept", "*/*");
      } catch (e) {
      }
      (_a = this._opts.cookieJar) === null || _a === void 0 ? void 0 : _a.addCookies(xhr);
      if ("withCredentials" in xhr) {
        xhr.withCredentials = this._opts.withCredentials;
      }
      if (this._opts.requestTimeout) {
        xhr.timeout = this._opts.requestTimeout;
      }
      xhr.onreadystatechange = () => {
        var _a2;
        if (xhr.readyState === 3) {
          (_a2 = this._opts.cookieJar) === null || _a2 === void 0 ? void 0 : _a2.parseCookies(
            // @ts-ignore
            xhr.getResponseHeader("set-cookie")
          );
        }
        if (4 !== xhr.readyState)
          return;
        if (200 === xhr.status || 1223 === xhr.status) {
          this._onLoad();
        } else {
          this.setTimeoutFn(() => {
            this._onError(typeof xhr.status === "number" ? xhr.status : 0);
          }, 0);
        }
      };
      xhr.send(this._data);
    } catch (e) {
      this.setTimeoutFn(() => {
        this._onError(e);
      }, 0);
      return;
    }
    if (typeof document !== "undefined") {
      this._index = _Request.requestsCount++;
      _Request.requests[this._index] = this;
    }
  }
  /**
   * Called upon error.
   *
   * @private
   */
  _onError(err) {
    this.emitReserved("error", err, this._xhr);
    this._cleanup(true);
  }
  /**
   * Cleans up house.
   *
   * @private
   */
  _cleanup(fromError) {
    if ("undefined" === typeof this._xhr || null === this._xhr) {
      return;
    }
    this._xhr.onreadystatechange = empty;
    if (fromError) {
      try {
        this._xhr.abort();
      } catch (e) {
      }
    }
    if (typeof document !== "undefined") {
      delete _Request.requests[this._index];
    }
    this._xhr = null;
  }
  /**
   * Called upon load.
   *
   * @private
   */
  _onLoad() {
    const data = this._xhr.responseText;
    if (data !== null) {
      this.emitReserved("data", data);
      this.emitReserved("success");
      this._cleanup();
    }
  }
  /**
   * Aborts the request.
   *
   * @package
   */
  abort() {
    this._cleanup();
  }
};
Request.requestsCount = 0;
Request.requests = {};
if (typeof document !== "undefined") {
  if (typeof attachEvent === "function") {
    attachEvent("onunload", unloadHandler);
  } else if (typeof addEventListener === "function") {
    const terminationEvent = "onpagehide" in globalThisShim ? "pagehide" : "unload";
    addEventListener(terminationEvent, unloadHandler, false);
  }
}
function unloadHandler() {
  for (let i in Request.requests) {
    if (Request.requests.hasOwnProperty(i)) {
      Request.requests[i].abort();
    }
  }
}
var hasXHR2 = (function() {
  const xhr = newRequest({
    xdomain: false
  });
  return xhr && xhr.responseType !== null;
})();
var XHR = class extends BaseXHR {
  constructor(opts) {
    super(opts);
    const forceBase64 = opts && opts.forceBase64;
    this.supportsBinary = hasXHR2 && !forceBase64;
  }
  request(opts = {}) {
    Object.assign(opts, { xd: this.xd }, this.opts);
    return new Request(newRequest, this.uri(), opts);
  }
};
function newRequest(opts) {
  const xdomain = opts.xdomain;
  try {
    if ("undefined" !== typeof XMLHttpRequest && (!xdomain || hasCORS)) {
      return new XMLHttpRequest();
    }
  } catch (e) {
  }
  if (!xdomain) {
    try {
      return new globalThisShim[["Active"].concat("Object").join("X")]("Microsoft.XMLHTTP");
    } catch (e) {
    }
  }
}

// node_modules/engine.io-client/build/esm/transports/websocket.js
var isReactNative = typeof navigator !== "undefined" && typeof navigator.product === "string" && navigator.product.toLowerCase() === "reactnative";
var BaseWS = class extends Transport {
  get name() {
    return "websocket";
  }
  doOpen() {
    const uri = this.uri();
    const protocols = this.opts.protocols;
    const opts = isReactNative ? {} : pick(this.opts, "agent", "perMessageDeflate", "pfx", "key", "passphrase", "cert", "ca", "ciphers", "rejectUnauthorized", "localAddress", "protocolVersion", "origin", "maxPayload", "family", "checkServerIdentity");
    if (this.opts.extraHeaders) {
      opts.headers = this.opts.extraHeaders;
    }
    try {
      this.ws = this.createSocket(uri, protocols, opts);
    } catch (err) {
      return this.emitReserved("error", err);
    }
    this.ws.binaryType = this.socket.binaryType;
    this.addEventListeners();
  }
  /**
   * Adds event listeners to the socket
   *
   * @private
   */
  addEventListeners() {
    this.ws.onopen = () => {
      if (this.opts.autoUnref) {
        this.ws._socket.unref();
      }
      this.onOpen();
    };
    this.ws.onclose = (closeEvent) => this.onClose({
      description: "websocket connection closed",
      context: closeEvent
    });
    this.ws.onmessage = (ev) => this.onData(ev.data);
    this.ws.onerror = (e) => this.onError("websocket error", e);
  }
  write(packets) {
    this.writable = false;
    for (let i = 0; i < packets.length; i++) {
      const packet = packets[i];
      const lastPacket = i === packets.length - 1;
      encodePacket(packet, this.supportsBinary, (data) => {
        try {
          this.doWrite(packet, data);
        } catch (e) {
        }
        if (lastPacket) {
          nextTick(() => {
            this.writable = true;
            this.emitReserved("drain");
          }, this.setTimeoutFn);
        }
      });
    }
  }
  doClose() {
    if (typeof this.ws !== "undefined") {
      this.ws.onerror = () => {
      };
      this.ws.close();
      this.ws = null;
    }
  }
  /**
   * Generates uri for connection.
   *
   * @private
   */
  uri() {
    const schema = this.opts.secure ? "wss" : "ws";
    const query = this.query || {};
    if (this.opts.timestampRequests) {
      query[this.opts.timestampParam] = randomString();
    }
    if (!this.supportsBinary) {
      query.b64 = 1;
    }
    return this.createUri(schema, query);
  }
};
var WebSocketCtor = globalThisShim.WebSocket || globalThisShim.MozWebSocket;
var WS = class extends BaseWS {
  createSocket(uri, protocols, opts) {
    return !isReactNative ? protocols ? new WebSocketCtor(uri, protocols) : new WebSocketCtor(uri) : new WebSocketCtor(uri, protocols, opts);
  }
  doWrite(_packet, data) {
    this.ws.send(data);
  }
};

// node_modules/engine.io-client/build/esm/transports/webtransport.js
var WT = class extends Transport {
  get name() {
    return "webtransport";
  }
  doOpen() {
    try {
      this._transport = new WebTransport(this.createUri("https"), this.opts.transportOptions[this.name]);
    } catch (err) {
      return this.emitReserved("error", err);
    }
    this._transport.closed.then(() => {
      this.onClose();
    }).catch((err) => {
      this.onError("webtransport error", err);
    });
    this._transport.ready.then(() => {
      this._transport.createBidirectionalStream().then((stream) => {
        const decoderStream = createPacketDecoderStream(Number.MAX_SAFE_INTEGER, this.socket.binaryType);
        const reader = stream.readable.pipeThrough(decoderStream).getReader();
        const encoderStream = createPacketEncoderStream();
        encoderStream.readable.pipeTo(stream.writable);
        this._writer = encoderStream.writable.getWriter();
        const read = () => {
          reader.read().then(({ done, value: value2 }) => {
            if (done) {
              return;
            }
            this.onPacket(value2);
            read();
          }).catch((err) => {
          });
        };
        read();
        const packet = { type: "open" };
        if (this.query.sid) {
          packet.data = `{"sid":"${this.query.sid}"}`;
        }
        this._writer.write(packet).then(() => this.onOpen());
      });
    });
  }
  write(packets) {
    this.writable = false;
    for (let i = 0; i < packets.length; i++) {
      const packet = packets[i];
      const lastPacket = i === packets.length - 1;
      this._writer.write(packet).then(() => {
        if (lastPacket) {
          nextTick(() => {
            this.writable = true;
            this.emitReserved("drain");
          }, this.setTimeoutFn);
        }
      });
    }
  }
  doClose() {
    var _a;
    (_a = this._transport) === null || _a === void 0 ? void 0 : _a.close();
  }
};

// node_modules/engine.io-client/build/esm/transports/index.js
var transports = {
  websocket: WS,
  webtransport: WT,
  polling: XHR
};

// node_modules/engine.io-client/build/esm/contrib/parseuri.js
var re = /^(?:(?![^:@\/?#]+:[^:@\/]*@)(http|https|ws|wss):\/\/)?((?:(([^:@\/?#]*)(?::([^:@\/?#]*))?)?@)?((?:[a-f0-9]{0,4}:){2,7}[a-f0-9]{0,4}|[^:\/?#]*)(?::(\d*))?)(((\/(?:[^?#](?![^?#\/]*\.[^?#\/.]+(?:[?#]|$)))*\/?)?([^?#\/]*))(?:\?([^#]*))?(?:#(.*))?)/;
var parts = [
  "source",
  "protocol",
  "authority",
  "userInfo",
  "user",
  "password",
  "host",
  "port",
  "relative",
  "path",
  "directory",
  "file",
  "query",
  "anchor"
];
function parse(str) {
  if (str.length > 8e3) {
    throw "URI too long";
  }
  const src = str, b = str.indexOf("["), e = str.indexOf("]");
  if (b != -1 && e != -1) {
    str = str.substring(0, b) + str.substring(b, e).replace(/:/g, ";") + str.substring(e, str.length);
  }
  let m = re.exec(str || ""), uri = {}, i = 14;
  while (i--) {
    uri[parts[i]] = m[i] || "";
  }
  if (b != -1 && e != -1) {
    uri.source = src;
    uri.host = uri.host.substring(1, uri.host.length - 1).replace(/;/g, ":");
    uri.authority = uri.authority.replace("[", "").replace("]", "").replace(/;/g, ":");
    uri.ipv6uri = true;
  }
  uri.pathNames = pathNames(uri, uri["path"]);
  uri.queryKey = queryKey(uri, uri["query"]);
  return uri;
}
function pathNames(obj, path) {
  const regx = /\/{2,9}/g, names = path.replace(regx, "/").split("/");
  if (path.slice(0, 1) == "/" || path.length === 0) {
    names.splice(0, 1);
  }
  if (path.slice(-1) == "/") {
    names.splice(names.length - 1, 1);
  }
  return names;
}
function queryKey(uri, query) {
  const data = {};
  query.replace(/(?:^|&)([^&=]*)=?([^&]*)/g, function($0, $1, $2) {
    if ($1) {
      data[$1] = $2;
    }
  });
  return data;
}

// node_modules/engine.io-client/build/esm/socket.js
var withEventListeners = typeof addEventListener === "function" && typeof removeEventListener === "function";
var OFFLINE_EVENT_LISTENERS = [];
if (withEventListeners) {
  addEventListener("offline", () => {
    OFFLINE_EVENT_LISTENERS.forEach((listener) => listener());
  }, false);
}
var Socket = class _Socket extends Emitter {
  constructor(uri, opts = {}) {
    var _a, _b;
    super();
    this.binaryType = defaultBinaryType;
    this.writeBuffer = [];
    this._prevBufferLen = 0;
    this._upgrades = [];
    this._pingInterval = -1;
    this._pingTimeout = -1;
    this._maxPayload = -1;
    this._pingTimeoutTime = Infinity;
    if (uri && "object" === typeof uri) {
      opts = uri;
      uri = null;
    }
    if (uri) {
      const parsedUri = parse(uri);
      opts.hostname = parsedUri.host;
      opts.secure = parsedUri.protocol === "https" || parsedUri.protocol === "wss";
      opts.port = parsedUri.port;
      if (parsedUri.query)
        opts.query = parsedUri.query;
    } else if (opts.host) {
      opts.hostname = parse(opts.host).host;
    }
    installTimerFunctions(this, opts);
    this.secure = null != opts.secure ? opts.secure : typeof location !== "undefined" && "https:" === location.protocol;
    if (opts.hostname && !opts.port) {
      opts.port = this.secure ? "443" : "80";
    }
    this.hostname = opts.hostname || (typeof location !== "undefined" ? location.hostname : "localhost");
    this.port = opts.port || (typeof location !== "undefined" && location.port ? location.port : this.secure ? "443" : "80");
    if (opts.transportImplementations && opts.transports) {
      throw new Error("specifying both 'transportImplementations' and 'transports' options is not supported");
    }
    if (opts.transportImplementations || ((_a = opts.transports) === null || _a === void 0 ? void 0 : _a.length) && typeof opts.transports[0] === "function") {
      this.transports = [];
      this._transportsByName = /* @__PURE__ */ Object.create(null);
      ((_b = opts.transportImplementations) !== null && _b !== void 0 ? _b : opts.transports).forEach((t) => {
        const transportName = t.prototype.name;
        this.transports.push(transportName);
        this._transportsByName[transportName] = t;
      });
    } else {
      this.transports = opts.transports ? [...opts.transports] : ["polling", "websocket", "webtransport"];
      this._transportsByName = transports;
    }
    this.opts = Object.assign({
      path: "/engine.io",
      agent: false,
      withCredentials: false,
      upgrade: true,
      timestampParam: "t",
      rememberUpgrade: false,
      addTrailingSlash: true,
      rejectUnauthorized: true,
      perMessageDeflate: {
        threshold: 1024
      },
      transportOptions: {},
      closeOnBeforeunload: false
    }, opts);
    this.opts.path = this.opts.path.replace(/\/$/, "") + (this.opts.addTrailingSlash ? "/" : "");
    if (typeof this.opts.query === "string") {
      this.opts.query = decode2(this.opts.query);
    }
    if (withEventListeners) {
      if (this.opts.closeOnBeforeunload) {
        this._beforeunloadEventListener = () => {
          if (this.transport) {
            this.transport.removeAllListeners();
            this.transport.close();
          }
        };
        addEventListener("beforeunload", this._beforeunloadEventListener, false);
      }
      if (this.hostname !== "localhost") {
        this._offlineEventListener = () => {
          this._onClose("transport close", {
            description: "network connection lost"
          });
        };
        OFFLINE_EVENT_LISTENERS.push(this._offlineEventListener);
      }
    }
    if (this.opts.withCredentials) {
      this._cookieJar = createCookieJar();
    }
    this._open();
  }
  /**
   * Creates transport of the given type.
   *
   * @param {String} name - transport name
   * @return {Transport}
   * @private
   */
  createTransport(name) {
    const query = Object.assign({}, this.opts.query);
    query.EIO = protocol;
    query.transport = name;
    if (this.id)
      query.sid = this.id;
    const opts = Object.assign({}, this.opts, {
      query,
      socket: this,
      hostname: this.hostname,
      secure: this.secure,
      port: this.port
    }, this.opts.transportOptions[name]);
    return new this._transportsByName[name](opts);
  }
  /**
   * Initializes transport to use and starts probe.
   *
   * @private
   */
  _open() {
    if (this.transports.length === 0) {
      this.setTimeoutFn(() => {
        this.emitReserved("error", "No transports available");
      }, 0);
      return;
    }
    const transportName = this.opts.rememberUpgrade && _Socket.priorWebsocketSuccess && this.transports.indexOf("websocket") !== -1 ? "websocket" : this.transports[0];
    this.readyState = "opening";
    const transport = this.createTransport(transportName);
    transport.open();
    this.setTransport(transport);
  }
  /**
   * Sets the current transport. Disables the existing one (if any).
   *
   * @private
   */
  setTransport(transport) {
    if (this.transport) {
      this.transport.removeAllListeners();
    }
    this.transport = transport;
    transport.on("drain", this._onDrain.bind(this)).on("packet", this._onPacket.bind(this)).on("error", this._onError.bind(this)).on("close", (reason) => this._onClose("transport close", reason));
  }
  /**
   * Probes a transport.
   *
   * @param {String} name - transport name
   * @private
   */
  _probe(name) {
    let transport = this.createTransport(name);
    let failed = false;
    _Socket.priorWebsocketSuccess = false;
    const onTransportOpen = () => {
      if (failed)
        return;
      transport.send([{ type: "ping", data: "probe" }]);
      transport.once("packet", (msg) => {
        if (failed)
          return;
        if ("pong" === msg.type && "probe" === msg.data) {
          this.upgrading = true;
          this.emitReserved("upgrading", transport);
          if (!transport)
            return;
          _Socket.priorWebsocketSuccess = "websocket" === transport.name;
          this.transport.pause(() => {
            if (failed)
              return;
            if ("closed" === this.readyState)
              return;
            cleanup();
            this.setTransport(transport);
            transport.send([{ type: "upgrade" }]);
            this.emitReserved("upgrade", transport);
            transport = null;
            this.upgrading = false;
            this.flush();
          });
        } else {
          const err = new Error("probe error");
          err.transport = transport.name;
          this.emitReserved("upgradeError", err);
        }
      });
    };
    function freezeTransport() {
      if (failed)
        return;
      failed = true;
      cleanup();
      transport.close();
      transport = null;
    }
    const onerror = (err) => {
      const error = new Error("probe error: " + err);
      error.transport = transport.name;
      freezeTransport();
      this.emitReserved("upgradeError", error);
    };
    function onTransportClose() {
      onerror("transport closed");
    }
    function onclose() {
      onerror("socket closed");
    }
    function onupgrade(to) {
      if (transport && to.name !== transport.name) {
        freezeTransport();
      }
    }
    const cleanup = () => {
      transport.removeListener("open", onTransportOpen);
      transport.removeListener("error", onerror);
      transport.removeListener("close", onTransportClose);
      this.off("close", onclose);
      this.off("upgrading", onupgrade);
    };
    transport.once("open", onTransportOpen);
    transport.once("error", onerror);
    transport.once("close", onTransportClose);
    this.once("close", onclose);
    this.once("upgrading", onupgrade);
    if (this._upgrades.indexOf("webtransport") !== -1 && name !== "webtransport") {
      this.setTimeoutFn(() => {
        if (!failed) {
          transport.open();
        }
      }, 200);
    } else {
      transport.open();
    }
  }
  /**
   * Called when connection is deemed open.
   *
   * @private
   */
  onOpen() {
    this.readyState = "open";
    _Socket.priorWebsocketSuccess = "websocket" === this.transport.name;
    this.emitReserved("open");
    this.flush();
    if ("open" === this.readyState && this.opts.upgrade) {
      for (let i = 0; i < this._upgrades.length; i++) {
        this._probe(this._upgrades[i]);
      }
    }
  }
  /**
   * Handles a packet.
   *
   * @private
   */
  _onPacket(packet) {
    if ("opening" === this.readyState || "open" === this.readyState || "closing" === this.readyState) {
      this.emitReserved("packet", packet);
      this.emitReserved("heartbeat");
      switch (packet.type) {
        case "open":
          this.onHandshake(JSON.parse(packet.data));
          break;
        case "ping":
          this._sendPacket("pong");
          this.emitReserved("ping");
          this.emitReserved("pong");
          this._resetPingTimeout();
          break;
        case "error":
          const err = new Error("server error");
          err.code = packet.data;
          this._onError(err);
          break;
        case "message":
          this.emitReserved("data", packet.data);
          this.emitReserved("message", packet.data);
          break;
      }
    } else {
    }
  }
  /**
   * Called upon handshake completion.
   *
   * @param {Object} data - handshake obj
   * @private
   */
  onHandshake(data) {
    this.emitReserved("handshake", data);
    this.id = data.sid;
    this.transport.query.sid = data.sid;
    this._upgrades = this._filterUpgrades(data.upgrades);
    this._pingInterval = data.pingInterval;
    this._pingTimeout = data.pingTimeout;
    this._maxPayload = data.maxPayload;
    this.onOpen();
    if ("closed" === this.readyState)
      return;
    this._resetPingTimeout();
  }
  /**
   * Sets and resets ping timeout timer based on server pings.
   *
   * @private
   */
  _resetPingTimeout() {
    this.clearTimeoutFn(this._pingTimeoutTimer);
    const delay = this._pingInterval + this._pingTimeout;
    this._pingTimeoutTime = Date.now() + delay;
    this._pingTimeoutTimer = this.setTimeoutFn(() => {
      this._onClose("ping timeout");
    }, delay);
    if (this.opts.autoUnref) {
      this._pingTimeoutTimer.unref();
    }
  }
  /**
   * Called on `drain` event
   *
   * @private
   */
  _onDrain() {
    this.writeBuffer.splice(0, this._prevBufferLen);
    this._prevBufferLen = 0;
    if (0 === this.writeBuffer.length) {
      this.emitReserved("drain");
    } else {
      this.flush();
    }
  }
  /**
   * Flush write buffers.
   *
   * @private
   */
  flush() {
    if ("closed" !== this.readyState && this.transport.writable && !this.upgrading && this.writeBuffer.length) {
      const packets = this._getWritablePackets();
      this.transport.send(packets);
      this._prevBufferLen = packets.length;
      this.emitReserved("flush");
    }
  }
  /**
   * Ensure the encoded size of the writeBuffer is below the maxPayload value sent by the server (only for HTTP
   * long-polling)
   *
   * @private
   */
  _getWritablePackets() {
    const shouldCheckPayloadSize = this._maxPayload && this.transport.name === "polling" && this.writeBuffer.length > 1;
    if (!shouldCheckPayloadSize) {
      return this.writeBuffer;
    }
    let payloadSize = 1;
    for (let i = 0; i < this.writeBuffer.length; i++) {
      const data = this.writeBuffer[i].data;
      if (data) {
        payloadSize += byteLength(data);
      }
      if (i > 0 && payloadSize > this._maxPayload) {
        return this.writeBuffer.slice(0, i);
      }
      payloadSize += 2;
    }
    return this.writeBuffer;
  }
  /**
   * Checks whether the heartbeat timer has expired but the socket has not yet been notified.
   *
   * Note: this method is private for now because it does not really fit the WebSocket API, but if we put it in the
   * `write()` method then the message would not be buffered by the Socket.IO client.
   *
   * @return {boolean}
   * @private
   */
  /* private */
  _hasPingExpired() {
    if (!this._pingTimeoutTime)
      return true;
    const hasExpired = Date.now() > this._pingTimeoutTime;
    if (hasExpired) {
      this._pingTimeoutTime = 0;
      nextTick(() => {
        this._onClose("ping timeout");
      }, this.setTimeoutFn);
    }
    return hasExpired;
  }
  /**
   * Sends a message.
   *
   * @param {String} msg - message.
   * @param {Object} options.
   * @param {Function} fn - callback function.
   * @return {Socket} for chaining.
   */
  write(msg, options, fn) {
    this._sendPacket("message", msg, options, fn);
    return this;
  }
  /**
   * Sends a message. Alias of {@link Socket#write}.
   *
   * @param {String} msg - message.
   * @param {Object} options.
   * @param {Function} fn - callback function.
   * @return {Socket} for chaining.
   */
  send(msg, options, fn) {
    this._sendPacket("message", msg, options, fn);
    return this;
  }
  /**
   * Sends a packet.
   *
   * @param {String} type - packet type.
   * @param {String} data.
   * @param {Object} options.
   * @param {Function} fn - callback function.
   * @private
   */
  _sendPacket(type, data, options, fn) {
    if ("function" === typeof data) {
      fn = data;
      data = void 0;
    }
    if ("function" === typeof options) {
      fn = options;
      options = null;
    }
    if ("closing" === this.readyState || "closed" === this.readyState) {
      return;
    }
    options = options || {};
    options.compress = false !== options.compress;
    const packet = {
      type,
      data,
      options
    };
    this.emitReserved("packetCreate", packet);
    this.writeBuffer.push(packet);
    if (fn)
      this.once("flush", fn);
    this.flush();
  }
  /**
   * Closes the connection.
   */
  close() {
    const close = () => {
      this._onClose("forced close");
      this.transport.close();
    };
    const cleanupAndClose = () => {
      this.off("upgrade", cleanupAndClose);
      this.off("upgradeError", cleanupAndClose);
      close();
    };
    const waitForUpgrade = () => {
      this.once("upgrade", cleanupAndClose);
      this.once("upgradeError", cleanupAndClose);
    };
    if ("opening" === this.readyState || "open" === this.readyState) {
      this.readyState = "closing";
      if (this.writeBuffer.length) {
        this.once("drain", () => {
          if (this.upgrading) {
            waitForUpgrade();
          } else {
            close();
          }
        });
      } else if (this.upgrading) {
        waitForUpgrade();
      } else {
        close();
      }
    }
    return this;
  }
  /**
   * Called upon transport error
   *
   * @private
   */
  _onError(err) {
    _Socket.priorWebsocketSuccess = false;
    if (this.opts.tryAllTransports && this.transports.length > 1 && this.readyState === "opening") {
      this.transports.shift();
      return this._open();
    }
    this.emitReserved("error", err);
    this._onClose("transport error", err);
  }
  /**
   * Called upon transport close.
   *
   * @private
   */
  _onClose(reason, description) {
    if ("opening" === this.readyState || "open" === this.readyState || "closing" === this.readyState) {
      this.clearTimeoutFn(this._pingTimeoutTimer);
      this.transport.removeAllListeners("close");
      this.transport.close();
      this.transport.removeAllListeners();
      if (withEventListeners) {
        if (this._beforeunloadEventListener) {
          removeEventListener("beforeunload", this._beforeunloadEventListener, false);
        }
        if (this._offlineEventListener) {
          const i = OFFLINE_EVENT_LISTENERS.indexOf(this._offlineEventListener);
          if (i !== -1) {
            OFFLINE_EVENT_LISTENERS.splice(i, 1);
          }
        }
      }
      this.readyState = "closed";
      this.id = null;
      this.emitReserved("close", reason, description);
      this.writeBuffer = [];
      this._prevBufferLen = 0;
    }
  }
  /**
   * Filters upgrades, returning only those matching client transports.
   *
   * @param {Array} upgrades - server upgrades
   * @private
   */
  _filterUpgrades(upgrades) {
    const filteredUpgrades = [];
    for (let i = 0; i < upgrades.length; i++) {
      if (~this.transports.indexOf(upgrades[i]))
        filteredUpgrades.push(upgrades[i]);
    }
    return filteredUpgrades;
  }
};
Socket.protocol = protocol;

// node_modules/engine.io-client/build/esm/index.js
var protocol2 = Socket.protocol;

// node_modules/socket.io-client/build/esm/url.js
function url(uri, path = "", loc) {
  let obj = uri;
  loc = loc || typeof location !== "undefined" && location;
  if (null == uri)
    uri = loc.protocol + "//" + loc.host;
  if (typeof uri === "string") {
    if ("/" === uri.charAt(0)) {
      if ("/" === uri.charAt(1)) {
        uri = loc.protocol + uri;
      } else {
        uri = loc.host + uri;
      }
    }
    if (!/^(https?|wss?):\/\//.test(uri)) {
      if ("undefined" !== typeof loc) {
        uri = loc.protocol + "//" + uri;
      } else {
        uri = "https://" + uri;
      }
    }
    obj = parse(uri);
  }
  if (!obj.port) {
    if (/^(http|ws)$/.test(obj.protocol)) {
      obj.port = "80";
    } else if (/^(http|ws)s$/.test(obj.protocol)) {
      obj.port = "443";
    }
  }
  obj.path = obj.path || "/";
  const ipv6 = obj.host.indexOf(":") !== -1;
  const host = ipv6 ? "[" + obj.host + "]" : obj.host;
  obj.id = obj.protocol + "://" + host + ":" + obj.port + path;
  obj.href = obj.protocol + "://" + host + (loc && loc.port === obj.port ? "" : ":" + obj.port);
  return obj;
}

// node_modules/socket.io-parser/build/esm/index.js
var esm_exports = {};
__export(esm_exports, {
  Decoder: () => Decoder,
  Encoder: () => Encoder,
  PacketType: () => PacketType,
  isPacketValid: () => isPacketValid,
  protocol: () => protocol3
});

// node_modules/socket.io-parser/build/esm/is-binary.js
var withNativeArrayBuffer3 = typeof ArrayBuffer === "function";
var isView2 = (obj) => {
  return typeof ArrayBuffer.isView === "function" ? ArrayBuffer.isView(obj) : obj.buffer instanceof ArrayBuffer;
};
var toString = Object.prototype.toString;
var withNativeBlob2 = typeof Blob === "function" || typeof Blob !== "undefined" && toString.call(Blob) === "[object BlobConstructor]";
var withNativeFile = typeof File === "function" || typeof File !== "undefined" && toString.call(File) === "[object FileConstructor]";
function isBinary(obj) {
  return withNativeArrayBuffer3 && (obj instanceof ArrayBuffer || isView2(obj)) || withNativeBlob2 && obj instanceof Blob || withNativeFile && obj instanceof File;
}
function hasBinary(obj, toJSON) {
  if (!obj || typeof obj !== "object") {
    return false;
  }
  if (Array.isArray(obj)) {
    for (let i = 0, l = obj.length; i < l; i++) {
      if (hasBinary(obj[i])) {
        return true;
      }
    }
    return false;
  }
  if (isBinary(obj)) {
    return true;
  }
  if (obj.toJSON && typeof obj.toJSON === "function" && arguments.length === 1) {
    return hasBinary(obj.toJSON(), true);
  }
  for (const key in obj) {
    if (Object.prototype.hasOwnProperty.call(obj, key) && hasBinary(obj[key])) {
      return true;
    }
  }
  return false;
}

// node_modules/socket.io-parser/build/esm/binary.js
function deconstructPacket(packet) {
  const buffers = [];
  const packetData = packet.data;
  const pack = packet;
  pack.data = _deconstructPacket(packetData, buffers);
  pack.attachments = buffers.length;
  return { packet: pack, buffers };
}
function _deconstructPacket(data, buffers, toJSON) {
  if (!data)
    return data;
  if (isBinary(data)) {
    const placeholder = { _placeholder: true, num: buffers.length };
    buffers.push(data);
    return placeholder;
  } else if (Array.isArray(data)) {
    const newData = new Array(data.length);
    for (let i = 0; i < data.length; i++) {
      newData[i] = _deconstructPacket(data[i], buffers);
    }
    return newData;
  } else if (typeof data === "object" && !(data instanceof Date)) {
    if (data.toJSON && typeof data.toJSON === "function" && !toJSON) {
      return _deconstructPacket(data.toJSON(), buffers, true);
    }
    const newData = {};
    for (const key in data) {
      if (Object.prototype.hasOwnProperty.call(data, key)) {
        newData[key] = _deconstructPacket(data[key], buffers);
      }
    }
    return newData;
  }
  return data;
}
function reconstructPacket(packet, buffers) {
  packet.data = _reconstructPacket(packet.data, buffers);
  delete packet.attachments;
  return packet;
}
function _reconstructPacket(data, buffers) {
  if (!data)
    return data;
  if (data && data._placeholder === true) {
    const isIndexValid = typeof data.num === "number" && data.num >= 0 && data.num < buffers.length;
    if (isIndexValid) {
      return buffers[data.num];
    } else {
      throw new Error("illegal attachments");
    }
  } else if (Array.isArray(data)) {
    for (let i = 0; i < data.length; i++) {
      data[i] = _reconstructPacket(data[i], buffers);
    }
  } else if (typeof data === "object") {
    for (const key in data) {
      if (Object.prototype.hasOwnProperty.call(data, key)) {
        data[key] = _reconstructPacket(data[key], buffers);
      }
    }
  }
  return data;
}

// node_modules/socket.io-parser/build/esm/index.js
var RESERVED_EVENTS = [
  "connect",
  // used on the client side
  "connect_error",
  // used on the client side
  "disconnect",
  // used on both sides
  "disconnecting",
  // used on the server side
  "newListener",
  // used by the Node.js EventEmitter
  "removeListener"
  // used by the Node.js EventEmitter
];
var protocol3 = 5;
var PacketType;
(function(PacketType2) {
  PacketType2[PacketType2["CONNECT"] = 0] = "CONNECT";
  PacketType2[PacketType2["DISCONNECT"] = 1] = "DISCONNECT";
  PacketType2[PacketType2["EVENT"] = 2] = "EVENT";
  PacketType2[PacketType2["ACK"] = 3] = "ACK";
  PacketType2[PacketType2["CONNECT_ERROR"] = 4] = "CONNECT_ERROR";
  PacketType2[PacketType2["BINARY_EVENT"] = 5] = "BINARY_EVENT";
  PacketType2[PacketType2["BINARY_ACK"] = 6] = "BINARY_ACK";
})(PacketType || (PacketType = {}));
var Encoder = class {
  /**
   * Encoder constructor
   *
   * @param {function} replacer - custom replacer to pass down to JSON.parse
   */
  constructor(replacer) {
    this.replacer = replacer;
  }
  /**
   * Encode a packet as a single string if non-binary, or as a
   * buffer sequence, depending on packet type.
   *
   * @param {Object} obj - packet object
   */
  encode(obj) {
    if (obj.type === PacketType.EVENT || obj.type === PacketType.ACK) {
      if (hasBinary(obj)) {
        return this.encodeAsBinary({
          type: obj.type === PacketType.EVENT ? PacketType.BINARY_EVENT : PacketType.BINARY_ACK,
          nsp: obj.nsp,
          data: obj.data,
          id: obj.id
        });
      }
    }
    return [this.encodeAsString(obj)];
  }
  /**
   * Encode packet as string.
   */
  encodeAsString(obj) {
    let str = "" + obj.type;
    if (obj.type === PacketType.BINARY_EVENT || obj.type === PacketType.BINARY_ACK) {
      str += obj.attachments + "-";
    }
    if (obj.nsp && "/" !== obj.nsp) {
      str += obj.nsp + ",";
    }
    if (null != obj.id) {
      str += obj.id;
    }
    if (null != obj.data) {
      str += JSON.stringify(obj.data, this.replacer);
    }
    return str;
  }
  /**
   * Encode packet as 'buffer sequence' by removing blobs, and
   * deconstructing packet into object with placeholders and
   * a list of buffers.
   */
  encodeAsBinary(obj) {
    const deconstruction = deconstructPacket(obj);
    const pack = this.encodeAsString(deconstruction.packet);
    const buffers = deconstruction.buffers;
    buffers.unshift(pack);
    return buffers;
  }
};
var Decoder = class _Decoder extends Emitter {
  /**
   * Decoder constructor
   */
  constructor(opts) {
    super();
    this.opts = Object.assign({
      reviver: void 0,
      maxAttachments: 10
    }, typeof opts === "function" ? { reviver: opts } : opts);
  }
  /**
   * Decodes an encoded packet string into packet JSON.
   *
   * @param {String} obj - encoded packet
   */
  add(obj) {
    let packet;
    if (typeof obj === "string") {
      if (this.reconstructor) {
        throw new Error("got plaintext data when reconstructing a packet");
      }
      packet = this.decodeString(obj);
      const isBinaryEvent = packet.type === PacketType.BINARY_EVENT;
      if (isBinaryEvent || packet.type === PacketType.BINARY_ACK) {
        packet.type = isBinaryEvent ? PacketType.EVENT : PacketType.ACK;
        this.reconstructor = new BinaryReconstructor(packet);
      } else {
        super.emitReserved("decoded", packet);
      }
    } else if (isBinary(obj) || obj.base64) {
      if (!this.reconstructor) {
        throw new Error("got binary data when not reconstructing a packet");
      } else {
        packet = this.reconstructor.takeBinaryData(obj);
        if (packet) {
          this.reconstructor = null;
          super.emitReserved("decoded", packet);
        }
      }
    } else {
      throw new Error("Unknown type: " + obj);
    }
  }
  /**
   * Decode a packet String (JSON data)
   *
   * @param {String} str
   * @return {Object} packet
   */
  decodeString(str) {
    let i = 0;
    const p = {
      type: Number(str.charAt(0))
    };
    if (PacketType[p.type] === void 0) {
      throw new Error("unknown packet type " + p.type);
    }
    if (p.type === PacketType.BINARY_EVENT || p.type === PacketType.BINARY_ACK) {
      const start = i + 1;
      while (str.charAt(++i) !== "-" && i != str.length) {
      }
      const buf = str.substring(start, i);
      if (buf != Number(buf) || str.charAt(i) !== "-") {
        throw new Error("Illegal attachments");
      }
      const n = Number(buf);
      if (!isInteger(n) || n < 1) {
        throw new Error("Illegal attachments");
      } else if (n > this.opts.maxAttachments) {
        throw new Error("too many attachments");
      }
      p.attachments = n;
    }
    if ("/" === str.charAt(i + 1)) {
      const start = i + 1;
      while (++i) {
        const c = str.charAt(i);
        if ("," === c)
          break;
        if (i === str.length)
          break;
      }
      p.nsp = str.substring(start, i);
    } else {
      p.nsp = "/";
    }
    const next = str.charAt(i + 1);
    if ("" !== next && Number(next) == next) {
      const start = i + 1;
      while (++i) {
        const c = str.charAt(i);
        if (null == c || Number(c) != c) {
          --i;
          break;
        }
        if (i === str.length)
          break;
      }
      p.id = Number(str.substring(start, i + 1));
    }
    if (str.charAt(++i)) {
      const payload = this.tryParse(str.substr(i));
      if (_Decoder.isPayloadValid(p.type, payload)) {
        p.data = payload;
      } else {
        throw new Error("invalid payload");
      }
    }
    return p;
  }
  tryParse(str) {
    try {
      return JSON.parse(str, this.opts.reviver);
    } catch (e) {
      return false;
    }
  }
  static isPayloadValid(type, payload) {
    switch (type) {
      case PacketType.CONNECT:
        return isObject(payload);
      case PacketType.DISCONNECT:
        return payload === void 0;
      case PacketType.CONNECT_ERROR:
        return typeof payload === "string" || isObject(payload);
      case PacketType.EVENT:
      case PacketType.BINARY_EVENT:
        return Array.isArray(payload) && (typeof payload[0] === "number" || typeof payload[0] === "string" && RESERVED_EVENTS.indexOf(payload[0]) === -1);
      case PacketType.ACK:
      case PacketType.BINARY_ACK:
        return Array.isArray(payload);
    }
  }
  /**
   * Deallocates a parser's resources
   */
  destroy() {
    if (this.reconstructor) {
      this.reconstructor.finishedReconstruction();
      this.reconstructor = null;
    }
  }
};
var BinaryReconstructor = class {
  constructor(packet) {
    this.packet = packet;
    this.buffers = [];
    this.reconPack = packet;
  }
  /**
   * Method to be called when binary data received from connection
   * after a BINARY_EVENT packet.
   *
   * @param {Buffer | ArrayBuffer} binData - the raw binary data received
   * @return {null | Object} returns null if more binary data is expected or
   *   a reconstructed packet object if all buffers have been received.
   */
  takeBinaryData(binData) {
    this.buffers.push(binData);
    if (this.buffers.length === this.reconPack.attachments) {
      const packet = reconstructPacket(this.reconPack, this.buffers);
      this.finishedReconstruction();
      return packet;
    }
    return null;
  }
  /**
   * Cleans up binary packet reconstruction variables.
   */
  finishedReconstruction() {
    this.reconPack = null;
    this.buffers = [];
  }
};
function isNamespaceValid(nsp) {
  return typeof nsp === "string";
}
var isInteger = Number.isInteger || function(value2) {
  return typeof value2 === "number" && isFinite(value2) && Math.floor(value2) === value2;
};
function isAckIdValid(id) {
  return id === void 0 || isInteger(id);
}
function isObject(value2) {
  return Object.prototype.toString.call(value2) === "[object Object]";
}
function isDataValid(type, payload) {
  switch (type) {
    case PacketType.CONNECT:
      return payload === void 0 || isObject(payload);
    case PacketType.DISCONNECT:
      return payload === void 0;
    case PacketType.EVENT:
      return Array.isArray(payload) && (typeof payload[0] === "number" || typeof payload[0] === "string" && RESERVED_EVENTS.indexOf(payload[0]) === -1);
    case PacketType.ACK:
      return Array.isArray(payload);
    case PacketType.CONNECT_ERROR:
      return typeof payload === "string" || isObject(payload);
    default:
      return false;
  }
}
function isPacketValid(packet) {
  return isNamespaceValid(packet.nsp) && isAckIdValid(packet.id) && isDataValid(packet.type, packet.data);
}

// node_modules/socket.io-client/build/esm/on.js
function on(obj, ev, fn) {
  obj.on(ev, fn);
  return function subDestroy() {
    obj.off(ev, fn);
  };
}

// node_modules/socket.io-client/build/esm/socket.js
var RESERVED_EVENTS2 = Object.freeze({
  connect: 1,
  connect_error: 1,
  disconnect: 1,
  disconnecting: 1,
  // EventEmitter reserved events: https://nodejs.org/api/events.html#events_event_newlistener
  newListener: 1,
  removeListener: 1
});
var Socket2 = class extends Emitter {
  /**
   * `Socket` constructor.
   */
  constructor(io, nsp, opts) {
    super();
    this.connected = false;
    this.recovered = false;
    this.receiveBuffer = [];
    this.sendBuffer = [];
    this._queue = [];
    this._queueSeq = 0;
    this.ids = 0;
    this.acks = {};
    this.flags = {};
    this.io = io;
    this.nsp = nsp;
    if (opts && opts.auth) {
      this.auth = opts.auth;
    }
    this._opts = Object.assign({}, opts);
    if (this.io._autoConnect)
      this.open();
  }
  /**
   * Whether the socket is currently disconnected
   *
   * @example
   * const socket = io();
   *
   * socket.on("connect", () => {
   *   console.log(socket.disconnected); // false
   * });
   *
   * socket.on("disconnect", () => {
   *   console.log(socket.disconnected); // true
   * });
   */
  get disconnected() {
    return !this.connected;
  }
  /**
   * Subscribe to open, close and packet events
   *
   * @private
   */
  subEvents() {
    if (this.subs)
      return;
    const io = this.io;
    this.subs = [
      on(io, "open", this.onopen.bind(this)),
      on(io, "packet", this.onpacket.bind(this)),
      on(io, "error", this.onerror.bind(this)),
      on(io, "close", this.onclose.bind(this))
    ];
  }
  /**
   * Whether the Socket will try to reconnect when its Manager connects or reconnects.
   *
   * @example
   * const socket = io();
   *
   * console.log(socket.active); // true
   *
   * socket.on("disconnect", (reason) => {
   *   if (reason === "io server disconnect") {
   *     // the disconnection was initiated by the server, you need to manually reconnect
   *     console.log(socket.active); // false
   *   }
   *   // else the socket will automatically try to reconnect
   *   console.log(socket.active); // true
   * });
   */
  get active() {
    return !!this.subs;
  }
  /**
   * "Opens" the socket.
   *
   * @example
   * const socket = io({
   *   autoConnect: false
   * });
   *
   * socket.connect();
   */
  connect() {
    if (this.connected)
      return this;
    this.subEvents();
    if (!this.io["_reconnecting"])
      this.io.open();
    if ("open" === this.io._readyState)
      this.onopen();
    return this;
  }
  /**
   * Alias for {@link connect()}.
   */
  open() {
    return this.connect();
  }
  /**
   * Sends a `message` event.
   *
   * This method mimics the WebSocket.send() method.
   *
   * @see https://developer.mozilla.org/en-US/docs/Web/API/WebSocket/send
   *
   * @example
   * socket.send("hello");
   *
   * // this is equivalent to
   * socket.emit("message", "hello");
   *
   * @return self
   */
  send(...args) {
    args.unshift("message");
    this.emit.apply(this, args);
    return this;
  }
  /**
   * Override `emit`.
   * If the event is in `events`, it's emitted normally.
   *
   * @example
   * socket.emit("hello", "world");
   *
   * // all serializable datastructures are supported (no need to call JSON.stringify)
   * socket.emit("hello", 1, "2", { 3: ["4"], 5: Uint8Array.from([6]) });
   *
   * // with an acknowledgement from the server
   * socket.emit("hello", "world", (val) => {
   *   // ...
   * });
   *
   * @return self
   */
  emit(ev, ...args) {
    var _a, _b, _c;
    if (RESERVED_EVENTS2.hasOwnProperty(ev)) {
      throw new Error('"' + ev.toString() + '" is a reserved event name');
    }
    args.unshift(ev);
    if (this._opts.retries && !this.flags.fromQueue && !this.flags.volatile) {
      this._addToQueue(args);
      return this;
    }
    const packet = {
      type: PacketType.EVENT,
      data: args
    };
    packet.options = {};
    packet.options.compress = this.flags.compress !== false;
    if ("function" === typeof args[args.length - 1]) {
      const id = this.ids++;
      const ack = args.pop();
      this._registerAckCallback(id, ack);
      packet.id = id;
    }
    const isTransportWritable = (_b = (_a = this.io.engine) === null || _a === void 0 ? void 0 : _a.transport) === null || _b === void 0 ? void 0 : _b.writable;
    const isConnected = this.connected && !((_c = this.io.engine) === null || _c === void 0 ? void 0 : _c._hasPingExpired());
    const discardPacket = this.flags.volatile && !isTransportWritable;
    if (discardPacket) {
    } else if (isConnected) {
      this.notifyOutgoingListeners(packet);
      this.packet(packet);
    } else {
      this.sendBuffer.push(packet);
    }
    this.flags = {};
    return this;
  }
  /**
   * @private
   */
  _registerAckCallback(id, ack) {
    var _a;
    const timeout = (_a = this.flags.timeout) !== null && _a !== void 0 ? _a : this._opts.ackTimeout;
    if (timeout === void 0) {
      this.acks[id] = ack;
      return;
    }
    const timer = this.io.setTimeoutFn(() => {
      delete this.acks[id];
      for (let i = 0; i < this.sendBuffer.length; i++) {
        if (this.sendBuffer[i].id === id) {
          this.sendBuffer.splice(i, 1);
        }
      }
      ack.call(this, new Error("operation has timed out"));
    }, timeout);
    const fn = (...args) => {
      this.io.clearTimeoutFn(timer);
      ack.apply(this, args);
    };
    fn.withError = true;
    this.acks[id] = fn;
  }
  /**
   * Emits an event and waits for an acknowledgement
   *
   * @example
   * // without timeout
   * const response = await socket.emitWithAck("hello", "world");
   *
   * // with a specific timeout
   * try {
   *   const response = await socket.timeout(1000).emitWithAck("hello", "world");
   * } catch (err) {
   *   // the server did not acknowledge the event in the given delay
   * }
   *
   * @return a Promise that will be fulfilled when the server acknowledges the event
   */
  emitWithAck(ev, ...args) {
    return new Promise((resolve, reject) => {
      const fn = (arg1, arg2) => {
        return arg1 ? reject(arg1) : resolve(arg2);
      };
      fn.withError = true;
      args.push(fn);
      this.emit(ev, ...args);
    });
  }
  /**
   * Add the packet to the queue.
   * @param args
   * @private
   */
  _addToQueue(args) {
    let ack;
    if (typeof args[args.length - 1] === "function") {
      ack = args.pop();
    }
    const packet = {
      id: this._queueSeq++,
      tryCount: 0,
      pending: false,
      args,
      flags: Object.assign({ fromQueue: true }, this.flags)
    };
    args.push((err, ...responseArgs) => {
      if (packet !== this._queue[0]) {
        return;
      }
      const hasError = err !== null;
      if (hasError) {
        if (packet.tryCount > this._opts.retries) {
          this._queue.shift();
          if (ack) {
            ack(err);
          }
        }
      } else {
        this._queue.shift();
        if (ack) {
          ack(null, ...responseArgs);
        }
      }
      packet.pending = false;
      return this._drainQueue();
    });
    this._queue.push(packet);
    this._drainQueue();
  }
  /**
   * Send the first packet of the queue, and wait for an acknowledgement from the server.
   * @param force - whether to resend a packet that has not been acknowledged yet
   *
   * @private
   */
  _drainQueue(force = false) {
    if (!this.connected || this._queue.length === 0) {
      return;
    }
    const packet = this._queue[0];
    if (packet.pending && !force) {
      return;
    }
    packet.pending = true;
    packet.tryCount++;
    this.flags = packet.flags;
    this.emit.apply(this, packet.args);
  }
  /**
   * Sends a packet.
   *
   * @param packet
   * @private
   */
  packet(packet) {
    packet.nsp = this.nsp;
    this.io._packet(packet);
  }
  /**
   * Called upon engine `open`.
   *
   * @private
   */
  onopen() {
    if (typeof this.auth == "function") {
      this.auth((data) => {
        this._sendConnectPacket(data);
      });
    } else {
      this._sendConnectPacket(this.auth);
    }
  }
  /**
   * Sends a CONNECT packet to initiate the Socket.IO session.
   *
   * @param data
   * @private
   */
  _sendConnectPacket(data) {
    this.packet({
      type: PacketType.CONNECT,
      data: this._pid ? Object.assign({ pid: this._pid, offset: this._lastOffset }, data) : data
    });
  }
  /**
   * Called upon engine or manager `error`.
   *
   * @param err
   * @private
   */
  onerror(err) {
    if (!this.connected) {
      this.emitReserved("connect_error", err);
    }
  }
  /**
   * Called upon engine `close`.
   *
   * @param reason
   * @param description
   * @private
   */
  onclose(reason, description) {
    this.connected = false;
    delete this.id;
    this.emitReserved("disconnect", reason, description);
    this._clearAcks();
  }
  /**
   * Clears the acknowledgement handlers upon disconnection, since the client will never receive an acknowledgement from
   * the server.
   *
   * @private
   */
  _clearAcks() {
    Object.keys(this.acks).forEach((id) => {
      const isBuffered = this.sendBuffer.some((packet) => String(packet.id) === id);
      if (!isBuffered) {
        const ack = this.acks[id];
        delete this.acks[id];
        if (ack.withError) {
          ack.call(this, new Error("socket has been disconnected"));
        }
      }
    });
  }
  /**
   * Called with socket packet.
   *
   * @param packet
   * @private
   */
  onpacket(packet) {
    const sameNamespace = packet.nsp === this.nsp;
    if (!sameNamespace)
      return;
    switch (packet.type) {
      case PacketType.CONNECT:
        if (packet.data && packet.data.sid) {
          this.onconnect(packet.data.sid, packet.data.pid);
        } else {
          this.emitReserved("connect_error", new Error("It seems you are trying to reach a Socket.IO server in v2.x with a v3.x client, but they are not compatible (more information here: https://socket.io/docs/v3/migrating-from-2-x-to-3-0/)"));
        }
        break;
      case PacketType.EVENT:
      case PacketType.BINARY_EVENT:
        this.onevent(packet);
        break;
      case PacketType.ACK:
      case PacketType.BINARY_ACK:
        this.onack(packet);
        break;
      case PacketType.DISCONNECT:
        this.ondisconnect();
        break;
      case PacketType.CONNECT_ERROR:
        this.destroy();
        const err = new Error(packet.data.message);
        err.data = packet.data.data;
        this.emitReserved("connect_error", err);
        break;
    }
  }
  /**
   * Called upon a server event.
   *
   * @param packet
   * @private
   */
  onevent(packet) {
    const args = packet.data || [];
    if (null != packet.id) {
      args.push(this.ack(packet.id));
    }
    if (this.connected) {
      this.emitEvent(args);
    } else {
      this.receiveBuffer.push(Object.freeze(args));
    }
  }
  emitEvent(args) {
    if (this._anyListeners && this._anyListeners.length) {
      const listeners = this._anyListeners.slice();
      for (const listener of listeners) {
        listener.apply(this, args);
      }
    }
    super.emit.apply(this, args);
    if (this._pid && args.length && typeof args[args.length - 1] === "string") {
      this._lastOffset = args[args.length - 1];
    }
  }
  /**
   * Produces an ack callback to emit with an event.
   *
   * @private
   */
  ack(id) {
    const self2 = this;
    let sent = false;
    return function(...args) {
      if (sent)
        return;
      sent = true;
      self2.packet({
        type: PacketType.ACK,
        id,
        data: args
      });
    };
  }
  /**
   * Called upon a server acknowledgement.
   *
   * @param packet
   * @private
   */
  onack(packet) {
    const ack = this.acks[packet.id];
    if (typeof ack !== "function") {
      return;
    }
    delete this.acks[packet.id];
    if (ack.withError) {
      packet.data.unshift(null);
    }
    ack.apply(this, packet.data);
  }
  /**
   * Called upon server connect.
   *
   * @private
   */
  onconnect(id, pid) {
    this.id = id;
    this.recovered = pid && this._pid === pid;
    this._pid = pid;
    this.connected = true;
    this.emitBuffered();
    this.emitReserved("connect");
    this._drainQueue(true);
  }
  /**
   * Emit buffered events (received and emitted).
   *
   * @private
   */
  emitBuffered() {
    this.receiveBuffer.forEach((args) => this.emitEvent(args));
    this.receiveBuffer = [];
    this.sendBuffer.forEach((packet) => {
      this.notifyOutgoingListeners(packet);
      this.packet(packet);
    });
    this.sendBuffer = [];
  }
  /**
   * Called upon server disconnect.
   *
   * @private
   */
  ondisconnect() {
    this.destroy();
    this.onclose("io server disconnect");
  }
  /**
   * Called upon forced client/server side disconnections,
   * this method ensures the manager stops tracking us and
   * that reconnections don't get triggered for this.
   *
   * @private
   */
  destroy() {
    if (this.subs) {
      this.subs.forEach((subDestroy) => subDestroy());
      this.subs = void 0;
    }
    this.io["_destroy"](this);
  }
  /**
   * Disconnects the socket manually. In that case, the socket will not try to reconnect.
   *
   * If this is the last active Socket instance of the {@link Manager}, the low-level connection will be closed.
   *
   * @example
   * const socket = io();
   *
   * socket.on("disconnect", (reason) => {
   *   // console.log(reason); prints "io client disconnect"
   * });
   *
   * socket.disconnect();
   *
   * @return self
   */
  disconnect() {
    if (this.connected) {
      this.packet({ type: PacketType.DISCONNECT });
    }
    this.destroy();
    if (this.connected) {
      this.onclose("io client disconnect");
    }
    return this;
  }
  /**
   * Alias for {@link disconnect()}.
   *
   * @return self
   */
  close() {
    return this.disconnect();
  }
  /**
   * Sets the compress flag.
   *
   * @example
   * socket.compress(false).emit("hello");
   *
   * @param compress - if `true`, compresses the sending data
   * @return self
   */
  compress(compress) {
    this.flags.compress = compress;
    return this;
  }
  /**
   * Sets a modifier for a subsequent event emission that the event message will be dropped when this socket is not
   * ready to send messages.
   *
   * @example
   * socket.volatile.emit("hello"); // the server may or may not receive it
   *
   * @returns self
   */
  get volatile() {
    this.flags.volatile = true;
    return this;
  }
  /**
   * Sets a modifier for a subsequent event emission that the callback will be called with an error when the
   * given number of milliseconds have elapsed without an acknowledgement from the server:
   *
   * @example
   * socket.timeout(5000).emit("my-event", (err) => {
   *   if (err) {
   *     // the server did not acknowledge the event in the given delay
   *   }
   * });
   *
   * @returns self
   */
  timeout(timeout) {
    this.flags.timeout = timeout;
    return this;
  }
  /**
   * Adds a listener that will be fired when any event is emitted. The event name is passed as the first argument to the
   * callback.
   *
   * @example
   * socket.onAny((event, ...args) => {
   *   console.log(`got ${event}`);
   * });
   *
   * @param listener
   */
  onAny(listener) {
    this._anyListeners = this._anyListeners || [];
    this._anyListeners.push(listener);
    return this;
  }
  /**
   * Adds a listener that will be fired when any event is emitted. The event name is passed as the first argument to the
   * callback. The listener is added to the beginning of the listeners array.
   *
   * @example
   * socket.prependAny((event, ...args) => {
   *   console.log(`got event ${event}`);
   * });
   *
   * @param listener
   */
  prependAny(listener) {
    this._anyListeners = this._anyListeners || [];
    this._anyListeners.unshift(listener);
    return this;
  }
  /**
   * Removes the listener that will be fired when any event is emitted.
   *
   * @example
   * const catchAllListener = (event, ...args) => {
   *   console.log(`got event ${event}`);
   * }
   *
   * socket.onAny(catchAllListener);
   *
   * // remove a specific listener
   * socket.offAny(catchAllListener);
   *
   * // or remove all listeners
   * socket.offAny();
   *
   * @param listener
   */
  offAny(listener) {
    if (!this._anyListeners) {
      return this;
    }
    if (listener) {
      const listeners = this._anyListeners;
      for (let i = 0; i < listeners.length; i++) {
        if (listener === listeners[i]) {
          listeners.splice(i, 1);
          return this;
        }
      }
    } else {
      this._anyListeners = [];
    }
    return this;
  }
  /**
   * Returns an array of listeners that are listening for any event that is specified. This array can be manipulated,
   * e.g. to remove listeners.
   */
  listenersAny() {
    return this._anyListeners || [];
  }
  /**
   * Adds a listener that will be fired when any event is emitted. The event name is passed as the first argument to the
   * callback.
   *
   * Note: acknowledgements sent to the server are not included.
   *
   * @example
   * socket.onAnyOutgoing((event, ...args) => {
   *   console.log(`sent event ${event}`);
   * });
   *
   * @param listener
   */
  onAnyOutgoing(listener) {
    this._anyOutgoingListeners = this._anyOutgoingListeners || [];
    this._anyOutgoingListeners.push(listener);
    return this;
  }
  /**
   * Adds a listener that will be fired when any event is emitted. The event name is passed as the first argument to the
   * callback. The listener is added to the beginning of the listeners array.
   *
   * Note: acknowledgements sent to the server are not included.
   *
   * @example
   * socket.prependAnyOutgoing((event, ...args) => {
   *   console.log(`sent event ${event}`);
   * });
   *
   * @param listener
   */
  prependAnyOutgoing(listener) {
    this._anyOutgoingListeners = this._anyOutgoingListeners || [];
    this._anyOutgoingListeners.unshift(listener);
    return this;
  }
  /**
   * Removes the listener that will be fired when any event is emitted.
   *
   * @example
   * const catchAllListener = (event, ...args) => {
   *   console.log(`sent event ${event}`);
   * }
   *
   * socket.onAnyOutgoing(catchAllListener);
   *
   * // remove a specific listener
   * socket.offAnyOutgoing(catchAllListener);
   *
   * // or remove all listeners
   * socket.offAnyOutgoing();
   *
   * @param [listener] - the catch-all listener (optional)
   */
  offAnyOutgoing(listener) {
    if (!this._anyOutgoingListeners) {
      return this;
    }
    if (listener) {
      const listeners = this._anyOutgoingListeners;
      for (let i = 0; i < listeners.length; i++) {
        if (listener === listeners[i]) {
          listeners.splice(i, 1);
          return this;
        }
      }
    } else {
      this._anyOutgoingListeners = [];
    }
    return this;
  }
  /**
   * Returns an array of listeners that are listening for any event that is specified. This array can be manipulated,
   * e.g. to remove listeners.
   */
  listenersAnyOutgoing() {
    return this._anyOutgoingListeners || [];
  }
  /**
   * Notify the listeners for each packet sent
   *
   * @param packet
   *
   * @private
   */
  notifyOutgoingListeners(packet) {
    if (this._anyOutgoingListeners && this._anyOutgoingListeners.length) {
      const listeners = this._anyOutgoingListeners.slice();
      for (const listener of listeners) {
        listener.apply(this, packet.data);
      }
    }
  }
};

// node_modules/socket.io-client/build/esm/contrib/backo2.js
function Backoff(opts) {
  opts = opts || {};
  this.ms = opts.min || 100;
  this.max = opts.max || 1e4;
  this.factor = opts.factor || 2;
  this.jitter = opts.jitter > 0 && opts.jitter <= 1 ? opts.jitter : 0;
  this.attempts = 0;
}
Backoff.prototype.duration = function() {
  var ms = this.ms * Math.pow(this.factor, this.attempts++);
  if (this.jitter) {
    var rand = Math.random();
    var deviation = Math.floor(rand * this.jitter * ms);
    ms = (Math.floor(rand * 10) & 1) == 0 ? ms - deviation : ms + deviation;
  }
  return Math.min(ms, this.max) | 0;
};
Backoff.prototype.reset = function() {
  this.attempts = 0;
};
Backoff.prototype.setMin = function(min) {
  this.ms = min;
};
Backoff.prototype.setMax = function(max) {
  this.max = max;
};
Backoff.prototype.setJitter = function(jitter) {
  this.jitter = jitter;
};

// node_modules/socket.io-client/build/esm/manager.js
var Manager = class extends Emitter {
  constructor(uri, opts) {
    var _a;
    super();
    this.nsps = {};
    this.subs = [];
    if (uri && "object" === typeof uri) {
      opts = uri;
      uri = void 0;
    }
    opts = opts || {};
    opts.path = opts.path || "/socket.io";
    this.opts = opts;
    installTimerFunctions(this, opts);
    this.reconnection(opts.reconnection !== false);
    this.reconnectionAttempts(opts.reconnectionAttempts || Infinity);
    this.reconnectionDelay(opts.reconnectionDelay || 1e3);
    this.reconnectionDelayMax(opts.reconnectionDelayMax || 5e3);
    this.randomizationFactor((_a = opts.randomizationFactor) !== null && _a !== void 0 ? _a : 0.5);
    this.backoff = new Backoff({
      min: this.reconnectionDelay(),
      max: this.reconnectionDelayMax(),
      jitter: this.randomizationFactor()
    });
    this.timeout(null == opts.timeout ? 2e4 : opts.timeout);
    this._readyState = "closed";
    this.uri = uri;
    const _parser = opts.parser || esm_exports;
    this.encoder = new _parser.Encoder();
    this.decoder = new _parser.Decoder();
    this._autoConnect = opts.autoConnect !== false;
    if (this._autoConnect)
      this.open();
  }
  reconnection(v) {
    if (!arguments.length)
      return this._reconnection;
    this._reconnection = !!v;
    if (!v) {
      this.skipReconnect = true;
    }
    return this;
  }
  reconnectionAttempts(v) {
    if (v === void 0)
      return this._reconnectionAttempts;
    this._reconnectionAttempts = v;
    return this;
  }
  reconnectionDelay(v) {
    var _a;
    if (v === void 0)
      return this._reconnectionDelay;
    this._reconnectionDelay = v;
    (_a = this.backoff) === null || _a === void 0 ? void 0 : _a.setMin(v);
    return this;
  }
  randomizationFactor(v) {
    var _a;
    if (v === void 0)
      return this._randomizationFactor;
    this._randomizationFactor = v;
    (_a = this.backoff) === null || _a === void 0 ? void 0 : _a.setJitter(v);
    return this;
  }
  reconnectionDelayMax(v) {
    var _a;
    if (v === void 0)
      return this._reconnectionDelayMax;
    this._reconnectionDelayMax = v;
    (_a = this.backoff) === null || _a === void 0 ? void 0 : _a.setMax(v);
    return this;
  }
  timeout(v) {
    if (!arguments.length)
      return this._timeout;
    this._timeout = v;
    return this;
  }
  /**
   * Starts trying to reconnect if reconnection is enabled and we have not
   * started reconnecting yet
   *
   * @private
   */
  maybeReconnectOnOpen() {
    if (!this._reconnecting && this._reconnection && this.backoff.attempts === 0) {
      this.reconnect();
    }
  }
  /**
   * Sets the current transport `socket`.
   *
   * @param {Function} fn - optional, callback
   * @return self
   * @public
   */
  open(fn) {
    if (~this._readyState.indexOf("open"))
      return this;
    this.engine = new Socket(this.uri, this.opts);
    const socket = this.engine;
    const self2 = this;
    this._readyState = "opening";
    this.skipReconnect = false;
    const openSubDestroy = on(socket, "open", function() {
      self2.onopen();
      fn && fn();
    });
    const onError = (err) => {
      this.cleanup();
      this._readyState = "closed";
      this.emitReserved("error", err);
      if (fn) {
        fn(err);
      } else {
        this.maybeReconnectOnOpen();
      }
    };
    const errorSub = on(socket, "error", onError);
    if (false !== this._timeout) {
      const timeout = this._timeout;
      const timer = this.setTimeoutFn(() => {
        openSubDestroy();
        onError(new Error("timeout"));
        socket.close();
      }, timeout);
      if (this.opts.autoUnref) {
        timer.unref();
      }
      this.subs.push(() => {
        this.clearTimeoutFn(timer);
      });
    }
    this.subs.push(openSubDestroy);
    this.subs.push(errorSub);
    return this;
  }
  /**
   * Alias for open()
   *
   * @return self
   * @public
   */
  connect(fn) {
    return this.open(fn);
  }
  /**
   * Called upon transport open.
   *
   * @private
   */
  onopen() {
    this.cleanup();
    this._readyState = "open";
    this.emitReserved("open");
    const socket = this.engine;
    this.subs.push(
      on(socket, "ping", this.onping.bind(this)),
      on(socket, "data", this.ondata.bind(this)),
      on(socket, "error", this.onerror.bind(this)),
      on(socket, "close", this.onclose.bind(this)),
      // @ts-ignore
      on(this.decoder, "decoded", this.ondecoded.bind(this))
    );
  }
  /**
   * Called upon a ping.
   *
   * @private
   */
  onping() {
    this.emitReserved("ping");
  }
  /**
   * Called with data.
   *
   * @private
   */
  ondata(data) {
    try {
      this.decoder.add(data);
    } catch (e) {
      this.onclose("parse error", e);
    }
  }
  /**
   * Called when parser fully decodes a packet.
   *
   * @private
   */
  ondecoded(packet) {
    nextTick(() => {
      this.emitReserved("packet", packet);
    }, this.setTimeoutFn);
  }
  /**
   * Called upon socket error.
   *
   * @private
   */
  onerror(err) {
    this.emitReserved("error", err);
  }
  /**
   * Creates a new socket for the given `nsp`.
   *
   * @return {Socket}
   * @public
   */
  socket(nsp, opts) {
    let socket = this.nsps[nsp];
    if (!socket) {
      socket = new Socket2(this, nsp, opts);
      this.nsps[nsp] = socket;
    } else if (this._autoConnect && !socket.active) {
      socket.connect();
    }
    return socket;
  }
  /**
   * Called upon a socket close.
   *
   * @param socket
   * @private
   */
  _destroy(socket) {
    const nsps = Object.keys(this.nsps);
    for (const nsp of nsps) {
      const socket2 = this.nsps[nsp];
      if (socket2.active) {
        return;
      }
    }
    this._close();
  }
  /**
   * Writes a packet.
   *
   * @param packet
   * @private
   */
  _packet(packet) {
    const encodedPackets = this.encoder.encode(packet);
    for (let i = 0; i < encodedPackets.length; i++) {
      this.engine.write(encodedPackets[i], packet.options);
    }
  }
  /**
   * Clean up transport subscriptions and packet buffer.
   *
   * @private
   */
  cleanup() {
    this.subs.forEach((subDestroy) => subDestroy());
    this.subs.length = 0;
    this.decoder.destroy();
  }
  /**
   * Close the current socket.
   *
   * @private
   */
  _close() {
    this.skipReconnect = true;
    this._reconnecting = false;
    this.onclose("forced close");
  }
  /**
   * Alias for close()
   *
   * @private
   */
  disconnect() {
    return this._close();
  }
  /**
   * Called when:
   *
   * - the low-level engine is closed
   * - the parser encountered a badly formatted packet
   * - all sockets are disconnected
   *
   * @private
   */
  onclose(reason, description) {
    var _a;
    this.cleanup();
    (_a = this.engine) === null || _a === void 0 ? void 0 : _a.close();
    this.backoff.reset();
    this._readyState = "closed";
    this.emitReserved("close", reason, description);
    if (this._reconnection && !this.skipReconnect) {
      this.reconnect();
    }
  }
  /**
   * Attempt a reconnection.
   *
   * @private
   */
  reconnect() {
    if (this._reconnecting || this.skipReconnect)
      return this;
    const self2 = this;
    if (this.backoff.attempts >= this._reconnectionAttempts) {
      this.backoff.reset();
      this.emitReserved("reconnect_failed");
      this._reconnecting = false;
    } else {
      const delay = this.backoff.duration();
      this._reconnecting = true;
      const timer = this.setTimeoutFn(() => {
        if (self2.skipReconnect)
          return;
        this.emitReserved("reconnect_attempt", self2.backoff.attempts);
        if (self2.skipReconnect)
          return;
        self2.open((err) => {
          if (err) {
            self2._reconnecting = false;
            self2.reconnect();
            this.emitReserved("reconnect_error", err);
          } else {
            self2.onreconnect();
          }
        });
      }, delay);
      if (this.opts.autoUnref) {
        timer.unref();
      }
      this.subs.push(() => {
        this.clearTimeoutFn(timer);
      });
    }
  }
  /**
   * Called upon successful reconnect.
   *
   * @private
   */
  onreconnect() {
    const attempt = this.backoff.attempts;
    this._reconnecting = false;
    this.backoff.reset();
    this.emitReserved("reconnect", attempt);
  }
};

// node_modules/socket.io-client/build/esm/index.js
var cache = {};
function lookup2(uri, opts) {
  if (typeof uri === "object") {
    opts = uri;
    uri = void 0;
  }
  opts = opts || {};
  const parsed = url(uri, opts.path || "/socket.io");
  const source = parsed.source;
  const id = parsed.id;
  const path = parsed.path;
  const sameNamespace = cache[id] && path in cache[id]["nsps"];
  const newConnection = opts.forceNew || opts["force new connection"] || false === opts.multiplex || sameNamespace;
  let io;
  if (newConnection) {
    io = new Manager(source, opts);
  } else {
    if (!cache[id]) {
      cache[id] = new Manager(source, opts);
    }
    io = cache[id];
  }
  if (parsed.query && !opts.query) {
    opts.query = parsed.queryKey;
  }
  return io.socket(parsed.path, opts);
}
Object.assign(lookup2, {
  Manager,
  Socket: Socket2,
  io: lookup2,
  connect: lookup2
});

// src/chat.ts
var PAGE_SIZE = 30;
var SEND_TIMEOUT_MS = 12e3;
var SEND_ATTEMPTS = 6;
var ACK_TIMEOUT_MS = 8e3;
var TYPING_REPEAT_MS = 2500;
var TYPING_IDLE_MS = 3e3;
var TYPING_SHOWN_MS = 5e3;
var DELIVERED_THROTTLE_MS = 1e3;
var HEARTBEAT_MS = 3e4;
var TRANSIENT = /* @__PURE__ */ new Set(["timeout", "unavailable", "rate_limited"]);
var NoAnswer = class extends Error {
};
var Chat = class {
  constructor(api2, me) {
    this.api = api2;
    this.me = me;
    this.groups = /* @__PURE__ */ new Map();
    this.users = /* @__PURE__ */ new Map();
    this.presence = /* @__PURE__ */ new Map();
    this.connection = "connecting";
    /** Does the server take `chat.message.delivered`? Without it there are no delivered ticks. */
    this.deliveredSupport = "unknown";
    /** Does the server have `GET /groups/:id/receipts`? */
    this.receiptsSupport = "unknown";
    /** The `lastSeq` of the last handshake (for debugging and the end-to-end test). */
    this.lastHandshake = null;
    /** The conversation on screen, and whether its newest message is in view. */
    this.openGroupId = null;
    this.atBottom = true;
    this.listeners = /* @__PURE__ */ new Set();
    this.usersLoading = /* @__PURE__ */ new Set();
    this.timers = /* @__PURE__ */ new Set();
    this.lastDeliveredFlush = 0;
    this.everConnected = false;
    this.stopped = false;
    /** This user's own typing in the open conversation. */
    this.typingSentAt = 0;
    this.typingGroup = null;
    this.onVisibility = () => this.markSeen();
    this.users.set(me.id, me);
    this.socket = lookup2(api2.base, {
      autoConnect: false,
      // A function, so every (re)connect sends the current token and what this client holds.
      auth: (cb) => {
        this.api.freshToken().then(
          (token) => {
            const lastSeq = this.lastSeqs();
            this.lastHandshake = { lastSeq };
            cb({ token, lastSeq });
          },
          () => cb({})
        );
      }
    });
    this.wireSocket();
    document.addEventListener("visibilitychange", this.onVisibility);
  }
  /** Loads the group list, then connects (so the handshake can name what this client holds). */
  async start() {
    await this.refreshGroups();
    if (!this.stopped) this.socket.connect();
  }
  stop() {
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
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  notify(change) {
    for (const listener of this.listeners) listener(change);
  }
  // ---------------------------------------------------------------- groups
  /** Groups, most recently active first. */
  sortedGroups() {
    const activity = (g) => g.lastMessage?.createdAt ?? g.group.createdAt;
    return [...this.groups.values()].sort((a, b) => activity(b).localeCompare(activity(a)));
  }
  /** `GET /groups`: adds new groups, drops those this user left, takes the server's unread counts. */
  async refreshGroups() {
    const asked = Date.now();
    const list = await this.api.get("/groups");
    if (this.stopped) return;
    const present = new Set(list.map((g) => g.id));
    for (const [id, state] of this.groups) {
      if (!present.has(id) && state.since < asked) this.dropGroup(id);
    }
    for (const group of list) {
      const state = this.upsertGroup(group);
      const seq = group.lastMessage?.seq ?? 0;
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
    this.markSeen();
  }
  /** Many events at once (a seen receipt from another device, say) refresh the list once. */
  scheduleGroupsRefresh() {
    clearTimeout(this.groupsRefresh);
    this.groupsRefresh = setTimeout(() => this.refreshGroups().catch(() => void 0), 500);
  }
  upsertGroup(group) {
    let state = this.groups.get(group.id);
    if (state) {
      state.group = { ...group, lastMessage: void 0, unreadCount: void 0 };
    } else {
      state = {
        group: { ...group, lastMessage: void 0, unreadCount: void 0 },
        unread: 0,
        countedSeq: 0,
        latestFromOthers: 0,
        hasMore: false,
        loadingOlder: false,
        pending: /* @__PURE__ */ new Map(),
        sending: Promise.resolve(),
        receipts: /* @__PURE__ */ new Map(),
        typing: /* @__PURE__ */ new Map(),
        seenSeq: 0,
        seenMovedAt: 0,
        deliveredSent: 0,
        deliveredWanted: 0,
        since: Date.now()
      };
      this.groups.set(group.id, state);
    }
    this.ensureUsers(group.members.map((m) => m.userId));
    return state;
  }
  dropGroup(id) {
    this.groups.delete(id);
    if (this.openGroupId === id) this.openGroupId = null;
  }
  /** `POST /groups`: a named group, or (no name, one other person) their direct conversation. */
  async createGroup(name, memberIds) {
    const group = await this.api.post("/groups", name ? { name, memberIds } : { memberIds });
    this.upsertGroup(group);
    this.notify({ kind: "groups" });
    this.requestPresence();
    return group.id;
  }
  /** `GET /users?search=`: other people, for the member picker. */
  async searchUsers(search) {
    const page = await this.api.get(`/users?search=${encodeURIComponent(search)}&limit=20`);
    for (const user of page.data) this.users.set(user.id, user);
    return page.data.filter((u) => u.id !== this.me.id);
  }
  /** Fetches the people not known yet (`GET /users/:id`), for names; a failure is retried next time. */
  ensureUsers(ids) {
    const missing = ids.filter((id) => !this.users.has(id) && !this.usersLoading.has(id));
    for (const id of missing) {
      this.usersLoading.add(id);
      this.api.get(`/users/${encodeURIComponent(id)}`).then((user) => {
        this.users.set(id, user);
        if (!this.stopped) this.notify({ kind: "users" });
      }).catch(() => void 0).finally(() => this.usersLoading.delete(id));
    }
  }
  /** The group's title: its name, the other person of a direct conversation, or the members. */
  title(group) {
    if (group.name) return group.name;
    const others = group.members.filter((m) => m.userId !== this.me.id);
    const names = others.map((m) => {
      const u = this.users.get(m.userId);
      return u ? `${u.firstName} ${u.lastName}` : "…";
    });
    return names.join(", ") || "Only you";
  }
  /** The other person of a direct conversation. */
  peer(group) {
    return group.direct ? group.members.find((m) => m.userId !== this.me.id)?.userId : void 0;
  }
  isAdmin(group) {
    return group.members.some((m) => m.userId === this.me.id && m.role === "admin");
  }
  // ---------------------------------------------------------------- the open conversation
  /** Shows a conversation: loads its latest page the first time, its receipts, marks it seen. */
  async open(groupId) {
    if (this.openGroupId && this.openGroupId !== groupId) this.stopTyping();
    this.openGroupId = groupId;
    this.atBottom = true;
    const state = groupId ? this.groups.get(groupId) : void 0;
    if (!state) return;
    const loads = [this.loadReceipts(state)];
    if (!state.messages) loads.push(this.loadLatest(state));
    await Promise.all(loads);
    this.markSeen();
  }
  /** The view says whether the newest message is on screen (then it counts as seen). */
  setAtBottom(atBottom) {
    this.atBottom = atBottom;
    if (atBottom) this.markSeen();
  }
  /** The user can see the newest messages of this group right now. */
  reading(groupId) {
    return this.openGroupId === groupId && this.atBottom && document.visibilityState === "visible";
  }
  async loadLatest(state) {
    state.messages = /* @__PURE__ */ new Map();
    try {
      const page = await this.history(state, `limit=${PAGE_SIZE}`);
      state.hasMore = page.hasMore;
    } catch (e) {
      state.messages = void 0;
      throw e;
    } finally {
      this.notify({ kind: "messages", groupId: state.group.id });
    }
  }
  /** "Load older": the page before the oldest message held. */
  async loadOlder(groupId) {
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
  async fillGap(state, after) {
    for (; ; ) {
      const page = await this.history(state, `after=${after}&limit=100`);
      this.notify({ kind: "messages", groupId: state.group.id });
      if (!page.hasMore || page.data.length === 0) return;
      after = Math.max(...page.data.map((m) => m.seq));
    }
  }
  async history(state, query) {
    const page = await this.api.get(`/groups/${state.group.id}/messages?${query}`);
    for (const message of page.data) this.merge(state, message);
    this.ensureUsers(page.data.map((m) => m.senderId));
    const fromOthers = page.data.filter((m) => m.senderId !== this.me.id).map((m) => m.seq);
    if (fromOthers.length) this.noteArrived(state, Math.max(...fromOthers));
    return page;
  }
  /** Keeps one message per seq: a newer state (edited, deleted) is never replaced by an older one. */
  merge(state, message) {
    if (!state.messages) return;
    const held = state.messages.get(message.seq);
    const older = held && (held.deleted && !message.deleted || (held.editedAt ?? "") > (message.editedAt ?? ""));
    if (!older) state.messages.set(message.seq, message);
    if (message.senderId === this.me.id) state.pending.delete(message.clientMessageId);
  }
  /** What the handshake's `lastSeq` names for a group: the newest message this client holds. */
  lastSeqs() {
    const lastSeq = {};
    for (const [id, state] of this.groups) {
      lastSeq[id] = state.messages?.size ? Math.max(...state.messages.keys()) : state.countedSeq;
    }
    return lastSeq;
  }
  // ---------------------------------------------------------------- sending
  /** Sends a message; it shows as pending until acknowledged, and is resent with the same id. */
  send(groupId, content, attachment) {
    const state = this.groups.get(groupId);
    if (!state) return;
    const pending = {
      clientMessageId: uuid(),
      groupId,
      content,
      attachment,
      createdAt: (/* @__PURE__ */ new Date()).toISOString(),
      state: "sending"
    };
    state.pending.set(pending.clientMessageId, pending);
    this.stopTyping();
    this.notify({ kind: "messages", groupId });
    this.enqueue(state, pending);
  }
  /** Sends a failed message again (same `clientMessageId`: never a duplicate). */
  retry(groupId, clientMessageId) {
    const state = this.groups.get(groupId);
    const pending = state?.pending.get(clientMessageId);
    if (!state || !pending || pending.state !== "failed") return;
    pending.state = "sending";
    pending.error = void 0;
    this.notify({ kind: "messages", groupId });
    this.enqueue(state, pending);
  }
  discard(groupId, clientMessageId) {
    this.groups.get(groupId)?.pending.delete(clientMessageId);
    this.notify({ kind: "messages", groupId });
  }
  enqueue(state, pending) {
    state.sending = state.sending.then(() => this.deliver(pending));
  }
  /** Sends until acknowledged (or refused, or out of attempts); never rejects. */
  async deliver(pending) {
    const payload = {
      groupId: pending.groupId,
      content: pending.content,
      attachment: pending.attachment ? { url: pending.attachment.url } : void 0,
      clientMessageId: pending.clientMessageId
    };
    let error = "no answer from the server";
    for (let attempt = 1; attempt <= SEND_ATTEMPTS && !this.stopped; attempt++) {
      await this.whenConnected();
      let ack;
      try {
        ack = await this.request("chat.message.send", payload, SEND_TIMEOUT_MS);
      } catch {
        continue;
      }
      if (ack.ok) {
        this.addMessage(ack.message);
        return;
      }
      error = ack.error.message;
      if (!TRANSIENT.has(ack.error.code)) break;
      await sleep((ack.error.retryAfter ?? 1) * 1e3);
    }
    const state = this.groups.get(pending.groupId);
    if (!state?.pending.has(pending.clientMessageId)) return;
    pending.state = "failed";
    pending.error = error;
    this.notify({ kind: "messages", groupId: pending.groupId });
  }
  /** `chat.message.edit`: the new text, within the edit window; throws the refusal. */
  async edit(groupId, messageId, content) {
    const ack = await this.request("chat.message.edit", { groupId, messageId, content });
    if (!ack.ok) throw new Error(ack.error.message);
    this.onEdited(ack.message);
  }
  /** `chat.message.delete` (the sender, or an admin); throws the refusal. */
  async remove(groupId, messageId) {
    const ack = await this.request("chat.message.delete", { groupId, messageId });
    if (!ack.ok) throw new Error(ack.error.message);
  }
  /** The composer calls this on every key press: `chat.typing` starts, repeated while typing. */
  typing(groupId) {
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
  stopTyping() {
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
  markSeen() {
    clearTimeout(this.seenTimer);
    this.seenTimer = setTimeout(() => {
      const state = this.openGroupId ? this.groups.get(this.openGroupId) : void 0;
      if (!state || !this.reading(state.group.id) || !this.socket.connected) return;
      if (state.latestFromOthers <= state.seenSeq && state.unread === 0) return;
      this.request("chat.message.seen", { groupId: state.group.id, seq: state.countedSeq }).then((ack) => ack.ok && this.applyOwnSeen(state, ack.seq)).catch(() => void 0);
    }, 250);
  }
  /** This user's seen position moved (this device's ack, or another device's event). */
  applyOwnSeen(state, seq) {
    if (seq > state.seenSeq) {
      state.seenSeq = seq;
      state.seenMovedAt = Date.now();
    }
    if (state.seenSeq >= Math.max(state.latestFromOthers, state.countedSeq)) {
      state.unread = 0;
    } else {
      this.scheduleGroupsRefresh();
    }
    this.notify({ kind: "groups" });
  }
  /** Messages from others reached this device: report it (throttled), unless seen already. */
  noteArrived(state, seq) {
    if (this.deliveredSupport === "no" || seq <= state.deliveredWanted) return;
    state.deliveredWanted = seq;
    this.scheduleDelivered();
  }
  scheduleDelivered() {
    if (this.deliveredTimer || this.deliveredSupport === "no") return;
    const wait = Math.max(50, this.lastDeliveredFlush + DELIVERED_THROTTLE_MS - Date.now());
    this.deliveredTimer = setTimeout(() => {
      this.deliveredTimer = void 0;
      this.lastDeliveredFlush = Date.now();
      void this.flushDelivered();
    }, wait);
  }
  /**
   * `chat.message.delivered {groupId, seq}` for every group with news. A server without delivery
   * receipts answers with an error or not at all: then they stay off, and nothing else changes.
   * Once one was accepted, a refusal concerns that receipt only (a group just left, say).
   */
  async flushDelivered() {
    let retry = false;
    for (const state of this.groups.values()) {
      const seq = state.deliveredWanted;
      if (seq <= Math.max(state.deliveredSent, state.seenSeq)) continue;
      if (this.deliveredSupport === "no" || !this.socket.connected) return;
      try {
        const ack = await this.request(
          "chat.message.delivered",
          { groupId: state.group.id, seq },
          5e3
        );
        if (ack.ok) {
          this.deliveredSupport = "yes";
          state.deliveredSent = Math.max(state.deliveredSent, ack.seq ?? seq);
        } else if (TRANSIENT.has(ack.error.code)) {
          retry = true;
        } else {
          if (this.deliveredSupport === "unknown") this.unsupported(`${ack.error.code}/${ack.error.reason}`);
          state.deliveredSent = Math.max(state.deliveredSent, seq);
        }
      } catch {
        if (this.socket.connected && this.deliveredSupport === "unknown") this.unsupported("no acknowledgement");
        return;
      }
    }
    if (retry) this.scheduleDelivered();
  }
  unsupported(why) {
    this.deliveredSupport = "no";
    console.info(`delivery receipts are off: the server answered chat.message.delivered with ${why}`);
  }
  /** `GET /groups/:id/receipts`: every member's positions (a server without it: live events only). */
  async loadReceipts(state) {
    if (this.receiptsSupport === "no") return;
    try {
      const receipts = await this.api.get(`/groups/${state.group.id}/receipts`);
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
  raiseReceipt(state, userId, deliveredSeq, seenSeq) {
    const r = state.receipts.get(userId) ?? { deliveredSeq: 0, seenSeq: 0 };
    r.seenSeq = Math.max(r.seenSeq, seenSeq);
    r.deliveredSeq = Math.max(r.deliveredSeq, deliveredSeq, r.seenSeq);
    state.receipts.set(userId, r);
  }
  /**
   * How one of this user's messages stands: `sent` (stored), `delivered` (to every other member's
   * device), `seen` (by every other member); and how many others have seen it.
   */
  receiptOf(state, seq) {
    const others = state.group.members.filter((m) => m.userId !== this.me.id);
    const positions = others.map((m) => state.receipts.get(m.userId) ?? { deliveredSeq: 0, seenSeq: 0 });
    const seenBy = positions.filter((r) => r.seenSeq >= seq).length;
    if (others.length === 0) return { state: "sent", seenBy };
    if (seenBy === others.length) return { state: "seen", seenBy };
    return { state: positions.every((r) => r.deliveredSeq >= seq) ? "delivered" : "sent", seenBy };
  }
  // ---------------------------------------------------------------- presence
  requestPresence() {
    this.request("user.presence", void 0).then((ack) => ack.ok && this.applyPresence(ack.users)).catch(() => void 0);
  }
  applyPresence(users) {
    for (const entry of users) this.presence.set(entry.userId, entry);
    this.notify({ kind: "presence" });
  }
  isOnline(userId) {
    return this.presence.get(userId)?.isOnline ?? false;
  }
  // ---------------------------------------------------------------- the socket
  /** An acknowledged emit that fails (NoAnswer) on timeout or when the connection drops first. */
  request(event, payload, timeout = ACK_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const onDisconnect = () => reject(new NoAnswer(`${event}: disconnected`));
      this.socket.once("disconnect", onDisconnect);
      const args = payload === void 0 ? [] : [payload];
      this.socket.timeout(timeout).emit(event, ...args, (err, answer) => {
        this.socket.off("disconnect", onDisconnect);
        if (err) reject(new NoAnswer(`${event}: no answer in ${timeout} ms`));
        else resolve(answer);
      });
    });
  }
  whenConnected() {
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("connect", () => resolve()));
  }
  setConnection(connection) {
    this.connection = connection;
    this.notify({ kind: "connection" });
  }
  wireSocket() {
    const socket = this.socket;
    socket.on("connect", () => {
      this.setConnection("connected");
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => socket.volatile.emit("user.heartbeat"), HEARTBEAT_MS);
      if (this.everConnected) {
        this.refreshGroups().catch(() => void 0);
        const open = this.openGroupId ? this.groups.get(this.openGroupId) : void 0;
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
      if (reason === "io server disconnect") this.reconnectLater();
    });
    socket.io.on("reconnect_attempt", () => {
      if (this.connection === "connected") this.setConnection("reconnecting");
    });
    socket.on("connect_error", (err) => {
      if (this.stopped) return;
      if (this.connection === "connected") this.setConnection("reconnecting");
      if (!socket.active) {
        console.warn(`connection refused: ${err.message}`);
        this.api.refresh().then(
          () => this.reconnectLater(),
          // A refused refresh signed the user out; anything else (no network) is worth retrying.
          (e) => e instanceof ApiError && e.status === 401 || this.reconnectLater()
        );
      }
    });
    socket.on("chat.message.incoming", (message) => this.addMessage(message));
    socket.on("chat.message.edited", (message) => this.onEdited(message));
    socket.on("chat.message.deleted", (event) => this.onDeleted(event));
    socket.on("chat.message.seen", (event) => {
      const state = this.groups.get(event.groupId);
      if (!state) return;
      if (event.userId === this.me.id) {
        this.applyOwnSeen(state, event.seq);
      } else {
        this.raiseReceipt(state, event.userId, event.seq, event.seq);
        this.notify({ kind: "receipts", groupId: event.groupId });
      }
    });
    socket.on("chat.message.delivered", (event) => {
      const state = this.groups.get(event.groupId);
      if (!state || event.userId === this.me.id) return;
      this.raiseReceipt(state, event.userId, event.seq, 0);
      this.notify({ kind: "receipts", groupId: event.groupId });
    });
    socket.on("chat.typing", (event) => this.onTyping(event));
    socket.on("chat.resync", (event) => this.onResync(event));
    socket.on("user.presence", (snapshot) => this.applyPresence(snapshot.users));
    socket.on("user.online", ({ userId }) => {
      const entry = this.presence.get(userId);
      this.presence.set(userId, { userId, isOnline: true, lastSeenAt: entry?.lastSeenAt ?? null });
      this.notify({ kind: "presence" });
    });
    socket.on("user.offline", ({ userId, lastSeenAt }) => {
      this.presence.set(userId, { userId, isOnline: false, lastSeenAt });
      this.notify({ kind: "presence" });
    });
    socket.on("group.created", (group) => {
      const known = this.groups.has(group.id);
      this.upsertGroup(group);
      this.notify({ kind: "groups" });
      if (!known) this.requestPresence();
    });
    socket.on("group.members.added", (event) => this.onMembersAdded(event));
    socket.on("group.member.removed", (event) => this.onMemberRemoved(event));
    socket.on("group.member.role_changed", (event) => {
      const state = this.groups.get(event.groupId);
      const member = state?.group.members.find((m) => m.userId === event.userId);
      if (!state || !member) return;
      member.role = event.role;
      this.notify({ kind: "members", groupId: event.groupId });
    });
    socket.on("server.restarting", () => {
      this.setConnection("restarting");
    });
  }
  /** A manual reconnect after a refusal, a little later (the stock client does not retry those). */
  reconnectLater() {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped && !this.socket.connected) this.socket.connect();
    }, 1e3 + Math.random() * 1e3);
    this.timers.add(timer);
  }
  /** A message, live or replayed after a reconnect, or this client's own send acknowledged. */
  addMessage(message) {
    const state = this.groups.get(message.groupId);
    if (!state) {
      this.scheduleGroupsRefresh();
      return;
    }
    const fromOther = message.senderId !== this.me.id;
    if (state.typing.delete(message.senderId)) this.notify({ kind: "typing", groupId: message.groupId });
    if (state.messages) {
      const newest = state.messages.size ? Math.max(...state.messages.keys()) : 0;
      this.merge(state, message);
      if (newest > 0 && message.seq > newest + 1) this.fillGap(state, newest).catch(() => void 0);
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
  onEdited(message) {
    const state = this.groups.get(message.groupId);
    if (!state) return;
    this.merge(state, message);
    if (state.lastMessage?.id === message.id) state.lastMessage = message;
    this.notify({ kind: "messages", groupId: message.groupId });
    this.notify({ kind: "groups" });
  }
  onDeleted(event) {
    const state = this.groups.get(event.groupId);
    if (!state) return;
    const tombstone = (m) => ({ ...m, deleted: true, content: void 0, attachment: void 0 });
    const held = state.messages?.get(event.seq);
    if (held) state.messages?.set(event.seq, tombstone(held));
    if (state.lastMessage?.seq === event.seq) state.lastMessage = tombstone(state.lastMessage);
    this.notify({ kind: "messages", groupId: event.groupId });
    this.notify({ kind: "groups" });
  }
  onTyping(event) {
    const state = this.groups.get(event.groupId);
    if (!state || event.userId === this.me.id) return;
    if (event.typing) state.typing.set(event.userId, Date.now() + TYPING_SHOWN_MS);
    else state.typing.delete(event.userId);
    this.ensureUsers([event.userId]);
    this.notify({ kind: "typing", groupId: event.groupId });
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
          this.typingSweep = void 0;
        }
      }, 500);
    }
  }
  /**
   * Too much was missed for a replay, or the replica may have missed facts: drop what is held
   * and fetch again. A group not known here is one this user was added to meanwhile.
   */
  onResync(event) {
    const state = this.groups.get(event.groupId);
    if (!state) {
      this.scheduleGroupsRefresh();
      return;
    }
    state.messages = void 0;
    if (this.openGroupId === event.groupId) {
      this.loadLatest(state).catch(() => void 0);
      this.loadReceipts(state).catch(() => void 0);
    }
    this.scheduleGroupsRefresh();
    this.notify({ kind: "messages", groupId: event.groupId });
  }
  onMembersAdded(event) {
    const known = this.groups.has(event.groupId);
    if (event.group) {
      this.upsertGroup(event.group);
    } else {
      this.api.get(`/groups/${event.groupId}`).then((group) => {
        this.upsertGroup(group);
        this.notify({ kind: "members", groupId: group.id });
        this.notify({ kind: "groups" });
      }).catch(() => void 0);
    }
    this.ensureUsers(event.userIds);
    this.requestPresence();
    if (!known) this.scheduleGroupsRefresh();
    this.notify({ kind: "members", groupId: event.groupId });
    this.notify({ kind: "groups" });
  }
  onMemberRemoved(event) {
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
};

// src/views/assets.ts
var cache2 = /* @__PURE__ */ new Map();
function objectUrl(api2, url2) {
  let entry = cache2.get(url2);
  if (!entry) {
    entry = api2.blob(url2).then((blob) => URL.createObjectURL(blob));
    entry.catch(() => cache2.delete(url2));
    cache2.set(url2, entry);
  }
  return entry;
}
function revokeAll() {
  for (const entry of cache2.values()) entry.then(URL.revokeObjectURL, () => void 0);
  cache2.clear();
}
function renderAttachment(api2, attachment) {
  if (attachment.type.startsWith("image/")) {
    const img = h("img", { class: "attachment-image", alt: attachment.filename, "data-testid": "attachment-image" });
    const figure = h("figure", { class: "attachment" }, img);
    objectUrl(api2, attachment.url).then(
      (src) => img.src = src,
      () => figure.replaceChildren(h("span", { class: "attachment-error" }, `${attachment.filename}: could not load`))
    );
    return figure;
  }
  const link = h(
    "a",
    {
      class: "attachment-link",
      href: "#",
      "data-testid": "attachment-link",
      onclick: (e) => {
        e.preventDefault();
        objectUrl(api2, attachment.url).then(
          (href) => h("a", { href, download: attachment.filename }).click(),
          () => link.classList.add("failed")
        );
      }
    },
    h("span", { class: "attachment-icon", "aria-hidden": "true" }, extension(attachment.filename)),
    h("span", { class: "attachment-name" }, attachment.filename),
    h("span", { class: "attachment-size" }, formatBytes(attachment.size))
  );
  return link;
}
function extension(filename) {
  const dot = filename.lastIndexOf(".");
  return dot > 0 ? filename.slice(dot + 1, dot + 5).toUpperCase() : "FILE";
}

// src/upload.ts
var CHUNK_SIZE = 256 * 1024;
var ATTEMPTS_PER_CHUNK = 3;
async function uploadFile(api2, file, onProgress) {
  const totalChunks = Math.max(1, Math.ceil(file.size / CHUNK_SIZE));
  for (let restart = 0; ; restart++) {
    try {
      for (let index = 0; index < totalChunks; index++) {
        await sendChunk(
          api2,
          file,
          index,
          totalChunks,
          (sent) => onProgress(Math.min(1, (index * CHUNK_SIZE + sent) / Math.max(1, file.size)))
        );
      }
      break;
    } catch (e) {
      const stale = e instanceof ApiError && (e.reason === "chunk_conflict" || e.reason === "upload_in_progress");
      if (!stale || restart > 0) throw e;
      await api2.request("DELETE", `/assets/upload?filename=${encodeURIComponent(file.name)}`);
    }
  }
  onProgress(1);
  return api2.post("/assets/complete-upload", { filename: file.name, totalChunks });
}
async function sendChunk(api2, file, index, totalChunks, onProgress) {
  const bytes = file.slice(index * CHUNK_SIZE, (index + 1) * CHUNK_SIZE);
  for (let attempt = 1; ; attempt++) {
    const form = new FormData();
    form.append("filename", file.name);
    form.append("chunkIndex", String(index));
    form.append("totalChunks", String(totalChunks));
    form.append("chunk", bytes, file.name);
    try {
      await api2.upload("/assets/upload", form, (sent) => onProgress(Math.min(sent, bytes.size)));
      return;
    } catch (e) {
      const transient = !(e instanceof ApiError) || e.status >= 500 || e.status === 429 || e.reason === "upload_changed";
      if (!transient || attempt >= ATTEMPTS_PER_CHUNK) throw e;
      await sleep(500 * attempt);
    }
  }
}

// src/views/common.ts
function coalesce(fn) {
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
function presenceDot(chat, userId) {
  const online = chat.isOnline(userId);
  return h("span", {
    class: `presence-dot${online ? " online" : ""}`,
    "data-testid": "presence-dot",
    "data-online": String(online),
    title: online ? "online" : "offline"
  });
}
function typingText(chat, state) {
  const names = [...state.typing.keys()].map((id) => chat.users.get(id)?.firstName ?? "Someone");
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}
function preview(chat, state, message) {
  const body = message.deleted ? "Message deleted" : message.content || (message.attachment ? `Attachment: ${message.attachment.filename}` : "");
  if (message.senderId === chat.me.id) return `You: ${body}`;
  if (state.group.direct) return body;
  return `${chat.users.get(message.senderId)?.firstName ?? "…"}: ${body}`;
}

// src/views/conversation.ts
var BOTTOM_SLACK_PX = 48;
var RUN_MS = 5 * 6e4;
function mountConversation(chat, state, notice, onBack) {
  const groupId = state.group.id;
  const title = h("h2", { "data-testid": "conversation-title" });
  const subtitle = h("p", { class: "muted", "data-testid": "conversation-subtitle" });
  const headDot = h("span", { class: "head-dot" });
  const members = h("ul", { class: "members-panel", "data-testid": "members-panel", hidden: true });
  const older = h(
    "button",
    { type: "button", class: "load-older", "data-testid": "load-older", hidden: true },
    "Load older messages"
  );
  const olderBox = h("div", { class: "older" }, older);
  const list = h("div", { class: "message-list", "data-testid": "message-list" }, olderBox);
  const typing = h("div", { class: "typing", "data-testid": "typing-indicator", "aria-live": "polite" });
  const uploadName = h("span", { class: "upload-name" });
  const progress = h("progress", { max: 100, value: 0, "data-testid": "upload-progress" });
  const percent = h("span", { class: "upload-percent", "data-testid": "upload-percent" });
  const upload = h("div", { class: "upload", "data-testid": "upload", hidden: true }, uploadName, progress, percent);
  upload.addEventListener("click", () => {
    if (upload.classList.contains("failed")) upload.hidden = true;
  });
  const fileInput = h("input", { type: "file", hidden: true, "data-testid": "file-input" });
  const attach = h(
    "button",
    { type: "button", class: "attach", title: "Attach a file", "data-testid": "attach-button", onclick: () => fileInput.click() },
    "Attach"
  );
  const input = h("textarea", {
    rows: 1,
    placeholder: "Write a message",
    maxlength: 4e3,
    "data-testid": "composer-input"
  });
  const composer = h(
    "form",
    { class: "composer" },
    attach,
    fileInput,
    input,
    h("button", { type: "submit", class: "primary", "data-testid": "send-button" }, "Send")
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
          onclick: () => members.hidden = !members.hidden
        },
        "Members"
      )
    ),
    members,
    list,
    typing,
    upload,
    composer
  );
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
      ...state.group.members.map(
        (m) => h(
          "li",
          { "data-testid": "member", "data-user-id": m.userId },
          presenceDot(chat, m.userId),
          h("span", {}, m.userId === chat.me.id ? "You" : fullName(chat.users.get(m.userId))),
          m.role === "admin" ? h("span", { class: "role" }, "admin") : null
        )
      )
    );
  };
  const drawn = /* @__PURE__ */ new Map();
  let stick = true;
  const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < BOTTOM_SLACK_PX;
  const toBottom = () => {
    list.scrollTop = list.scrollHeight;
  };
  const receiptElement = (m) => {
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
        title: status === "sent" ? "Stored" : status === "delivered" ? "Delivered" : "Seen"
      },
      h("span", { class: "ticks" }, ticks),
      label ? h("span", { class: "receipt-label" }, label) : null
    );
  };
  const editForm = (m, text) => {
    const area = h("textarea", { class: "edit-input", "data-testid": "edit-input", maxlength: 4e3, value: m.content ?? "" });
    const form = h(
      "form",
      { class: "edit-form" },
      area,
      h("button", { type: "submit", class: "primary small", "data-testid": "edit-save" }, "Save"),
      h("button", { type: "button", class: "small", onclick: () => form.replaceWith(text) }, "Cancel")
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const content = area.value.trim();
      if (!content || content === m.content) return form.replaceWith(text);
      chat.edit(groupId, m.id, content).catch((err) => notice(`Not edited: ${err.message}`));
    });
    text.replaceWith(form);
    area.focus();
  };
  const messageElement = (m, continued) => {
    const mine = m.senderId === chat.me.id;
    const text = h("div", { class: "text", "data-testid": "message-text" }, m.deleted ? "This message was deleted" : m.content ?? "");
    const actions = h("div", { class: "actions" });
    if (!m.deleted && mine && m.content !== void 0) {
      actions.append(
        h("button", { type: "button", class: "link", "data-testid": "edit-message", onclick: () => editForm(m, text) }, "Edit")
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
                chat.remove(groupId, m.id).catch((err) => notice(`Not deleted: ${err.message}`));
              }
            }
          },
          "Delete"
        )
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
        "data-deleted": String(m.deleted)
      },
      continued && !m.editedAt ? null : h(
        "div",
        { class: "meta" },
        mine || continued ? null : h("span", { class: "author" }, fullName(chat.users.get(m.senderId))),
        h("time", { datetime: m.createdAt }, formatTime(m.createdAt)),
        m.editedAt && !m.deleted ? h("span", { class: "edited", "data-testid": "edited" }, "edited") : null
      ),
      h("div", { class: "bubble" }, m.deleted || m.content ? text : null, attachment),
      actions.childElementCount || mine && !m.deleted ? h("div", { class: "foot" }, actions.childElementCount ? actions : null, mine && !m.deleted ? receiptElement(m) : null) : null
    );
  };
  const pendingElement = (p) => h(
    "article",
    { class: `message mine pending ${p.state}`, "data-testid": "message", "data-pending": p.state },
    h("div", { class: "meta" }, h("time", {}, formatTime(p.createdAt))),
    h(
      "div",
      { class: "bubble" },
      p.content ? h("div", { class: "text", "data-testid": "message-text" }, p.content) : null,
      p.attachment ? h("div", { class: "muted" }, p.attachment.filename) : null
    ),
    h(
      "div",
      { class: "foot" },
      p.state === "sending" ? h("span", { class: "receipt sending", "data-testid": "receipt", "data-state": "sending", title: "Sending" }, "…") : h(
        "span",
        { class: "send-failed", "data-testid": "send-failed" },
        `Not sent: ${p.error ?? "error"} `,
        h("button", { type: "button", class: "link", onclick: () => chat.retry(groupId, p.clientMessageId) }, "Retry"),
        h("button", { type: "button", class: "link", onclick: () => chat.discard(groupId, p.clientMessageId) }, "Discard")
      )
    )
  );
  const renderMessages = coalesce(() => {
    const wasAtBottom = stick;
    const anchor = [...list.children].find(
      (e) => e !== olderBox && e instanceof HTMLElement && e.offsetTop >= list.scrollTop
    );
    const anchorTop = anchor?.offsetTop ?? 0;
    const messages = [...state.messages?.values() ?? []].sort((a, b) => a.seq - b.seq);
    const wanted = messages.map((m, i) => {
      const before = messages[i - 1];
      const continued = before?.seq === m.seq - 1 && before.senderId === m.senderId && Date.parse(m.createdAt) - Date.parse(before.createdAt) < RUN_MS;
      const author = fullName(chat.users.get(m.senderId));
      return {
        key: `m${m.seq}`,
        version: [m.id, m.deleted, m.editedAt, m.content, author, chat.isAdmin(state.group), continued].join("|"),
        draw: () => messageElement(m, continued)
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
    let previous = olderBox;
    for (const w of wanted) {
      let d = drawn.get(w.key);
      if (!d || d.version !== w.version) {
        const element2 = w.draw();
        if (d) d.element.replaceWith(element2);
        d = { element: element2, version: w.version };
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
    const show = (fraction) => {
      const value2 = Math.round(fraction * 100);
      progress.value = value2;
      percent.textContent = `${value2}%`;
      upload.dataset.percent = String(value2);
    };
    show(0);
    try {
      const stored = await uploadFile(chat.api, file, show);
      upload.hidden = true;
      stick = true;
      chat.send(groupId, void 0, stored);
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
    }
  };
}

// src/views/newConversation.ts
function mountNewConversation(chat, onCreated) {
  const picked = /* @__PURE__ */ new Map();
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
      create
    )
  );
  const element = h("dialog", { "data-testid": "new-conversation-dialog" }, form);
  const refresh = () => {
    chips.replaceChildren(
      ...[...picked.values()].map(
        (u) => h(
          "button",
          { type: "button", class: "chip", title: "Remove", onclick: () => toggle(u) },
          `${fullName(u)} ×`
        )
      )
    );
    const direct = picked.size === 1 && !name.value.trim();
    create.disabled = picked.size === 0;
    create.textContent = direct ? "Start direct conversation" : "Create group";
    hint.textContent = picked.size === 0 ? "Pick at least one person." : direct ? "No name and one person: a direct conversation." : "";
    for (const box of results.querySelectorAll("input[type=checkbox]")) {
      box.checked = picked.has(box.value);
    }
  };
  const toggle = (user) => {
    if (picked.has(user.id)) picked.delete(user.id);
    else picked.set(user.id, user);
    refresh();
  };
  let searchTimer;
  let searchRound = 0;
  const runSearch = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const round = ++searchRound;
      try {
        const users = await chat.searchUsers(search.value.trim());
        if (round !== searchRound) return;
        results.replaceChildren(
          ...users.map(
            (u) => h(
              "li",
              {},
              h(
                "label",
                { class: "user-result", "data-testid": "user-result", "data-user-id": u.id },
                h("input", { type: "checkbox", value: u.id, onchange: () => toggle(u) }),
                h("span", { class: "user-name" }, fullName(u)),
                h("span", { class: "muted" }, u.email)
              )
            )
          )
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
      const id = await chat.createGroup(name.value.trim() || void 0, [...picked.keys()]);
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
    }
  };
}

// src/views/sidebar.ts
function mountSidebar(chat, onNew) {
  const list = h("ul", { class: "group-list", "data-testid": "group-list" });
  const empty2 = h("p", { class: "empty muted" }, "No conversations yet. Start one with New.");
  const element = h(
    "aside",
    { class: "sidebar", "data-testid": "sidebar" },
    h(
      "div",
      { class: "sidebar-head" },
      h("h2", {}, "Chats"),
      h("button", { type: "button", class: "primary small", "data-testid": "new-conversation", onclick: onNew }, "New")
    ),
    empty2,
    list
  );
  const item = (state) => {
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
          "aria-current": active ? "page" : false
        },
        h(
          "span",
          { class: `avatar${group.direct ? "" : " group"}` },
          peer ? initials(chat.users.get(peer)) : "#",
          peer ? presenceDot(chat, peer) : null
        ),
        h(
          "span",
          { class: "group-main" },
          h("span", { class: "group-name", "data-testid": "group-name" }, chat.title(group)),
          h(
            "span",
            { class: `group-preview${typing ? " typing" : ""}`, "data-testid": "group-preview" },
            typing || (state.lastMessage ? preview(chat, state, state.lastMessage) : "No messages yet")
          )
        ),
        h(
          "span",
          { class: "group-side" },
          state.lastMessage ? h("time", {}, formatTime(state.lastMessage.createdAt)) : null,
          state.unread ? h("span", { class: "badge", "data-testid": "unread-badge" }, state.unread) : null
        )
      )
    );
  };
  const render = coalesce(() => {
    const groups = chat.sortedGroups();
    list.replaceChildren(...groups.map(item));
    empty2.hidden = groups.length > 0;
  });
  chat.subscribe((change) => {
    if (["groups", "typing", "presence", "users", "members"].includes(change.kind)) render();
  });
  render();
  return { element, render };
}

// src/views/app.ts
var STATUS_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  restarting: "Server restarting, reconnecting…"
};
function mountApp(root2, api2, onSignOut) {
  const me = api2.user;
  if (!me) throw new Error("not signed in");
  const chat = new Chat(api2, me);
  window.__chat = chat;
  const status = h("span", { class: "status", "data-testid": "connection-status", role: "status" });
  const noticeBox = h("div", { class: "notice", "data-testid": "notice", role: "alert", hidden: true });
  let noticeTimer;
  const notice = (text) => {
    noticeBox.textContent = text;
    noticeBox.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => noticeBox.hidden = true, 6e3);
  };
  let stopped = false;
  const teardown2 = () => {
    if (stopped) return;
    stopped = true;
    conversation?.destroy();
    chat.stop();
    revokeAll();
    window.removeEventListener("hashchange", route);
    if (window.__chat === chat) delete window.__chat;
  };
  const logout = async () => {
    teardown2();
    await api2.logout();
    history.replaceState(null, "", location.pathname + location.search);
    onSignOut();
  };
  const dialog = mountNewConversation(chat, (id) => location.hash = `#/g/${id}`);
  const sidebar = mountSidebar(chat, dialog.open);
  const main = h("main", { class: "main" });
  const layout = h("div", { class: "layout" }, sidebar.element, main);
  root2.replaceChildren(
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
        h("button", { type: "button", class: "small", "data-testid": "logout", onclick: logout }, "Sign out")
      ),
      layout,
      noticeBox,
      dialog.element
    )
  );
  let conversation;
  let shown;
  function route() {
    const match = /^#\/g\/([^/]+)$/.exec(location.hash);
    const id = match && chat.groups.has(match[1]) ? match[1] : null;
    if (id === shown) return;
    conversation?.destroy();
    conversation = void 0;
    shown = id;
    const state = id ? chat.groups.get(id) : void 0;
    if (state) {
      conversation = mountConversation(chat, state, notice, () => location.hash = "");
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
    if (change.kind === "groups" && shown && !chat.groups.has(shown)) route();
  });
  renderStatus();
  window.addEventListener("hashchange", route);
  route();
  chat.start().then(route, (e) => notice(`Could not load your conversations: ${e.message}`));
  return teardown2;
}

// src/main.ts
var base = (new URLSearchParams(location.search).get("api") ?? location.origin).replace(/\/+$/, "");
var api = new Api(base);
var root = document.getElementById("app");
var teardown;
function signedIn() {
  teardown = mountApp(root, api, () => signedOut());
}
function signedOut(notice) {
  teardown?.();
  teardown = void 0;
  renderAuth(root, api, signedIn, notice);
}
api.onSignedOut = () => signedOut("Your session has ended. Please sign in again.");
if (api.user) signedIn();
else signedOut();
