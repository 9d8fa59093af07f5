// openStream reads a Server-Sent Events stream with fetch, which, unlike
// EventSource, can send the Authorization header. It reconnects with
// Last-Event-ID after a drop (with a growing delay, up to 10 s), stops for
// good on close() or a 4xx, and hands every event to onEvent. onError(err,
// retrying) hears of each failure, and whether another try follows.
//
// A refused stream is an ApiError like a refused call (refusal builds both),
// but its 401 does not open the login form as a call's does: the stream
// runs behind a page that is drawn already, and taking the reader away
// from it at a reconnect (after the key was revoked, say) would lose what
// they are looking at. The page says that its live updates stopped and
// why (liveStatus); the next call the reader makes meets the same 401 and
// opens the form.
import { authHeaders, ApiError, refusal } from './api.js';
import { problemText } from './dom.js';

export function openStream(path, { onEvent, onOpen, onError, lastEventId = '' }) {
  let ctrl = null;
  let closed = false;
  let lastId = lastEventId;
  let delay = 250;

  function dispatch(block) {
    let type = 'message';
    const data = [];
    let id = null;
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const name = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'event') type = value;
      else if (name === 'data') data.push(value);
      else if (name === 'id') id = value;
    }
    if (id !== null) lastId = id;
    if (data.length === 0 && type === 'message') return;
    let parsed = null;
    try { parsed = data.length ? JSON.parse(data.join('\n')) : null; } catch { parsed = data.join('\n'); }
    onEvent(type, parsed, id);
  }

  async function connect() {
    ctrl = new AbortController();
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (lastId) headers['Last-Event-ID'] = lastId;
    try {
      const res = await fetch(path, { headers, signal: ctrl.signal, cache: 'no-store' });
      if (!res.ok) throw await refusal(res);
      delay = 250;
      if (onOpen) onOpen();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      while (!closed) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          dispatch(block);
          if (closed) break;
        }
      }
      if (closed) ctrl.abort();
    } catch (err) {
      if (closed) return;
      // A refusal stands (401, 403, 404), except too many streams (429): try again later.
      const stands = err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 429;
      if (stands) closed = true;
      if (onError) onError(err, !stands);
    }
    if (closed) return;
    setTimeout(() => { if (!closed) connect(); }, delay);
    delay = Math.min(delay * 2, 10000);
  }

  connect();
  return { close() { closed = true; if (ctrl) ctrl.abort(); } };
}

// liveStatus is the onOpen and onError of a page's stream that say, in el,
// whether the page is live, reconnecting, or stopped and why.
export function liveStatus(el) {
  return {
    onOpen: () => { el.textContent = '● live'; el.dataset.live = 'live'; },
    onError: (err, retrying) => {
      el.textContent = retrying ? 'reconnecting…'
        : `updates stopped (${err.status}): ${problemText(err)}`;
      el.dataset.live = retrying ? 'reconnecting' : 'stopped';
    },
  };
}
