// The campaigns page: the list of campaigns, and one campaign's settings, funnel and controls,
// with the funnel over time drawn as inline SVG. The session is the agent console's (sign in
// there); docs/console.md describes the page. Server data reaches the page only as text.

const POLL_MS = 3000;
// While a campaign can still change by itself its page is read again every POLL_MS.
const LIVE_STATES = new Set(['scheduled', 'running', 'paused']);
const STAGES = [
  ['queued', 'Queued'], ['produced', 'Produced'], ['sent', 'Sent'], ['delivered', 'Delivered'],
  ['replied', 'Replied'], ['failed', 'Failed'], ['opted_out', 'Opted out'],
];
// The chart's series; each has its own colour and dash, so they differ without colour too.
const SERIES = [['sent', 'Sent'], ['delivered', 'Delivered'], ['replied', 'Replied'],
  ['failed', 'Failed'], ['opted_out', 'Opted out']];
const SVG = 'http://www.w3.org/2000/svg';
const CHART = { width: 640, height: 300, left: 48, right: 16, top: 16, bottom: 40 };
const CAMPAIGN_ROLES = ['campaign_manager', 'admin'];
const DESK_ROLES = ['agent', 'supervisor', 'admin'];

const $ = (selector) => document.querySelector(selector);
const state = { session: null, campaignId: null, campaign: null, timer: 0, seq: 0 };

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

function s(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== null) el.textContent = text;
  return el;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && state.session) headers['X-CSRF-Token'] = state.session.csrf_token;
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(0, `cannot reach the hub (${err.message})`);
  }
  const text = response.status === 204 ? '' : await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): the status line says enough.
  }
  if (response.ok) return data;
  const detail = (data && typeof data.detail === 'string' && data.detail)
    || `${response.status} ${response.statusText}`.trim();
  throw new ApiError(response.status, detail);
}

function showAlert(message) {
  $('#alert').textContent = message;
}

function report(action, err) {
  if (err.status === 401) {
    stopPolling();
    showAlert('You are not signed in: sign in on the agent console, then come back.');
    return;
  }
  showAlert(`${action}: ${err.message}`);
  if (!(err instanceof ApiError)) console.error(err); // a bug in this page: keep the stack
}

function stamp() {
  $('#updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' }) : '—');
const percent = (n, of) => (of ? `${Math.round((100 * n) / of)}%` : '—');

// ---- the list ------------------------------------------------------------------------------

function progressCell(campaign, funnel) {
  const td = h('td', { class: 'progress-cell' });
  if (!funnel || !funnel.points.length) {
    td.append(campaign.state === 'draft' ? 'not started' : '—');
    return td;
  }
  const last = funnel.points[funnel.points.length - 1];
  const done = last.sent + last.failed;
  td.append(
    h('progress', { max: Math.max(funnel.queued, 1), value: done, 'aria-hidden': 'true' }),
    ` ${done} of ${funnel.queued} sent (${percent(done, funnel.queued)})`,
  );
  return td;
}

async function showList() {
  stopPolling();
  const seq = ++state.seq;
  state.campaignId = null;
  $('#campaign').hidden = true;
  $('#campaign-list').hidden = false;
  document.title = 'Switchboard campaigns';
  try {
    const campaigns = await api('GET', '/v1/campaigns');
    // The last point of each funnel is its progress (two points: the cheapest series).
    const funnels = await Promise.all(campaigns.map((c) => (c.state === 'draft'
      ? null
      : api('GET', `/v1/campaigns/${encodeURIComponent(c.campaign_id)}/funnel?points=2`).catch(() => null))));
    if (seq !== state.seq) return;
    const rows = campaigns.map((c, i) => h(
      'tr',
      { 'data-campaign-id': c.campaign_id, 'data-state': c.state },
      h('td', {}, h('a', { href: `#${c.campaign_id}` }, c.name)),
      h('td', {}, h('span', { class: 'badge', 'data-state': c.state }, c.state)),
      h('td', {}, c.channels.join(', ') || '—'),
      progressCell(c, funnels[i]),
    ));
    const empty = h('tr', {}, h('td', { colspan: 4 }, 'No campaigns yet (switchboard campaign create NAME).'));
    $('#campaigns tbody').replaceChildren(...(rows.length ? rows : [empty]));
    showAlert('');
    stamp();
  } catch (err) {
    report('Loading the campaigns', err);
  }
}

// ---- one campaign --------------------------------------------------------------------------

