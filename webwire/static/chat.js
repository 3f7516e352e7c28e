/**
 * The chat page (chat.html): a WebWire client of the ChatApplication served
 * at /chat on the page's own host (webwire/demo.py has the contract).
 *
 * webwire.js keeps the session key in localStorage and restores the session
 * on every (re)connection, so a reload stays signed in; after each
 * connection the page asks "who", which also announces a restored user as
 * online. User text only ever reaches the page through textContent.
 */

import { WebWireClient, WebWireError } from "/webwire.js";

const $ = (id) => document.getElementById(id);
const noMessages = $("no-messages");
const NAME_KEY = "webwire-chat:name"; // shown while the session is being restored
const HISTORY_KEY = "webwire-chat:history"; // this tab's messages, kept across reloads
const HISTORY_LENGTH = 200;
const COLORS = [
  "#1a7f5a", "#8a4fd6", "#c2410c", "#2563eb", "#be185d", "#0f766e", "#a16207", "#4d7c0f", "#b91c1c",
];

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const client = new WebWireClient(`${scheme}//${location.host}/chat`, {
  hooks: {
    onConnected,
    onDisconnected,
    onSignal,
    onSessionCreated,
    onSessionClosed: () => showSignIn("You have been signed out."),
    onSessionLost: () => showSignIn("Your session has ended; please sign in again."),
  },
});
window.chatClient = client; // for the console (and the tests)

let everConnected = false;
let myName = null;

// Connection ----------------------------------------------------------------

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function onConnected() {
  everConnected = true;
  setStatus("connected", "Connected");
  if (client.session !== null) showChat();
  else if ($("signin").hidden) showSignIn(); // shown while restoring; no session after all
  refreshOnline();
}

function onDisconnected() {
  setStatus(everConnected ? "reconnecting" : "connecting", everConnected ? "Reconnecting…" : "Connecting…");
}

async function refreshOnline() {
  try {
    const reply = await client.request("who");
    showOnline(JSON.parse(reply.text()));
  } catch (e) {
    if (!isConnectionError(e)) console.warn("chat: who failed:", e);
  }
}

function isConnectionError(e) {
  return e instanceof WebWireError && (e.kind === "disconnected" || e.kind === "timeout");
}

// Signals -------------------------------------------------------------------

function onSignal(signal) {
  let document;
  try {
    document = JSON.parse(signal.text());
  } catch {
    console.warn(`chat: ignoring signal ${signal.name}: not JSON`);
    return;
  }
  if (signal.name === "message") {
    if (addMessage(document)) remember(document);
  } else if (signal.name === "presence") {
    showOnline(document);
  }
}

/** Show a message; false if it is not one. */
function addMessage({ user, text, time }) {
  if (typeof user !== "string" || typeof text !== "string") return false;
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  noMessages.remove();

  const item = document.createElement("li");
  item.className = user === myName ? "msg mine" : "msg";
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = user;
  who.style.color = colorOf(user);
  meta.append(who);
  const when = new Date(time);
  if (!Number.isNaN(when.getTime())) {
    const stamp = document.createElement("time");
    stamp.dateTime = when.toISOString();
    stamp.title = when.toLocaleString();
    stamp.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    meta.append(stamp);
  }
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  item.append(meta, body);
  list.append(item);
  if (atBottom || user === myName) item.scrollIntoView({ block: "end" });
  return true;
}

function remember({ user, text, time }) {
  try {
    const history = JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? "[]");
    history.push({ user, text, time });
    sessionStorage.setItem(HISTORY_KEY, JSON.stringify(history.slice(-HISTORY_LENGTH)));
  } catch {
    // no storage, or damaged: the history is just not kept
  }
}

function restoreHistory() {
  try {
    for (const message of JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? "[]")) {
      addMessage(message);
    }
  } catch {
    // see remember
  }
}

function forgetHistory() {
  try {
    sessionStorage.removeItem(HISTORY_KEY);
  } catch {
    // see remember
  }
  $("messages").replaceChildren(noMessages);
}

