// @ts-check
/**
 * The viewer page: join the room, wait for the streamer, play what the server offers.
 * Window hook: see ui.js (`window.netra`); page marks are firstFrame and first720
 * (requestVideoFrameCallback), in performance.now() since navigation.
 */

import { NetraClient, roomFromPath, signalingUrl } from "/static/protocol.js";
import { $, bindPage, showFatal } from "/static/ui.js";

/** @type {Record<import("/static/protocol.js").State, string>} */
const LABELS = {
  waiting: "Waiting for the streamer…",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Connection lost — reconnecting…",
  ended: "Stream ended",
  error: "Error",
};

const video = /** @type {HTMLVideoElement} */ ($("[data-role=remote-video]"));
const unmute = /** @type {HTMLButtonElement} */ ($("[data-action=unmute]"));

const room = roomFromPath(location.pathname);
if (room === null) {
  showFatal("invalid-room", "a room id is 1–64 of A–Z, a–z, 0–9, “-” and “_”");
} else {
  start(room);
}

/** @param {string} room */
function start(room) {
  $("[data-role=room]").textContent = room;
  document.title = `Netra — watching ${room}`;

  const client = new NetraClient({ url: signalingUrl(location), roomId: room, role: "viewer" });
  bindPage(client, LABELS, video);

  client.addEventListener("track", (event) => {
    const { stream } = /** @type {CustomEvent} */ (event).detail;
    if (video.srcObject !== stream) video.srcObject = stream;
    // Muted autoplay is always allowed; play() is called in case autoplay did not start it.
    video.play().catch(() => {});
  });
  client.addEventListener("statechange", (event) => {
    const { state } = /** @type {CustomEvent} */ (event).detail;
    if (state === "ended" || state === "waiting") video.srcObject = null;
  });

  unmute.addEventListener("click", () => {
    video.muted = !video.muted;
    unmute.textContent = video.muted ? "Unmute" : "Mute";
    video.play().catch(() => {});
  });

  client.connect();
}
