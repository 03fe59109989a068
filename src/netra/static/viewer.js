// @ts-check
/**
 * The viewer page: join the room, wait for the streamer, play what the server offers; with
 * `?via=whep`, play over WHEP instead of the WebSocket protocol (same states, same page).
 * Window hook: see ui.js (`window.netra`); page marks are firstFrame and first720
 * (requestVideoFrameCallback), in performance.now() since navigation.
 */

import { NetraClient, roomFromPath, signalingUrl } from "/static/protocol.js";
import { takeToken } from "/static/token.js";
import { $, bindPage, endWithPage, showFatal } from "/static/ui.js";
import { WhepClient } from "/static/whep.js";

/** @type {import("/static/ui.js").Labels} */
const LABELS = {
  waiting: "Waiting for the streamer…",
  connecting: "Connecting…",
  live: "Live",
  stalled: "Stream stalled: no video from the streamer",
  reconnecting: "Connection lost — reconnecting…",
  ended: "Stream ended",
  error: "Error",
  // The streamer's connection to the server is being replaced; the stream goes on.
  "reconnecting:streamer-reconnecting": "Streamer reconnecting…",
  // Our signaling dropped, our media did not (the session outlives its socket).
  "reconnecting+playing": "Reconnecting (video still playing)",
};

const video = /** @type {HTMLVideoElement} */ ($("[data-role=remote-video]"));
const muteToggle = /** @type {HTMLButtonElement} */ ($("[data-action=mute]"));
const unmutePrompt = /** @type {HTMLButtonElement} */ ($("[data-action=click-to-unmute]"));

const room = roomFromPath(location.pathname);
if (room === null) {
  showFatal("invalid-room", "a room id is 1–64 of A–Z, a–z, 0–9, “-” and “_”");
} else {
  start(room);
}

/**
 * Sound by default where the browser allows it: play unmuted first; if the autoplay policy
 * refuses (no click on the page yet), play muted and show the "Click to unmute" prompt.
 * @param {import("/static/stats.js").Timeline} timeline  where the outcome is recorded
 */
function bindSound(timeline) {
  /** What the user wants; the browser may still force `muted` until a click. */
  let wantSound = true;

  const render = () => {
    muteToggle.textContent = video.muted ? "Unmute" : "Mute";
    // Shown while the browser, not the user, keeps the sound off.
    unmutePrompt.hidden = !(wantSound && video.muted && video.srcObject !== null);
  };

  const play = async () => {
    video.muted = !wantSound;
    try {
      await video.play();
    } catch (error) {
      // AbortError: a newer srcObject or play() took over; that one reports instead.
      if (!(error instanceof DOMException) || error.name !== "NotAllowedError" || video.muted) {
        return;
      }
      video.muted = true; // muted autoplay is always allowed
      timeline.record("sound", "muted", "the browser refused sound before a click");
      await video.play().catch(() => {});
    } finally {
      render();
    }
  };

  /** @param {boolean} sound  the user's choice, made by a click (so unmuting is allowed) */
  const choose = (sound) => {
    wantSound = sound;
    void play();
  };

  video.addEventListener("volumechange", render);
  unmutePrompt.addEventListener("click", () => choose(true));
  muteToggle.addEventListener("click", () => choose(video.muted));
  render();
  return { play, render };
}

/** @param {string} room */
function start(room) {
  $("[data-role=room]").textContent = room;
  document.title = `Netra — watching ${room}`;

  // Only a server started with --viewers-need-token asks viewers for one.
  const token = takeToken(location, history, localStorage) ?? undefined;
  const viaWhep = new URLSearchParams(location.search).get("via") === "whep";
  let client;
  if (viaWhep) {
    client = new WhepClient({ endpoint: `/whep/${encodeURIComponent(room)}`, token });
  } else {
    client = new NetraClient({ url: signalingUrl(location), roomId: room, role: "viewer", token });
    endWithPage(client);
  }
  document.body.dataset.via = viaWhep ? "whep" : "ws";
  const { timeline } = bindPage(client, LABELS, video);
  const sound = bindSound(timeline);

  client.addEventListener("track", (event) => {
    const { stream } = /** @type {CustomEvent} */ (event).detail;
    if (video.srcObject === stream) return; // the second track of the same stream
    video.srcObject = stream;
    void sound.play();
  });
  client.addEventListener("statechange", (event) => {
    const { state } = /** @type {CustomEvent} */ (event).detail;
    if (state === "ended" || state === "waiting") {
      video.srcObject = null;
      sound.render();
    }
  });

  client.connect();
}
