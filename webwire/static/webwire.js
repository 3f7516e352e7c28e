/**
 * webwire.js: a browser client of WebWire 2.0 (binary protocol), served by
 * WebWire for Twisted at /webwire.js. An ES module with no dependencies and
 * no build step, for current browsers.
 *
 *     import { WebWireClient, WebWireError } from "/webwire.js";
 *
 *     const client = new WebWireClient("wss://example.com/", {
 *       hooks: { onSignal: (signal) => console.log(signal.name, signal.text()) },
 *     });
 *     const reply = await client.request("echo", "hello");
 *     reply.text();  // "hello"
 *
 * It behaves like the original Go client, with the differences noted below,
 * and avoids the bugs of the original JS client (PROTOCOL.md, Q19 to Q25).
 *
 * new WebWireClient(url, options)
 *   url: ws://, wss://, http:// (dialled as ws://), https:// (as wss://), or
 *     a path such as "/chat", taken relative to the page (same host, ws:// or
 *     wss:// as the page's scheme).
 *   options (all optional; times in milliseconds):
 *     requestTimeout = 60000   budget of a call that is given no timeout of
 *                              its own: connecting, sending and the reply
 *     dialTimeout = 5000       one connection attempt: the WebSocket handshake
 *                              and the server's AcceptConf
 *     reconnect = {initialDelay: 500, maxDelay: 30000, factor: 2, jitter: 1000}
 *                              the delay before retry N (0 for the first) is
 *                              min(initialDelay * factor^N, maxDelay) plus a
 *                              random 0..jitter
 *     storage = globalThis.localStorage (null if unavailable)
 *                              where the session key is kept, as
 *                              storage[storageKey] = '{"session":"<key>"}'
 *                              (the original JS client's format); a
 *                              Storage-like object (getItem, setItem,
 *                              removeItem) or a plain object; null keeps the
 *                              session in memory only
 *     storageKey = the URL (after the conversions above)
 *     subProtocol = null       the WebWire sub-protocol the server must
 *                              advertise in AcceptConf (null: none)
 *     messageBufferSize = 8192 must equal the server's
 *     hooks = {}               any of:
 *       onConnected()                 connected, and the stored session (if
 *                                     any) restored or given up
 *       onDisconnected(error)         the connection was lost or closed; a
 *                                     WebWireError of kind "disconnected" with
 *                                     closeCode, closeReason and wasClean
 *       onSignal(signal)              {name, encoding, payload, text()}
 *       onSessionCreated(session)     the server created a session for this
 *                                     client, or a session was restored
 *       onSessionClosed()             the server closed the session
 *       onSessionLost(session, error) the stored session could not be restored
 *                                     on a new connection (it is forgotten);
 *                                     after a page load only session.key is
 *                                     known, the other fields are null
 *     A hook that throws (or rejects) is reported with console.error.
 *
 * Methods (each returns a Promise and reports every failure by rejecting it
 * with a WebWireError; nothing is thrown synchronously):
 *   connect({timeout})            connect now if not connected
 *   request(name, payload, {encoding, timeout})
 *                                 resolves with a reply {payload: Uint8Array,
 *                                 encoding: "binary" | "utf8" | "utf16", text()}
 *   signal(name, payload, {encoding, timeout})
 *                                 resolves once the signal was sent (signals
 *                                 are not acknowledged)
 *   restoreSession(key, {timeout}) resolves with the session
 *   closeSession({timeout})       ask the server to close the session (not
 *                                 connected: forget it here only); no hook
 *   close()                       disconnect and stop reconnecting; calls
 *                                 waiting for a connection or a reply fail
 *                                 with "disconnected"; the next call connects
 *                                 again; resolves once the socket is closed
 * Getters:
 *   session     {key, creation: Date, lastLookup: Date, info} (info: the
 *               session's JSON object, {} if none; frozen) or null
 *   status      "disconnected" | "connecting" | "connected" | "disabled"
 *               (after close())
 *   acceptConf  what the server advertised on the current connection:
 *               {majorVersion, minorVersion, readTimeout, messageBufferSize,
 *               subProtocol}, or null
 *   heartbeatsSent  heartbeats sent since the client was made (diagnostics)
 *
 * Names are 0 to 255 printable ASCII characters (0x20-0x7E). Payloads: a
 * string is sent as UTF-8, or as UTF-16LE with {encoding: "utf16"}, or as its
 * UTF-8 bytes in a binary message with {encoding: "binary"}; a Uint8Array,
 * ArrayBuffer or other ArrayBuffer view is sent as binary, or with the bytes
 * as they are under the encoding given; null or undefined is no payload. A
 * request or signal needs a name or a payload; a UTF-16 signal needs a
 * payload; a UTF-16 payload has an even length. reply.text() and
 * signal.text() decode UTF-16 as UTF-16LE (surrogate pairs included) and
 * anything else as UTF-8, replacing invalid sequences with U+FFFD.
 *
 * WebWireError: an Error with a `kind`:
 *   "request"                the server's error reply; `code` and `message`
 *                            are the reply's
 *   "internal"               the server failed to handle the request
 *   "shutdown"               the server is shutting down
 *   "sessionNotFound"        the server does not know the session (restore)
 *   "maxSessionConnections"  the session has too many connections (restore)
 *   "sessionsDisabled"       the server has no sessions
 *   "timeout"                the call's timeout ran out (connecting or
 *                            waiting for the reply; a late reply is dropped)
 *   "disconnected"           the connection was lost before the reply came,
 *                            or close() was called
 *   "handshake"              the server is not a compatible WebWire server:
 *                            its first message is no AcceptConf, or the
 *                            protocol version, sub-protocol or message
 *                            buffer size do not match; the client does not
 *                            retry (the next call tries again)
 *   "protocol"               nothing was sent: the call is invalid (bad name,
 *                            payload or encoding, no name and no payload, too
 *                            large), or restoreSession() while the client
 *                            holds another session
 *
 * Behaviour:
 * - Binary WebSocket messages only, one WebWire message each; no WebSocket
 *   sub-protocol header.
 * - Connects on first use and reconnects in the background when the
 *   connection is lost, with exponential backoff plus jitter, up to a cap.
 * - On every new connection the session held (or stored under storageKey)
 *   is restored before any waiting call goes out. If the restore fails
 *   because the connection was lost or the server is shutting down, the
 *   session is kept and the client reconnects; any other failure forgets it
 *   (storage cleared, onSessionLost).
 * - Requests are matched to replies by identifier (a per-client counter
 *   from 1, written as a little-endian uint64, as the Go client does);
 *   replies nobody waits for are dropped.
 * - Requests waiting for their reply when the connection is lost fail at
 *   once with "disconnected" (the Go client lets them run into their
 *   deadline): the server cannot answer them on another connection.
 * - A heartbeat goes out after 3/4 of the server's read timeout without
 *   anything sent, as the Go client does.
 * - Empty, malformed and unexpected messages from the server are dropped
 *   with a console.warn; the connection stays.
 */

