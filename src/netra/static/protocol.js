// @ts-check
/**
 * Netra's browser client: the signaling protocol of docs/protocol.md and the
 * RTCPeerConnection it drives. No DOM here; pages bind UI to the events below.
 *
 * Events (all CustomEvent):
 *   statechange    {state, previous, reason, message?, at}   the state word changed
 *   viewers        {count}                                    the room's viewer count
 *   track          {track, stream}                            viewer: a remote track arrived
 *   peerconnection {pc}                                       a new RTCPeerConnection exists
 *   servererror    {code, message, ref}                       the server sent `error`
 *   message        {direction: 'up'|'down', message}          every signaling message (debug)
 *
 * Timing hooks (used by benchmarks/browser_timings.py): `client.marks` holds the first
 * performance.now() of each milestone: wsOpen, joined, offerSent, offerReceived,
 * answerReceived, answerSent, firstTrack, pcConnected, live. Pages add their own marks to
 * the same object (goLive, mediaReady, firstFrame, first720).
 */

/** @typedef {'streamer' | 'viewer'} Role */
/**
 * @typedef {'waiting' | 'connecting' | 'live' | 'stalled' | 'reconnecting' | 'ended' | 'error'}
 *   State
 */

/**
 * @typedef {object} StateChange
 * @property {State} state
 * @property {State} previous
 * @property {string} reason  a protocol word: `joined`, `streamer-left`, `no-media`, …
 * @property {string} [message]  human text, for errors
 * @property {number} at  performance.now()
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} url  ws(s)://host/ws
 * @property {string} roomId
 * @property {Role} role
 * @property {string} [token]
 * @property {string | null} [resumeKey]  kept by an earlier page of this tab (a reload): the
 *   first join asks for that session back
 * @property {number} [pingInterval]  ms between pings (10 000)
 * @property {number} [backoffBase]  first reconnect delay in ms (BACKOFF_BASE_MS)
 * @property {number} [backoffMax]  longest reconnect delay in ms (BACKOFF_MAX_MS)
 * @property {number} [openTimeout]  ms a WebSocket may take to open (10 000)
 * @property {number} [disconnectedGrace]  ms a viewer's peer connection may stay
 *   `disconnected` before the viewer starts over (8 000)
 * @property {number} [republishAfter]  ms a streamer's peer connection may stay
 *   `disconnected` before the streamer publishes on a new one (2 000)
 */

import { BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffDelay, shutdownDelay } from "/static/reconnect.js";
import { preferCodec, undecodableCodecs } from "/static/sdp.js";

/** Room ids: 1–64 of [A-Za-z0-9_-] (docs/protocol.md, `join`). */
export const ROOM_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * @param {unknown} roomId
 * @returns {boolean}
 */
export function isValidRoomId(roomId) {
  return typeof roomId === "string" && ROOM_ID_PATTERN.test(roomId);
}

/**
 * The room id of /stream/{room} or /watch/{room}; null when the path has none or a bad one.
 * @param {string} pathname
 * @returns {string | null}
 */
export function roomFromPath(pathname) {
  const match = /^\/(?:stream|watch)\/([^/]+)\/?$/.exec(pathname);
  if (!match) return null;
  let room;
  try {
    room = decodeURIComponent(match[1]);
  } catch {
    return null;
  }
  return isValidRoomId(room) ? room : null;
}

/**
 * The WebSocket URL for a page served at `location`.
 * @param {{protocol: string, host: string}} location
 */
export function signalingUrl(location) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/*
 * Which failures stop the client (docs/protocol.md, "Reconnecting"). A final one puts it in
 * `error`, closes everything and never reconnects; only connect() or publish() starts again:
 *   - `invalid-room` (the page's own check) and a `join` refused for what it is (a bad room
 *     id, `unauthorized`, `forbidden`): the same join would be refused again;
 *   - `streamer-exists` on the first join of a page: there is another streamer;
 *   - `replaced`, or a close with 4001: a newer connection of this same client took over;
 *   - `too-many-errors`, or a close with 1008: the server gave up on this connection.
 * Everything else is recoverable: the client reconnects after any later drop, whatever its
 * state. In particular:
 *   - a dropped WebSocket: the session outlives it on the server, so the client keeps its
 *     peer connection and media, reconnects and joins with its resume key; `resumed: true`
 *     gives everything back with nothing renegotiated;
 *   - `streamer-exists` on a re-join: the server has not yet noticed that our old socket
 *     died; retry with back-off, `reconnecting`;
 *   - a `join` refused because the server is busy (`too-many-joins`, `too-many-connections`,
 *     `room-full`, `too-many-rooms`, `rate-limited`, `directory-unavailable`): retry with a
 *     longer back-off;
 *   - `internal-error` on `join`, and `not-joined` (we and the server disagree on whether we
 *     are joined): start over on a new socket, with back-off;
 *   - refusals of one `offer` or `answer` (`negotiation-failed`, `out-of-order`, …): `error`
 *     for that negotiation, the session stays up;
 *   - a streamer's failed peer connection, or `stream-ended` other than `streamer-left` for a
 *     streamer who never pressed Stop: publish again on the same session, `reconnecting`;
 *   - a viewer's failed peer connection: leave and join afresh, which brings a new offer.
 */