function settingsRows(c) {
  const rates = Object.entries(c.rate_limits).map(([ch, r]) => `${ch} ${r}/s`).join(', ');
  const rows = [
    ['Channels', c.channels.join(', ') || '—'],
    ['Templates', c.templates.map((t) => `${t.channel} (${t.language})`).join(', ') || '—'],
    ['Window', `${when(c.starts_at)} – ${when(c.ends_at)}`],
    ['Allowed hours', `${c.allowed_from}–${c.allowed_until} in the recipient's time zone (${c.time_zone} when unknown)`],
    ['Rate limits', rates || '—'],
    ['Fallback', c.fallback ? 'to the next channel' : 'no'],
    ['Frequency cap', `${c.frequency_cap.max_contacts} in ${c.frequency_cap.period_days} days`],
    ['Created by', c.created_by],
    ['Started', when(c.started_at)],
    ['Ended', when(c.ended_at)],
  ];
  return rows.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]);
}

function renderCampaign(c) {
  state.campaign = c;
  $('#campaign-title').textContent = c.name;
  document.title = `${c.name}: Switchboard campaigns`;
  const badge = $('#campaign-state');
  badge.textContent = c.state;
  badge.dataset.state = c.state;
  $('#campaign').dataset.state = c.state;
  $('#campaign-settings').replaceChildren(...settingsRows(c));
  $('#campaign-pause').disabled = c.state !== 'running';
  $('#campaign-resume').disabled = c.state !== 'paused';
  const final = c.state === 'cancelled' || c.state === 'completed';
  $('#campaign-cancel').disabled = final;
  if (final) $('#cancel-confirm').hidden = true;
  const t = c.tracking || {};
  $('#funnel-table tbody').replaceChildren(...STAGES.map(([key, label]) => h(
    'tr',
    { 'data-stage': key },
    h('th', { scope: 'row' }, label),
    h('td', { class: 'num' }, t[key] ?? '?'),
    h('td', { class: 'num' }, key === 'queued' || t[key] == null ? '' : percent(t[key], t.queued)),
  )));
}

// The y axis' gridline step: 1, 2 or 5 times a power of ten, about four lines up to n.
function niceStep(n) {
  const rough = Math.max(n / 4, 1);
  const power = 10 ** Math.floor(Math.log10(rough));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= rough);
}

