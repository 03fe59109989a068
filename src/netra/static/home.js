// @ts-check
/** The home page: choose a room, then go live in it or watch it. */

import { isValidRoomId } from "/static/protocol.js";
import { takeToken } from "/static/token.js";

// The link `netra serve` prints carries a publish token: keep it for the streamer page.
takeToken(location, history, localStorage);

/** A random default room name such as `room-k3f9x2`. */
function randomRoom() {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `room-${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("")}`;
}

const form = /** @type {HTMLFormElement} */ (document.querySelector("[data-role=room-form]"));
const input = /** @type {HTMLInputElement} */ (document.querySelector("[data-role=room-input]"));
const hint = /** @type {HTMLElement} */ (document.querySelector("[data-role=room-hint]"));
const goLive = /** @type {HTMLButtonElement} */ (document.querySelector("[data-action=go-live]"));
const watch = /** @type {HTMLAnchorElement} */ (document.querySelector("[data-role=watch-link]"));

function update() {
  const room = input.value.trim();
  const valid = isValidRoomId(room);
  goLive.disabled = !valid;
  watch.classList.toggle("disabled", !valid);
  watch.setAttribute("aria-disabled", String(!valid));
  watch.href = valid ? `/watch/${room}` : "#";
  hint.classList.toggle("invalid", !valid && room.length > 0);
}

input.value = randomRoom();
input.addEventListener("input", update);
watch.addEventListener("click", (event) => {
  if (!isValidRoomId(input.value.trim())) event.preventDefault();
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const room = input.value.trim();
  if (isValidRoomId(room)) location.assign(`/stream/${room}`);
});
update();
