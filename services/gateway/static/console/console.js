// The agent console: sign-in, presence, screen pops, customer search and the customer's desk.
// Plain ES2020, no dependencies. Server data reaches the page only as text (h() appends
// strings as text nodes), never as markup. docs/console.md describes what the agent sees.

const $ = (selector) => document.querySelector(selector);

const PRESENCES = ['available', 'busy', 'away', 'offline'];
const BACKOFF_MS = [1000, 2000, 5000, 10000];
const DONE_POP_MS = 60_000;
// After a (re)connect's hello the hub sends again every call still ringing for the agent; a
// ringing card not sent again within this time stopped ringing while the stream was down.
const REPLAY_MS = 5000;
const REPLY_POLL_MS = 5000;
// A reply with no final delivery report after this long stops the polling; the timeline
// still shows whatever arrives later.
const REPLY_WATCH_MS = 120_000;
const FINAL_DELIVERY = new Set(['delivered', 'read', 'failed', 'undelivered']);
const DELIVERY_RANK = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 4, undelivered: 4 };
const CHANNEL_LABELS = {
  voice: 'Call', sms: 'SMS', email: 'E-mail', whatsapp: 'WhatsApp',
  messenger: 'Messenger', telegram: 'Telegram', desk: 'Desk',
};
const DIRECTION_LABELS = { inbound: '← in', outbound: '→ out', internal: '—' };
const LIVE_TEXT = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', offline: 'offline' };
const FILE_PATH = /^\/v1\/(customers\/[0-9a-fA-F-]{36}\/)?files\/[0-9a-fA-F]{64}$/;
// What the router and the desk tell an agent about messages and e-mails (docs/console.md).
const WORK_KINDS = ['assigned', 'message', 'unassigned', 'queued', 'offer', 'offer.over'];
// The desk's list lags the news by the time the contact takes to be recorded: read it again.
const WORK_RELOAD_MS = [400, 1500, 4000];
// Who works the desk (services/gateway/roles.py: WORK_THE_DESK).
const DESK_ROLES = ['agent', 'supervisor', 'admin'];

const state = { session: null, presence: null, customerId: null, card: null, pending: [], pollTimer: 0 };
const pops = new Map(); // call_id -> {pop, el, timer}
const live = {
  socket: null, source: null, attempt: 0, timer: 0, stopped: true, replayed: null, replayTimer: 0,
  sse: new URLSearchParams(location.search).get('sse') === '1',
};
let searchSeq = 0;
let openSeq = 0;
let searchTimer = 0;
let idSeq = 0;

// ---- helpers -------------------------------------------------------------------------------

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

const channelLabel = (channel) => CHANNEL_LABELS[channel] ?? channel;
const nameOf = (card) => card.name || card.first_address || card.addresses?.[0] || card.customer_id;
const enc = encodeURIComponent;

function timeEl(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  const text = Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' });
  return h('time', { datetime: iso }, text);
}

function channelTag(channel) {
  return h('span', { class: 'ch', 'data-channel': channel }, channelLabel(channel));
}

function isTyping(el) {
  return el instanceof HTMLElement && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
}

// ---- talking to the hub --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.signedOut = false;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && state.session) headers['X-CSRF-Token'] = state.session.csrf_token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
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
  const error = new ApiError(response.status, detail);
  if (response.status === 401 && path.startsWith('/v1/')) {
    error.signedOut = true;
    if (state.session) signedOut(`Your session ended (${detail}). Sign in again.`);
  }
  throw error;
}

function showAlert(message) {
  $('#alert').textContent = message;
  $('#alert-dismiss').hidden = !message;
}

function report(action, err) {
  if (err.signedOut) return; // signedOut() said it already
  showAlert(`${action}: ${err.message}`);
  if (!(err instanceof ApiError)) console.error(err); // a bug in this page: keep the stack
}

// ---- session -------------------------------------------------------------------------------

function showSignin(message) {
  $('#console-view').hidden = true;
  $('#signin-view').hidden = false;
  if (message) showAlert(message);
  $('#signin-username').focus();
}

function start(session) {
  const roles = session.roles || [];
  // A campaign manager without desk work has nothing here: the campaigns page is theirs.
  if (roles.includes('campaign_manager') && !roles.some((r) => DESK_ROLES.includes(r))) {
    window.location.replace('campaigns.html');
    return;
  }
  state.session = session;
  $('#signin-password').value = '';
  $('#signin-view').hidden = true;
  $('#console-view').hidden = false;
  $('#whoami').textContent = `${session.username} (${roles.join(', ')})`;
  $('#supervisor-link').hidden = !roles.some((r) => r === 'supervisor' || r === 'admin');
  $('#campaigns-link').hidden = !roles.some((r) => r === 'campaign_manager' || r === 'admin');
  loadMe();
  loadWork();
  connectStream();
  $('#search').focus();
}