/** Close codes of the server after which reconnecting would repeat the failure. */
const FINAL_CLOSE_CODES = new Map([
  [1008, ["too-many-errors", "the server closed the connection (1008)"]],
  [4001, ["replaced", "this client joined again from another connection (4001)"]],
]);

/** `join` refusals that say "not now" rather than "never". */
const BUSY_CODES = new Set([
  "too-many-joins",
  "too-many-connections",
  "room-full",
  "too-many-rooms",
  "rate-limited",
  "directory-unavailable",
]);
/** A busy server is retried more gently: from 2 s, doubling, up to 30 s. */
const BUSY_BACKOFF_BASE_MS = 2000;
const BUSY_BACKOFF_MAX_MS = 30_000;

/** What a probe (see retryNow) waits for any answer on an open socket. */
const PROBE_TIMEOUT_MS = 2000;

/** What still concerns us between a `leave` that starts over and the next `joined`. */
const STILL_OURS = new Set(["joined", "error", "pong", "server-shutdown"]);

const WS_OPEN = 1;

/**
 * What every page client is to the page (ui.js bindPage): a state word with its reason, the
 * first time of each milestone, and events (`statechange`, `viewers`, `peerconnection`,
 * `track`, …). NetraClient (the WebSocket protocol) and WhepClient (whep.js) extend it.
 */
export class PageClient extends EventTarget {
  /** @param {State} state  the state before anything happened */
  constructor(state) {
    super();
    /** @type {State} */
    this.state = state;
    /** @type {string} */
    this.reason = "init";
    /** @type {Record<string, number>} first performance.now() of each milestone */
    this.marks = {};
  }

  /** The network is back (the browser's `online` event): try now rather than after the
   * back-off. Clients that retry by themselves override it. */
  retryNow() {}

  /**
   * @param {State} state
   * @param {string} reason
   * @param {string} [message]
   */
  _setState(state, reason, message) {
    if (state === this.state && reason === this.reason) return;
    const previous = this.state;
    this.state = state;
    this.reason = reason;
    /** @type {StateChange} */
    const change = { state, previous, reason, at: performance.now() };
    if (message) change.message = message;
    this._emit("statechange", change);
  }

