#!/usr/bin/env node
// An OBS Studio-like WHIP publisher on libdatachannel (node-datachannel), OBS's own WebRTC stack.
//
//   node obslike.mjs --url http://127.0.0.1:8080/whip/room --token T \
//        --h264 video.h264 [--opus audio.opus] [--seconds 10]
//
// It reproduces OBS 30.2+'s WHIP output (obs-studio plugins/obs-webrtc/whip-output.cpp):
// - SDP made by libdatachannel exactly as OBS configures it: Opus PT 111 in mid 0, then
//   H.264 PT 96 in mid 1, one a=ssrc per track (video = audio + 1), sendonly. The H.264 fmtp
//   says High profile (profile-level-id=640c1f) and the stream is x264 High (media.py).
// - The offer carries NO candidates and never trickles or PATCHes (OBS 30.2+ sets
//   disableAutoGathering and gathers only after the answer). The server must list reachable
//   candidates in its answer and learn ours peer-reflexively.
// - POST with Content-Type application/sdp, Authorization: Bearer, an OBS User-Agent, an 8 s
//   timeout, redirects followed. It demands exactly 201, a body and a Location; a Location not
//   starting with "http" replaces the path of the effective URL and drops its query (as OBS's
//   curl_url_set does).
// - Media as OBS sends it: frames go out only while the track is open (the encoder runs from
//   the answer on, so the first frame sent may be mid-GOP, and OBS ignores PLI: a viewer waits
//   for the next keyframe); RTCP SR reporter and NACK responder (4000 packets) chained after
//   the packetizer; max fragment size 1200.
// - Stop: close the PeerConnection, then DELETE the resource with the token; demands exactly 200
//   (OBS only logs a warning).
//
// One deviation, forced by the binding: node-datachannel 0.33.4 does not expose
// PeerConnection::gatherLocalCandidates(), and with disableAutoGathering libjuice then never
// gathers: the peer stays "new" forever (measured). So libjuice gathers at setLocalDescription
// (bound to --bind, default 127.0.0.1) and we POST the offer text disableAutoGathering produces:
// no a=candidate, no a=end-of-candidates, "m=… 9", "c=IN IP4 0.0.0.0". On the wire this is
// OBS 30.2: libjuice sends its first check only once the answer gives it remote candidates.
// --flow 30.0 posts the gathered offer instead (OBS 30.0-30.1: candidates + end-of-candidates).
//
// stdout gets exactly one line: a JSON result. Progress goes to stderr. It stops after
// --seconds of connected streaming (0: never), on SIGINT/SIGTERM, or on a "stop" line on stdin,
// and exits 1 if any expectation failed (listed in "failures"), 2 on bad usage.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import * as ndc from 'node-datachannel';

const USAGE = 'usage: obslike.mjs --url WHIP_URL [--token T] --h264 FILE [--opus FILE]'
  + ' [--seconds N] [--bind 127.0.0.1] [--flow 30.2|30.0] [--connect-timeout S]'
  + ' [--profile-level-id 640c1f] [--user-agent UA]';

const AUDIO_MID = '0';
const AUDIO_PT = 111;
const VIDEO_MID = '1';
const VIDEO_PT = 96;
const MAX_VIDEO_FRAGMENT_SIZE = 1200;
const VIDEO_NACK_BUFFER_SIZE = 4000;
const HTTP_TIMEOUT_MS = 8000; // CURLOPT_TIMEOUT 8
const FPS = 30;
const OPUS_FRAME_MS = 20;

