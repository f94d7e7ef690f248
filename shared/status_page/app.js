// The calbridge status page: reads GET /api/orgs/{org}/status with the keys typed in and shows
// it. Every value is rendered with textContent (never as HTML); the keys are kept in this
// script's memory, or in the tab's sessionStorage when asked, and are sent in headers only.
'use strict';

(() => {
  const STORED = 'calbridge-status-keys';
  const ADMIN_KEY_HEADER = 'X-Calbridge-Admin-Key';
  const FUNCTION_KEY_HEADER = 'x-functions-key';
  const REFRESH_MS = 15000;
  // The lag bar is full at 15 minutes; green up to 2 minutes (a poll or two), amber up to 15.
  const LAG_FULL_S = 900;
  const LAG_OK_S = 120;

  // The routes live beside this page: /api/status-page → /api/.
  const apiBase = new URL('.', window.location.href);
  const keys = { org: '', functionKey: '', adminKey: '' };
  let timer = null;

  const byId = (id) => document.getElementById(id);

  function element(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined && text !== null) made.textContent = String(text);
    return made;
  }

  function cell(row, text, className) {
    const made = element('td', className, text);
    row.appendChild(made);
    return made;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function say(text, isError) {
    const box = byId('message');
    box.textContent = text;
    box.className = isError ? 'error' : '';
    box.hidden = false;
  }

  function when(instant) {
    if (!instant) return '—';
    const date = new Date(instant);
    return Number.isNaN(date.getTime()) ? String(instant) : date.toLocaleString();
  }

  function seconds(value) {
    if (value === null || value === undefined) return 'never synced';
    if (value < 120) return `${Math.round(value)} s`;
    if (value < 7200) return `${Math.round(value / 60)} min`;
    return `${Math.round(value / 3600)} h`;
  }

  // --- talking to calbridge ---------------------------------------------------------------

  function path(...parts) {
    return parts.map((part) => encodeURIComponent(part)).join('/');
  }

  async function call(method, relative, body) {
    const headers = { Accept: 'application/json' };
    headers[ADMIN_KEY_HEADER] = keys.adminKey;
    if (keys.functionKey) headers[FUNCTION_KEY_HEADER] = keys.functionKey;
    const init = {
      method,
      headers,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer',
    };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(relative, apiBase), init);
    } catch (failure) {
      throw new Error(`calbridge did not answer (${failure.message})`);
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch (ignored) {
      answer = null;
    }
    if (!response.ok) {
      const detail = answer && typeof answer.message === 'string' ? answer.message : response.statusText;
      const hint = response.status === 404 ? ' (not found: this calbridge may not have that route)' : '';
      throw new Error(`${method} ${relative}: HTTP ${response.status}${hint}: ${detail}`);
    }
    return answer;
  }

  // An action, then the status read again; its outcome is said once the page shows it.
  async function act(label, method, relative, body) {
    say(`${label}…`, false);
    let outcome = `${label}: done.`;
    let failed = false;
    try {
      await call(method, relative, body);
    } catch (failure) {
      outcome = `${label} failed: ${failure.message}`;
      failed = true;
    }
    await refresh(true);
    say(outcome, failed);
  }

  function button(label, title, onPress) {
    const made = element('button', null, label);
    made.type = 'button';
    made.title = title;
    made.addEventListener('click', onPress);
    return made;
  }

  // --- rendering --------------------------------------------------------------------------

  function badge(health) {
    const name = health || 'unknown';
    const made = element('span', `badge ${name.replace(/[^a-z_]/g, '')}`, health || 'not read yet');
    made.dataset.health = name;
    return made;
  }

  function lagBar(lagSeconds) {
    const box = element('div', 'lag');
    const bar = element('div', 'lag-bar');
    const fill = element('div', 'lag-fill');
    const never = lagSeconds === null || lagSeconds === undefined;
    const share = never ? 1 : Math.min(lagSeconds / LAG_FULL_S, 1);
    // CSSOM, not a style attribute: allowed by the page's Content-Security-Policy.
    fill.style.width = `${Math.max(share * 100, 2).toFixed(1)}%`;
    if (never || lagSeconds > LAG_FULL_S) fill.classList.add('bad');
    else if (lagSeconds > LAG_OK_S) fill.classList.add('warn');
    bar.appendChild(fill);
    box.appendChild(bar);
    box.appendChild(element('span', 'lag-text', seconds(lagSeconds)));
    box.dataset.lagSeconds = never ? '' : String(lagSeconds);
    return box;
  }

  function renderConnections(connections) {
    const holder = byId('connections');
    clear(holder);
    for (const connection of connections) {
      const card = element('article', 'card connection');
      card.dataset.connection = connection.connectionId;
      const title = element('h3');
      title.appendChild(element('span', 'name', connection.connectionId));
      title.appendChild(element('span', 'muted', connection.kind));
      title.appendChild(badge(connection.health));
      card.appendChild(title);
      const progress = connection.resync;
      const resync = element(
        'p',
        'resync',
        `Resync: ${progress.done}/${progress.total} mailboxes read in full`,
      );
      card.appendChild(resync);
      card.appendChild(element('p', null, `Parked changes: ${connection.parked}`));
      if (connection.lastError) card.appendChild(element('p', 'error-text', connection.lastError));
      const actions = element('div', 'actions');
      const base = path('orgs', keys.org, 'connections', connection.connectionId);
      actions.appendChild(
        button('Resync', 'Read every mailbox of this connection in full again', () =>
          act(`Resync of ${connection.connectionId}`, 'POST', `${base}/resync`)),
      );
      if (connection.enabled) {
        actions.appendChild(
          button('Disable', 'Stop every call to this Exchange (maintenance)', () =>
            act(`Disable ${connection.connectionId}`, 'POST', `${base}/disable`)),
        );
      } else {
        actions.appendChild(
          button('Enable', 'Apply what was kept and catch up', () =>
            act(`Enable ${connection.connectionId}`, 'POST', `${base}/enable`)),
        );
      }
      card.appendChild(actions);
      holder.appendChild(card);
    }
    if (connections.length === 0) holder.appendChild(element('p', 'muted', 'No connection yet.'));
  }

  function work(counts) {
    const parts = [];
    for (const [name, value] of Object.entries(counts)) {
      if (value) parts.push(`${value} ${name.replace(/([A-Z])/g, ' $1').toLowerCase()}`);
    }
    return parts.length ? parts.join(', ') : '—';
  }

  function renderMailboxes(mailboxes) {
    const body = byId('mailboxes').tBodies[0];
    clear(body);
    for (const mailbox of mailboxes) {
      const row = element('tr', 'mailbox');
      row.dataset.staff = mailbox.staffId;
      cell(row, mailbox.staffId);
      cell(row, mailbox.mailbox);
      cell(row, mailbox.connectionId);
      const health = cell(row, null, 'health');
      health.appendChild(badge(mailbox.health));
      if (mailbox.resyncing) health.appendChild(element('span', 'tag resyncing', 'resyncing'));
      if (mailbox.held) health.appendChild(element('span', 'tag held', 'held'));
      const lag = cell(row, null);
      lag.appendChild(lagBar(mailbox.lagSeconds));
      lag.title = `last synced ${when(mailbox.lastSyncedAt)}; last read in full ${when(mailbox.lastFullReadAt)}`;
      cell(row, work(mailbox.pending), 'pending');
      cell(row, work(mailbox.deadLettered), 'dead');
      cell(row, mailbox.refusedReschedules || '—', 'refused');
      cell(row, mailbox.subscriptionExpiresAt ? `expires ${when(mailbox.subscriptionExpiresAt)}` : (mailbox.subscriptionError || '—'));
      cell(row, mailbox.lastError || mailbox.held || '', 'error-text');
      const actions = cell(row, null);
      actions.appendChild(
        button('Resync', 'Read this mailbox in full again', () =>
          act(`Resync of ${mailbox.staffId}`, 'POST', `${path('orgs', keys.org, 'staff', mailbox.staffId)}/resync`)),
      );
      body.appendChild(row);
    }
  }

  function renderDeadLetters(entries) {
    const body = byId('dead-letters').tBodies[0];
    clear(body);
    for (const entry of entries) {
      const row = element('tr', 'dead-letter');
      row.dataset.subject = entry.subjectId;
      cell(row, when(entry.failedAt));
      cell(row, entry.queue);
      cell(row, entry.subjectId);
      cell(row, entry.staffId || '—');
      cell(row, entry.reason, 'error-text');
      const replay = entry.queue === 'webhook-deliveries'
        ? () => act(`Replay of webhook ${entry.subjectId}`, 'POST', `${path('orgs', keys.org, 'webhooks', entry.subjectId)}/replay`)
        : () => act(`Replay of ${entry.subjectId}`, 'POST', `${path('orgs', keys.org)}/replay`, { queue: entry.queue, id: entry.subjectId });
      cell(row, null).appendChild(button('Replay', 'Try this work again', replay));
      body.appendChild(row);
    }
    byId('replay-all').disabled = entries.length === 0;
  }

  function renderErrors(errors) {
    const list = byId('errors');
    clear(list);
    for (const error of errors) {
      const item = element('li', `error ${error.source}`);
      item.appendChild(element('span', 'when', error.at ? when(error.at) : 'now'));
      const about = [error.source, error.connectionId, error.staffId, error.subjectId].filter(Boolean);
      item.appendChild(element('strong', null, about.join(' · ')));
      item.appendChild(element('span', 'error-text', ` ${error.message}`));
      list.appendChild(item);
    }
    if (errors.length === 0) list.appendChild(element('li', 'muted', 'No errors.'));
  }

  function render(status) {
    byId('generated').textContent = `Organization ${status.org}, read ${when(status.generatedAt)}`;
    renderConnections(status.connections);
    renderMailboxes(status.mailboxes);
    byId('totals').textContent = `(${status.mailboxes.length}; pending: ${work(status.pending)}; dead: ${work(status.deadLettered)})`;
    renderDeadLetters(status.deadLetters);
    renderErrors(status.errors);
    byId('status').hidden = false;
  }

  async function refresh(quiet) {
    if (!keys.org || !keys.adminKey) return;
    try {
      render(await call('GET', `${path('orgs', keys.org)}/status`));
      if (!quiet) say('Status read.', false);
    } catch (failure) {
      say(failure.message, true);
    }
  }

  // --- keys -------------------------------------------------------------------------------

  function readInputs() {
    keys.org = byId('org').value.trim();
    keys.functionKey = byId('function-key').value;
    keys.adminKey = byId('admin-key').value;
    if (byId('remember').checked) {
      window.sessionStorage.setItem(STORED, JSON.stringify(keys));
    } else {
      window.sessionStorage.removeItem(STORED);
    }
  }

  function restore() {
    let saved = null;
    try {
      saved = JSON.parse(window.sessionStorage.getItem(STORED) || 'null');
    } catch (ignored) {
      saved = null;
    }
    if (!saved) return false;
    byId('org').value = saved.org || '';
    byId('function-key').value = saved.functionKey || '';
    byId('admin-key').value = saved.adminKey || '';
    byId('remember').checked = true;
    return true;
  }

  function show() {
    readInputs();
    if (!keys.org || !keys.adminKey) {
      say('Enter the organization and the admin key.', true);
      return;
    }
    refresh(false);
    if (timer === null) timer = window.setInterval(() => refresh(true), REFRESH_MS);
  }

  function forget() {
    window.sessionStorage.removeItem(STORED);
    keys.org = '';
    keys.functionKey = '';
    keys.adminKey = '';
    for (const id of ['function-key', 'admin-key']) byId(id).value = '';
    byId('remember').checked = false;
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    byId('status').hidden = true;
    say('Keys forgotten.', false);
  }

  document.addEventListener('DOMContentLoaded', () => {
    byId('show').addEventListener('click', show);
    byId('forget').addEventListener('click', forget);
    byId('replay-all').addEventListener('click', () =>
      act('Replay of all dead-lettered work', 'POST', `${path('orgs', keys.org)}/replay`, {}));
    for (const id of ['org', 'function-key', 'admin-key']) {
      byId(id).addEventListener('keydown', (event) => {
        if (event.key === 'Enter') show();
      });
    }
    if (restore()) show();
  });
})();