const DEFAULTS = Object.freeze({
  requestTimeout: 60000,
  dialTimeout: 5000,
  reconnect: Object.freeze({
    initialDelay: 500,
    maxDelay: 30000,
    factor: 2,
    jitter: 1000,
  }),
  subProtocol: null,
  messageBufferSize: 8192,
});

// Message types (PROTOCOL.md §2).
const T = Object.freeze({
  REPLY_ERROR: 0,
  REPLY_SHUTDOWN: 1,
  REPLY_INTERNAL_ERROR: 2,
  REPLY_SESSION_NOT_FOUND: 3,
  REPLY_MAX_SESSION_CONNECTIONS: 4,
  REPLY_SESSIONS_DISABLED: 5,
  SESSION_CREATED: 21,
  SESSION_CLOSED: 22,
  ACCEPT_CONF: 23,
  CLOSE_SESSION: 31,
  RESTORE_SESSION: 32,
  HEARTBEAT: 33,
  SIGNAL_BINARY: 63,
  SIGNAL_UTF8: 64,
  SIGNAL_UTF16: 65,
  REQUEST_BINARY: 127,
  REQUEST_UTF8: 128,
  REQUEST_UTF16: 129,
  REPLY_BINARY: 191,
  REPLY_UTF8: 192,
  REPLY_UTF16: 193,
});

const PROTOCOL_MAJOR = 2;
const ID_LENGTH = 8;
const MAX_NAME = 255;
const MAX_TIMER = 0x7fffffff; // setTimeout's largest delay
const UINT64 = (1n << 64n) - 1n;

const SPECIAL_REPLIES = new Map([
  [T.REPLY_SHUTDOWN, ["shutdown", "the server is shutting down"]],
  [T.REPLY_INTERNAL_ERROR, ["internal", "the server failed to handle the request"]],
  [T.REPLY_SESSION_NOT_FOUND, ["sessionNotFound", "the server does not know the session"]],
  [
    T.REPLY_MAX_SESSION_CONNECTIONS,
    ["maxSessionConnections", "the session has as many connections as the server allows"],
  ],
  [T.REPLY_SESSIONS_DISABLED, ["sessionsDisabled", "the server has no sessions"]],
]);

const ENCODINGS = ["binary", "utf8", "utf16"];
const REQUEST_TYPES = { binary: T.REQUEST_BINARY, utf8: T.REQUEST_UTF8, utf16: T.REQUEST_UTF16 };
const SIGNAL_TYPES = { binary: T.SIGNAL_BINARY, utf8: T.SIGNAL_UTF8, utf16: T.SIGNAL_UTF16 };
const REPLY_ENCODINGS = new Map([
  [T.REPLY_BINARY, "binary"],
  [T.REPLY_UTF8, "utf8"],
  [T.REPLY_UTF16, "utf16"],
]);
const SIGNAL_ENCODINGS = new Map([
  [T.SIGNAL_BINARY, "binary"],
  [T.SIGNAL_UTF8, "utf8"],
  [T.SIGNAL_UTF16, "utf16"],
]);

