// @ts-check
/**
 * The page parts the streamer and viewer pages share: the state word on <body>, the state
 * text, the viewer count, the error line and the debug panel. All DOM lives here and in the
 * page scripts; protocol.js and stats.js know nothing of it.
 *
 * Hook for tests and benchmarks/browser_timings.py: `window.netra` =
 *   { client, marks, timeOrigin, sampler, timeline, frames }
 * where `marks` is client.marks (performance.now() of each first milestone, page marks
 * included), `timeOrigin` is performance.timeOrigin (so marks of different pages compare:
 * timeOrigin + mark is wall-clock ms), and `frames` counts frames presented by the page's
 * main <video> (requestVideoFrameCallback), with the size of the last one and when it came.
 */

import { keepResumeKey, takeResumeKey } from "/static/reconnect.js";
import { StatsSampler, Timeline } from "/static/stats.js";

/** @typedef {import("/static/protocol.js").PageClient} PageClient */
/** @typedef {import("/static/protocol.js").NetraClient} NetraClient */
/** @typedef {import("/static/protocol.js").State} State */
/** @typedef {import("/static/stats.js").StatsSample} StatsSample */

/**
 * @template {Element} T
 * @param {string} selector
 * @returns {T}
 */
export function $(selector) {
  const element = document.querySelector(selector);
  if (!element) throw new Error(`page is missing ${selector}`);
  return /** @type {T} */ (element);
}

/**
 * The text a page shows for each state word. A `state:reason` key overrides it for one
 * reason (`reconnecting:streamer-reconnecting`), and a `state+playing` key while the page's
 * video still presents frames (a viewer whose signaling dropped but whose media did not).
 * @typedef {Record<State, string> & Record<string, string>} Labels
 */

/** A video that presented a frame this recently (ms) is playing. */
const PLAYING_WITHIN_MS = 1000;

/**
 * @typedef {object} FrameCounter
 * @property {number} count  frames presented so far
 * @property {number} width  of the last frame
 * @property {number} height
 * @property {number} lastAt  performance.now() of the last frame (0: none yet)
 */

/**
 * Count the frames a <video> presents, and mark the first one and the first 1280x720 one.
 * @param {HTMLVideoElement} video
 * @param {Record<string, number>} marks
 * @returns {FrameCounter}
 */
