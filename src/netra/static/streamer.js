// @ts-check
/**
 * The streamer page: join the room at once (to show the viewer count), then on "Go live"
 * open the camera and publish. Publishing needs a token (token.js): without one, or with one
 * the server refuses, the page asks for it and says how to get one. Window hook: see ui.js (`window.netra`); page marks are
 * goLive (the click) and mediaReady (getUserMedia resolved).
 */

import { NetraClient, roomFromPath, signalingUrl } from "/static/protocol.js";
import { takeResumeKey } from "/static/reconnect.js";
import { forgetToken, keepToken, takeToken } from "/static/token.js";
import { $, bindPage, endWithPage, showFatal } from "/static/ui.js";

/** @type {import("/static/ui.js").Labels} */
const LABELS = {
  waiting: "Not live yet",
  connecting: "Going live…",
  live: "You are live",
  stalled: "Stalled", // a viewer's state: the server never stalls a streamer's page
  reconnecting: "Connection lost — reconnecting…",
  ended: "Stream stopped",
  error: "Error",
};

/** What the fake camera and a real one are asked for: 720p30 plus a microphone. */
const MEDIA = { video: { width: 1280, height: 720, frameRate: 30 }, audio: true };

const preview = /** @type {HTMLVideoElement} */ ($("[data-role=local-video]"));
const goLive = /** @type {HTMLButtonElement} */ ($("[data-action=go-live]"));
const stop = /** @type {HTMLButtonElement} */ ($("[data-action=stop]"));
const copy = /** @type {HTMLButtonElement} */ ($("[data-action=copy]"));
const shareLink = /** @type {HTMLInputElement} */ ($("[data-role=share-link]"));
const tokenForm = /** @type {HTMLFormElement} */ ($("[data-role=token-form]"));
const tokenInput = /** @type {HTMLInputElement} */ ($("[data-role=token-input]"));

const room = roomFromPath(location.pathname);
if (room === null) {
  goLive.disabled = true;
  showFatal("invalid-room", "a room id is 1–64 of A–Z, a–z, 0–9, “-” and “_”");
} else {
  start(room);
}

/** @param {string} room */
function start(room) {
  $("[data-role=room]").textContent = room;
  document.title = `Netra — live in ${room}`;
  shareLink.value = `${location.origin}/watch/${encodeURIComponent(room)}`;

  $("[data-role=room-name]").textContent = room;
  const token = takeToken(location, history, localStorage) ?? undefined;
  // A reload of a live page gets its session back (and with Go live, the stream its viewers
  // still hold): see ui.js endWithPage.
  const resumeKey = takeResumeKey(sessionStorage, room, "streamer");
  const client = new NetraClient({
    url: signalingUrl(location),
    roomId: room,
    role: "streamer",
    token,
    resumeKey,
  });
  endWithPage(client);
  bindPage(client, LABELS, preview);
  /** @type {MediaStream | null} */
  let stream = null;
  let starting = false;

  const updateButtons = () => {
    const active = ["connecting", "live", "reconnecting"].includes(client.state) && stream !== null;
    goLive.disabled = active || starting;
    stop.disabled = !active;
  };

  /** Turn the camera off (its light too) and clear the preview. */
  const release = () => {
    stream?.getTracks().forEach((track) => track.stop());
    stream = null;
    preview.srcObject = null;
    document.body.classList.remove("has-preview");
  };

  /** Ask for a token; the page joins once it has one. */
  const askForToken = () => {
    tokenForm.hidden = false;
    goLive.disabled = true;
    tokenInput.focus();
  };

  client.addEventListener("statechange", (event) => {
    const { reason } = /** @type {CustomEvent} */ (event).detail;
    // A final error (say, `replaced`): nothing will be published again until Go live.
    if (client.stopped) release();
    if (reason === "unauthorized" || reason === "forbidden") {
      forgetToken(localStorage);
      askForToken();
      return;
    }
    updateButtons();
  });

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = tokenInput.value.trim();
    if (!value) return;
    keepToken(localStorage, value);
    client.token = value;
    tokenForm.hidden = true;
    client.connect();
    updateButtons();
  });

  goLive.addEventListener("click", async () => {
    client.marks.goLive = performance.now();
    starting = true;
    updateButtons();
    try {
      // After a refused offer the camera is still on: publish it again rather than open it twice.
      if (!stream || !stream.getTracks().some((track) => track.readyState === "live")) {
        release();
        stream = await navigator.mediaDevices.getUserMedia(MEDIA);
      }
    } catch (error) {
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      client.reportError("camera-unavailable", text);
      return;
    } finally {
      starting = false;
    }
    client.marks.mediaReady = performance.now();
    preview.srcObject = stream;
    document.body.classList.add("has-preview");
    client.publish(stream);
    updateButtons();
  });

  stop.addEventListener("click", () => {
    client.stop("stopped");
    release();
    updateButtons();
  });

  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(shareLink.value);
    } catch {
      shareLink.select();
      document.execCommand("copy");
    }
    copy.textContent = "Copied";
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  });

  if (token === undefined) {
    askForToken();
    return;
  }
  client.connect();
  updateButtons();
}
