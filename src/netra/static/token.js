// @ts-check
/**
 * Where a page's access token comes from: a `?token=` in its URL (the link `netra serve`
 * prints, or one a site hands out) is kept in this browser and removed from the address bar,
 * so that it does not end up in bookmarks, screenshots or a shared link. No DOM here.
 */

const KEY = "netra.token";

/**
 * The token for this page: the URL's, which replaces the kept one, else the kept one.
 * @param {Location} location
 * @param {History} history
 * @param {Storage} storage
 * @returns {string | null}
 */
export function takeToken(location, history, storage) {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    keepToken(storage, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return storage.getItem(KEY);
}

/** @param {Storage} storage @param {string} token */
export function keepToken(storage, token) {
  storage.setItem(KEY, token.trim());
}

/** @param {Storage} storage */
export function forgetToken(storage) {
  storage.removeItem(KEY);
}