export function countFrames(video, marks) {
  /** @type {FrameCounter} */
  const counter = { count: 0, width: 0, height: 0, lastAt: 0 };
  if (!("requestVideoFrameCallback" in video)) return counter;
  /** @type {VideoFrameRequestCallback} */
  const onFrame = (now, metadata) => {
    counter.count += 1;
    counter.lastAt = now;
    counter.width = metadata.width;
    counter.height = metadata.height;
    if (!("firstFrame" in marks)) marks.firstFrame = now;
    if (!("first720" in marks) && metadata.width === 1280 && metadata.height === 720) {
      marks.first720 = now;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return counter;
}

/** @param {number} ms  performance.now() */
function clock(ms) {
  return `${(ms / 1000).toFixed(3)} s`;
}

/**
 * @param {StatsSample} s
 * @returns {[string, string][]}
 */
function statsRows(s) {
  const size = s.frameWidth && s.frameHeight ? `${s.frameWidth}x${s.frameHeight}` : "–";
  /** @param {unknown} v */
  const show = (v) => (v === null || v === undefined ? "–" : String(v));
  const rows = /** @type {[string, string][]} */ ([
    ["direction", s.direction],
    ["codec", show(s.codec)],
    ["video kbit/s", show(s.videoKbps)],
    ["audio kbit/s", show(s.audioKbps)],
    ["frame size", size],
    ["frames/s", show(s.framesPerSecond)],
  ]);
  if (s.direction === "send") {
    rows.push(["frames encoded", show(s.framesEncoded)]);
    rows.push(["target kbit/s", show(s.targetBitrateKbps)]);
    rows.push(["quality limit", show(s.qualityLimitationReason)]);
  } else {
    rows.push(["frames decoded", show(s.framesDecoded)]);
    rows.push(["freezes", show(s.freezeCount)]);
  }
  rows.push(["keyframes", show(s.keyFrames)]);
  rows.push(["PLIs", show(s.pliCount)]);
  rows.push(["packets lost", show(s.packetsLost)]);
  rows.push(["RTT ms", show(s.roundTripTimeMs)]);
  return rows;
}

/** @param {StatsSample} s */
function statsLine(s) {
  const size = s.frameWidth && s.frameHeight ? `${s.frameWidth}x${s.frameHeight}` : "-";
  const frames = s.direction === "send" ? s.framesEncoded : s.framesDecoded;
  return (
    `${clock(s.at)}  ${size} ${s.framesPerSecond ?? "-"}fps  ` +
    `${s.videoKbps ?? "-"} kbit/s  frames ${frames ?? "-"}  lost ${s.packetsLost ?? "-"}  ` +
    `rtt ${s.roundTripTimeMs ?? "-"} ms`
  );
}

/**
 * What the timeline shows of a signaling message besides its type.
 * @param {any} message
 */
function signalDetail(message) {
  switch (message.type) {
    case "candidate":
      return message.candidate ? message.candidate.candidate : "end";
    case "viewers":
      return String(message.count);
    case "stream-ended":
    case "stream-stalled":
      return String(message.reason);
    case "server-shutdown":
      return `retryAfter=${message.retryAfter}`;
    case "error":
      return `${message.code}: ${message.message}`;
    case "joined":
      return `live=${message.live} viewers=${message.viewers} resumed=${message.resumed}`;
    default:
      return "";
  }
}

/** The collapsible debug panel both pages share, appended to <main>. */
const DEBUG_PANEL = `
  <summary>Debug</summary>
  <div class="debug-grid">
    <section>
      <h2>Stats (every second)</h2>
      <table data-role="stats"></table>
      <pre data-role="stats-log"></pre>
    </section>
    <section>
      <h2>State timeline</h2>
      <ol data-role="timeline"></ol>
    </section>
  </div>`;

function addDebugPanel() {
  const panel = document.createElement("details");
  panel.className = "debug";
  panel.dataset.role = "debug";
  panel.innerHTML = DEBUG_PANEL;
  (document.querySelector("main") ?? document.body).append(panel);
}

/**
 * Bind a client to the shared page parts and start the debug panel.
 * @param {PageClient} client
 * @param {Labels} labels  the text shown for each state word
 * @param {HTMLVideoElement | null} video  the page's main video, whose frames are counted
 */
export function bindPage(client, labels, video) {
  addDebugPanel();
  const body = document.body;
  /** @type {FrameCounter} */
  const frames = video
    ? countFrames(video, client.marks)
    : { count: 0, width: 0, height: 0, lastAt: 0 };
  const stateTexts = document.querySelectorAll("[data-role=state]");
  const errorLine = /** @type {HTMLElement} */ ($("[data-role=error]"));
  const count = $("[data-role=viewer-count]");
  const timelineList = $("[data-role=timeline]");
  const statsTable = $("[data-role=stats]");
  const statsLog = $("[data-role=stats-log]");

  const timeline = new Timeline();
  const sampler = new StatsSampler();

  const playing = () => frames.lastAt > 0 && performance.now() - frames.lastAt < PLAYING_WITHIN_MS;

  /** @param {State} state @param {string} reason @param {string} [message] */
  const show = (state, reason, message) => {
    const isPlaying = playing();
    body.dataset.state = state;
    body.dataset.reason = reason;
    body.dataset.playing = String(isPlaying);
    const text =
      labels[`${state}:${reason}`] ??
      (isPlaying ? labels[`${state}+playing`] : undefined) ??
      labels[state];
    for (const element of stateTexts) element.textContent = text;
    if (state === "error") {
      errorLine.textContent = message ? `${reason}: ${message}` : reason;
      errorLine.hidden = false;
    } else {
      errorLine.hidden = true;
      errorLine.textContent = "";
    }
  };
  let lastMessage = /** @type {string | undefined} */ (undefined);
  show(client.state, client.reason);

  client.addEventListener("statechange", (event) => {
    const { state, reason, message } = /** @type {CustomEvent} */ (event).detail;
    lastMessage = message;
    show(state, reason, message);
    timeline.record("state", state, message ? `${reason}: ${message}` : reason);
  });
  client.addEventListener("viewers", (event) => {
    count.textContent = String(/** @type {CustomEvent} */ (event).detail.count);
  });
  client.addEventListener("peerconnection", (event) => {
    const pc = /** @type {CustomEvent} */ (event).detail.pc;
    timeline.watch(pc);
    sampler.attach(pc);
  });
  client.addEventListener("message", (event) => {
    const { direction, message } = /** @type {CustomEvent} */ (event).detail;
    if (message.type === "ping" || message.type === "pong") return;
    const arrow = direction === "up" ? "↑" : "↓";
    timeline.record("signal", `${arrow} ${message.type}`, signalDetail(message));
  });
  client.addEventListener("servererror", (event) => {
    const { code, message, ref } = /** @type {CustomEvent} */ (event).detail;
    timeline.record("server-error", code, `${message}${ref ? ` (ref ${ref})` : ""}`);
  });

  timeline.addEventListener("entry", (event) => {
    const entry = /** @type {CustomEvent} */ (event).detail;
    const item = document.createElement("li");
    item.textContent = `${clock(entry.at)}  ${entry.what} = ${entry.value}${
      entry.detail ? `  (${entry.detail})` : ""
    }`;
    timelineList.append(item);
    while (timelineList.childElementCount > timeline.limit) timelineList.firstElementChild?.remove();
  });
  timeline.record("state", client.state, client.reason);

  sampler.addEventListener("sample", (event) => {
    const sample = /** @type {CustomEvent<StatsSample>} */ (event).detail;
    statsTable.replaceChildren(
      ...statsRows(sample).map(([name, value]) => {
        const row = document.createElement("tr");
        const th = document.createElement("th");
        const td = document.createElement("td");
        th.textContent = name;
        td.textContent = value;
        row.append(th, td);
        return row;
      }),
    );
    statsLog.textContent = sampler.history.slice(-15).map(statsLine).join("\n");
  });
  sampler.start();

  // Whether the video plays changes without any event (frames stop coming): look four times
  // a second, and redraw only on a change.
  setInterval(() => {
    if (String(playing()) !== body.dataset.playing) show(client.state, client.reason, lastMessage);
  }, 250);
  // The network is back: no need to sit out the rest of a back-off.
  window.addEventListener("online", () => client.retryNow());
  /** @type {any} */ (window).netra = {
    client,
    marks: client.marks,
    timeOrigin: performance.timeOrigin,
    sampler,
    timeline,
    frames,
  };
  return { sampler, timeline, frames };
}

/**
 * What the client does as its page goes away (a reload, a closed tab, another address). The
 * server cannot tell a closed tab from a dropped network and would keep the session for its
 * grace period. So a live streamer leaves its resume key for a reload of this tab
 * (reconnect.js keepResumeKey): a reload gets the session back, and after Go live its viewers
 * play on. Every other page leaves the room at once: a viewer would otherwise count for the
 * grace period, and an idle streamer would hold the room's one streamer place (a reloaded
 * viewer gains nothing from a resume: it has no peer connection, and only the server offers).
 * @param {NetraClient} client
 */
export function endWithPage(client) {
  window.addEventListener("pagehide", () => {
    if (client.role === "streamer" && client.publishing) {
      keepResumeKey(sessionStorage, client.roomId, client.role, client.resumeKey);
    } else if (!client.stopped) {
      client.stop("page-closed");
    }
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    // Back from the back/forward cache: this page goes on with its own session, so the key
    // it left is not for another page to take; a page that left joins again.
    takeResumeKey(sessionStorage, client.roomId, client.role);
    if (client.stopped && client.role === "viewer") client.connect();
  });
}

/**
 * Show a page that cannot start (a bad room id in the URL) as `error`.
 * @param {string} reason
 * @param {string} message
 */
export function showFatal(reason, message) {
  document.body.dataset.state = "error";
  document.body.dataset.reason = reason;
  for (const element of document.querySelectorAll("[data-role=state]")) {
    element.textContent = "Error";
  }
  const line = document.querySelector("[data-role=error]");
  if (line instanceof HTMLElement) {
    line.textContent = `${reason}: ${message}`;
    line.hidden = false;
  }
}