  /** @param {string} name */
  _mark(name) {
    if (!(name in this.marks)) this.marks[name] = performance.now();
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

export class NetraClient extends PageClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    // A streamer is `waiting` until it goes live; a viewer is `connecting` until it has joined
    // and knows whether there is a stream.
    super(options.role === "streamer" ? "waiting" : "connecting");
    this.url = options.url;
    this.roomId = options.roomId;
    /** @type {Role} */
    this.role = options.role;
    this.token = options.token;
    this.pingInterval = options.pingInterval ?? 10_000;
    this.backoffBase = options.backoffBase ?? BACKOFF_BASE_MS;
    this.backoffMax = options.backoffMax ?? BACKOFF_MAX_MS;
    this.openTimeout = options.openTimeout ?? 10_000;
    this.disconnectedGrace = options.disconnectedGrace ?? 8_000;
    this.republishAfter = options.republishAfter ?? 2_000;

    /** @type {string | null} */
    this.clientId = null;
    this.viewerCount = 0;
    /** Whether the room had a live stream at our last `joined`. */
    this.roomLive = false;
    /** Milliseconds of the last ping round trip on the WebSocket, or null. @type {number | null} */
    this.signalingRtt = null;

    /** @type {WebSocket | null} */
    this._ws = null;
    this._joined = false;
    /** @type {RTCIceServer[]} */
    this._iceServers = [];
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** Streamer: the stream to publish, kept across reconnects. @type {MediaStream | null} */
    this._stream = null;
    /** Viewer: the remote tracks of the current peer connection. @type {MediaStream | null} */
    this.remoteStream = null;
    /** From the last `joined` (single-use): sent in the next `join` to get this session back.
     * @type {string | null} */
    this._resumeKey = options.resumeKey ?? null;
    /** True once this page was joined, or holds a key from an earlier one: a later
     * `streamer-exists` is most likely our own old session (see "final" above). */
    this._rejoining = this._resumeKey !== null;
    /** True once stop() ran or a final error happened: no more reconnects. */
    this._stopped = false;
    /** Failed attempts since the session was last healthy; the back-off grows with it. */
    this._attempt = 0;
    /** A pending reconnect. @type {ReturnType<typeof setTimeout> | undefined} */
    this._retryTimer = undefined;
    /** A pending re-publish (streamer). @type {ReturnType<typeof setTimeout> | undefined} */
    this._publishTimer = undefined;
    /** Seconds the server asked us to stay away (`server-shutdown`), until the socket closes.
     * @type {number | null} */
    this._shutdownRetryAfter = null;
    /** After a `leave` that starts the session over: what the server still sends for the old
     * session is moot until the new `joined`. */
    this._discardUntilJoined = false;
    /** Viewer: why the stream is stalled (`no-media`, `streamer-reconnecting`), or null.
     * @type {string | null} */
    this._stall = null;
    /** Viewer: the reason of the last `stream-ended`, until a stream starts again.
     * @type {string | null} */
    this._endedReason = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this._pingTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._disconnectedTimer = undefined;
    this._lastInbound = 0;
    this._pingId = 0;
    /** @type {Map<number, number>} ping id → performance.now() when sent */
    this._pingsInFlight = new Map();
    /** Candidates not yet sent: gathered before our description went out, or while the
     * socket was down. @type {(RTCIceCandidateInit | null)[]} */
    this._heldCandidates = [];
    this._descriptionSent = false;
    this._endOfCandidatesSent = false;
    this._hasRemoteTrack = false;
  }

  // ---- public API -------------------------------------------------------------------------

  /** Open the WebSocket and join; after stop() or a final error, start a new session.
   * Idempotent while a socket is open or opening. */
  connect() {
    if (this._stopped) {
      this._stopped = false;
      this._rejoining = false;
      this._attempt = 0;
    }
    if (!this._ws) this._openSocket();
  }

  /** True after stop() or a final error: the client will not reconnect by itself. */
  get stopped() {
    return this._stopped;
  }

  /** The key that gets this session back on a new socket (null once it was left or lost). */
  get resumeKey() {
    return this._stopped ? null : this._resumeKey;
  }

  /** Streamer: whether it was told to publish and not to stop. */
  get publishing() {
    return this._stream !== null;
  }

  /**
   * Streamer: publish `stream` (at most one audio and one video track are sent). Joins first
   * if needed; when its peer connection fails, the same stream is published again on a new one.
   * @param {MediaStream} stream
   */
  publish(stream) {
    if (this.role !== "streamer") throw new Error("only a streamer publishes");
    // Publishing the same stream twice would be a second offer for one camera.
    if (this._stream === stream && this.pc && this.state !== "error") return;
    this._stream = stream;
    // Not joined: the next `joined` publishes (connect() first, so that a stopped client is
    // running again before anyone hears of the new state).
    if (!this._joined) this.connect();
    this._setState("connecting", "publishing");
    if (this._joined) void this._startPublishing();
  }

  /**
   * Leave the room for good: sends `leave`, closes the peer connection and the WebSocket,
   * and goes `ended`. The page stops its own tracks.
   * @param {string} [reason]
   */
  stop(reason = "stopped") {
    if (this._joined) this._send({ type: "leave" });
    this._resumeKey = null; // the session is gone: nothing to resume
    this._halt(1000, reason);
    this._setState("ended", reason);
  }

  /**
   * Put the client in `error` for a reason found outside the protocol (e.g. the camera was
   * refused), so that the state word stays the one source of truth for the page.
   * @param {string} reason
   * @param {string} [message]
   */
  reportError(reason, message) {
    this._setState("error", reason, message);
  }

