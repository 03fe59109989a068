// @ts-check
/**
 * When and how a page comes back: the back-off between reconnects, the wait after
 * `server-shutdown`, and the resume key a live streamer's page keeps for a reload.
 * Pure functions, no DOM (docs/protocol.md, "Reconnecting").
 */

/** @typedef {import("/static/protocol.js").Role} Role */

/*
 * Reconnect timing. A page must play again within 3 s of the server coming back, so the
 * back-off is short: 250 ms, doubling, capped at 1.5 s, each delay drawn uniformly from the
 * upper half of its step (full jitter over [50 %, 100 %]) so that clients dropped together
 * spread out instead of returning together.
 *
 * What that costs a server that stays away: at the cap a client retries every 0.75–1.5 s,
 * 1.125 s on average, so 500 waiting clients make 500 / 1.125 ≈ 444 attempts per second
 * (each a refused TCP connect while nothing listens). After `server-shutdown` the first
 * attempts are spread uniformly over the 1.5 s after `retryAfter`: 500 / 1.5 ≈ 333 joins per
 * second when the server returns.
 */
export const BACKOFF_BASE_MS = 250;
export const BACKOFF_MAX_MS = 1500;

/**
 * Exponential back-off with jitter: base·2^attempt capped at max, then a random point in its
 * upper half.
 * @param {number} attempt  0 for the first retry
 * @param {number} [base]
 * @param {number} [max]
 * @param {() => number} [random]
 */
export function backoffDelay(
  attempt,
  base = BACKOFF_BASE_MS,
  max = BACKOFF_MAX_MS,
  random = Math.random,
) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * The wait after `server-shutdown`: `retryAfter` seconds (as the server asked; at most a
 * minute, whatever it says), then a random point in the next `spread` ms.
 * @param {unknown} retryAfter  seconds, from the message
 * @param {number} [spread]  ms
 * @param {() => number} [random]
 */
export function shutdownDelay(retryAfter, spread = BACKOFF_MAX_MS, random = Math.random) {
  const seconds = typeof retryAfter === "number" && Number.isFinite(retryAfter) ? retryAfter : 0;
  return Math.min(Math.max(seconds, 0), 60) * 1000 + random() * spread;
}

/*
 * A live streamer's page keeps its session's resume key for a reload of the same tab
 * (sessionStorage), and only across it: the key is written when the page goes away (pagehide)
 * and taken out as the next page starts. A duplicated tab, which copies sessionStorage,
 * therefore never finds the key of a page that is still open (it would take that page's
 * session away: `replaced`). See ui.js endWithPage for why other pages leave instead.
 */

/** @param {string} roomId @param {Role} role */
function resumeStorageKey(roomId, role) {
  return `netra.resume.${role}.${roomId}`;
}

/**
 * The key an earlier page of this tab left for this room and role, removed from storage.
 * @param {Storage} storage  sessionStorage
 * @param {string} roomId
 * @param {Role} role
 * @returns {string | null}
 */
export function takeResumeKey(storage, roomId, role) {
  const key = storage.getItem(resumeStorageKey(roomId, role));
  storage.removeItem(resumeStorageKey(roomId, role));
  return key;
}

/**
 * Leave `key` for the next page of this tab (call it as the page goes away).
 * @param {Storage} storage
 * @param {string} roomId
 * @param {Role} role
 * @param {string | null} key  null: leave nothing (the session was left or taken over)
 */
export function keepResumeKey(storage, roomId, role, key) {
  if (key === null) storage.removeItem(resumeStorageKey(roomId, role));
  else storage.setItem(resumeStorageKey(roomId, role), key);
}