function log(...args) {
  process.stderr.write(`obslike: ${args.join(' ')}\n`);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        token: { type: 'string', default: '' },
        h264: { type: 'string' },
        opus: { type: 'string' },
        seconds: { type: 'string', default: '10' },
        bind: { type: 'string', default: '127.0.0.1' },
        flow: { type: 'string', default: '30.2' },
        'connect-timeout': { type: 'string', default: '10' },
        'profile-level-id': { type: 'string', default: '640c1f' },
        'user-agent': { type: 'string', default: 'Mozilla/5.0 (OBS-Studio/30.2.3; Linux x86_64; en-US)' },
      },
    }));
  } catch (error) {
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (!values.url || !values.h264 || !['30.2', '30.0'].includes(values.flow)) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  return values;
}

// --- media files ---------------------------------------------------------------------------

/** Byte offsets of each NAL unit's first byte after its start code, and its end. */
function nalUnits(stream) {
  const starts = [];
  for (let i = 0; i + 2 < stream.length; i++) {
    if (stream[i] === 0 && stream[i + 1] === 0 && stream[i + 2] === 1) {
      starts.push(i + 3);
      i += 2;
    }
  }
  return starts.map((start, k) => {
    let end = k + 1 < starts.length ? starts[k + 1] - 3 : stream.length;
    while (end > start && stream[end - 1] === 0) end--; // the next start code's leading zero
    return stream.subarray(start, end);
  });
}

/**
 * An Annex B stream split into access units (H.264 §7.4.1.2.3): a new one starts at an AUD,
 * SEI, SPS or PPS after a slice, or at a slice whose first_mb_in_slice is 0 (the first bit of
 * its header, ue(v) 0 = "1"). Each is returned with 4-byte start codes, as an encoder emits it,
 * plus whether it is a keyframe (holds an IDR slice).
 */
function accessUnits(stream) {
  const units = [];
  let current = [];
  let sawSlice = false;
  const flush = () => {
    if (current.length === 0) return;
    const parts = current.flatMap((nal) => [Buffer.from([0, 0, 0, 1]), nal]);
    units.push({ data: Buffer.concat(parts), nals: current, key: current.some((n) => (n[0] & 0x1f) === 5) });
    current = [];
    sawSlice = false;
  };
  for (const nal of nalUnits(stream)) {
    const type = nal[0] & 0x1f;
    const slice = type === 1 || type === 5;
    if (sawSlice && ([6, 7, 8, 9].includes(type) || (slice && nal.length > 1 && nal[1] & 0x80))) flush();
    current.push(nal);
    if (slice) sawSlice = true;
  }
  flush();
  return units;
}

/** RTP packets libdatachannel 0.24's H264RtpPacketizer makes of these NAL units (single NAL
 * unit packets up to the fragment size, else FU-A; NalUnit::generateFragments). */
function rtpPacketsFor(nals, maxFragmentSize) {
  let packets = 0;
  for (const nal of nals) {
    if (nal.length <= maxFragmentSize) {
      packets += 1;
      continue;
    }
    const count = Math.ceil(nal.length / maxFragmentSize);
    const step = Math.ceil(nal.length / count) - 2;
    packets += Math.ceil((nal.length - 1) / step);
  }
  return packets;
}

/** media.py's audio file: Opus packets, each after a 16-bit big-endian length. */
function opusPackets(file) {
  const data = readFileSync(file);
  const packets = [];
  for (let i = 0; i + 2 <= data.length;) {
    const size = data.readUInt16BE(i);
    packets.push(data.subarray(i + 2, i + 2 + size));
    i += 2 + size;
  }
  return packets;
}

// A 20 ms Opus packet of silence (TOC 0xf8: CELT fullband 20 ms, one frame), if no --opus.
const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]);

// --- SDP -------------------------------------------------------------------------------------

/** The offer OBS 30.2+ posts: what libdatachannel writes when it has not gathered. */
function withoutCandidates(sdp) {
  return sdp
    .split('\r\n')
    .filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates')
    .map((line) => line.replace(/^(m=\w+) \d+ /, '$1 9 ').replace(/^c=IN IP4 .*$/, 'c=IN IP4 0.0.0.0'))
    .join('\r\n');
}