function signedOut(message) {
  stopStream();
  for (const entry of pops.values()) clearTimeout(entry.timer);
  pops.clear();
  $('#pop-list').replaceChildren();
  $('#pops-empty').hidden = false;
  $('#search-results').replaceChildren();
  $('#search-status').textContent = '';
  $('#work-list').replaceChildren();
  for (const ref of [...offers.keys()]) dropOffer(ref);
  $('#work-status').textContent = '';
  $('#work-empty').hidden = false;
  $('#search').value = '';
  closeCustomer();
  state.session = null;
  state.presence = null;
  showSignin(message);
}

async function signIn(event) {
  event.preventDefault();
  const button = $('#signin-submit');
  button.disabled = true;
  try {
    const session = await api('POST', '/console/session', {
      username: $('#signin-username').value.trim(),
      password: $('#signin-password').value,
    });
    showAlert('');
    start(session);
  } catch (err) {
    report('Sign-in failed', err);
    $('#signin-password').select();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api('DELETE', '/console/session');
  } catch (err) {
    if (err.status !== 401) { // 401: the session had ended already
      report('Signing out', err);
      return;
    }
  }
  showAlert('');
  signedOut();
}

// Whether the session still holds: 'signed-in', 'signed-out' (then the sign-in form shows)
// or 'unreachable'.
async function checkSession() {
  try {
    const session = await api('GET', '/console/session');
    if (!session) { // 204: nobody is signed in
      if (state.session) signedOut('Your session ended. Sign in again.');
      return 'signed-out';
    }
    state.session = { ...state.session, ...session };
    return 'signed-in';
  } catch (err) {
    if (err.status !== 401) return 'unreachable';
    if (state.session) signedOut('Your session ended. Sign in again.');
    return 'signed-out';
  }
}

// ---- presence ------------------------------------------------------------------------------

function showPresence(presence, since) {
  state.presence = presence;
  const select = $('#presence');
  select.value = presence;
  select.title = since ? `${presence} since ${new Date(since).toLocaleString()}` : '';
  document.body.dataset.presence = presence;
}

async function loadMe() {
  try {
    const me = await api('GET', '/v1/agents/me');
    showPresence(me.presence, me.since);
    $('#queues').textContent = me.queues?.length ? `Queues: ${me.queues.join(', ')}` : 'No queues';
  } catch (err) {
    report('Loading your presence', err);
  }
}

async function changePresence(presence) {
  const select = $('#presence');
  select.value = presence;
  try {
    const me = await api('PUT', '/v1/agents/me/presence', { presence });
    showPresence(me.presence, me.since);
  } catch (err) {
    select.value = state.presence ?? '';
    report('Changing your presence', err);
  }
}

// ---- my conversations ----------------------------------------------------------------------

const WORK_TEXT = {
  assigned: (who) => `New ${who} assigned to you`,
  message: (who) => `New message in your ${who}`,
  unassigned: (who) => `Your ${who} was handed to someone else`,
  queued: (who) => `A ${who} waits in queue`,
};

function workChanged(kind, item) {
  const who = `${channelLabel(item.channel)} conversation with ${item.card ? nameOf(item.card) : item.party}`;
  let text = WORK_TEXT[kind](who);
  if (kind === 'queued' && item.target?.queue) text += ` ${item.target.queue}`;
  if (kind === 'unassigned' && item.target?.agent) text = text.replace('someone else', item.target.agent);
  $('#work-status').textContent = `${text} (${new Date(item.routed_at).toLocaleTimeString()})`;
  for (const delay of WORK_RELOAD_MS) setTimeout(loadWork, delay);
  if (item.customer_id && item.customer_id === state.customerId) {
    loadTimeline();
    loadConversations();
  }
}

const offers = new Map(); // contact_ref -> {item, el, timer}

function showOffer(item) {
  dropOffer(item.contact_ref);
  const who = item.card ? nameOf(item.card) : item.party;
  const left = h('span', { class: 'muted offer-left' });
  const answer = (accept) => answerOffer(item, accept);
  const el = h('li', { class: 'offer', 'data-contact-ref': item.contact_ref },
    h('p', {}, h('strong', {}, `${channelLabel(item.channel)} from ${who}`), ' ', left),
    h('p', { class: 'muted' }, item.reason || ''),
    h('div', { class: 'row' },
      h('button', { type: 'button', 'data-action': 'accept', onclick: () => answer(true) }, 'Accept'),
      h('button', { type: 'button', 'data-action': 'decline', onclick: () => answer(false) }, 'Decline')));
  const tick = () => {
    const seconds = Math.max(0, Math.round((new Date(item.offer_expires_at) - Date.now()) / 1000));
    left.textContent = `${seconds} s left`;
    if (seconds <= 0) dropOffer(item.contact_ref);
  };
  const entry = { item, el, timer: setInterval(tick, 1000) };
  offers.set(item.contact_ref, entry);
  tick();
  if (offers.has(item.contact_ref)) $('#offer-list').prepend(el);
  $('#work-status').textContent = `${channelLabel(item.channel)} from ${who} offered to you`;
}

