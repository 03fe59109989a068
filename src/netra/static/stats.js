// @ts-check
/**
 * Per-second getStats() sampling and a timeline of peer-connection states. No DOM.
 *
 * `summarize()` is pure (a stats report and the previous counters in, one sample out), so
 * the arithmetic can be checked without a browser; `StatsSampler` only does the timing.
 */

/**
 * @typedef {object} StatsSample
 * @property {number} at  performance.now() of the sample
 * @property {'send' | 'recv' | 'none'} direction  outbound (streamer) or inbound (viewer) video
 * @property {number | null} videoKbps  video bitrate over the last interval, kbit/s
 * @property {number | null} audioKbps
 * @property {number | null} frameWidth
 * @property {number | null} frameHeight
 * @property {number | null} framesPerSecond
 * @property {number | null} framesDecoded  viewer
 * @property {number | null} framesEncoded  streamer
 * @property {number | null} packetsLost  inbound: lost by us; outbound: reported by the server
 * @property {number | null} roundTripTimeMs  from the selected candidate pair
 * @property {string | null} codec  e.g. video/VP8
 * @property {number | null} freezeCount  viewer
 * @property {string | null} qualityLimitationReason  streamer
 * @property {number | null} targetBitrateKbps  streamer
 * @property {number | null} keyFrames  framesEncoded or framesDecoded that were keyframes
 * @property {number | null} pliCount  PLIs sent (viewer) or received (streamer)
 */

/**
 * @typedef {object} Counters  the cumulative values a bitrate is a delta of
 * @property {number} timestamp  ms, from the stats report
 * @property {number} videoBytes
 * @property {number} audioBytes
 */

/**
 * @typedef {object} TimelineEntry
 * @property {number} at  performance.now()
 * @property {string} what  signalingState, iceConnectionState, connectionState, state, …
 * @property {string} value
 * @property {string} [detail]
 */

/**
 * @param {any} value
 * @returns {number | null}
 */
