// The page furniture every page shares: the flash banner, the
// confirmation dialog of control actions, and the confirmed post that
// every control action is.
import { post } from './api.js';
import { problemText } from './dom.js';

export function flash(text, kind = 'error') {
  const el = document.getElementById('flash');
  el.textContent = text;
  el.className = `flash ${kind}`;
  el.hidden = !text;
}

// confirmAction asks before a control action; it resolves true on Confirm.
export function confirmAction(text) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = '';
    dlg.showModal();
  });
}

// confirmAndPost is a control action: it asks text and, on Confirm, posts
// body to path. update(answer) (answer null after a refusal) brings the
// page up to date before the outcome is flashed, so that the banner never
// describes a view still to come: done(answer) is the text of a success, a
// refusal is shown as the server words it ("pause refused (409): …"). It
// does nothing when the action is not confirmed.
export async function confirmAndPost(text, { verb, path, body, done, update }) {
  if (!(await confirmAction(text))) return;
  let out = null;
  let refused = null;
  try {
    out = await post(path, body);
  } catch (err) {
    refused = err;
  }
  if (update) {
    try {
      await update(out);
    } catch (err) {
      flash(problemText(err));
      return;
    }
  }
  if (refused) flash(`${verb} refused${refused.status ? ` (${refused.status})` : ''}: ${problemText(refused)}`);
  else flash(done(out), 'ok');
}