function dropOffer(contactRef) {
  const entry = offers.get(contactRef);
  if (!entry) return;
  clearInterval(entry.timer);
  entry.el.remove();
  offers.delete(contactRef);
}

async function answerOffer(item, accept) {
  try {
    await api('POST', '/v1/agents/me/offers', { contact_ref: item.contact_ref, attempt: item.attempt, accept });
  } catch (err) {
    report(accept ? 'Accepting the offer' : 'Declining the offer', err);
  }
  dropOffer(item.contact_ref);
  if (accept) {
    $('#work-status').textContent = `${channelLabel(item.channel)} conversation with ${item.party} is yours`;
    for (const delay of WORK_RELOAD_MS) setTimeout(loadWork, delay);
    if (item.customer_id) openCustomer(item.customer_id);
  }
}

async function loadWork() {
  if (!state.session) return;
  let answer;
  try {
    answer = await api('GET', '/v1/agents/me/conversations');
  } catch (err) {
    report('Loading your conversations', err);
    return;
  }
  const items = answer.items || [];
  $('#work-empty').hidden = items.length > 0;
  $('#work-list').replaceChildren(...items.map((c) => h('li', {},
    h('button', { type: 'button', class: 'result', 'data-conversation-id': c.conversation_id,
      onclick: () => openCustomer(c.customer_id) },
    channelTag(c.channel), ` ${c.status} · opened `, timeEl(c.opened_at)))));
}

// ---- the live stream -----------------------------------------------------------------------

function setLive(status, transport = '') {
  const el = $('#live-indicator');
  el.dataset.state = status;
  el.dataset.transport = transport;
  el.textContent = LIVE_TEXT[status];
}

function connectStream() {
  live.stopped = false;
  clearTimeout(live.timer);
  setLive(live.attempt ? 'reconnecting' : 'connecting');
  if (live.sse) openEvents();
  else openSocket();
}

function stopStream() {
  live.stopped = true;
  clearTimeout(live.timer);
  clearTimeout(live.replayTimer);
  live.attempt = 0;
  const { socket, source } = live;
  live.socket = null;
  live.source = null;
  socket?.close();
  source?.close();
  setLive('offline');
}

function streamUp(transport) {
  live.attempt = 0;
  setLive('live', transport);
}

function streamDown() {
  if (live.stopped) return;
  setLive('reconnecting');
  const delay = BACKOFF_MS[Math.min(live.attempt, BACKOFF_MS.length - 1)];
  live.attempt += 1;
  live.timer = setTimeout(async () => {
    if (!live.stopped && await checkSession() !== 'signed-out' && !live.stopped) connectStream();
  }, delay);
}