function randomId(length) {
  const chars = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  return Array.from({ length }, () => chars[Math.floor(Math.random() * chars.length)]).join('');
}

/** OBS's resource URL from a Location header: absolute as is, else the effective URL with its
 * path replaced and its query dropped. */
function resourceUrl(location, effectiveUrl) {
  if (location.startsWith('http')) return new URL(location).href;
  const url = new URL(effectiveUrl);
  url.pathname = location;
  url.search = '';
  return url.href;
}

// --- the run ---------------------------------------------------------------------------------

async function main() {
  const opts = options();
  const seconds = Number(opts.seconds);
  const result = {
    client: 'obslike', flow: opts.flow, url: opts.url, userAgent: opts['user-agent'],
    libdatachannel: ndc.getLibraryVersion(),
    offer: null, post: null, delete: null,
    connected: false, connectMs: null, connectedAfterAnswerMs: null, connectedSeconds: 0, states: [],
    video: { profileLevelId: opts['profile-level-id'], frames: 0, keyframes: 0, droppedBeforeOpen: 0, rtpPackets: 0, bytes: 0, firstFrameKey: null },
    audio: { packets: 0, bytes: 0, source: opts.opus ? 'opus-file' : 'silence' },
    selectedPair: null, failures: [],
  };
  const fail = (what) => {
    result.failures.push(what);
    log('FAIL', what);
  };

  const units = accessUnits(readFileSync(opts.h264));
  if (!units.length || !units[0].key) {
    fail(`${opts.h264}: no access units, or the first is not a keyframe`);
    return finish(result);
  }
  const audioPackets = opts.opus ? opusPackets(opts.opus) : [OPUS_SILENCE];

  // Setup(): the PeerConnection and both tracks, as whip-output.cpp configures them.
  const pc = new ndc.PeerConnection('obs-whip', {
    iceServers: [],
    bindAddress: opts.bind,
    disableAutoGathering: false, // see the header: the binding cannot gather later
  });
  const started = performance.now();
  let connectingAt = null;
  let stopReason = null;
  let wake = () => {};
  let connectedAt = null;
  let answeredAt = null;
  pc.onStateChange((state) => {
    const at = performance.now() - started;
    result.states.push(`${state}@${Math.round(at)}ms`);
    log('PeerConnection state is now:', state);
    if (state === 'connecting') connectingAt = at;
    if (state === 'connected') {
      connectedAt = at;
      result.connected = true;
      result.connectMs = Math.round(at - (connectingAt ?? at));
      if (answeredAt !== null) result.connectedAfterAnswerMs = Math.round(at - answeredAt);
      wake();
    }
    if ((state === 'disconnected' || state === 'failed' || state === 'closed') && !stopReason) {
      stopReason = `peer ${state}`;
      wake();
    }
  });

  const mediaStreamId = randomId(16);
  const cname = randomId(16);
  const baseSsrc = 1 + Math.floor(Math.random() * 0xfffffffd);

  const audio = new ndc.Audio(AUDIO_MID, 'SendOnly');
  audio.addOpusCodec(AUDIO_PT);
  audio.addSSRC(baseSsrc, cname, mediaStreamId, `${mediaStreamId}-audio`);
  const audioTrack = pc.addTrack(audio);
  const audioConfig = new ndc.RtpPacketizationConfig(baseSsrc, cname, AUDIO_PT, 48000);
  const audioPacketizer = new ndc.RtpPacketizer(audioConfig); // OpusRtpPacketizer is this
  audioPacketizer.addToChain(new ndc.RtcpSrReporter(audioConfig));
  audioPacketizer.addToChain(new ndc.RtcpNackResponder());
  audioTrack.setMediaHandler(audioPacketizer);

  const video = new ndc.Video(VIDEO_MID, 'SendOnly');
  video.addSSRC(baseSsrc + 1, cname, mediaStreamId, `${mediaStreamId}-video`);
  video.addH264Codec(VIDEO_PT, `profile-level-id=${opts['profile-level-id']};packetization-mode=1;level-asymmetry-allowed=1`);
  const videoConfig = new ndc.RtpPacketizationConfig(baseSsrc + 1, cname, VIDEO_PT, 90000);
  const videoPacketizer = new ndc.H264RtpPacketizer('StartSequence', videoConfig, MAX_VIDEO_FRAGMENT_SIZE);
  videoPacketizer.addToChain(new ndc.RtcpSrReporter(videoConfig));
  videoPacketizer.addToChain(new ndc.RtcpNackResponder(VIDEO_NACK_BUFFER_SIZE));
  const videoTrack = pc.addTrack(video);
  videoTrack.setMediaHandler(videoPacketizer);

  pc.setLocalDescription();
  const gathered = pc.localDescription().sdp;
  const offer = opts.flow === '30.2' ? withoutCandidates(gathered) : gathered;
  result.offer = {
    bytes: offer.length,
    candidates: offer.split('\r\n').filter((l) => l.startsWith('a=candidate:')).length,
    endOfCandidates: offer.includes('a=end-of-candidates'),
    mids: [...offer.matchAll(/^a=mid:(.*)$/gm)].map((m) => m[1]),
    h264Fmtp: (offer.match(/^a=fmtp:96 (.*)$/m) || [])[1] ?? null,
    sdp: offer,
  };

  // Connect(): the POST.
  const headers = { 'Content-Type': 'application/sdp', 'User-Agent': opts['user-agent'] };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let response;
  let body = '';
  const posted = Date.now();
  try {
    response = await fetch(opts.url, {
      method: 'POST', headers, body: offer, redirect: 'follow', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    body = await response.text();
  } catch (error) {
    fail(`POST ${opts.url}: ${error.cause?.message ?? error.message}`);
    pc.close();
    return finish(result);
  }
  const location = response.headers.get('location');
  result.post = {
    status: response.status, ms: Date.now() - posted, location, etag: response.headers.get('etag'),
    link: response.headers.get('link'), contentType: response.headers.get('content-type'),
    redirected: response.redirected, bodyBytes: body.length,
    answerCandidates: body.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:')).length,
    answer: body,
  };
  if (response.status !== 201) fail(`POST answered ${response.status}, OBS demands exactly 201: ${body.slice(0, 200)}`);
  else if (!body) fail('POST answered 201 with no body (OBS: "No data returned from HTTP endpoint request")');
  else if (!location) fail('POST answered 201 without a Location (OBS: "WHIP server did not provide a resource URL")');
  if (result.failures.length) {
    pc.close();
    return finish(result);
  }
  const resource = resourceUrl(location, response.url);
  result.post.resource = resource;
  try {
    answeredAt = performance.now() - started;
    pc.setRemoteDescription(body.slice(Math.max(body.indexOf('v=0'), 0)), 'answer');
  } catch (error) {
    fail(`the answer was refused by libdatachannel: ${error.message}`);
    await sendDelete(resource, headers, result, fail);
    pc.close();
    return finish(result);
  }

  // obs_output_begin_data_capture(): the encoder clock starts now; frames go out only once
  // the track is open, as in WHIPOutput::Send.
  let stopRequested = false;
  const requestStop = (why) => {
    if (!stopReason) stopReason = why;
    stopRequested = true;
    wake();
  };
  process.on('SIGINT', () => requestStop('SIGINT'));
  process.on('SIGTERM', () => requestStop('SIGTERM'));
  const stdin = createInterface({ input: process.stdin });
  stdin.on('line', (line) => { if (line.trim() === 'stop') requestStop('stop on stdin'); });
  stdin.on('close', () => {}); // a closed stdin is not a stop request: tests may not pipe one

  const videoStart = videoConfig.timestamp;
  const audioStart = audioConfig.timestamp;
  const t0 = performance.now();
  let videoIndex = 0;
  let audioIndex = 0;
  const connectDeadline = t0 + Number(opts['connect-timeout']) * 1000;

  while (!stopRequested && !stopReason) {
    const now = performance.now();
    if (!result.connected && now > connectDeadline) {
      stopReason = `not connected within ${opts['connect-timeout']} s`;
      fail(`${stopReason} (states: ${result.states.join(', ') || 'none'})`);
      break;
    }
    // Video: frame n is due at t0 + n / FPS.
    while (t0 + (videoIndex * 1000) / FPS <= now) {
      const unit = units[videoIndex % units.length];
      videoConfig.timestamp = (videoStart + videoIndex * (90000 / FPS)) >>> 0;
      if (videoTrack.isOpen()) {
        if (result.video.frames === 0) result.video.firstFrameKey = unit.key;
        try {
          videoTrack.sendMessageBinary(unit.data);
          result.video.frames += 1;
          result.video.keyframes += unit.key ? 1 : 0;
          result.video.bytes += unit.data.length;
          result.video.rtpPackets += rtpPacketsFor(unit.nals, MAX_VIDEO_FRAGMENT_SIZE);
        } catch (error) {
          log('video send error:', error.message);
        }
      } else {
        result.video.droppedBeforeOpen += 1;
      }
      videoIndex += 1;
    }
    while (t0 + audioIndex * OPUS_FRAME_MS <= now) {
      const packet = audioPackets[audioIndex % audioPackets.length];
      audioConfig.timestamp = (audioStart + audioIndex * 960) >>> 0;
      if (audioTrack.isOpen()) {
        try {
          audioTrack.sendMessageBinary(packet);
          result.audio.packets += 1;
          result.audio.bytes += packet.length;
        } catch (error) {
          log('audio send error:', error.message);
        }
      }
      audioIndex += 1;
    }
    if (connectedAt !== null && seconds > 0) {
      if (performance.now() - started - connectedAt >= seconds * 1000) {
        stopReason = `streamed ${seconds} s`;
        break;
      }
    }
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 5);
    });
  }

  if (connectedAt !== null) {
    result.connectedSeconds = Math.round(performance.now() - started - connectedAt) / 1000;
  }
  if (result.connected && stopReason?.startsWith('peer ')) fail(`the connection dropped while streaming (${stopReason})`);
  result.stopReason = stopReason;
  try {
    result.selectedPair = pc.getSelectedCandidatePair();
  } catch {
    result.selectedPair = null;
  }
  if (result.connected && result.video.frames === 0) fail('connected, but the video track never opened: no frame sent');

  // StopThread(): close the PeerConnection, then DELETE the resource.
  stdin.close();
  pc.close();
  await sendDelete(resource, headers, result, fail);
  return finish(result);
}

async function sendDelete(resource, postHeaders, result, fail) {
  const headers = { 'User-Agent': postHeaders['User-Agent'] };
  if (postHeaders.Authorization) headers.Authorization = postHeaders.Authorization;
  try {
    const response = await fetch(resource, { method: 'DELETE', headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    const text = await response.text();
    result.delete = { status: response.status, url: resource, bodyBytes: text.length };
    if (response.status !== 200) fail(`DELETE answered ${response.status}, OBS expects exactly 200: ${text.slice(0, 200)}`);
  } catch (error) {
    result.delete = { status: null, url: resource };
    fail(`DELETE ${resource}: ${error.cause?.message ?? error.message}`);
  }
}

function finish(result) {
  result.ok = result.failures.length === 0;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  ndc.cleanup();
  process.exit(result.ok ? 0 : 1);
}

main().catch((error) => {
  process.stderr.write(`obslike: crashed: ${error.stack}\n`);
  process.stdout.write(`${JSON.stringify({ client: 'obslike', ok: false, failures: [`crashed: ${error.message}`] })}\n`);
  process.exit(1);
});