const utf8Encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is content (WebWire payloads carry no BOM).
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const utf16Decoder = new TextDecoder("utf-16le", { ignoreBOM: true });
const EMPTY = new Uint8Array(0);

/**
 * What every failure of a WebWireClient call is. See the module comment for
 * the kinds.
 */
export class WebWireError extends Error {
  /**
   * @param {string} kind
   * @param {string} message
   * @param {object} [details] code (for kind "request"), cause, and for
   *   "disconnected" closeCode, closeReason and wasClean
   */
  constructor(kind, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "WebWireError";
    this.kind = kind;
    if (details.code !== undefined) this.code = details.code;
    for (const field of ["closeCode", "closeReason", "wasClean"]) {
      if (details[field] !== undefined) this[field] = details[field];
    }
  }
}

// Encoding ----------------------------------------------------------------

function invalid(message) {
  return new WebWireError("protocol", message);
}

/** Encode a name (or session key): printable ASCII, min to 255 characters. */
function asciiField(value, what, min) {
  if (value === undefined || value === null) value = "";
  if (typeof value !== "string") throw invalid(`${what} must be a string`);
  if (value.length < min || value.length > MAX_NAME) {
    throw invalid(`${what} must be ${min} to ${MAX_NAME} characters long, not ${value.length}`);
  }
  const bytes = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      throw invalid(`${what} ${JSON.stringify(value)} has characters outside printable ASCII`);
    }
    bytes[i] = c;
  }
  return bytes;
}

function encodeUtf16(text) {
  const bytes = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    bytes[2 * i] = unit & 0xff;
    bytes[2 * i + 1] = unit >> 8;
  }
  return bytes;
}

/** The payload's bytes and encoding, from what a caller passed. */
function toPayload(payload, encoding) {
  if (encoding !== undefined && encoding !== null && !ENCODINGS.includes(encoding)) {
    throw invalid(`unknown encoding ${JSON.stringify(encoding)} (binary, utf8 or utf16)`);
  }
  if (payload === undefined || payload === null) {
    return { bytes: EMPTY, encoding: encoding ?? "binary" };
  }
  if (typeof payload === "string") {
    if (typeof payload.isWellFormed === "function" && !payload.isWellFormed()) {
      throw invalid("the text has a lone surrogate and cannot be encoded");
    }
    const enc = encoding ?? "utf8";
    return { bytes: enc === "utf16" ? encodeUtf16(payload) : utf8Encoder.encode(payload), encoding: enc };
  }
  if (payload instanceof ArrayBuffer) {
    return { bytes: new Uint8Array(payload), encoding: encoding ?? "binary" };
  }
  if (ArrayBuffer.isView(payload)) {
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    return { bytes, encoding: encoding ?? "binary" };
  }
  throw invalid("a payload must be a string, Uint8Array, ArrayBuffer, null or undefined");
}

function concat(parts) {
  let length = 0;
  for (const part of parts) length += typeof part === "number" ? 1 : part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    if (typeof part === "number") {
      out[offset++] = part;
    } else {
      out.set(part, offset);
      offset += part.length;
    }
  }
  return out;
}

function checkSize(message, maxSize, what) {
  if (message.length > maxSize) {
    throw invalid(
      `the ${what} of ${message.length} bytes exceeds the message buffer size of ${maxSize} bytes`,
    );
  }
  return message;
}

function encodeRequest(id, name, body, maxSize) {
  const nameBytes = asciiField(name, "request name", 0);
  if (nameBytes.length === 0 && body.bytes.length === 0) {
    throw invalid("a request needs a name, a payload or both");
  }
  const parts = [REQUEST_TYPES[body.encoding], id, nameBytes.length, nameBytes];
  if (body.encoding === "utf16") {
    if (body.bytes.length % 2) throw invalid("a UTF-16 payload must have an even length");
    if (nameBytes.length % 2) parts.push(0); // padding: the payload starts at an even offset
  }
  parts.push(body.bytes);
  return checkSize(concat(parts), maxSize, "request");
}

function encodeSignal(name, body, maxSize) {
  const nameBytes = asciiField(name, "signal name", 0);
  const parts = [SIGNAL_TYPES[body.encoding], nameBytes.length, nameBytes];
  if (body.encoding === "utf16") {
    if (body.bytes.length === 0) throw invalid("a UTF-16 signal needs a payload");
    if (body.bytes.length % 2) throw invalid("a UTF-16 payload must have an even length");
    if (nameBytes.length % 2) parts.push(0);
  } else if (nameBytes.length === 0 && body.bytes.length === 0) {
    throw invalid("a signal needs a name, a payload or both");
  }
  parts.push(body.bytes);
  return checkSize(concat(parts), maxSize, "signal");
}

