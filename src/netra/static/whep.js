// @ts-check
/**
 * WhepClient: plays a room over WHEP (`/whep/{room}`) instead of the WebSocket protocol, with
 * the same states and events as NetraClient, so that the viewer page binds either the same way.
 * The player offers (recvonly) with every candidate in the offer, reads the server's events
 * (WHEP server-sent events: active, inactive, viewercount) and starts over by itself: a 409
 * (not live yet) is retried after its Retry-After, a stream that ends is waited for again, a
 * failed connection is re-POSTed with back-off. 401, 403 and 422 are final. No DOM here.
 */

import { PageClient } from "/static/protocol.js";
import { backoffDelay } from "/static/reconnect.js";

const SSE_REL = "urn:ietf:params:whep:ext:core:server-sent-events";
const GATHER_TIMEOUT_MS = 2000;

/**
 * @typedef {object} WhepOptions
 * @property {string} endpoint  e.g. /whep/room-1
 * @property {string | null} [token]
 * @property {number} [backoffBase]  ms (500)
 * @property {number} [backoffMax]  ms (3 000)
 */

export class WhepClient extends PageClient {
  /** @param {WhepOptions} options */
  constructor(options) {
    super("connecting");
    this.endpoint = options.endpoint;
    this.token = options.token ?? null;
    this.backoffBase = options.backoffBase ?? 500;
    this.backoffMax = options.backoffMax ?? 3000;
    this.role = "viewer";
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {string | null} the session URL while there is one */
    this.location = null;
    /** @type {EventSource | null} */
    this._events = null;
    this._attempt = 0;
    this._stopped = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._retryTimer = undefined;
  }

  connect() {
    this._stopped = false;
    void this._session();
  }

  /** The network is back: start the pending retry now (not a 409's wait for the stream). */
  retryNow() {
    if (this._stopped || this._retryTimer === undefined || this.state !== "reconnecting") return;
    clearTimeout(this._retryTimer);
    this._retryTimer = undefined;
    this._setState("connecting", this.reason);
    void this._session();
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._end();
  }

  /** One attempt: offer, answer, events. */
  async _session() {
    this._end();
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    this.pc = pc;
    const stream = new MediaStream();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (event) => {
      stream.addTrack(event.track);
      this._mark("firstTrack");
      this._emit("track", { track: event.track, stream });
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === "connected") {
        this._mark("live");
        this._attempt = 0;
        this._setState("live", "playing");
      } else if (pc.connectionState === "failed") {
        this._retry("reconnecting", "pc-failed");
      }
    };
    this._emit("peerconnection", { pc });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (this.pc !== pc || !pc.localDescription) return;
      this._mark("offerSent");
      const response = await fetch(this.endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", ...this._auth() },
        body: pc.localDescription.sdp,
      });
      if (this.pc !== pc) return;
      if (response.status !== 201) {
        await this._refused(response);
        return;
      }
      this.location = new URL(response.headers.get("Location") ?? "", location.href).href;
      const answer = await response.text();
      this._mark("answerReceived");
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      this._listen(response.headers.get("Link") ?? "");
    } catch (error) {
      if (this.pc === pc) this._retry("reconnecting", `error: ${error}`);
    }
  }

  /** @param {Response} response */
  async _refused(response) {
    const problem = await response.json().catch(() => ({}));
    const detail = typeof problem.detail === "string" ? problem.detail : response.statusText;
    if (response.status === 409) {
      const after = Number(response.headers.get("Retry-After") ?? "2");
      this._retry("waiting", "not-live", Math.min(after, 5) * 1000);
    } else if ([400, 401, 403, 415, 422].includes(response.status)) {
      this._end();
      this._stopped = true;
      this._setState("error", String(problem.title ?? response.status), detail);
    } else {
      this._retry("reconnecting", `http-${response.status}`);
    }
  }

  /** Subscribe to the session's events, if the server offers them. @param {string} links */
  _listen(links) {
    const link = links.split(",").find((part) => part.includes(SSE_REL));
    const url = link && /<([^>]+)>/.exec(link)?.[1];
    if (!url || !this.location) return;
    const target = new URL(url, this.location).href;
    void fetch(target, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(["active", "inactive", "viewercount"]),
    }).then((response) => {
      if (response.status !== 201 || this.location === null) return;
      const source = new EventSource(new URL(response.headers.get("Location") ?? url, target));
      this._events = source;
      source.addEventListener("viewercount", (event) => {
        const count = JSON.parse(/** @type {MessageEvent} */ (event).data).viewercount;
        this._emit("viewers", { count });
      });
      source.addEventListener("inactive", (event) => {
        const data = JSON.parse(/** @type {MessageEvent} */ (event).data || "{}");
        this._end();
        this._setState("ended", data.reason ?? "inactive");
        this._retry("ended", data.reason ?? "inactive", this.backoffBase);
      });
    });
  }

  /**
   * Start over after `delay` ms (back-off by default), showing `state` meanwhile.
   * @param {import("/static/protocol.js").State} state
   * @param {string} reason
   * @param {number} [delay]
   */
  _retry(state, reason, delay) {
    this._end();
    if (this._stopped) return;
    this._setState(state, reason);
    clearTimeout(this._retryTimer);
    const wait = delay ?? backoffDelay(this._attempt++, this.backoffBase, this.backoffMax);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = undefined;
      if (this.state !== "waiting" && this.state !== "ended") this._setState("connecting", reason);
      void this._session();
    }, wait);
  }

  /** Close the peer connection and the events, and DELETE the session. */
  _end() {
    this._events?.close();
    this._events = null;
    const pc = this.pc;
    this.pc = null;
    pc?.close();
    if (this.location) {
      void fetch(this.location, { method: "DELETE", headers: this._auth() }).catch(() => {});
      this.location = null;
    }
  }

  /** @returns {Record<string, string>} */
  _auth() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }
}

/** Resolves when ICE gathering completes, or after GATHER_TIMEOUT_MS. @param {RTCPeerConnection} pc */
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve(undefined);
      }
    });
  });
}