function timeLabel(date, spanMs) {
  return spanMs > 24 * 3600_000
    ? date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
    : date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

function stepText(seconds) {
  const minutes = seconds / 60;
  return minutes < 60 ? `${minutes} min` : `${minutes / 60} h`;
}

// The funnel over time: one polyline per stage, over a grid, against the queued sends.
function drawChart(funnel) {
  const svg = $('#funnel-chart');
  const keep = [$('#funnel-chart-title'), $('#funnel-chart-desc')];
  const { width, height, left, right, top, bottom } = CHART;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const points = funnel.points;
  svg.dataset.points = String(points.length);
  if (!points.length) {
    svg.replaceChildren(...keep, s('text', { x: width / 2, y: height / 2, class: 'chart-empty', 'text-anchor': 'middle' }, 'Not started yet'));
    $('#funnel-legend').replaceChildren();
    return;
  }
  const t0 = Date.parse(points[0].at);
  const t1 = Date.parse(points[points.length - 1].at);
  const span = Math.max(t1 - t0, 1);
  const top1 = Math.max(funnel.queued, ...points.map((p) => Math.max(...SERIES.map(([k]) => p[k]))));
  const tick = niceStep(top1);
  const yMax = tick * Math.max(Math.ceil(top1 / tick), 1);
  const x = (at) => left + ((Date.parse(at) - t0) / span) * plotW;
  const y = (n) => top + plotH - (n / yMax) * plotH;

  const grid = s('g', { class: 'chart-grid', 'aria-hidden': 'true' });
  for (let value = 0; value <= yMax; value += tick) {
    grid.append(
      s('line', { x1: left, x2: width - right, y1: y(value), y2: y(value) }),
      s('text', { x: left - 6, y: y(value) + 4, 'text-anchor': 'end' }, String(value)),
    );
  }
  for (const [at, anchor] of [[points[0].at, 'start'], [points[points.length - 1].at, 'end']]) {
    grid.append(s('text', { x: x(at), y: height - bottom + 18, 'text-anchor': anchor }, timeLabel(new Date(at), span)));
  }
  if (funnel.queued) {
    grid.append(s('line', { class: 'chart-queued', x1: left, x2: width - right, y1: y(funnel.queued), y2: y(funnel.queued) }));
  }
  const series = SERIES.map(([key, label]) => {
    const path = points.map((p) => `${x(p.at).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
    const line = s('polyline', { points: path, class: `series series-${key}`, 'data-series': key });
    line.append(s('title', {}, `${label}: ${points[points.length - 1][key]}`));
    return line;
  });
  svg.replaceChildren(...keep, grid, ...series);
  $('#funnel-legend').replaceChildren(
    ...SERIES.map(([key, label]) => h('span', { class: `key key-${key}` }, label)),
    h('span', { class: 'key key-queued' }, `Queued (${funnel.queued})`),
    h('span', { class: 'muted' }, ` · a point every ${stepText(funnel.step_seconds)}`),
  );
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = 0;
}

async function loadCampaign(id, { focus = false } = {}) {
  stopPolling();
  const seq = ++state.seq;
  const path = `/v1/campaigns/${encodeURIComponent(id)}`;
  try {
    const [campaign, funnel] = await Promise.all([api('GET', path), api('GET', `${path}/funnel`)]);
    if (seq !== state.seq) return; // another campaign or the list was opened meanwhile
    renderCampaign(campaign);
    drawChart(funnel);
    showAlert('');
    stamp();
    if (focus) $('#campaign-title').focus();
    if (LIVE_STATES.has(campaign.state)) {
      state.timer = setTimeout(() => loadCampaign(id), POLL_MS);
    }
  } catch (err) {
    if (seq !== state.seq) return;
    report('Loading the campaign', err);
    // A hub that did not answer this time may answer the next: keep trying.
    if (err.status === 0 || err.status >= 500) state.timer = setTimeout(() => loadCampaign(id), POLL_MS);
  }
}

function showCampaign(id) {
  state.campaignId = id;
  $('#campaign-list').hidden = true;
  $('#campaign').hidden = false;
  $('#cancel-confirm').hidden = true;
  $('#campaign-status').textContent = '';
  loadCampaign(id, { focus: true });
}

async function step(name, reason = '') {
  const id = state.campaignId;
  const query = reason ? `?reason=${encodeURIComponent(reason)}` : '';
  const buttons = ['#campaign-pause', '#campaign-resume', '#campaign-cancel', '#cancel-confirm-submit'];
  for (const b of buttons) $(b).disabled = true;
  try {
    const campaign = await api('POST', `/v1/campaigns/${encodeURIComponent(id)}/${name}${query}`);
    $('#campaign-status').textContent = `The campaign is ${campaign.state} now.`;
    $('#cancel-confirm').hidden = true;
  } catch (err) {
    report(`${name[0].toUpperCase()}${name.slice(1)}`, err);
  } finally {
    $('#cancel-confirm-submit').disabled = false;
    if (id === state.campaignId) await loadCampaign(id); // the buttons follow the state
  }
}

function route() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id) showCampaign(id);
  else showList();
}

function wire() {
  $('#campaign-pause').addEventListener('click', () => step('pause'));
  $('#campaign-resume').addEventListener('click', () => step('resume'));
  $('#campaign-cancel').addEventListener('click', () => {
    $('#cancel-confirm').hidden = false;
    $('#cancel-reason').focus();
  });
  $('#cancel-keep').addEventListener('click', () => {
    $('#cancel-confirm').hidden = true;
    $('#campaign-cancel').focus();
  });
  $('#cancel-confirm').addEventListener('submit', (event) => {
    event.preventDefault();
    step('cancel', $('#cancel-reason').value.trim());
  });
  $('#signout').addEventListener('click', async () => {
    try {
      await api('DELETE', '/console/session');
    } catch (err) {
      if (err.status !== 401) { report('Signing out', err); return; }
    }
    location.assign('./');
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !$('#cancel-confirm').hidden) $('#cancel-keep').click();
  });
  window.addEventListener('hashchange', route);
}

async function boot() {
  wire();
  let session = null;
  try {
    session = await api('GET', '/console/session');
  } catch (err) {
    if (err.status !== 401) { report('Checking your session', err); return; }
  }
  if (!session) {
    $('#updated').textContent = '';
    showAlert('You are not signed in: sign in on the agent console, then come back.');
    $('#console-link').hidden = false;
    return;
  }
  state.session = session;
  const roles = session.roles || [];
  $('#whoami').textContent = `${session.username} (${roles.join(', ')})`;
  $('#signout').hidden = false;
  $('#console-link').hidden = !roles.some((r) => DESK_ROLES.includes(r));
  if (!roles.some((r) => CAMPAIGN_ROLES.includes(r))) {
    $('#updated').textContent = '';
    showAlert('Campaigns are for campaign managers and admins; your roles do not include them.');
    return;
  }
  route();
}

boot();
