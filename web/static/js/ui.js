// The page furniture every page shares: the flash banner and the
// confirmation dialog of control actions.

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