function openSocket() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/v1/agents/me/stream`);
  let opened = false;
  live.socket = socket;
  socket.onopen = () => {
    opened = true;
    streamUp('ws');
  };
  socket.onmessage = (event) => receiveText(event.data);
  socket.onclose = async () => {
    if (live.socket !== socket) return; // closed on purpose
    live.socket = null;
    // Refused although the hub answers (a proxy that drops WebSocket upgrades): the same
    // messages come as Server-Sent Events. A hub that is down is only waited for.
    if (!opened && await checkSession() === 'signed-in') {
      if (live.stopped) return;
      live.sse = true;
      openEvents();
      return;
    }
    streamDown();
  };
}

function openEvents() {
  const source = new EventSource('/v1/agents/me/events');
  live.source = source;
  source.onopen = () => streamUp('sse');
  source.onmessage = (event) => receiveText(event.data);
  for (const kind of ['hello', 'pop', 'pop.update', 'presence', ...WORK_KINDS]) {
    source.addEventListener(kind, (event) => receiveText(event.data, kind));
  }
  source.onerror = () => {
    if (live.source !== source) return;
    // EventSource would retry on its own, but not after a 401; one retry loop for both.
    source.close();
    live.source = null;
    streamDown();
  };
}

function receiveText(text, kind) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    showAlert(`The live stream sent something that is no JSON: ${String(text).slice(0, 80)}`);
    return;
  }
  if (data && !data.kind && kind) {
    // An event whose data is the bare pop (or presence) rather than the whole message.
    if (kind.startsWith('pop')) data = { kind, pop: data };
    else if (WORK_KINDS.includes(kind)) data = { kind, item: data };
    else data = { kind, ...data };
  }
  receive(data);
}

function receive(message) {
  switch (message?.kind) {
    case 'hello':
      if (message.presence) showPresence(message.presence, message.since);
      live.replayed = new Set();
      clearTimeout(live.replayTimer);
      live.replayTimer = setTimeout(dropUnreplayed, REPLAY_MS);
      break;
    case 'pop':
    case 'pop.update':
      if (message.pop?.call_id) showPop(message.pop);
      break;
    case 'presence':
      if (!message.agent || message.agent === state.session?.username) {
        showPresence(message.presence, message.since);
      }
      break;
    case 'assigned':
    case 'message':
    case 'unassigned':
    case 'queued':
      if (message.item) workChanged(message.kind, message.item);
      break;
    case 'offer':
      if (message.item) showOffer(message.item);
      break;
    case 'offer.over':
      if (message.item) dropOffer(message.item.contact_ref);
      break;
    default:
      break; // a kind this page does not know yet
  }
}

// ---- screen pops ---------------------------------------------------------------------------

function targetText(target, me) {
  if (!target) return '';
  if (target.kind === 'agent') return target.agent === me ? 'for you' : `for ${target.agent}`;
  if (target.kind === 'queue') return `queue ${target.queue}`;
  return target.kind;
}

function consentList(consent) {
  const entries = Object.entries(consent || {});
  if (!entries.length) return 'never asked';
  return h('ul', { class: 'inline' }, entries.map(([what, given]) =>
    h('li', { class: 'consent', 'data-given': String(given) }, `${what}: ${given ? 'yes' : 'no'}`)));
}

// The card's channels, best first: each with why (and struck through when not reachable).
function reachList(reachability) {
  if (!reachability?.length) return 'nothing learnt yet';
  return h('ol', { class: 'reach' }, reachability.map((r) =>
    h('li', { 'data-reachable': String(r.reachable), title: r.address ?? 'no address known' },
      channelTag(r.channel),
      h('span', { class: 'why' }, r.reasons.join(', ') + (r.reachable ? '' : ' — not reachable')))));
}

function contactLine(contact) {
  return h('li', {}, channelTag(contact.channel), ' ',
    DIRECTION_LABELS[contact.direction] ?? contact.direction, ' ', timeEl(contact.occurred_at), ' ',
    contact.summary);
}

function popDetails(pop) {
  const card = pop.card;
  if (!card) {
    return h('p', { class: 'pop-details muted' },
      pop.customer_id ? 'Known customer (open for details).' : 'No customer has this number yet.');
  }
  const recent = (card.recent || []).slice(0, 3);
  return h('div', { class: 'pop-details' },
    h('dl', { class: 'card' },
      h('dt', {}, 'Tier'), h('dd', {}, card.tier || '—'),
      h('dt', {}, 'Language'), h('dd', {}, card.language || '—'),
      h('dt', {}, 'Last agent'), h('dd', {}, card.last_agent || '—'),
      h('dt', {}, 'Consent'), h('dd', {}, consentList(card.consent))),
    recent.length ? h('ul', { class: 'recent' }, recent.map(contactLine)) : h('p', { class: 'muted' }, 'First contact.'));
}

function renderPop(pop) {
  const titleId = `pop-title-${++idSeq}`;
  const title = pop.card ? nameOf(pop.card) : pop.party;
  return h('article', { class: 'pop', 'data-call-id': pop.call_id, 'data-state': pop.state, 'aria-labelledby': titleId },
    h('div', { class: 'pop-head' },
      h('h3', { id: titleId, class: 'pop-title' }, title),
      h('span', { class: 'badge pop-state' }, pop.state)),
    h('p', { class: 'pop-meta' },
      [title !== pop.party ? pop.party : null, channelLabel(pop.channel), targetText(pop.target, state.session?.username)]
        .filter(Boolean).join(' · ')),
    popDetails(pop),
    h('p', { class: 'pop-reason' }, pop.rule ? h('strong', {}, `${pop.rule}: `) : null, pop.reason || ''),
    h('button', { type: 'button', 'data-action': 'open', onclick: () => openPop(pop.call_id) }, 'Open'));
}

function showPop(pop) {
  live.replayed?.add(pop.call_id);
  const known = pops.get(pop.call_id);
  let entry = known;
  if (!known) {
    entry = { pop, el: renderPop(pop), timer: 0 };
    pops.set(pop.call_id, entry);
    $('#pop-list').prepend(entry.el);
  } else {
    const hadCard = Boolean(known.pop.card);
    known.pop = { ...known.pop, ...pop, card: pop.card ?? known.pop.card };
    if (!hadCard && known.pop.card) {
      // The card came late: draw the pop again, keeping the agent's focus on its button.
      const focused = known.el.contains(document.activeElement);
      const el = renderPop(known.pop);
      known.el.replaceWith(el);
      known.el = el;
      if (focused) el.querySelector('button').focus();
    } else {
      known.el.dataset.state = known.pop.state;
      known.el.querySelector('.pop-state').textContent = known.pop.state;
    }
  }
  clearTimeout(entry.timer);
  const done = entry.pop.state === 'ended' || entry.pop.state === 'missed';
  entry.el.classList.toggle('pop-done', done);
  entry.timer = done ? setTimeout(() => dropPop(pop.call_id), DONE_POP_MS) : 0;
  $('#pops-empty').hidden = pops.size > 0;
  if (entry.pop.customer_id && entry.pop.customer_id === state.customerId) loadTimeline();
}

function dropUnreplayed() {
  for (const [callId, entry] of pops) {
    if (entry.pop.state === 'ringing' && !live.replayed?.has(callId)) dropPop(callId);
  }
  live.replayed = null;
}

function dropPop(callId) {
  const entry = pops.get(callId);
  if (!entry) return;
  entry.el.remove();
  pops.delete(callId);
  $('#pops-empty').hidden = pops.size > 0;
}

async function openPop(callId) {
  const pop = pops.get(callId)?.pop;
  if (!pop) return;
  if (pop.customer_id) {
    openCustomer(pop.customer_id);
    return;
  }
  try {
    const found = await api('GET', `/v1/lookup?address=${enc(pop.party)}`);
    const card = found.customer ?? found.card ?? null;
    const candidates = found.candidates || [];
    if (candidates.length > 1) {
      showResults(candidates.map((c) => ({ card: c.customer ?? c.card, reason: c.reason })),
        `${candidates.length} customers share ${pop.party}`);
    }
    if (card) openCustomer(card.customer_id);
    else showUnknown(pop.party);
  } catch (err) {
    report(`Looking up ${pop.party}`, err);
  }
}

// ---- search --------------------------------------------------------------------------------

function showResults(rows, status) {
  $('#search-status').textContent = status;
  $('#search-results').replaceChildren(...rows.map(({ card, reason }) =>
    h('li', {},
      h('button', { type: 'button', class: 'result', 'data-customer-id': card.customer_id,
        onclick: () => openCustomer(card.customer_id) },
      h('strong', {}, nameOf(card)),
      h('span', { class: 'muted' }, ` ${[card.tier, ...(card.addresses || []).slice(0, 2)].filter(Boolean).join(' · ')}`),
      reason ? h('span', { class: 'reason' }, reason) : null))));
}

async function search(raw) {
  const q = raw.trim();
  const seq = ++searchSeq;
  if (q.length < 2) {
    showResults([], q ? 'Type at least 2 characters.' : '');
    return;
  }
  try {
    const answer = await api('GET', `/v1/customers?q=${enc(q)}&limit=20`);
    if (seq !== searchSeq) return; // a newer search is under way
    const items = answer.items || [];
    showResults(items.map((card) => ({ card })),
      items.length ? `${items.length} customer${items.length === 1 ? '' : 's'}` : `No customer matches “${q}”.`);
  } catch (err) {
    report('Searching', err);
  }
}

function moveInResults(event) {
  const buttons = [...document.querySelectorAll('#search-results button')];
  if (!buttons.length || !['ArrowDown', 'ArrowUp'].includes(event.key)) return;
  const at = buttons.indexOf(document.activeElement);
  event.preventDefault();
  if (event.key === 'ArrowDown') buttons[Math.min(at + 1, buttons.length - 1)].focus();
  else if (at <= 0) $('#search').focus();
  else buttons[at - 1].focus();
}

// ---- the customer --------------------------------------------------------------------------

function closeCustomer() {
  stopReplyWatch();
  state.customerId = null;
  state.card = null;
  $('#customer-body').hidden = true;
  $('#customer-title').textContent = 'No customer open';
  $('#customer-notice').textContent = 'Open a ringing call, or search for a customer.';
}

function showUnknown(party) {
  closeCustomer();
  $('#customer-title').textContent = `Unknown caller ${party}`;
  $('#customer-notice').textContent = 'No customer has this address yet; the contact is recorded as a new customer.';
  $('#customer-title').focus();
}

async function openCustomer(id, notice = '') {
  const seq = ++openSeq;
  let card;
  try {
    card = await api('GET', `/v1/customers/${enc(id)}`);
  } catch (err) {
    report('Opening the customer', err);
    return;
  }
  if (seq !== openSeq) return; // the agent opened another one meanwhile
  if (card.merged_into && !notice) {
    openCustomer(card.merged_into, `${nameOf(card)} was merged into this customer.`);
    return;
  }
  if (card.customer_id !== state.customerId) {
    stopReplyWatch();
    state.pending = [];
    $('#reply-status').textContent = '';
  }
  state.customerId = card.customer_id;
  state.card = card;
  $('#customer-title').textContent = nameOf(card);
  $('#customer-notice').textContent = notice;
  $('#customer').dataset.customerId = card.customer_id;
  renderCard(card);
  renderReplyChannels(card);
  $('#customer-body').hidden = false;
  $('#customer-title').focus();
  await Promise.all([loadTimeline(), loadConversations(), loadDuplicates()]);
}

// Runs ``work`` for the open customer; ``current()`` tells whether it is still the open one
// (an answer for a customer the agent has left is dropped).
async function forCustomer(action, work) {
  const id = state.customerId;
  if (!id) return;
  try {
    await work(enc(id), () => id === state.customerId);
  } catch (err) {
    report(action, err);
  }
}

function renderCard(card) {
  const row = (label, value) => [h('dt', {}, label), h('dd', {}, value ?? '—')];
  $('#card').replaceChildren(...[
    row('Tier', card.tier),
    row('Language', card.language),
    row('Time zone', card.time_zone),
    row('Preferred channel', card.preferred_channel && channelLabel(card.preferred_channel)),
    row('Best channel', reachList(card.reachability)),
    row('Tags', card.tags?.length ? card.tags.join(', ') : null),
    row('Addresses', h('ul', { class: 'inline' }, (card.addresses || []).map((a) => h('li', {}, a)))),
    row('Consent', consentList(card.consent)),
    row('Contacts', [`${card.contact_count ?? 0}`, card.last_contact_at ? ', last ' : '',
      card.last_contact_at ? timeEl(card.last_contact_at) : '',
      card.last_channel ? ` (${channelLabel(card.last_channel)})` : '']),
    row('Last agent', card.last_agent),
    row('Merged in', card.merged?.length ? `${card.merged.length} customer(s)` : null),
  ].flat());
}

function loadTimeline() {
  return forCustomer('Loading the timeline', async (id, current) => {
    const answer = await api('GET', `/v1/customers/${id}/timeline?limit=50`);
    if (!current()) return;
    renderTimeline(answer.items || []);
    trackReplies(answer.items || []);
  });
}

function renderTimeline(items) {
  const rows = items.map((item) => {
    const download = item.payload?.download_path;
    return h('li', { 'data-type': item.type, 'data-channel': item.channel, 'data-direction': item.direction },
      channelTag(item.channel),
      h('span', { class: 'dir' }, DIRECTION_LABELS[item.direction] ?? item.direction),
      timeEl(item.occurred_at),
      h('span', { class: 'summary' }, item.summary || item.type,
        typeof download === 'string' && FILE_PATH.test(download)
          ? [' ', h('a', { href: download }, 'download')] : null),
      h('span', { class: 'type' }, item.type));
  });
  $('#timeline').replaceChildren(...(rows.length ? rows : [h('li', { class: 'muted' }, 'No contacts yet.')]));
}

function loadConversations() {
  return forCustomer('Loading the conversations', async (id, current) => {
    const answer = await api('GET', `/v1/customers/${id}/conversations`);
    if (current()) renderConversations(answer.items || []);
  });
}

function renderConversations(items) {
  const rows = items.map((c) => {
    const what = `${channelLabel(c.channel)} ${c.kind} with ${c.party}`;
    const [action, verb, to] = c.status === 'resolved' ? ['reopen', 'Reopen', 'open'] : ['resolve', 'Resolve', 'resolved'];
    return h('li', { class: 'conversation', 'data-conversation-id': c.conversation_id, 'data-status': c.status },
      channelTag(c.channel), ` ${c.kind} with ${c.party} `,
      h('span', { class: 'badge', 'data-status': c.status }, c.status),
      c.assignee ? ` ${c.assignee}` : '',
      ` · ${c.contact_count} contact${c.contact_count === 1 ? '' : 's'} · last `, timeEl(c.last_contact_at), ' ',
      h('button', { type: 'button', 'data-action': action, 'aria-label': `${verb} ${what}`,
        onclick: (event) => changeStatus(event.currentTarget, c, to) }, verb));
  });
  $('#conversations').replaceChildren(...(rows.length ? rows : [h('li', { class: 'muted' }, 'No conversations.')]));
}

async function changeStatus(button, conversation, status) {
  button.disabled = true;
  try {
    await api('POST', `/v1/conversations/${enc(conversation.conversation_id)}/status`,
      { status, expected_version: conversation.version });
  } catch (err) {
    // 409: someone changed it first; the reload below shows how it is now.
    report(status === 'resolved' ? 'Resolving the conversation' : 'Reopening the conversation', err);
  }
  await Promise.all([loadConversations(), loadTimeline()]);
}

async function addNote(event) {
  event.preventDefault();
  const button = $('#note-submit');
  button.disabled = true;
  await forCustomer('Adding the note', async (id, current) => {
    const text = $('#note-body').value;
    await api('POST', `/v1/customers/${id}/notes`, { text });
    if (!current()) return;
    $('#note-body').value = '';
    await untilShown(text.trim().slice(0, 40), current);
  });
  button.disabled = false;
}

// The timeline is a projection: a note shows once the view has applied it, at once as a rule,
// a moment later when the hub is busy. Look again for a while rather than leave it missing.
async function untilShown(text, current) {
  for (let wait = 250; wait <= 8000; wait *= 2) {
    await loadTimeline();
    if (!current() || $('#timeline').textContent.includes(text)) return;
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  await loadTimeline();
}

// ---- replies -------------------------------------------------------------------------------

// The channel a card address reaches (addresses are normalized by the hub: contracts/addresses.py).
function channelOf(address) {
  for (const channel of ['whatsapp', 'telegram', 'messenger']) {
    if (address.startsWith(`${channel}:`)) return channel;
  }
  if (/^\+[0-9]+$/.test(address)) return 'sms';
  if (address.includes('@') && !address.includes(':')) return 'email';
  return null; // a withheld caller (anonymous:…): nothing to write to
}

function renderReplyChannels(card) {
  const select = $('#reply-channel');
  const options = (card.addresses || [])
    .map((address) => [channelOf(address), address])
    .filter(([channel]) => channel)
    .map(([channel, address]) => h('option', { value: channel, 'data-to': address }, `${channelLabel(channel)} — ${address}`));
  select.replaceChildren(...options);
  const preferred = options.findIndex((o) => o.value === card.preferred_channel);
  if (preferred >= 0) select.selectedIndex = preferred;
  for (const el of $('#reply-form').elements) el.disabled = !options.length;
  if (!options.length) $('#reply-status').textContent = 'This customer has no address to write to.';
  showSubject();
}

function showSubject() {
  $('#reply-subject-row').hidden = $('#reply-channel').value !== 'email';
}

async function sendReply(event) {
  event.preventDefault();
  const option = $('#reply-channel').selectedOptions[0];
  if (!option) return;
  const message = { channel: option.value, to: option.dataset.to, body: $('#reply-body').value };
  const subject = $('#reply-subject').value.trim();
  if (message.channel === 'email' && subject) message.subject = subject;
  const button = $('#reply-submit');
  button.disabled = true;
  await forCustomer('Sending the reply', async (id, current) => {
    const sent = await api('POST', `/v1/customers/${id}/messages`, message);
    if (!current()) return;
    $('#reply-body').value = '';
    $('#reply-subject').value = '';
    state.pending.push({
      channel: message.channel, to: message.to, sentAt: Date.now(), status: 'queued',
      refs: new Set([sent?.message_ref, sent?.command_id].filter(Boolean)),
    });
    showReplyStatus();
    if (!state.pollTimer) state.pollTimer = setInterval(loadTimeline, REPLY_POLL_MS);
    await loadTimeline();
  });
  button.disabled = false;
}

// Follows pending replies on the timeline: the provider's message.sent.v1 (its provider_ref
// becomes one of the reply's refs) and the delivery.status.v1 reports naming a ref.
function trackReplies(items) {
  if (!state.pending.length) return;
  for (const reply of state.pending) {
    for (const item of [...items].reverse()) { // oldest first: a sent before its reports
      if (item.type === 'message.sent.v1' && item.channel === reply.channel && item.party === reply.to
          && Date.parse(item.occurred_at) >= reply.sentAt - 60_000) {
        reply.refs.add(item.provider_ref);
        if (reply.status === 'queued') reply.status = 'sent';
      }
      const ref = item.payload?.message_ref;
      const status = item.payload?.status;
      if (item.type === 'delivery.status.v1' && reply.refs.has(ref) && status in DELIVERY_RANK
          && DELIVERY_RANK[status] > DELIVERY_RANK[reply.status]) reply.status = status;
    }
  }
  showReplyStatus();
  const now = Date.now();
  state.pending = state.pending.filter((r) => !FINAL_DELIVERY.has(r.status) && now - r.sentAt < REPLY_WATCH_MS);
  if (!state.pending.length) stopReplyWatch();
}

function showReplyStatus() {
  const last = state.pending[state.pending.length - 1];
  if (!last) return;
  const overdue = !FINAL_DELIVERY.has(last.status) && Date.now() - last.sentAt >= REPLY_WATCH_MS;
  $('#reply-status').textContent = `Reply by ${channelLabel(last.channel)} to ${last.to}: ${last.status}`
    + (overdue ? ' (no delivery report yet; the timeline shows it when it comes)' : '');
  $('#reply-status').dataset.status = last.status;
}

function stopReplyWatch() {
  clearInterval(state.pollTimer);
  state.pollTimer = 0;
}

// ---- duplicates ----------------------------------------------------------------------------

function loadDuplicates() {
  return forCustomer('Loading duplicate suggestions', async (id, current) => {
    const suggestions = await api('GET', `/v1/customers/${id}/duplicates`);
    if (current()) renderDuplicates(suggestions || []);
  });
}

function renderDuplicates(suggestions) {
  const rows = suggestions.map((s) => {
    const other = s.customer;
    const reasonId = `merge-reason-${++idSeq}`;
    const confirm = h('form', { class: 'merge-confirm stack', hidden: true, onsubmit: (e) => merge(e, other) },
      h('p', {}, `Merge ${nameOf(other)} into ${nameOf(state.card)}? Their addresses and history `
        + 'will show on this customer from now on (an unmerge undoes it).'),
      h('label', { for: reasonId }, 'Why they are the same person'),
      h('input', { id: reasonId, name: 'reason', required: true, maxlength: 500, value: s.reasons?.[0] ?? '' }),
      h('div', { class: 'row' },
        h('button', { type: 'submit', 'data-action': 'confirm-merge' }, 'Confirm merge'),
        h('button', { type: 'button', 'data-action': 'cancel-merge',
          onclick: () => { confirm.hidden = true; mergeButton.focus(); } }, 'Cancel')));
    const mergeButton = h('button', { type: 'button', 'data-action': 'merge',
      onclick: () => { confirm.hidden = false; confirm.elements.reason.select(); } }, 'Merge…');
    return h('li', { class: 'duplicate', 'data-customer-id': other.customer_id },
      h('p', {}, h('strong', {}, nameOf(other)),
        ` · ${(other.addresses || []).join(', ')} · ${Math.round((s.score ?? 0) * 100)}% sure`),
      h('ul', { class: 'reasons' }, (s.reasons || []).map((r) => h('li', {}, r))),
      h('div', { class: 'row' },
        h('button', { type: 'button', 'data-action': 'open', onclick: () => openCustomer(other.customer_id) }, 'Open'),
        mergeButton),
      confirm);
  });
  $('#duplicates').replaceChildren(...(rows.length ? rows : [h('li', { class: 'muted' }, 'No suggested duplicates.')]));
}

async function merge(event, other) {
  event.preventDefault();
  const form = event.currentTarget;
  for (const el of form.elements) el.disabled = true;
  let merged = false;
  await forCustomer('Merging', async (id) => {
    await api('POST', `/v1/customers/${id}/merge`, { absorb: other.customer_id, reason: form.elements.reason.value.trim() });
    merged = true;
  });
  for (const el of form.elements) el.disabled = false;
  if (merged && state.customerId) openCustomer(state.customerId, `Merged ${nameOf(other)} into this customer.`);
}

// ---- wiring --------------------------------------------------------------------------------

function submitOnCtrlEnter(event) {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    event.currentTarget.form.requestSubmit();
  }
}

function onKey(event) {
  if (event.key === 'Escape' && $('#alert').textContent) showAlert('');
  if (!state.session) return;
  if (event.altKey && !event.ctrlKey && !event.metaKey && /^Digit[1-4]$/.test(event.code)) {
    event.preventDefault();
    changePresence(PRESENCES[Number(event.code.slice(5)) - 1]);
  } else if (event.key === '/' && !event.ctrlKey && !event.metaKey && !event.altKey && !isTyping(event.target)) {
    event.preventDefault();
    $('#search').focus();
    $('#search').select();
  }
}

function wire() {
  $('#signin-form').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', signOut);
  $('#alert-dismiss').addEventListener('click', () => showAlert(''));
  $('#presence').addEventListener('change', (e) => changePresence(e.target.value));
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(searchTimer);
    search($('#search').value);
  });
  $('#search').addEventListener('input', (e) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search(e.target.value), 300);
  });
  $('#search').addEventListener('keydown', moveInResults);
  $('#search-results').addEventListener('keydown', moveInResults);
  $('#reply-form').addEventListener('submit', sendReply);
  $('#reply-channel').addEventListener('change', showSubject);
  $('#reply-body').addEventListener('keydown', submitOnCtrlEnter);
  $('#note-form').addEventListener('submit', addNote);
  $('#note-body').addEventListener('keydown', submitOnCtrlEnter);
  document.addEventListener('keydown', onKey);
}

async function boot() {
  wire();
  try {
    const session = await api('GET', '/console/session');
    if (session) start(session);
    else showSignin(); // 204: nobody is signed in
  } catch (err) {
    showSignin();
    if (err.status !== 401) report('Checking your session', err);
  }
}

boot();
