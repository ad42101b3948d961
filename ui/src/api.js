// The embedded KFP server's API, by relative URLs (the UI works under / and /pipeline/).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const RELOAD_KEY = 'kfp-ui-auth-reload';

// The session is gone (401, or a redirect to a login form): reload once, so the page
// load goes through the server's login; a second time within 10 s shows the error.
function authLost(status) {
  const last = Number(sessionStorage.getItem(RELOAD_KEY) || 0);
  if (Date.now() - last > 10000) {
    sessionStorage.setItem(RELOAD_KEY, String(Date.now()));
    window.location.reload();
  }
  return new ApiError(status, 'Not logged in (or the session expired): reload the page to log in.');
}

async function errorOf(res) {
  const type = res.headers.get('content-type') || '';
  if (type.includes('json')) {
    try {
      const body = await res.json();
      const message = body.message || body.error_message || body.error || JSON.stringify(body);
      return new ApiError(res.status, `${res.status}: ${message}`);
    } catch (_) {
      /* fall through */
    }
  }
  return new ApiError(res.status, `${res.status} ${res.statusText || 'error'}`);
}

/** A JSON call: the decoded answer, or an ApiError saying what went wrong. */
export async function api(path, { method = 'GET', body } = {}) {
  const res = await send(path, method, body);
  const type = res.headers.get('content-type') || '';
  if (!type.includes('json')) {
    if (res.redirected || type.includes('html')) throw authLost(res.status);
    throw new ApiError(res.status, `${res.status}: ${path} did not answer JSON`);
  }
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** A text call (task logs). */
export async function apiText(path) {
  const res = await send(path, 'GET');
  const type = res.headers.get('content-type') || '';
  if (res.redirected && type.includes('html')) throw authLost(res.status);
  if (!res.ok) throw await errorOf(res);
  return res.text();
}

async function send(path, method, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `the server cannot be reached (${error.message})`);
  }
  if (res.status === 401) throw authLost(401);
  return res;
}

export const V1 = 'apis/v1beta1';
export const V2 = 'apis/v2beta1';
export const LOCAL = 'apis/local/v1';

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** KFP's filter JSON with one predicate per [key, operation, value]. */
export function filter(...predicates) {
  return JSON.stringify({
    predicates: predicates.map(([key, operation, value]) => ({
      key,
      operation,
      string_value: value,
    })),
  });
}

export const enc = encodeURIComponent;