// Decoding ------------------------------------------------------------------

class Malformed extends Error {}

function ascii(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return text;
}

function decodeText(bytes, encoding) {
  return (encoding === "utf16" ? utf16Decoder : utf8Decoder).decode(bytes);
}

function payloadObject(fields) {
  return Object.freeze({
    ...fields,
    text() {
      return decodeText(fields.payload, fields.encoding);
    },
  });
}

/** The identifier's bytes as a Map key. */
function idKey(bytes) {
  return ascii(bytes);
}

/**
 * Parse one message from the server (PROTOCOL.md §3.2); throws Malformed.
 * Client-to-server types are recognised so that they can be reported.
 */
function parse(b) {
  const type = b[0];
  const L = b.length;
  const need = (ok, why) => {
    if (!ok) throw new Malformed(why);
  };
  switch (type) {
    case T.REPLY_ERROR: {
      need(L >= 11, "error reply too short");
      const n = b[9];
      need(n >= 1, "error reply without an error code");
      need(L >= 10 + n, "error reply too short for its error code");
      return {
        type,
        id: b.subarray(1, 9),
        code: ascii(b.subarray(10, 10 + n)),
        message: utf8Decoder.decode(b.subarray(10 + n)),
      };
    }
    case T.REPLY_SHUTDOWN:
    case T.REPLY_INTERNAL_ERROR:
    case T.REPLY_SESSION_NOT_FOUND:
    case T.REPLY_MAX_SESSION_CONNECTIONS:
    case T.REPLY_SESSIONS_DISABLED:
      need(L >= 9, "special reply too short");
      return { type, id: b.subarray(1, 9) };
    case T.SESSION_CREATED:
      need(L >= 2, "session-created notification without a session");
      return { type, json: utf8Decoder.decode(b.subarray(1)) };
    case T.SESSION_CLOSED:
      need(L === 1, "session-closed notification of the wrong length");
      return { type };
    case T.ACCEPT_CONF:
      need(L >= 11, "accept-conf message too short");
      return { type, conf: acceptConfFields(b) };
    case T.SIGNAL_BINARY:
    case T.SIGNAL_UTF8: {
      need(L >= 3, "signal too short");
      const n = b[1];
      need(L >= 2 + n, "signal too short for its name");
      return {
        type,
        name: ascii(b.subarray(2, 2 + n)),
        encoding: SIGNAL_ENCODINGS.get(type),
        payload: b.slice(2 + n),
      };
    }
    case T.SIGNAL_UTF16: {
      need(L >= 4 && L % 2 === 0, "UTF-16 signal too short or of odd length");
      const n = b[1];
      const start = 2 + n + (n % 2);
      need(L >= start + 2, "UTF-16 signal without a payload");
      return { type, name: ascii(b.subarray(2, 2 + n)), encoding: "utf16", payload: b.slice(start) };
    }
    case T.REPLY_BINARY:
    case T.REPLY_UTF8:
      need(L >= 9, "reply too short");
      return { type, id: b.subarray(1, 9), encoding: REPLY_ENCODINGS.get(type), payload: b.slice(9) };
    case T.REPLY_UTF16:
      need(L >= 10 && L % 2 === 0, "UTF-16 reply too short or of odd length");
      return { type, id: b.subarray(1, 9), encoding: "utf16", payload: b.slice(10) };
    case T.CLOSE_SESSION:
    case T.RESTORE_SESSION:
    case T.HEARTBEAT:
    case T.REQUEST_BINARY:
    case T.REQUEST_UTF8:
    case T.REQUEST_UTF16:
      return { type, clientOnly: true };
    default:
      throw new Malformed(`unknown message type ${type}`);
  }
}

function acceptConfFields(b) {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Object.freeze({
    majorVersion: b[1],
    minorVersion: b[2],
    readTimeout: view.getUint32(3, true),
    messageBufferSize: view.getUint32(7, true),
    subProtocol: b.length > 11 ? b.slice(11) : null,
  });
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  return a.every((byte, i) => byte === b[i]);
}

