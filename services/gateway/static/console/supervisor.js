// The supervisor view: queues, agents and channels, polled every 2 s. Reads only; the session is the
// agent console's (sign in there). docs/console.md describes the columns.

const POLL_MS = 2000;
// A caller waiting longer than this shows in red.
const LONG_WAIT_S = 60;
const $ = (selector) => document.querySelector(selector);

function cell(value, numeric = false) {
  const td = document.createElement('td');
  if (numeric) td.className = 'num';
  td.textContent = value ?? '—';
  return td;
}

function seconds(value) {
  if (value === null || value === undefined) return '—';
  const s = Math.round(value);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function row(cells, alarm = false) {
  const tr = document.createElement('tr');
  tr.dataset.alarm = String(alarm);
  tr.append(...cells);
  return tr;
}

function empty(columns, text) {
  const td = cell(text);
  td.colSpan = columns;
  return row([td]);
}

async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  } catch (err) {
    throw Object.assign(new Error(`cannot reach the hub (${err.message})`), { status: 0 });
  }
  let data = null;
  try {
    data = response.status === 204 ? null : await response.json();
  } catch {
    // Not JSON: the status line says enough.
  }
  if (!response.ok) {
    const detail = (data && typeof data.detail === 'string' && data.detail) || `${response.status} ${response.statusText}`;
    throw Object.assign(new Error(detail), { status: response.status });
  }
  return data;
}

function render({ queues = [], agents = [], channels = [] }) {
  const queueRows = queues.map((q) => row([
    cell(q.queue), cell(q.waiting, true), cell(seconds(q.longest_wait_s), true), cell(q.agents_available, true),
  ], q.waiting > 0 && (q.longest_wait_s >= LONG_WAIT_S || q.agents_available === 0)));
  $('#queues tbody').replaceChildren(...(queueRows.length ? queueRows : [empty(4, 'No queues.')]));
  const agentRows = agents.map((a) => row([
    cell(a.agent), cell(a.presence), cell(a.contacts_today, true), cell(a.answered, true), cell(a.missed, true),
    cell(seconds(a.avg_answer_s), true), cell(seconds(a.avg_handle_s), true),
  ]));
  $('#agents tbody').replaceChildren(...(agentRows.length ? agentRows : [empty(7, 'No agents.')]));
  const channelRows = channels.map((c) => row([
    cell(c.channel), cell(c.contacts, true), cell(c.answered, true), cell(c.missed, true),
    cell(c.abandoned, true),
  ]));
  $('#channels tbody').replaceChildren(
    ...(channelRows.length ? channelRows : [empty(5, 'No contacts yet today.')]),
  );
}

async function poll() {
  try {
    render(await getJson('/v1/supervisor/queues'));
    $('#alert').textContent = '';
    $('#updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $('#alert').textContent = err.status === 401
      ? 'You are not signed in: sign in on the agent console, then come back.'
      : `Loading the queues: ${err.message}`;
    if (err.status === 401 || err.status === 403) return; // polling again will not help
  }
  setTimeout(poll, POLL_MS);
}

async function boot() {
  try {
    const session = await getJson('/console/session');
    if (!session) throw Object.assign(new Error('not signed in'), { status: 401 });
    $('#whoami').textContent = `${session.username} (${(session.roles || []).join(', ')})`;
  } catch (err) {
    $('#updated').textContent = '';
    $('#alert').textContent = err.status === 401
      ? 'You are not signed in: sign in on the agent console, then come back.'
      : `Checking your session: ${err.message}`;
    if (err.status === 401) return;
  }
  poll();
}

boot();