  /** The network is back: reconnect now if a reconnect is pending; if a socket is open, make
   * sure it still carries anything (it may have died with the old network). */
  retryNow() {
    if (this._stopped) return;
    if (!this._ws) {
      if (this._retryTimer !== undefined) this._openSocket();
      return;
    }
    if (this._ws.readyState !== WS_OPEN) return;
    const asked = performance.now();
    this._send({ type: "ping", id: ++this._pingId });
    const ws = this._ws;
    setTimeout(() => {
      if (this._ws === ws && this._lastInbound < asked) this._dropSocket("ping-timeout");
    }, PROBE_TIMEOUT_MS);
  }

  // ---- WebSocket --------------------------------------------------------------------------

  _openSocket() {
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    const ws = new WebSocket(this.url);
    this._ws = ws;
    const openTimer = setTimeout(() => {
      if (this._ws === ws && ws.readyState !== WS_OPEN) this._dropSocket("open-timeout");
    }, this.openTimeout);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (this._ws !== ws) return;
      this._mark("wsOpen");
      this._lastInbound = performance.now();
      this._startPing();
      this._sendJoin();
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      this._lastInbound = performance.now();
      this._onFrame(event.data);
    };
    ws.onclose = (event) => {
      clearTimeout(openTimer);
      if (this._ws !== ws) return;
      this._onSocketGone(`socket-closed:${event.code}`, event.code);
    };
    // An error is always followed by a close; the close handler does the work.
    ws.onerror = () => {};
  }

  /**
   * Give up on the current socket at once (dead path, refused join) and reconnect; unlike
   * ws.close() this does not wait for a closing handshake that may never come.
   * @param {string} reason
   * @param {number} [delay]  ms before the next attempt (the back-off by default)
   */
  _dropSocket(reason, delay) {
    this._closeSocket(4000, reason);
    this._onSocketGone(reason, 4000, delay);
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  _closeSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    this._stopPing();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason.slice(0, 100));
    } catch {
      ws.close();
    }
  }

  /**
   * The socket is gone. The session outlives it on the server (docs/protocol.md,
   * "Reconnecting"), so the peer connection and its media stay: the next join resumes them.
   * @param {string} reason
   * @param {number} code
   * @param {number} [delay]  ms before the next attempt (the back-off by default)
   */
  _onSocketGone(reason, code, delay) {
    this._ws = null;
    this._joined = false;
    this._discardUntilJoined = false;
    this._stopPing();
    clearTimeout(this._publishTimer); // the next `joined` decides whether to publish again
    if (this._stopped) return;
    const final = FINAL_CLOSE_CODES.get(code);
    if (final) {
      this._fail(final[0], final[1]);
      return;
    }
    let wait = delay ?? this._nextDelay();
    if (this._shutdownRetryAfter !== null) {
      // The server is restarting and said when to come back: wait that long, then poll from
      // the shortest back-off again.
      wait = shutdownDelay(this._shutdownRetryAfter, this.backoffMax);
      reason = "server-shutdown";
      this._shutdownRetryAfter = null;
      this._attempt = 0;
    }
    // Whatever the state, `error` included: an error about one message is no reason to stay
    // offline (see "final" at the top).
    this._setState("reconnecting", reason, `retrying in ${Math.round(wait)} ms`);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = undefined;
      if (!this._stopped) this._openSocket();
    }, wait);
  }

  /** The next back-off delay; every failed attempt since the last healthy state doubles it. */
  _nextDelay() {
    return backoffDelay(this._attempt++, this.backoffBase, this.backoffMax);
  }

  /**
   * Stop for good: no socket, no peer connection, no stream, no timers.
   * @param {number} code  the close code for our socket
   * @param {string} reason
   */
  _halt(code, reason) {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    clearTimeout(this._publishTimer);
    this._joined = false;
    this._stream = null;
    this._stall = null;
    this._closePc();
    this._closeSocket(code, reason);
  }

  /**
   * A final error (see the top): stop, and say why.
   * @param {string} reason
   * @param {string} message
   */
  _fail(reason, message) {
    this._halt(1000, reason);
    this._setState("error", reason, message);
  }

  _sendJoin() {
    /** @type {Record<string, unknown>} */
    const join = { type: "join", roomId: this.roomId, role: this.role };
    if (this.token !== undefined) join.token = this.token;
    if (this._resumeKey !== null) join.resumeKey = this._resumeKey;
    this._send(join);
  }

  /** @param {Record<string, unknown>} message */
  _send(message) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WS_OPEN) return false;
    ws.send(JSON.stringify(message));
    this._emit("message", { direction: "up", message });
    return true;
  }

  _startPing() {
    this._stopPing();
    this._pingTimer = setInterval(() => {
      const now = performance.now();
      // Nothing heard for 2.5 ping intervals: the path is dead even if TCP has not noticed.
      if (now - this._lastInbound > this.pingInterval * 2.5) {
        this._dropSocket("ping-timeout");
        return;
      }
      const id = ++this._pingId;
      this._pingsInFlight.set(id, now);
      if (this._pingsInFlight.size > 8) {
        const oldest = this._pingsInFlight.keys().next().value;
        if (oldest !== undefined) this._pingsInFlight.delete(oldest);
      }
      this._send({ type: "ping", id });
    }, this.pingInterval);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = undefined;
  }

  // ---- server messages --------------------------------------------------------------------

  /** @param {unknown} data */
  _onFrame(data) {
    if (typeof data !== "string") return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== "object" || typeof message.type !== "string") return;
    this._emit("message", { direction: "down", message });
    if (this._discardUntilJoined && !STILL_OURS.has(message.type)) return; // the left session's
    switch (message.type) {
      case "joined":
        this._onJoined(message);
        break;
      case "answer":
        void this._onAnswer(message.sdp);
        break;
      case "offer":
        void this._onOffer(message.sdp);
        break;
      case "candidate":
        // Reserved by the protocol (the server's candidates are in its SDP); accept anyway.
        if (this.pc && message.candidate && message.candidate.candidate) {
          this.pc.addIceCandidate(message.candidate).catch(() => {});
        }
        break;
      case "stream-started":
        if (this.role === "viewer") {
          this._stall = null;
          this._endedReason = null;
          this._setState("connecting", "stream-started");
        }
        break;
      case "stream-ended":
        this._onStreamEnded(String(message.reason ?? "stream-ended"));
        break;
      case "stream-stalled":
        if (this.role === "viewer") {
          // The stream goes on, its media does not: keep the peer connection, never `ended`.
          const why = String(message.reason ?? "");
          this._stall = why === "streamer-reconnecting" ? why : "no-media";
          this._settleViewer("stream-stalled");
        }
        break;
      case "stream-resumed":
        if (this.role === "viewer") {
          this._stall = null;
          this._settleViewer("stream-resumed");
        }
        break;
      case "server-shutdown":
        // Used when the socket closes (the server closes it next): wait before reconnecting.
        this._shutdownRetryAfter =
          typeof message.retryAfter === "number" ? message.retryAfter : 0;
        break;
      case "viewers":
        this._setViewerCount(message.count);
        break;
      case "pong":
        this._onPong(message.id);
        break;
      case "error":
        this._onServerError(
          String(message.code ?? "unknown"),
          String(message.message ?? ""),
          message.ref === undefined ? undefined : String(message.ref),
        );
        break;
      default:
        // Unknown types are ignored, so that servers can add messages.
        break;
    }
  }

  /** @param {any} message */
  _onJoined(message) {
    this._joined = true;
    this._rejoining = true;
    this._discardUntilJoined = false;
    // Keys are single-use: the next join needs this one. A server without resume sends none.
    if (typeof message.resumeKey === "string") this._resumeKey = message.resumeKey;
    this.clientId = typeof message.clientId === "string" ? message.clientId : null;
    this._iceServers = Array.isArray(message.iceServers) ? message.iceServers : [];
    this.roomLive = Boolean(message.live);
    this._setViewerCount(message.viewers);
    this._mark("joined");
    if (message.resumed === true) {
      this._onResumed();
      return;
    }
    // A fresh session (a first join, or the server no longer had ours): whatever the old
    // session had is gone on the server, and so must it be here.
    clearTimeout(this._publishTimer);
    this._closePc();
    this._stall = null;
    if (this.role === "streamer" && this._stream) {
      void this._startPublishing();
    } else if (this.role === "viewer" && this.roomLive) {
      this._endedReason = null;
      this._setState("connecting", "stream-live");
    } else {
      this._attempt = 0; // nothing more to do: this session is healthy
      this._setState(this._endedReason ? "ended" : "waiting", this._endedReason ?? "joined");
    }
  }

  /**
   * Our session is back with everything the server kept for it; the messages it queued
   * meanwhile follow, in order. Keep the peer connection if it is still of use.
   */
  _onResumed() {
    this._mark("resumed");
    const pc = this.pc;
    const usable =
      pc !== null && this._descriptionSent && !["failed", "closed"].includes(pc.connectionState);
    if (usable) {
      this._flushCandidates(); // those gathered while the socket was down
      if (this.role === "streamer") this._settleStreamer("resumed");
      else this._settleViewer("resumed");
      return;
    }
    this._closePc();
    if (this.role === "streamer") {
      // A dead peer connection, or one whose offer never went out: publish again on this
      // session, which keeps the stream for its viewers. No stream (a reload): wait for Go live.
      if (this._stream) {
        void this._startPublishing();
      } else {
        this._attempt = 0;
        this._setState("waiting", "resumed");
      }
    } else if (this.roomLive) {
      // Only the server offers, and it will not while it believes our old peer connection
      // (a reloaded page's) is up: start a fresh session, which brings an offer at once.
      this._startOver("resumed-without-media");
    } else {
      this._settleViewer("resumed");
    }
  }

  /**
   * Viewer: the state that follows from what we know (stall, peer connection, room).
   * @param {string} reason  for the states that have no reason of their own
   */
  _settleViewer(reason) {
    const pc = this.pc;
    if (this._stall === "no-media") {
      this._setState("stalled", "no-media");
    } else if (this._stall) {
      this._setState("reconnecting", this._stall);
    } else if (pc && pc.connectionState === "connected" && this._hasRemoteTrack) {
      this._goLive();
    } else if (pc || this.roomLive) {
      this._setState("connecting", reason);
    } else {
      this._attempt = 0;
      this._setState(this._endedReason ? "ended" : "waiting", this._endedReason ?? reason);
    }
  }

  /** @param {string} reason */
  _settleStreamer(reason) {
    if (this.pc && this.pc.connectionState === "connected") this._goLive();
    else this._setState("connecting", reason);
  }

  /** @param {unknown} count */
  _setViewerCount(count) {
    if (typeof count !== "number" || !Number.isFinite(count)) return;
    this.viewerCount = count;
    this._emit("viewers", { count });
  }

  /** @param {unknown} id */
  _onPong(id) {
    if (typeof id !== "number") return;
    const sent = this._pingsInFlight.get(id);
    if (sent === undefined) return;
    this._pingsInFlight.delete(id);
    this.signalingRtt = performance.now() - sent;
  }

  /**
   * @param {string} code
   * @param {string} message
   * @param {string | undefined} ref
   */
  _onServerError(code, message, ref) {
    this._emit("servererror", { code, message, ref });
    if (this._discardUntilJoined && ref !== "join" && ref !== "leave") return;
    if (code === "replaced") {
      // A newer connection of this client holds our place: reconnecting would take it back.
      this._resumeKey = null;
      this._fail(code, message || "this client joined again from another connection");
    } else if (code === "too-many-errors") {
      this._fail(code, message);
    } else if (code === "already-joined") {
      // Our first join stands; nothing to do.
    } else if (BUSY_CODES.has(code) && (ref === "join" || code === "too-many-connections")) {
      // Before the server closes this socket (1008 would be final): come back later.
      this._joined = false;
      const delay = backoffDelay(this._attempt++, BUSY_BACKOFF_BASE_MS, BUSY_BACKOFF_MAX_MS);
      this._dropSocket(code, delay);
    } else if (code === "not-joined" || (ref === "join" && code === "internal-error")) {
      this._restart(code);
    } else if (code === "streamer-exists") {
      this._joined = false;
      // On a re-join it is most likely our own old socket, not yet noticed dead by the server.
      if (this._rejoining) this._restart(code);
      else this._fail(code, message);
    } else if (ref === "join") {
      this._fail(code, message);
    } else if (ref === "offer" || ref === "answer") {
      this._closePc();
      this._setState("error", code, message);
    }
    // Anything else (a refused candidate or ping) leaves the session as it is.
  }

  /** @param {string} reason */
  _onStreamEnded(reason) {
    if (this.role === "viewer") {
      this._closePc();
      this._stall = null;
      this._endedReason = reason;
      this._setState("ended", reason);
      return;
    }
    // Streamer: only meaningful while publishing (a `leave` of ours may echo one back).
    if (!this._stream) return;
    this._closePc();
    if (reason === "streamer-left") {
      this._stream = null;
      this._setState("ended", reason);
      return;
    }
    // The server gave up on our peer connection (`streamer-failed`, e.g. ICE never connected);
    // the user pressed Go live and not Stop, so publish the same stream again.
    this._republish(reason);
  }

  // ---- peer connections -------------------------------------------------------------------

  _newPc() {
    this._closePc();
    const pc = new RTCPeerConnection({ iceServers: this._iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this._heldCandidates = [];
    this._descriptionSent = false;
    this._endOfCandidatesSent = false;
    this._hasRemoteTrack = false;
    pc.onicecandidate = (event) => {
      if (this.pc !== pc) return;
      // Chromium ends with a null candidate; older ones with an empty string.
      const init = event.candidate && event.candidate.candidate ? event.candidate.toJSON() : null;
      if (init === null) {
        if (this._endOfCandidatesSent) return;
        this._endOfCandidatesSent = true;
      }
      // Held while the socket is down too: the resumed session takes them.
      if (!this._descriptionSent || !this._send({ type: "candidate", candidate: init })) {
        this._heldCandidates.push(init);
      }
    };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this._onPcState(pc);
    };
    pc.ontrack = (event) => {
      if (this.pc !== pc || !this.remoteStream) return;
      this.remoteStream.addTrack(event.track);
      this._hasRemoteTrack = true;
      this._mark("firstTrack");
      this._emit("track", { track: event.track, stream: this.remoteStream });
      if (pc.connectionState === "connected" && this._joined) this._settleViewer("track");
    };
    this._emit("peerconnection", { pc });
    return pc;
  }

  /** Our description went out: send the candidates gathered meanwhile (trickle ICE). */
  _flushCandidates() {
    this._descriptionSent = true;
    const held = this._heldCandidates;
    this._heldCandidates = [];
    for (const candidate of held) {
      if (!this._send({ type: "candidate", candidate })) this._heldCandidates.push(candidate);
    }
  }

  _closePc() {
    clearTimeout(this._disconnectedTimer);
    const pc = this.pc;
    this.pc = null;
    this.remoteStream = null;
    this._hasRemoteTrack = false;
    if (pc) pc.close();
  }

  /** @param {RTCPeerConnection} pc */
  _onPcState(pc) {
    clearTimeout(this._disconnectedTimer);
    switch (pc.connectionState) {
      case "connected":
        this._mark("pcConnected");
        // While the socket is down the state stays `reconnecting`; the next `joined` settles.
        if (!this._joined) break;
        if (this.role === "streamer") this._goLive();
        else this._settleViewer("connected");
        break;
      case "disconnected": {
        // Often recovers by itself; a streamer's viewers are stalled meanwhile, so it gives
        // the connection less time than a viewer does.
        const grace = this.role === "streamer" ? this.republishAfter : this.disconnectedGrace;
        this._disconnectedTimer = setTimeout(() => {
          if (this.pc === pc && pc.connectionState === "disconnected") {
            this._pcLost("pc-disconnected");
          }
        }, grace);
        break;
      }
      case "failed":
        this._pcLost("pc-failed");
        break;
      default:
        break;
    }
  }

  /** @param {string} reason */
  _pcLost(reason) {
    if (this._stopped) return;
    if (this.role === "streamer") this._republish(reason);
    else this._startOver(reason);
  }

  _goLive() {
    this._mark("live");
    this._attempt = 0;
    this._setState("live", this.role === "streamer" ? "published" : "playing");
  }

  /**
   * Streamer: our media no longer reaches the server. Publish the same stream on a new peer
   * connection, on the same session (the server keeps the stream for its viewers meanwhile);
   * if the socket is down, the next `joined` does it.
   * @param {string} reason
   */
  _republish(reason) {
    this._closePc();
    if (!this._stream) return;
    this._setState("reconnecting", reason);
    if (!this._joined) return;
    const delay = this._nextDelay();
    clearTimeout(this._publishTimer);
    this._publishTimer = setTimeout(() => {
      if (!this._stopped && this._joined && this._stream && !this.pc) void this._startPublishing();
    }, delay);
  }

  /**
   * Viewer: our peer connection is of no more use. Leave and join again as a new session,
   * which the server answers with an offer if the room is live. If the socket is down, the
   * next `joined` finds no peer connection and does it then.
   * @param {string} reason
   */
  _startOver(reason) {
    this._closePc();
    this._stall = null;
    if (!this._joined) return;
    this._setState("connecting", reason);
    this._send({ type: "leave" });
    this._joined = false;
    this._discardUntilJoined = true;
    this._resumeKey = null; // the left session has nothing to resume
    this._sendJoin();
  }

  /**
   * Start the session over on a fresh WebSocket: used when a `join` failed, so that there is
   * nothing on the server to keep.
   * @param {string} reason
   */
  _restart(reason) {
    if (this._stopped) return;
    this._dropSocket(reason);
  }

  async _startPublishing() {
    const stream = this._stream;
    if (!stream) return;
    clearTimeout(this._publishTimer);
    // A streamer who was live is `reconnecting` until the new connection is up.
    this._setState(this.state === "reconnecting" ? "reconnecting" : "connecting", "publishing");
    const pc = this._newPc();
    try {
      /** @type {RTCRtpSender | null} */
      let videoSender = null;
      for (const kind of ["audio", "video"]) {
        const track = stream.getTracks().find((t) => t.kind === kind && t.readyState === "live");
        if (!track) continue;
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        if (kind === "video") {
          videoSender = transceiver.sender;
          const capabilities = RTCRtpSender.getCapabilities("video");
          if (capabilities && typeof transceiver.setCodecPreferences === "function") {
            transceiver.setCodecPreferences(preferCodec(capabilities.codecs, "video/VP8"));
          }
        }
      }
      // Keep 1280x720 and drop frame rate when short of bandwidth, so that the picture starts
      // at full size (docs: shared/notes/fan-out.md, "Reaching 720p at once").
      if (videoSender) await maintainResolution(videoSender);
      const offer = await pc.createOffer();
      if (this.pc !== pc) return;
      await pc.setLocalDescription(offer);
      if (this.pc !== pc || !pc.localDescription) return;
      // Not sent (the socket dropped meanwhile): the next `joined` publishes again.
      if (!this._send({ type: "offer", sdp: pc.localDescription.sdp })) return;
      this._mark("offerSent");
      this._flushCandidates();
    } catch (error) {
      if (this.pc !== pc) return;
      this._closePc();
      this._setState("error", "publish-failed", errorText(error));
    }
  }

  /** @param {unknown} sdp */
  async _onAnswer(sdp) {
    const pc = this.pc;
    if (this.role !== "streamer" || !pc || typeof sdp !== "string") return;
    if (pc.signalingState !== "have-local-offer") return;
    this._mark("answerReceived");
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
      // Negotiation may reset sender parameters; make sure the preference survived it.
      const video = pc.getSenders().find((s) => s.track && s.track.kind === "video");
      if (this.pc === pc && video) await maintainResolution(video);
    } catch (error) {
      if (this.pc !== pc) return;
      this._closePc();
      this._setState("error", "answer-rejected", errorText(error));
    }
  }

  /** @param {unknown} sdp */
  async _onOffer(sdp) {
    if (this.role !== "viewer" || typeof sdp !== "string") return;
    this._mark("offerReceived");
    this._stall = null;
    this._endedReason = null;
    this._setState("connecting", "offer");
    // A room carries whatever its publisher sends: say so if this browser cannot decode it.
    const missing = undecodableCodecs(sdp, (kind) => RTCRtpReceiver.getCapabilities(kind));
    if (missing.length) {
      this._closePc();
      const what = missing.join(", ");
      this._setState("error", "unsupported-codec", `this browser cannot decode ${what}`);
      return;
    }
    // Every offer belongs to a new publication: start from a clean peer connection.
    const pc = this._newPc();
    this.remoteStream = new MediaStream();
    try {
      await pc.setRemoteDescription({ type: "offer", sdp });
      if (this.pc !== pc) return;
      const answer = await pc.createAnswer();
      if (this.pc !== pc) return;
      await pc.setLocalDescription(answer);
      if (this.pc !== pc || !pc.localDescription) return;
      // Not sent (the socket dropped meanwhile): the resumed session finds a peer connection
      // whose answer never went out, and starts over.
      if (!this._send({ type: "answer", sdp: pc.localDescription.sdp })) return;
      this._mark("answerSent");
      this._flushCandidates();
    } catch (error) {
      if (this.pc !== pc) return;
      this._closePc();
      this._setState("error", "offer-rejected", errorText(error));
    }
  }
}

/**
 * Ask the encoder to keep its resolution and lower the frame rate instead (W3C webrtc-pc,
 * RTCRtpSendParameters.degradationPreference; Chromium honours it).
 * @param {RTCRtpSender} sender
 */
async function maintainResolution(sender) {
  const parameters = /** @type {RTCRtpSendParameters & {degradationPreference?: string}} */ (
    sender.getParameters()
  );
  if (parameters.degradationPreference === "maintain-resolution") return;
  parameters.degradationPreference = "maintain-resolution";
  try {
    await sender.setParameters(parameters);
  } catch {
    // Some browsers refuse it before negotiation; the call after the answer retries.
  }
}

/** @param {unknown} error */
function errorText(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