/** Check the server's first message as the Go client does (§4 a to e). */
function checkAcceptConf(bytes, options) {
  if (bytes.length < 11 || bytes[0] !== T.ACCEPT_CONF) {
    throw new WebWireError(
      "handshake",
      `unexpected first message (type ${bytes[0]}, ${bytes.length} bytes); expected an accept-conf message`,
    );
  }
  const conf = acceptConfFields(bytes);
  if (conf.majorVersion !== PROTOCOL_MAJOR) {
    throw new WebWireError(
      "handshake",
      `the server speaks WebWire ${conf.majorVersion}.${conf.minorVersion}; this client speaks ${PROTOCOL_MAJOR}.x`,
    );
  }
  const wanted = options.subProtocol ? utf8Encoder.encode(options.subProtocol) : null;
  const offered = conf.subProtocol;
  if ((wanted === null) !== (offered === null) || (wanted && !sameBytes(wanted, offered))) {
    const show = (p) => (p === null ? "none" : JSON.stringify(utf8Decoder.decode(p)));
    throw new WebWireError(
      "handshake",
      `sub-protocol mismatch (server: ${show(offered)}; client: ${show(wanted)})`,
    );
  }
  if (conf.messageBufferSize !== options.messageBufferSize) {
    throw new WebWireError(
      "handshake",
      `mismatching message buffer size (server: ${conf.messageBufferSize}; client: ${options.messageBufferSize})`,
    );
  }
  if (conf.readTimeout < 1) {
    throw new WebWireError("handshake", "the server advertises a read timeout of 0");
  }
  return Object.freeze({
    ...conf,
    subProtocol: offered === null ? null : utf8Decoder.decode(offered),
  });
}

// Sessions ------------------------------------------------------------------

const TIME =
  /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 time with any number of fraction digits (Go writes 9). */
function parseTime(text) {
  const match = typeof text === "string" ? TIME.exec(text) : null;
  if (match === null) throw new Error(`not an RFC 3339 time: ${JSON.stringify(text)}`);
  const [, date, time, fraction = "", zone] = match;
  const millis = fraction.padEnd(3, "0").slice(0, 3);
  const when = new Date(`${date}T${time}.${millis}${zone}`);
  if (Number.isNaN(when.getTime())) throw new Error(`not a valid time: ${text}`);
  return when;
}

/** A session from the protocol's JSON {"k","c","l"[,"i"]}; throws if invalid. */
function sessionFromJSON(text) {
  const doc = JSON.parse(text);
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error("a session document must be a JSON object");
  }
  const { k: key, c: creation, l: lastLookup, i: info } = doc;
  if (typeof key !== "string" || key.length === 0) throw new Error("the session has no key");
  if (info !== undefined && info !== null && (typeof info !== "object" || Array.isArray(info))) {
    throw new Error("the session info must be a JSON object");
  }
  return Object.freeze({
    key,
    creation: parseTime(creation),
    lastLookup: parseTime(lastLookup),
    info: Object.freeze(info ?? {}),
  });
}

function keyOnlySession(key) {
  return Object.freeze({ key, creation: null, lastLookup: null, info: null });
}

// The client ----------------------------------------------------------------

function normalizeUrl(url) {
  const base = globalThis.location?.href;
  const parsed = new URL(String(url), base);
  const scheme = parsed.protocol.toLowerCase();
  if (scheme === "http:" || scheme === "https:") {
    parsed.protocol = scheme === "https:" ? "wss:" : "ws:";
  } else if (scheme !== "ws:" && scheme !== "wss:") {
    throw new TypeError(`not a ws, wss, http or https URL: ${url}`);
  }
  parsed.hash = "";
  return parsed.href;
}

function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // e.g. a sandboxed frame: reading localStorage throws
  }
}

function now() {
  return performance.now();
}

function remaining(deadline) {
  return Math.min(Math.max(0, deadline - now()), MAX_TIMER);
}

function callHook(hook, ...args) {
  if (typeof hook !== "function") return;
  try {
    const result = hook(...args);
    if (result && typeof result.then === "function") {
      result.then(undefined, (e) => console.error("webwire: a hook failed:", e));
    }
  } catch (e) {
    console.error("webwire: a hook failed:", e);
  }
}

export class WebWireClient {
  /**
   * @param {string} url
   * @param {object} [options] see the module comment
   */
  constructor(url, options = {}) {
    this.url = normalizeUrl(url);
    this._options = {
      requestTimeout: options.requestTimeout ?? DEFAULTS.requestTimeout,
      dialTimeout: options.dialTimeout ?? DEFAULTS.dialTimeout,
      reconnect: { ...DEFAULTS.reconnect, ...(options.reconnect ?? {}) },
      subProtocol: options.subProtocol ?? DEFAULTS.subProtocol,
      messageBufferSize: options.messageBufferSize ?? DEFAULTS.messageBufferSize,
    };
    this._storage = "storage" in options ? options.storage : defaultStorage();
    this._storageKey = options.storageKey ?? this.url;
    this._hooks = options.hooks ?? {};
    this._status = "disconnected";
    this._ws = null; // the accepted connection
    this._conf = null;
    this._ready = false; // accepted and the session restored: calls may go out
    this._session = null;
    this._nextId = 1n;
    this._pending = new Map(); // id key -> {resolve, reject}
    this._waiters = new Set(); // calls waiting for a connection: {resolve, reject}
    this._loop = null; // token of the running connect loop
    this._wakeLoop = null; // ends the loop's current backoff sleep
    this._dialing = null; // aborts the connection attempt in progress
    this._lastDialError = null;
    this._closers = [];
    this._heartbeatTimer = null;
    this._lastSent = 0;
    this._heartbeats = 0;
  }

