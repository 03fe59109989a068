// What every client page shares: a status the test reads (window.kit, body[data-state]),
// a record of each HTTP exchange as the page's script saw it, and frame counting.
//
// The pages are served from their own origin (tests/e2e/test_standard_clients.py), so every
// WHIP/WHEP call is cross-origin: a header the server does not expose reads as null here.

/** @type {{state: string, error: string|null, timeline: string[], http: object[],
 *          connectionState: string|null, frames: number, sse: string[]}} */
export const kit = {
  state: 'loading', error: null, timeline: [], http: [], connectionState: null, frames: 0, sse: [],
};
window.kit = kit;
const started = performance.now();

export function note(what) {
  kit.timeline.push(`${Math.round(performance.now() - started)}ms ${what}`);
}

export function setState(state, detail = '') {
  kit.state = state;
  document.body.dataset.state = state;
  note(`state=${state}${detail ? ` (${detail})` : ''}`);
}

export function fail(error) {
  kit.error = String(error && error.stack ? error.stack : error);
  setState('error', String(error && error.message ? error.message : error));
}

/** The page's query: endpoint (absolute URL of /whip/{room} or /whep/{room}) and token. */
export function params() {
  const query = new URLSearchParams(location.search);
  const endpoint = query.get('endpoint');
  if (!endpoint) throw new Error('no ?endpoint= in the page URL');
  return { endpoint, token: query.get('token') || undefined };
}

// Every fetch the client libraries make, with the status and the headers they could read.
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init = {}) => {
  const entry = { method: init.method || 'GET', url: String(input instanceof Request ? input.url : input) };
  kit.http.push(entry);
  try {
    const response = await realFetch(input, init);
    // The body first: the test takes `status` as "answered" and then reads the whole entry.
    const type = response.headers.get('content-type') || '';
    if (type.includes('sdp') || type.includes('problem')) entry.body = await response.clone().text();
    if (init.body && typeof init.body === 'string') entry.sent = init.body;
    entry.location = response.headers.get('location');
    entry.etag = response.headers.get('etag');
    entry.link = response.headers.get('link');
    entry.status = response.status;
    note(`${entry.method} ${entry.url} -> ${entry.status}`);
    return response;
  } catch (error) {
    entry.error = String(error);
    note(`${entry.method} ${entry.url} -> ${error}`);
    throw error;
  }
};

export function watchPeer(pc) {
  const update = () => {
    kit.connectionState = pc.connectionState;
    note(`connectionState=${pc.connectionState}`);
  };
  pc.addEventListener('connectionstatechange', update);
  update();
}

/** Count frames presented by `video` (requestVideoFrameCallback) into kit.frames. */
export function countFrames(video) {
  const tick = () => {
    kit.frames += 1;
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}

// Every EventSource a library opens (the WHEP server-sent events extension), with the events it
// carries recorded from the start: WHEP's events are named, and whip-whep itself only relays
// unnamed ones (onmessage).
const WHEP_EVENTS = ['active', 'inactive', 'viewercount', 'layers', 'reconnect', 'scte35'];
const RealEventSource = window.EventSource;
window.EventSource = class extends RealEventSource {
  constructor(url, init) {
    super(url, init);
    note(`EventSource ${url}`);
    this.addEventListener('open', () => note('EventSource open'));
    this.addEventListener('error', () => note(`EventSource error (readyState ${this.readyState})`));
    for (const name of WHEP_EVENTS) this.addEventListener(name, (event) => kit.sse.push(`${name} ${event.data}`));
  }
};

window.addEventListener('unhandledrejection', (event) => note(`unhandledrejection: ${event.reason}`));

/** Sample the peer's inbound/outbound RTP stats into kit.rtp twice a second, so a failure
 * says whether media arrived, in which codec, and whether it decoded. */
export function sampleRtp(getPeer) {
  setInterval(async () => {
    const pc = getPeer();
    if (!pc || pc.connectionState === 'closed') return;
    let stats;
    try {
      stats = await pc.getStats();
    } catch {
      return; // closed meanwhile
    }
    const codecs = {};
    stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = `${s.mimeType} ${s.sdpFmtpLine || ''}`.trim(); });
    const rtp = {};
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp' && s.type !== 'outbound-rtp') return;
      rtp[`${s.type} ${s.kind}${s.rid ? ` ${s.rid}` : ''}`] = {
        codec: codecs[s.codecId] ?? null,
        packets: s.packetsReceived ?? s.packetsSent,
        frames: s.framesDecoded ?? s.framesEncoded,
        size: s.frameWidth ? `${s.frameWidth}x${s.frameHeight}` : undefined,
        keyFramesDecoded: s.keyFramesDecoded, pliCount: s.pliCount, nackCount: s.nackCount,
      };
    });
    kit.rtp = rtp;
  }, 500);
}