function num(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/**
 * kbit/s from a byte counter: bits per millisecond are kilobits per second.
 * @param {number} bytes
 * @param {number} previousBytes
 * @param {number} ms
 */
function kbps(bytes, previousBytes, ms) {
  if (ms <= 0 || bytes < previousBytes) return null;
  return Math.round(((bytes - previousBytes) * 8) / ms);
}

/**
 * One sample from a getStats() report (any Map-like of stats objects).
 * @param {Iterable<[string, any]> & {get(id: string): any}} report
 * @param {Counters | null} previous
 * @param {number} [at]
 * @returns {{sample: StatsSample, counters: Counters}}
 */
export function summarize(report, previous, at = performance.now()) {
  /** @type {any} */ let video = null;
  /** @type {any} */ let audio = null;
  /** @type {any} */ let remoteInbound = null;
  /** @type {any} */ let transport = null;
  /** @type {any[]} */ const pairs = [];
  let direction = /** @type {'send' | 'recv' | 'none'} */ ("none");
  for (const [, stats] of report) {
    if (stats.type === "outbound-rtp" || stats.type === "inbound-rtp") {
      const dir = stats.type === "outbound-rtp" ? "send" : "recv";
      if (stats.kind === "video" && !video) {
        video = stats;
        direction = dir;
      } else if (stats.kind === "audio" && !audio) {
        audio = stats;
      }
    } else if (stats.type === "remote-inbound-rtp" && stats.kind === "video") {
      remoteInbound = stats;
    } else if (stats.type === "transport") {
      transport = stats;
    } else if (stats.type === "candidate-pair") {
      pairs.push(stats);
    }
  }
  const pair =
    (transport && transport.selectedCandidatePairId && report.get(transport.selectedCandidatePairId)) ||
    pairs.find((p) => p.nominated && p.state === "succeeded") ||
    null;

  const bytesKey = direction === "send" ? "bytesSent" : "bytesReceived";
  const timestamp = num(video?.timestamp) ?? num(audio?.timestamp) ?? at;
  /** @type {Counters} */
  const counters = {
    timestamp,
    videoBytes: num(video?.[bytesKey]) ?? 0,
    audioBytes: num(audio?.[bytesKey]) ?? 0,
  };
  const elapsed = previous ? timestamp - previous.timestamp : 0;
  const codecStats = video?.codecId ? report.get(video.codecId) : null;
  const rtt = num(pair?.currentRoundTripTime);
  const target = num(video?.targetBitrate);

  /** @type {StatsSample} */
  const sample = {
    at,
    direction,
    videoKbps: previous && video ? kbps(counters.videoBytes, previous.videoBytes, elapsed) : null,
    audioKbps: previous && audio ? kbps(counters.audioBytes, previous.audioBytes, elapsed) : null,
    frameWidth: num(video?.frameWidth),
    frameHeight: num(video?.frameHeight),
    framesPerSecond: num(video?.framesPerSecond),
    framesDecoded: num(video?.framesDecoded),
    framesEncoded: num(video?.framesEncoded),
    packetsLost:
      direction === "send" ? num(remoteInbound?.packetsLost) : num(video?.packetsLost),
    roundTripTimeMs: rtt === null ? null : Math.round(rtt * 1000 * 10) / 10,
    codec: typeof codecStats?.mimeType === "string" ? codecStats.mimeType : null,
    freezeCount: num(video?.freezeCount),
    qualityLimitationReason:
      typeof video?.qualityLimitationReason === "string" ? video.qualityLimitationReason : null,
    targetBitrateKbps: target === null ? null : Math.round(target / 1000),
    keyFrames: num(video?.keyFramesEncoded) ?? num(video?.keyFramesDecoded),
    pliCount: num(video?.pliCount),
  };
  return { sample, counters };
}

/** Samples one peer connection's getStats() every `interval` ms; emits `sample` events. */
export class StatsSampler extends EventTarget {
  /**
   * @param {{interval?: number, history?: number}} [options]
   */
  constructor(options = {}) {
    super();
    this.interval = options.interval ?? 1000;
    this.historyLimit = options.history ?? 120;
    /** @type {StatsSample[]} */
    this.history = [];
    /** @type {StatsSample | null} */
    this.latest = null;
    /** @type {RTCPeerConnection | null} */
    this._pc = null;
    /** @type {Counters | null} */
    this._counters = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this._timer = undefined;
    this._busy = false;
  }

  /**
   * Sample this peer connection from now on (a new one resets the bitrate deltas).
   * @param {RTCPeerConnection | null} pc
   */
  attach(pc) {
    this._pc = pc;
    this._counters = null;
  }

  start() {
    if (this._timer !== undefined) return;
    this._timer = setInterval(() => void this.sample(), this.interval);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = undefined;
  }

  /** @returns {Promise<StatsSample | null>} */
  async sample() {
    const pc = this._pc;
    if (!pc || pc.connectionState === "closed" || this._busy) return null;
    this._busy = true;
    try {
      const report = await pc.getStats();
      if (pc !== this._pc) return null;
      const { sample, counters } = summarize(report, this._counters);
      this._counters = counters;
      this.latest = sample;
      this.history.push(sample);
      if (this.history.length > this.historyLimit) this.history.shift();
      this.dispatchEvent(new CustomEvent("sample", { detail: sample }));
      return sample;
    } catch {
      return null;
    } finally {
      this._busy = false;
    }
  }
}

/** A bounded log of state changes with timestamps; emits `entry` events. */
export class Timeline extends EventTarget {
  /** @param {number} [limit] */
  constructor(limit = 300) {
    super();
    this.limit = limit;
    /** @type {TimelineEntry[]} */
    this.entries = [];
  }

  /**
   * @param {string} what
   * @param {string} value
   * @param {string} [detail]
   */
  record(what, value, detail) {
    /** @type {TimelineEntry} */
    const entry = { at: performance.now(), what, value };
    if (detail) entry.detail = detail;
    this.entries.push(entry);
    if (this.entries.length > this.limit) this.entries.shift();
    this.dispatchEvent(new CustomEvent("entry", { detail: entry }));
  }

  /**
   * Record this peer connection's signalingState, iceConnectionState and connectionState
   * changes (the initial ones too).
   * @param {RTCPeerConnection} pc
   * @param {string} [label]
   */
  watch(pc, label = "pc") {
    const fields = /** @type {const} */ (["signalingState", "iceConnectionState", "connectionState"]);
    const events = ["signalingstatechange", "iceconnectionstatechange", "connectionstatechange"];
    fields.forEach((field, i) => {
      this.record(`${label}.${field}`, String(pc[field]));
      pc.addEventListener(events[i], () => this.record(`${label}.${field}`, String(pc[field])));
    });
  }
}