  get status() {
    return this._status;
  }

  get session() {
    return this._session;
  }

  get acceptConf() {
    return this._conf;
  }

  get heartbeatsSent() {
    return this._heartbeats;
  }

  connect({ timeout } = {}) {
    return this._run(timeout, async (deadline) => {
      await this._whenReady(deadline);
    });
  }

  request(name, payload, { encoding, timeout } = {}) {
    return this._run(timeout, async (deadline) => {
      const id = this._newId();
      const data = encodeRequest(
        id,
        name,
        toPayload(payload, encoding),
        this._options.messageBufferSize,
      );
      await this._whenReady(deadline);
      return replyResult(await this._exchange(id, data, deadline));
    });
  }

  signal(name, payload, { encoding, timeout } = {}) {
    return this._run(timeout, async (deadline) => {
      const data = encodeSignal(name, toPayload(payload, encoding), this._options.messageBufferSize);
      await this._whenReady(deadline);
      this._send(data);
    });
  }

  restoreSession(key, { timeout } = {}) {
    return this._run(timeout, async (deadline) => {
      const active = () =>
        invalid("the client holds a session already; close it before restoring another");
      if (this._session !== null) throw active();
      const keyBytes = asciiField(key, "session key", 1);
      await this._whenReady(deadline);
      if (this._session !== null) {
        // Restored automatically while we waited for the connection.
        if (this._session.key === key) return this._session;
        throw active();
      }
      const id = this._newId();
      const data = checkSize(
        concat([T.RESTORE_SESSION, id, keyBytes]),
        this._options.messageBufferSize,
        "restore-session request",
      );
      const session = sessionResult(await this._exchange(id, data, deadline));
      this._setSession(session);
      return session;
    });
  }

  closeSession({ timeout } = {}) {
    return this._run(timeout, async (deadline) => {
      if (this._session === null && this._storedKey() === null) return;
      if (!this._ready) {
        this._clearSession();
        return;
      }
      const id = this._newId();
      replyResult(await this._exchange(id, concat([T.CLOSE_SESSION, id]), deadline));
      this._clearSession();
    });
  }

  close() {
    this._status = "disabled";
    this._stopLoop();
    const error = new WebWireError("disconnected", "the client was closed");
    this._failWaiters(error);
    this._failPending(error);
    const ws = this._ws;
    if (ws === null) return Promise.resolve();
    this._ready = false;
    return new Promise((resolve) => {
      this._closers.push(resolve);
      ws.close(1000, "client closed");
    });
  }

  // Calls ---------------------------------------------------------------------

  /** Run a call with its deadline; every error becomes a rejection. */
  async _run(timeout, body) {
    const budget = timeout ?? this._options.requestTimeout;
    return body(now() + budget);
  }

  _newId() {
    const id = new Uint8Array(ID_LENGTH);
    new DataView(id.buffer).setBigUint64(0, this._nextId, true);
    this._nextId = (this._nextId + 1n) & UINT64 || 1n;
    return id;
  }

