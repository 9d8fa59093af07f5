// The API client of the UI: every call goes to the documented API, with the
// key of the session (kept in sessionStorage only) as a bearer token.

const KEY = 'orchestrator.key';
const TENANT = 'orchestrator.tenant';

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ''; },
  set key(k) { if (k) sessionStorage.setItem(KEY, k); else sessionStorage.removeItem(KEY); },
  get tenant() { return sessionStorage.getItem(TENANT) || 'default'; },
  set tenant(t) { sessionStorage.setItem(TENANT, t || 'default'); },
};

// bus carries 'unauthenticated' (a 401: the login form is needed).
export const bus = new EventTarget();

// ApiError is a refused or failed call: its status, the problem's stable
// code ('' when the answer was not a problem document), the problem
// document and, as its message, the problem's detail or title.
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = (problem && problem.code) || '';
    this.problem = problem;
  }
}

export function authHeaders(extra = {}) {
  const h = { ...extra };
  if (session.key) h.Authorization = `Bearer ${session.key}`;
  return h;
}

// tpath is a path of the current tenant's API.
export function tpath(rest) {
  return `/api/v1/tenants/${encodeURIComponent(session.tenant)}${rest}`;
}

// refusal reads a refused answer into an ApiError, the one shape of every
// refusal the UI shows: from its problem document, or from its status line
// when the body is not one.
export async function refusal(res) {
  let p = null;
  try { p = await res.json(); } catch { p = { title: res.statusText, status: res.status }; }
  return new ApiError(res.status, p);
}

// failure is the error of a refused API call; a 401 also asks for the
// login form, since the page cannot be drawn without the call.
async function failure(res) {
  const err = await refusal(res);
  if (res.status === 401) bus.dispatchEvent(new Event('unauthenticated'));
  return err;
}

// call sends one request; body is JSON (an object) or text sent as is.
export async function call(method, path, body, opts = {}) {
  const headers = authHeaders({ Accept: opts.accept || 'application/json' });
  const init = { method, headers, cache: 'no-store', signal: opts.signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  if (opts.raw) return res;
  return res.status === 204 ? null : res.json();
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body === undefined ? {} : body, opts);
