// @ts-check
/** What a page reads in SDP and codec lists: pure functions, no DOM. */

const HELPER_CODECS = new Set(["rtx", "red", "ulpfec", "flexfec-03"]);

/**
 * The codecs of an offer's audio and video sections that this browser cannot receive, as
 * `video/H264 (profile-level-id=640c1f)`; empty when it can play everything offered.
 * @param {string} sdp
 * @param {(kind: string) => RTCRtpCapabilities | null} capabilities
 * @returns {string[]}
 */
export function undecodableCodecs(sdp, capabilities) {
  /** @type {string[]} */
  const missing = [];
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const kind = section.slice(0, section.indexOf(" "));
    if (kind !== "audio" && kind !== "video") continue;
    const known = new Set(
      (capabilities(kind)?.codecs ?? []).map((codec) => codec.mimeType.toLowerCase()),
    );
    const offered = [...section.matchAll(/a=rtpmap:(\d+) ([^/\s]+)\//g)].filter(
      (match) => !HELPER_CODECS.has(match[2].toLowerCase()),
    );
    if (offered.length === 0) continue;
    if (offered.some((match) => known.has(`${kind}/${match[2]}`.toLowerCase()))) continue;
    for (const [, pt, name] of offered) {
      const profile = new RegExp(`a=fmtp:${pt} .*profile-level-id=([0-9a-fA-F]{6})`).exec(section);
      missing.push(`${kind}/${name}${profile ? ` (profile-level-id=${profile[1]})` : ""}`);
    }
  }
  return missing;
}

/**
 * Put the codecs of one MIME type first, keeping the rest (rtx, red, ulpfec, others) in order.
 * @param {RTCRtpCodec[]} codecs
 * @param {string} mimeType  e.g. "video/VP8"
 */
export function preferCodec(codecs, mimeType) {
  const wanted = mimeType.toLowerCase();
  const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
  return [...first, ...rest];
}