  /** Resolves once calls may go out, connecting first if needed. */
  _whenReady(deadline) {
    if (this._ready) return Promise.resolve();
    if (this._status === "disabled") this._status = "disconnected"; // a call after close()
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clear();
          resolve();
        },
        reject: (e) => {
          clear();
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const last = this._lastDialError ? ` (last attempt: ${this._lastDialError.message})` : "";
        waiter.reject(new WebWireError("timeout", `not connected in time${last}`));
      }, remaining(deadline));
      const clear = () => {
        clearTimeout(timer);
        this._waiters.delete(waiter);
      };
      this._waiters.add(waiter);
      this._startConnecting();
    });
  }

  /** Send a message that needs a reply; resolves with the reply message. */
  _exchange(id, data, deadline) {
    const key = idKey(id);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(key);
        reject(new WebWireError("timeout", "no reply in time"));
      }, remaining(deadline));
      const settle = (fn) => (value) => {
        clearTimeout(timer);
        this._pending.delete(key);
        fn(value);
      };
      this._pending.set(key, { resolve: settle(resolve), reject: settle(reject) });
      try {
        this._send(data);
      } catch (e) {
        settle(reject)(e);
      }
    });
  }

  _send(data) {
    const ws = this._ws;
    if (ws === null || ws.readyState !== WebSocket.OPEN) {
      throw new WebWireError("disconnected", "not connected");
    }
    ws.send(data);
    this._lastSent = now();
  }

  _failWaiters(error) {
    for (const waiter of [...this._waiters]) waiter.reject(error);
  }

  _failPending(error) {
    for (const pending of [...this._pending.values()]) pending.reject(error);
  }

  // Connecting ----------------------------------------------------------------

  _startConnecting() {
    if (this._loop !== null || this._ws !== null) return;
    const token = {};
    this._loop = token;
    this._connectLoop(token);
  }

  _stopLoop() {
    this._loop = null;
    if (this._wakeLoop !== null) this._wakeLoop();
    if (this._dialing !== null) this._dialing();
  }

  async _connectLoop(token) {
    let attempt = 0;
    while (this._loop === token) {
      this._status = "connecting";
      let accepted;
      try {
        accepted = await this._dial();
      } catch (e) {
        if (this._loop !== token) return;
        if (e.kind === "handshake") {
          console.error(`webwire: cannot talk to ${this.url}: ${e.message}`);
          this._loop = null;
          this._status = "disconnected";
          this._failWaiters(e);
          return;
        }
        this._lastDialError = e;
        await this._sleep(this._retryDelay(attempt++));
        continue;
      }
      if (this._loop !== token) {
        accepted.ws.close(1000, "client closed");
        return;
      }
      this._loop = null;
      this._lastDialError = null;
      this._accepted(accepted.ws, accepted.conf);
      return;
    }
  }

  _retryDelay(attempt) {
    const { initialDelay, maxDelay, factor, jitter } = this._options.reconnect;
    const base = Math.min(initialDelay * factor ** attempt, maxDelay);
    return Math.min(base + Math.random() * jitter, MAX_TIMER);
  }

  _sleep(delay) {
    return new Promise((resolve) => {
      const timer = setTimeout(wake, delay);
      const self = this;
      function wake() {
        clearTimeout(timer);
        self._wakeLoop = null;
        resolve();
      }
      this._wakeLoop = wake;
    });
  }

  /** One connection attempt: resolves with {ws, conf} once AcceptConf passed. */
  _dial() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url); // no sub-protocol header (§1.4)
      } catch (e) {
        reject(new WebWireError("disconnected", `cannot connect: ${e.message}`, { cause: e }));
        return;
      }
      ws.binaryType = "arraybuffer";
      const finish = (error, conf) => {
        clearTimeout(timer);
        this._dialing = null;
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        if (error) {
          if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
          reject(error);
        } else {
          resolve({ ws, conf });
        }
      };
      const timer = setTimeout(
        () =>
          finish(new WebWireError("disconnected", `no connection within ${this._options.dialTimeout} ms`)),
        Math.min(this._options.dialTimeout, MAX_TIMER),
      );
      this._dialing = () => finish(new WebWireError("disconnected", "the client was closed"));
      ws.onmessage = (event) => {
        if (typeof event.data === "string") {
          finish(new WebWireError("handshake", "the server's first message is a text message"));
          return;
        }
        const bytes = new Uint8Array(event.data);
        if (bytes.length === 0) return; // dropped, as any empty message
        try {
          finish(null, checkAcceptConf(bytes, this._options));
        } catch (e) {
          finish(e);
        }
      };
      ws.onclose = (event) =>
        finish(
          new WebWireError("disconnected", `cannot connect (WebSocket closed, code ${event.code})`, {
            closeCode: event.code,
            closeReason: event.reason,
            wasClean: event.wasClean,
          }),
        );
    });
  }

  /** A connection passed the handshake: restore the session, then go. */
  async _accepted(ws, conf) {
    this._ws = ws;
    this._conf = conf;
    ws.onmessage = (event) => this._onMessage(ws, event);
    ws.onclose = (event) => this._onClose(ws, event);
    ws.onerror = null;
    this._lastSent = now();
    this._startHeartbeat(conf.readTimeout - conf.readTimeout / 4);
    const key = this._session?.key ?? this._storedKey();
    if (key !== null) {
      const previous = this._session ?? keyOnlySession(key);
      try {
        const keyBytes = asciiField(key, "session key", 1);
        const id = this._newId();
        const reply = await this._exchange(
          id,
          concat([T.RESTORE_SESSION, id, keyBytes]),
          now() + this._options.requestTimeout,
        );
        if (this._ws !== ws) return;
        this._setSession(sessionResult(reply));
      } catch (e) {
        if (this._ws !== ws) return; // lost again meanwhile: the next connection retries
        if (e.kind === "disconnected" || e.kind === "shutdown") {
          // The session is probably fine; this connection is not.
          ws.close(1000, "reconnecting");
          return;
        }
        console.warn(`webwire: the session could not be restored: ${e.message}`);
        this._clearSession();
        callHook(this._hooks.onSessionLost, previous, e);
        if (this._ws !== ws) return;
      }
    }
    this._status = "connected";
    this._ready = true;
    for (const waiter of [...this._waiters]) waiter.resolve();
    callHook(this._hooks.onConnected);
  }

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._conf = null;
    this._ready = false;
    this._stopHeartbeat();
    const error = new WebWireError(
      "disconnected",
      `the connection was lost (WebSocket closed, code ${event.code}${event.reason ? `: ${event.reason}` : ""})`,
      { closeCode: event.code, closeReason: event.reason, wasClean: event.wasClean },
    );
    this._failPending(error);
    for (const resolve of this._closers.splice(0)) resolve();
    if (this._status !== "disabled") this._status = "disconnected";
    callHook(this._hooks.onDisconnected, error);
    // Reconnect unless close() was called (and no call came after it).
    if (this._status === "disconnected") this._startConnecting();
  }

  // Heartbeats ----------------------------------------------------------------

  _startHeartbeat(interval) {
    this._stopHeartbeat();
    const beat = () => {
      this._heartbeatTimer = null;
      const ws = this._ws;
      if (ws === null || ws.readyState !== WebSocket.OPEN) return;
      let due = this._lastSent + interval - now();
      if (due < 1) {
        this._send(new Uint8Array([T.HEARTBEAT]));
        this._heartbeats++;
        due = interval;
      }
      this._heartbeatTimer = setTimeout(beat, Math.min(due, MAX_TIMER));
    };
    this._heartbeatTimer = setTimeout(beat, Math.min(interval, MAX_TIMER));
  }

  _stopHeartbeat() {
    if (this._heartbeatTimer !== null) clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  // Receiving -----------------------------------------------------------------

  _onMessage(ws, event) {
    if (ws !== this._ws) return;
    if (typeof event.data === "string") {
      console.warn("webwire: dropping a text message from the server");
      return;
    }
    const bytes = new Uint8Array(event.data);
    if (bytes.length === 0) return; // some servers send empty messages (Q13)
    let message;
    try {
      message = parse(bytes);
    } catch (e) {
      if (!(e instanceof Malformed)) throw e;
      console.warn(`webwire: dropping a malformed message from the server: ${e.message}`);
      return;
    }
    if (message.clientOnly || message.type === T.ACCEPT_CONF) {
      console.warn(`webwire: dropping an unexpected message of type ${message.type}`);
    } else if (message.type === T.SESSION_CREATED) {
      let session;
      try {
        session = sessionFromJSON(message.json);
      } catch (e) {
        console.warn(`webwire: ignoring an invalid session from the server: ${e.message}`);
        return;
      }
      this._setSession(session);
    } else if (message.type === T.SESSION_CLOSED) {
      this._clearSession();
      callHook(this._hooks.onSessionClosed);
    } else if (message.id !== undefined) {
      const pending = this._pending.get(idKey(message.id));
      if (pending !== undefined) pending.resolve(message);
    } else {
      const { name, encoding, payload } = message;
      callHook(this._hooks.onSignal, payloadObject({ name, encoding, payload }));
    }
  }

  // Session storage ---------------------------------------------------------

  _setSession(session) {
    this._session = session;
    this._store(JSON.stringify({ session: session.key }));
    callHook(this._hooks.onSessionCreated, session);
  }

  _clearSession() {
    this._session = null;
    this._store(null);
  }

  _storedKey() {
    const storage = this._storage;
    if (!storage) return null;
    let text;
    try {
      text =
        typeof storage.getItem === "function"
          ? storage.getItem(this._storageKey)
          : storage[this._storageKey];
    } catch {
      return null;
    }
    if (typeof text !== "string") return null;
    try {
      const key = JSON.parse(text)?.session;
      if (typeof key === "string" && key.length > 0) return key;
    } catch {
      // not ours, or damaged: treated as no session
    }
    return null;
  }

  _store(text) {
    const storage = this._storage;
    if (!storage) return;
    try {
      if (text === null) {
        if (typeof storage.removeItem === "function") storage.removeItem(this._storageKey);
        else delete storage[this._storageKey];
      } else if (typeof storage.setItem === "function") {
        storage.setItem(this._storageKey, text);
      } else {
        storage[this._storageKey] = text;
      }
    } catch (e) {
      console.warn(`webwire: cannot store the session: ${e.message}`);
    }
  }
}

/** A reply message as a result, or the WebWireError it stands for. */
function replyResult(message) {
  if (REPLY_ENCODINGS.has(message.type)) {
    return payloadObject({ payload: message.payload, encoding: message.encoding });
  }
  if (message.type === T.REPLY_ERROR) {
    throw new WebWireError("request", message.message, { code: message.code });
  }
  const [kind, text] = SPECIAL_REPLIES.get(message.type) ?? [
    "protocol",
    `unexpected reply of type ${message.type}`,
  ];
  throw new WebWireError(kind, text);
}

/** The session in a restore reply (its bytes whatever its type, as Go reads it). */
function sessionResult(message) {
  const reply = replyResult(message);
  try {
    return sessionFromJSON(utf8Decoder.decode(reply.payload));
  } catch (e) {
    throw new WebWireError("protocol", `the server sent an invalid session: ${e.message}`, {
      cause: e,
    });
  }
}