function showOnline(names) {
  if (!Array.isArray(names)) return;
  const list = $("online");
  list.replaceChildren(
    ...names
      .filter((name) => typeof name === "string")
      .map((name) => {
        const item = document.createElement("li");
        item.textContent = name;
        if (name === myName) item.title = "you";
        return item;
      }),
  );
  $("online-count").textContent = String(list.children.length);
}

/** A stable, readable color per user name (FNV-1a hash into a palette). */
function colorOf(name) {
  let hash = 0x811c9dc5;
  for (const c of name) hash = Math.imul(hash ^ c.codePointAt(0), 0x01000193) >>> 0;
  return COLORS[hash % COLORS.length];
}

// Session -------------------------------------------------------------------

function onSessionCreated(session) {
  const user = session.info?.user;
  if (typeof user === "string") setName(user);
}

function setName(name) {
  myName = name;
  $("me-name").textContent = name;
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // private mode and the like: the name is just not remembered
  }
}

function showChat() {
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("me").hidden = myName === null;
  $("signout").hidden = false;
  $("text").focus();
}

function showSignIn(notice) {
  myName = null;
  try {
    localStorage.removeItem(NAME_KEY);
  } catch {
    // see setName
  }
  $("chat").hidden = true;
  $("me").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  const text = $("signin-notice");
  if (notice) {
    text.textContent = notice;
    text.classList.add("notice");
  }
  $("name").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  const error = $("signin-error");
  error.textContent = "";
  if (!name) {
    error.textContent = "Please enter a name.";
    return;
  }
  $("signin-button").disabled = true;
  try {
    await client.request("login", name);
    showChat();
    refreshOnline();
  } catch (e) {
    if (e.kind === "request" && e.code === "SESSION_ACTIVE") {
      showChat();
    } else {
      error.textContent = explain(e, "Could not sign in");
    }
  } finally {
    $("signin-button").disabled = false;
  }
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("say-form").requestSubmit();
  }
});

$("text").addEventListener("input", fitText);

/** Grow the message box with its text (up to its CSS max-height). */
function fitText() {
  const box = $("text");
  box.style.height = "auto";
  box.style.height = `${box.scrollHeight + 2}px`;
}

$("say-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value;
  const error = $("say-error");
  error.textContent = "";
  if (!text.trim()) return;
  $("send").disabled = true;
  try {
    await client.request("say", text);
    if (input.value === text) {
      input.value = "";
      fitText();
    }
  } catch (e) {
    if (e.kind === "request" && e.code === "NOT_SIGNED_IN") {
      await client.closeSession().catch(() => {});
      showSignIn("Your session has ended; please sign in again.");
    } else {
      error.textContent = explain(e, "Not sent");
    }
  } finally {
    $("send").disabled = false;
    input.focus();
  }
});

$("signout").addEventListener("click", async () => {
  $("signout").disabled = true;
  try {
    if (client.status !== "connected") throw new WebWireError("disconnected", "not connected");
    await client.request("logout", null, { timeout: 10000 });
  } catch (e) {
    // Not connected (or no answer): forget the session here at least.
    console.warn("chat: signing out without the server:", e.message);
    await client.closeSession().catch(() => {});
  } finally {
    $("signout").disabled = false;
  }
  showSignIn();
  forgetHistory();
  const notice = $("signin-notice");
  notice.textContent = "You have signed out. Come back soon!";
  notice.classList.remove("notice");
});

function explain(e, what) {
  if (!(e instanceof WebWireError)) return `${what}: ${e}`;
  switch (e.kind) {
    case "request":
      return `${what}: ${e.message || e.code}`;
    case "disconnected":
    case "timeout":
      return `${what}: the connection was lost. Please try again.`;
    default:
      return `${what}: ${e.message}`;
  }
}

// Start ---------------------------------------------------------------------

let stored = null;
try {
  stored = localStorage.getItem(NAME_KEY);
} catch {
  // see setName
}
if (stored !== null) {
  // Probably still signed in: show the chat while the session is restored.
  setName(stored);
  restoreHistory();
  showChat();
} else {
  showSignIn();
}
client.connect().catch((e) => setStatus("reconnecting", explain(e, "Cannot connect")));
