// ringchat web client: speaks protocol v1 over the WebSocket at /ws.
//
// Plain JavaScript, no build step, no dependencies. The CSP of the page is
// default-src 'self', so nothing here uses inline styles or eval, and every
// piece of user data reaches the DOM through textContent.
//
// Reliability rules this file implements (see docs/protocol.md):
//   - server messages may hold several frames separated by "\n";
//   - reconnect with full-jitter exponential backoff, then re-hello and
//     re-join every room with since=<last seq> and epoch=<last epoch>;
//     recovered=false means: clear the room and reload its history;
//   - every send carries a unique cid and stays pending until its ack; on
//     reconnect unacked sends are repeated with the SAME cid (the server
//     answers a repeat with the original ack);
//   - room messages are de-duplicated by (room, seq), and a room shows one
//     gapless run of seqs: the newest page on join, live messages below it,
//     older pages (history with before = the oldest seq shown) above it as
//     the reader scrolls up, until a page says more=false;
//   - joined rooms, their last seq/epoch and unacked sends live in
//     sessionStorage, so a page reload resumes where it stopped.
'use strict';

(() => {
  // ---- constants ---------------------------------------------------------

  const PROTOCOL = 1;
  const ROOM_RE = /^[A-Za-z0-9._:/-]{1,64}$/;
  const NAME_RE = /^[\p{L}\p{Nd}_.-]{1,32}$/u;
  const HISTORY_PAGE = 50;
  const OLDER_PREFETCH_PX = 200; // load the older page when this close to the top
  const HISTORY_RETRY_BASE_MS = 500;
  const HISTORY_RETRY_CAP_MS = 15000;
  const TYPING_SHOW_MS = 3000;
  const TYPING_SEND_EVERY_MS = 1500;
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  const PING_EVERY_MS = 25000;
  const PONG_TIMEOUT_MS = 10000;
  const RETRY_FRAME_MS = 1000;
  const GROUP_GAP_MS = 5 * 60 * 1000;
  const DM_KEEP = 200;
  const SESSION_KEY = 'ringchat.session.v1';
  const NAME_KEY = 'ringchat.name';
  const DEFAULT_LIMITS = { max_text_bytes: 4096, max_rooms: 100, rate_per_second: 20, rate_burst: 40, presence_list_max: 100 };

  // ---- state -------------------------------------------------------------

  const S = {
    auth: null, // {name} or {token}; null when signed out
    me: '', // user id from the welcome
    anonymous: false,
    server: '',
    limits: { ...DEFAULT_LIMITS },
    conn: 'offline', // connecting | online | reconnecting | offline
    rooms: new Map(), // key -> conversation; key is the room name, or "@user" for DMs
    active: null, // key of the shown conversation
    pending: new Map(), // cid -> {cid, key, text, ts, state, error, seq?, mid?}
    everWelcomed: false,
    keptFor: '', // user whose rooms were kept through a token expiry
  };

  // ---- small helpers -----------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function h(tag, opts, ...children) {
    const node = document.createElement(tag);
    if (opts) {
      for (const [k, v] of Object.entries(opts)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }

  function randomHex(bytes) {
    const b = new Uint8Array(bytes);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  const newCID = () => 'c-' + randomHex(12);
  let reqCounter = 0;
  const newReqID = (prefix) => prefix + '-' + (++reqCounter).toString(36) + '-' + randomHex(2);

  const utf8Len = (() => {
    const enc = new TextEncoder();
    return (s) => enc.encode(s).length;
  })();

  function hashString(s) {
    let x = 2166136261;
    for (let i = 0; i < s.length; i++) {
      x ^= s.charCodeAt(i);
      x = Math.imul(x, 16777619);
    }
    return x >>> 0;
  }

  function initials(name) {
    const chars = Array.from(String(name).replace(/^[^\p{L}\p{N}]+/u, ''));
    return (chars[0] || '?').toUpperCase();
  }

  function avatar(name, extra) {
    return h('span', { class: 'avatar c' + (hashString(name) % 8) + (extra ? ' ' + extra : ''), 'aria-hidden': 'true', text: initials(name) });
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

  function dayKey(ts) {
    const d = new Date(ts);
    return d.getFullYear() + '-' + d.getMonth() + '-' + d.getDate();
  }

  function dayLabel(ts) {
    const today = new Date();
    const y = new Date();
    y.setDate(today.getDate() - 1);
    if (dayKey(ts) === dayKey(today.getTime())) return 'Today';
    if (dayKey(ts) === dayKey(y.getTime())) return 'Yesterday';
    return dayFmt.format(new Date(ts));
  }

  // Text with http(s) links made clickable; everything goes through text
  // nodes, and only http/https URLs ever become an href.
  const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
  function richText(text) {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(URL_RE)) {
      if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
      let ok = false;
      try {
        const u = new URL(m[0]);
        ok = u.protocol === 'http:' || u.protocol === 'https:';
      } catch (_) { /* not a URL after all */ }
      if (ok) frag.append(h('a', { href: m[0], target: '_blank', rel: 'noopener noreferrer nofollow', text: m[0] }));
      else frag.append(document.createTextNode(m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
    return frag;
  }

  function toast(text, kind) {
    const t = h('div', { class: 'toast ' + (kind || 'error'), role: 'alert', 'data-testid': 'toast', text });
    $('toasts').append(t);
    setTimeout(() => t.classList.add('leaving'), 4500);
    setTimeout(() => t.remove(), 5000);
  }

  // ---- conversations -----------------------------------------------------

  function newConversation(key) {
    const dm = key.startsWith('@');
    return {
      key,
      kind: dm ? 'dm' : 'room',
      name: dm ? key.slice(1) : key,
      epoch: '',
      lastSeq: null, // highest seq seen in epoch; null: never joined
      joined: false,
      joinInFlight: false,
      head: 0,
      oldestKept: 1,
      msgs: [], // rooms: ascending seq; DMs: arrival order
      bySeq: new Map(),
      byMid: new Map(),
      // History paging. gen counts restarts of the shown run (a cleared
      // room): an answer to a request of an older gen is dropped. The newest
      // page (history) and older pages (older) each have one request in
      // flight at most, a retry timer after a transient error, and an error
      // text after a refusal.
      gen: 0,
      historyBusy: false,
      olderBusy: false,
      historyRetry: null, // {timer, note} while a retry waits
      olderRetry: null,
      historyAttempt: 0,
      olderAttempt: 0,
      historyError: '',
      reachedStart: false, // an older page said more=false: nothing older is kept
      present: new Set(),
      count: 0,
      listMode: true,
      typing: new Map(), // user -> expiry (ms)
      unread: 0,
      lastJoin: null,
      scrollTop: null, // remembered scroll position; null: stick to bottom
      nodes: new Map(), // message key -> element (render cache)
    };
  }

  function ensureConversation(key) {
    let c = S.rooms.get(key);
    if (!c) {
      c = newConversation(key);
      S.rooms.set(key, c);
    }
    return c;
  }

  function clearRoomMessages(room) {
    room.msgs = [];
    room.bySeq.clear();
    room.byMid.clear();
    room.nodes.clear();
    room.scrollTop = null;
    resetHistoryPaging(room);
    room.gen++; // answers to requests made for the old run are dropped
  }

  // resetHistoryPaging forgets requests in flight and pending retries: after
  // a reconnect (their answers never come) or when the run starts over.
  function resetHistoryPaging(room) {
    room.historyBusy = false;
    room.olderBusy = false;
    for (const r of [room.historyRetry, room.olderRetry]) if (r) clearTimeout(r.timer);
    room.historyRetry = room.olderRetry = null;
    room.historyAttempt = room.olderAttempt = 0;
    room.historyError = '';
    room.reachedStart = false;
  }

  // moreOlder: the room has older messages than the oldest one shown that
  // a page could bring.
  function moreOlder(room) {
    return room.kind === 'room' && room.msgs.length > 0 && !room.reachedStart && room.msgs[0].seq > room.oldestKept;
  }

  // adjacent: seq extends (or lies in) the run of seqs shown, so adding it
  // leaves no gap.
  function adjacent(room, seq) {
    const a = room.msgs;
    return a.length > 0 && seq >= a[0].seq - 1 && seq <= a[a.length - 1].seq + 1;
  }

  // addRoomMessage merges one message into a room, keeping seq order and
  // dropping duplicates. It reports whether the message was new.
  function addRoomMessage(room, m, live) {
    const seq = Number(m.seq);
    if (!Number.isFinite(seq) || seq <= 0) return false;
    if (room.lastSeq === null || seq > room.lastSeq) room.lastSeq = seq;
    if (m.type === 'deleted') applyDeletion(room, Number(m.target));
    if (room.bySeq.has(seq)) return false;
    const msg = { seq, mid: m.mid || '', from: m.from || '', cid: m.cid || '', text: m.text || '', ts: Number(m.ts) || Date.now() };
    // A deletion keeps its place in the run of seqs (so paging and resume
    // see no gap) but is not shown; the message it deleted says so.
    if (m.type === 'deleted') msg.hidden = true;
    if (m.deleted) msg.deleted = true;
    room.bySeq.set(seq, msg);
    const arr = room.msgs;
    if (arr.length === 0 || arr[arr.length - 1].seq < seq) {
      arr.push(msg);
    } else {
      let lo = 0;
      let hi = arr.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (arr[mid].seq < seq) lo = mid + 1;
        else hi = mid;
      }
      arr.splice(lo, 0, msg);
    }
    if (msg.from === S.me && msg.cid) {
      const p = S.pending.get(msg.cid);
      if (p && p.key === room.key) p.seq = seq;
    }
    if (live && !msg.hidden && msg.from !== S.me && !isVisible(room.key)) room.unread++;
    return true;
  }

  function addDirectMessage(conv, m, live) {
    if (m.mid && conv.byMid.has(m.mid)) return false;
    const msg = { seq: 0, mid: m.mid || '', from: m.from || '', to: m.to || '', cid: m.cid || '', text: m.text || '', ts: Number(m.ts) || Date.now(), delivered: m.delivered };
    if (msg.mid) conv.byMid.set(msg.mid, msg);
    conv.msgs.push(msg);
    if (conv.msgs.length > DM_KEEP) {
      const dropped = conv.msgs.shift();
      conv.byMid.delete(dropped.mid);
      conv.nodes.delete(msgKey(dropped));
    }
    if (msg.from === S.me && msg.cid) {
      const p = S.pending.get(msg.cid);
      if (p && p.key === conv.key) p.mid = msg.mid;
    }
    if (live && msg.from !== S.me && !isVisible(conv.key)) conv.unread++;
    return true;
  }

  const isVisible = (key) => S.active === key && document.visibilityState === 'visible';

  // ---- persistence -------------------------------------------------------

  let persistTimer = null;

  function persistSoon() {
    if (persistTimer) return;
    persistTimer = setTimeout(persistNow, 50);
  }

  function persistNow() {
    clearTimeout(persistTimer);
    persistTimer = null;
    if (!S.auth) {
      sessionStorage.removeItem(SESSION_KEY);
      return;
    }
    const rooms = [];
    const dms = [];
    for (const c of S.rooms.values()) {
      if (c.kind === 'room') rooms.push({ name: c.name, epoch: c.epoch, lastSeq: c.lastSeq });
      else dms.push({ name: c.name, msgs: c.msgs.slice(-DM_KEEP).map(({ mid, from, to, cid, text, ts, delivered }) => ({ mid, from, to, cid, text, ts, delivered })) });
    }
    const pending = [];
    for (const p of S.pending.values()) pending.push({ cid: p.cid, key: p.key, text: p.text, ts: p.ts, state: p.state, error: p.error || '' });
    const data = { v: 1, auth: S.auth, me: S.me, rooms, dms, pending, active: S.active };
    try {
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(data));
    } catch (_) {
      // Quota exceeded: drop the DM cache and try once more.
      data.dms = dms.map((d) => ({ name: d.name, msgs: [] }));
      try { sessionStorage.setItem(SESSION_KEY, JSON.stringify(data)); } catch (_) { /* give up */ }
    }
  }

  function restore() {
    let data;
    try {
      data = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    } catch (_) {
      data = null;
    }
    if (!data || data.v !== 1 || !data.auth) return false;
    S.auth = data.auth.token ? { token: String(data.auth.token) } : { name: String(data.auth.name || '') };
    S.me = String(data.me || '');
    for (const r of data.rooms || []) {
      if (!ROOM_RE.test(r.name || '')) continue;
      const c = ensureConversation(r.name);
      c.epoch = r.epoch || '';
      c.lastSeq = typeof r.lastSeq === 'number' ? r.lastSeq : null;
    }
    for (const d of data.dms || []) {
      if (!d.name) continue;
      const c = ensureConversation('@' + d.name);
      for (const m of d.msgs || []) addDirectMessage(c, m, false);
    }
    for (const p of data.pending || []) {
      if (!p.cid || !p.key || !p.text) continue;
      if (!S.rooms.has(p.key)) continue;
      S.pending.set(p.cid, { cid: p.cid, key: p.key, text: p.text, ts: p.ts || Date.now(), state: p.state === 'failed' ? 'failed' : 'pending', error: p.error || '' });
    }
    if (data.active && S.rooms.has(data.active)) S.active = data.active;
    else S.active = S.rooms.size ? S.rooms.keys().next().value : null;
    return true;
  }

  // ---- connection --------------------------------------------------------

  let ws = null;
  let connGen = 0; // counts welcomes: which connection a pending send went out on
  let attempt = 0;
  let retryTimer = null;
  let retryAt = 0;
  let countdownTimer = null;
  let pingTimer = null;
  let pongTimer = null;
  const requests = new Map(); // request id -> {type, key, cid, frame}
  const outq = [];
  let tokens = 0;
  let lastRefill = 0;
  let flushTimer = null;

  function wsURL() {
    return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws';
  }

  function setConn(state) {
    S.conn = state;
    scheduleRender();
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (!S.auth) return;
    dropSocket();
    setConn('connecting');
    let sock;
    try {
      sock = new WebSocket(wsURL());
    } catch (e) {
      scheduleReconnect(0);
      return;
    }
    ws = sock;
    let welcomed = false;
    sock.onopen = () => {
      if (ws !== sock) return;
      const hello = { type: 'hello', protocol: PROTOCOL };
      if (S.auth.token) hello.token = S.auth.token;
      else hello.name = S.auth.name;
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = (ev) => {
      if (ws !== sock || typeof ev.data !== 'string') return;
      for (const line of ev.data.split('\n')) {
        if (!line.trim()) continue;
        let f;
        try {
          f = JSON.parse(line);
        } catch (_) {
          continue;
        }
        if (!f || typeof f.type !== 'string') continue;
        if (f.type === 'welcome') welcomed = true;
        try {
          handleFrame(f);
        } catch (e) {
          console.error('ringchat: handling', f.type, e);
        }
      }
    };
    sock.onerror = () => { /* a close event always follows */ };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      ws = null;
      onClosed(ev.code, ev.reason, welcomed);
    };
  }

  // dropSocket forgets the current socket without reacting to its close.
  function dropSocket() {
    if (!ws) return;
    const old = ws;
    ws = null;
    old.onopen = old.onmessage = old.onclose = old.onerror = null;
    try { old.close(1000, 'client reconnecting'); } catch (_) { /* already closed */ }
    resetConnectionState();
  }

  function resetConnectionState() {
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    clearTimeout(flushTimer);
    pingTimer = pongTimer = flushTimer = null;
    outq.length = 0;
    requests.clear();
    for (const c of S.rooms.values()) {
      c.joined = false;
      c.joinInFlight = false;
      if (c.kind === 'room') {
        const reached = c.reachedStart;
        resetHistoryPaging(c);
        c.reachedStart = reached; // what is shown stays shown
      }
      c.typing.clear();
    }
  }

  const AUTH_CLOSES = { 4001: 'auth', 4003: 'version', 4004: 'expired' };

  function onClosed(code, reason, welcomed) {
    resetConnectionState();
    if (!S.auth) {
      setConn('offline');
      return;
    }
    if (AUTH_CLOSES[code]) {
      let msg = reason || 'The server refused the sign-in.';
      if (code === 4004) msg = 'Your token expired (' + (reason || 'token expired') + '). Paste a fresh one to continue.';
      if (code === 4003) msg = 'This server speaks another protocol version: ' + (reason || 'unsupported version');
      signOut(msg, code === 4004 && welcomed);
      return;
    }
    let min = 0;
    if (code === 1008) {
      toast('Disconnected by the server: ' + (reason || 'policy violation') + '. Reconnecting shortly.');
      min = 5000;
    } else if (code === 1009) {
      toast('A frame was too large for the server.');
    }
    if (!welcomed && !S.everWelcomed && code === 1006 && attempt === 0) {
      // First contact failed outright; say so on the sign-in card too.
      showSignInError('Could not reach the chat server. Retrying…', true);
    }
    scheduleReconnect(min);
  }

  function scheduleReconnect(minDelay) {
    clearTimeout(retryTimer);
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
    const delay = Math.max(minDelay || 0, Math.random() * ceiling); // full jitter
    attempt++;
    retryAt = Date.now() + delay;
    retryTimer = setTimeout(connect, delay);
    setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
    clearInterval(countdownTimer);
    countdownTimer = setInterval(() => {
      if (S.conn !== 'reconnecting' && S.conn !== 'offline') {
        clearInterval(countdownTimer);
        countdownTimer = null;
        return;
      }
      renderConn();
    }, 250);
  }

  function reconnectNow() {
    if (!S.auth || S.conn === 'online' || S.conn === 'connecting') return;
    attempt = Math.max(0, attempt - 1);
    connect();
  }

  // send queue: the server meters frames with a token bucket (rate and burst
  // from the welcome); the client paces itself just under it so that a
  // reconnect with many rooms and pending sends never trips rate_limited.
  function refill() {
    const now = performance.now();
    const rate = Math.max(1, (S.limits.rate_per_second || 20) * 0.9);
    const burst = Math.max(1, (S.limits.rate_burst || 40) - 2);
    tokens = Math.min(burst, tokens + ((now - lastRefill) / 1000) * rate);
    lastRefill = now;
  }

  function enqueue(frame, meta) {
    if (meta) requests.set(frame.id, { ...meta, frame });
    outq.push(frame);
    flushOut();
  }

  function flushOut() {
    if (!ws || S.conn !== 'online' || ws.readyState !== WebSocket.OPEN) return;
    refill();
    while (outq.length && tokens >= 1) {
      tokens -= 1;
      ws.send(JSON.stringify(outq.shift()));
    }
    if (outq.length && !flushTimer) {
      const rate = Math.max(1, (S.limits.rate_per_second || 20) * 0.9);
      flushTimer = setTimeout(() => {
        flushTimer = null;
        flushOut();
      }, Math.ceil(1000 / rate));
    }
  }

  // sendUnmetered is for typing frames, which are worthless when late: they
  // never wait in the queue and skip its token bucket. The server does meter
  // them (every frame costs a token, typing included); at one every
  // TYPING_SEND_EVERY_MS they fit in the margin the bucket keeps below the
  // server's rate and burst.
  function sendUnmetered(frame) {
    if (ws && S.conn === 'online' && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function retryLater(req) {
    setTimeout(() => {
      if (S.conn !== 'online') return; // a reconnect rebuilds everything
      const frame = { ...req.frame, id: newReqID(req.frame.type[0]) };
      enqueue(frame, { type: req.type, key: req.key, cid: req.cid });
    }, RETRY_FRAME_MS + Math.random() * 500);
  }

  // ---- protocol operations ----------------------------------------------

  function joinRoom(room) {
    if (S.conn !== 'online' || room.joinInFlight) return;
    const frame = { type: 'join', id: newReqID('j'), room: room.name };
    if (room.lastSeq !== null) {
      frame.since = room.lastSeq;
      if (room.epoch) frame.epoch = room.epoch;
    }
    room.joinInFlight = true;
    enqueue(frame, { type: 'join', key: room.key });
  }

  // requestHistory asks for the newest page (older false: the page ending
  // at joined.head, right above which live messages continue) or for the
  // page just below the oldest message shown (older true). One request of
  // each kind is in flight at a time, none while its retry is pending or
  // after a refusal, and no older page while the newest is still coming: so
  // no page is asked for twice and every page joins the run shown.
  function requestHistory(room, older) {
    if (S.conn !== 'online' || !room.joined || room.historyError) return;
    if (room.historyBusy || room.historyRetry) return;
    const frame = { type: 'history', id: newReqID('h'), room: room.name, limit: HISTORY_PAGE };
    if (older) {
      if (room.olderBusy || room.olderRetry || !moreOlder(room)) return;
      frame.before = room.msgs[0].seq;
      room.olderBusy = true;
    } else {
      if (room.head > 0) frame.before = room.head + 1;
      room.historyBusy = true;
    }
    enqueue(frame, { type: 'history', key: room.key, older: !!older, gen: room.gen, connGen });
    scheduleRender();
  }

  // loadOlderIfNear asks for the next older page of the room on screen
  // when the reader is near the top of the list (or the list does not fill
  // the view, so it cannot scroll).
  function loadOlderIfNear() {
    const conv = S.rooms.get(S.active);
    if (!conv || conv.kind !== 'room' || !moreOlder(conv)) return;
    if ($('messages').scrollTop < OLDER_PREFETCH_PX) requestHistory(conv, true);
  }

  // retryHistory asks again after a transient refusal (unavailable, a
  // storage error, rate_limited), with full-jitter exponential backoff per
  // room and kind, on the same connection only: a reconnect starts over.
  function retryHistory(room, older, code, msg) {
    const attempt = older ? ++room.olderAttempt : ++room.historyAttempt;
    const ceiling = Math.min(HISTORY_RETRY_CAP_MS, HISTORY_RETRY_BASE_MS * 2 ** Math.min(attempt, 16));
    const delay = code === 'rate_limited' ? RETRY_FRAME_MS + Math.random() * 500 : Math.max(100, Math.random() * ceiling);
    const gen = room.gen;
    const conn = connGen;
    const retry = { note: (ERROR_TEXT[code] || msg || code) + ' Retrying…' };
    retry.timer = setTimeout(() => {
      if (older ? room.olderRetry !== retry : room.historyRetry !== retry) return;
      if (older) room.olderRetry = null;
      else room.historyRetry = null;
      if (room.gen !== gen || connGen !== conn) return;
      if (older) loadOlderIfNear();
      else requestHistory(room, false);
      scheduleRender();
    }, delay);
    if (older) room.olderRetry = retry;
    else room.historyRetry = retry;
  }

  function transmitPending(p) {
    if (S.conn !== 'online') return;
    const conv = S.rooms.get(p.key);
    if (!conv) return;
    p.sentGen = connGen;
    if (conv.kind === 'room') {
      if (!conv.joined && !conv.joinInFlight) {
        p.sentGen = 0; // onJoined sends it
        return;
      }
      enqueue({ type: 'send', id: newReqID('s'), room: conv.name, cid: p.cid, text: p.text }, { type: 'send', key: p.key, cid: p.cid });
    } else {
      enqueue({ type: 'dm', id: newReqID('d'), to: conv.name, cid: p.cid, text: p.text }, { type: 'dm', key: p.key, cid: p.cid });
    }
  }

  function onWelcome(f) {
    if (S.keptFor && S.keptFor !== f.user) {
      // Someone else signed in: what was kept belongs to the previous user.
      S.rooms.clear();
      S.pending.clear();
      S.active = null;
    }
    S.keptFor = '';
    S.me = String(f.user || '');
    S.anonymous = !!f.anonymous;
    S.server = String(f.server || '');
    S.limits = { ...DEFAULT_LIMITS, ...(f.limits || {}) };
    S.everWelcomed = true;
    connGen++;
    attempt = 0;
    tokens = Math.max(1, (S.limits.rate_burst || 40) - 2);
    lastRefill = performance.now();
    clearInterval(countdownTimer);
    countdownTimer = null;
    if (S.auth && S.auth.name) localStorage.setItem(NAME_KEY, S.auth.name);
    hideSignInError();
    setConn('online');
    showMain();
    // Rooms first, in sidebar order; then unacked sends with their original
    // cids. The server handles a connection's frames in order, so every
    // resend reaches a room that is already joined again.
    for (const c of S.rooms.values()) if (c.kind === 'room') joinRoom(c);
    for (const p of S.pending.values()) if (p.state === 'pending') transmitPending(p);
    startPing();
    persistSoon();
  }

  function startPing() {
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (!ws || S.conn !== 'online') return;
      enqueue({ type: 'ping', id: newReqID('p') });
      clearTimeout(pongTimer);
      pongTimer = setTimeout(() => {
        // No answer: the connection is dead even if the socket does not know yet.
        const dead = ws;
        if (!dead) return;
        ws = null;
        dead.onopen = dead.onmessage = dead.onclose = dead.onerror = null;
        try { dead.close(); } catch (_) { /* ignore */ }
        onClosed(1006, 'no pong', true);
      }, PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  // ---- incoming frames ---------------------------------------------------

  function handleFrame(f) {
    const req = f.id ? requests.get(f.id) : undefined;
    if (req && f.type !== 'message' && f.type !== 'dm') requests.delete(f.id);
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'joined': onJoined(f, req); break;
      case 'left': onLeft(f, req); break;
      case 'message': onMessage(f); break;
      case 'deleted': onMessage(f); break;
      case 'ack': onAck(f); break;
      case 'history': onHistory(f, req); break;
      case 'dm': onDM(f); break;
      case 'typing': onTyping(f); break;
      case 'presence': onPresence(f); break;
      case 'error': onError(f, req); break;
      case 'pong': clearTimeout(pongTimer); break;
      default: break;
    }
    scheduleRender();
  }

  function onJoined(f, req) {
    let room = S.rooms.get(f.room);
    if (!room && !f.id && f.recovered === undefined && f.room) {
      // Unasked, for a room not in the list: the backend subscribed this
      // user to it (docs/protocol.md 5.2). It joins the list (and is
      // joined again after a reconnect, like the rooms the user joined).
      room = ensureConversation(String(f.room));
      toast('You were added to #' + room.name, 'info');
    }
    if (!room || room.kind !== 'room') return;
    const asked = req ? req.frame : {};
    room.joined = true;
    room.joinInFlight = false;
    room.head = Number(f.head) || 0;
    room.oldestKept = Number(f.oldest) || room.head + 1;
    room.count = Number(f.count) || 0;
    room.listMode = Array.isArray(f.present);
    room.present = new Set(room.listMode ? f.present : []);
    room.lastJoin = { since: asked.since === undefined ? null : asked.since, epoch: asked.epoch || null, recovered: f.recovered === undefined ? null : f.recovered };
    const epochChanged = room.epoch !== '' && room.epoch !== f.epoch;
    if (f.recovered === false || epochChanged) {
      // The gap cannot be replayed: start over from the server's history.
      clearRoomMessages(room);
      room.lastSeq = room.head;
    }
    room.epoch = String(f.epoch || '');
    if (room.lastSeq === null) room.lastSeq = room.head;
    // A room without anything on screen (first join, page reload, or
    // cleared above) loads its recent history; a resumed room is brought up
    // to date by the replay that follows this frame.
    if (room.msgs.length === 0 && room.head > 0) requestHistory(room, false);
    for (const p of S.pending.values()) {
      if (p.key === room.key && p.state === 'pending' && p.sentGen !== connGen) transmitPending(p);
    }
    persistSoon();
  }

  // onLeft handles a left frame without a request: the backend kicked this
  // user from the room (docs/protocol.md 5.4). The room goes from the list
  // as after the user's own leave (its unsent messages with it: the server
  // would refuse them), and a notice says why; joining it again is allowed.
  function onLeft(f, req) {
    if (req) return;
    const room = S.rooms.get(f.room);
    if (!room || room.kind !== 'room') return;
    S.rooms.delete(room.key);
    for (const p of [...S.pending.values()]) if (p.key === room.key) S.pending.delete(p.cid);
    if (S.active === room.key) S.active = S.rooms.size ? S.rooms.keys().next().value : null;
    toast('You were removed from #' + room.name + (f.reason ? ': ' + String(f.reason) : ''));
    persistSoon();
  }

  // applyDeletion marks the message at seq deleted, if it is shown; one
  // not loaded yet comes from the server marked deleted.
  function applyDeletion(room, seq) {
    const m = room.bySeq.get(seq);
    if (!m || m.deleted || m.hidden) return;
    m.deleted = true;
    m.text = '';
    scheduleRender();
  }

  function onMessage(f) {
    const room = S.rooms.get(f.room);
    if (!room || room.kind !== 'room') return;
    room.typing.delete(f.from); // their message is here: they stopped typing it
    if (addRoomMessage(room, f, true)) persistSoon();
  }

  function onAck(f) {
    const p = S.pending.get(f.cid);
    if (!p) return;
    S.pending.delete(f.cid);
    const conv = S.rooms.get(p.key);
    if (conv && conv.kind === 'room' && f.room) {
      if (!conv.bySeq.has(Number(f.seq)) && adjacent(conv, Number(f.seq))) {
        // The ack came without its message (e.g. an answer to a resend):
        // the ack has everything to show it. One that would not join the
        // run shown is left to the history pages, which bring it in place.
        addRoomMessage(conv, { seq: f.seq, mid: f.mid, from: S.me, cid: f.cid, text: p.text, ts: f.ts }, false);
      }
    } else if (conv && conv.kind === 'dm') {
      const existing = f.mid ? conv.byMid.get(f.mid) : null;
      if (existing) existing.delivered = f.delivered;
      else addDirectMessage(conv, { mid: f.mid, from: S.me, to: conv.name, cid: f.cid, text: p.text, ts: f.ts, delivered: f.delivered }, false);
    }
    persistSoon();
  }

  function onHistory(f, req) {
    const room = S.rooms.get(f.room);
    if (!room || room.kind !== 'room' || !req || req.gen !== room.gen) return; // asked for a run since cleared
    const older = !!req.older;
    if (older) {
      room.olderBusy = false;
      room.olderAttempt = 0;
    } else {
      room.historyBusy = false;
      room.historyAttempt = 0;
    }
    // From another incarnation of the room (or none: ""): the joined frame
    // that announces the new epoch starts the room over.
    if (room.epoch && f.epoch !== room.epoch) return;
    const msgs = Array.isArray(f.messages) ? f.messages : [];
    const below = older && room.msgs.length ? room.msgs[0].seq : Infinity;
    let added = 0;
    // A page is one gapless run ending just below what is shown (older) or
    // at joined.head, right above which the live messages continue.
    for (const m of msgs) if (Number(m.seq) < below && addRoomMessage(room, m, false)) added++;
    room.oldestKept = Number(f.oldest) || room.oldestKept;
    room.head = Math.max(room.head, Number(f.head) || 0);
    // more=false: nothing older is kept. A page that brought nothing older
    // ends the paging too, rather than asking for the same page again.
    if (!f.more || (older && added === 0)) room.reachedStart = true;
    persistSoon();
  }

  function onDM(f) {
    const peer = f.from === S.me ? f.to : f.from;
    if (!peer) return;
    const conv = ensureConversation('@' + peer);
    if (addDirectMessage(conv, f, true)) persistSoon();
  }

  let typingTimer = null;
  function onTyping(f) {
    const room = S.rooms.get(f.room);
    if (!room) return;
    const until = Date.now() + TYPING_SHOW_MS;
    for (const u of f.users || []) if (u !== S.me) room.typing.set(u, until);
    scheduleTypingExpiry();
  }

  function scheduleTypingExpiry() {
    clearTimeout(typingTimer);
    let next = Infinity;
    const now = Date.now();
    for (const c of S.rooms.values()) {
      for (const [u, until] of c.typing) {
        if (until <= now) c.typing.delete(u);
        else next = Math.min(next, until);
      }
    }
    if (next !== Infinity) typingTimer = setTimeout(() => { scheduleTypingExpiry(); scheduleRender(); }, next - now + 20);
  }

  function onPresence(f) {
    const room = S.rooms.get(f.room);
    if (!room) return;
    room.count = Number(f.count) || 0;
    const joined = Array.isArray(f.joined) ? f.joined : [];
    const left = Array.isArray(f.left) ? f.left : [];
    if (Array.isArray(f.present)) {
      // The whole list (the room is back under the list limit): replace ours.
      room.listMode = true;
      room.present = new Set(f.present);
      return;
    }
    if (!joined.length && !left.length) {
      room.listMode = false;
      room.present.clear();
      return;
    }
    if (!room.listMode) {
      // Back under the list limit. Names arrive only as changes from now on,
      // so ask for the full list again: joining a joined room answers with a
      // fresh snapshot and counts nobody twice.
      room.listMode = true;
      room.present.clear();
      joinRoom(room);
      return;
    }
    for (const u of joined) room.present.add(u);
    for (const u of left) {
      room.present.delete(u);
      room.typing.delete(u);
    }
  }

  const ERROR_TEXT = {
    invalid_room: 'That room name is not valid.',
    forbidden: 'You are not allowed in that room.',
    too_many_rooms: 'You have joined the maximum number of rooms.',
    text_too_long: 'That message is too long.',
    not_joined: 'Join the room first.',
    rate_limited: 'Slow down a little.',
    unavailable: 'The room is unavailable right now.',
    internal: 'The server had a problem.',
    storage_full: 'The server’s storage is full.',
    storage_failed: 'The server’s storage failed.',
    banned: 'You are banned from that room.',
    muted: 'You are muted in that room: you may read, not send.',
  };

  // Refusals of a history request that go away by themselves: ask again
  // after a backoff.
  const HISTORY_TRANSIENT = new Set(['unavailable', 'internal', 'rate_limited', 'storage_full', 'storage_failed']);

  function onError(f, req) {
    const code = String(f.code || '');
    const msg = String(f.message || ERROR_TEXT[code] || code);
    const transient = code === 'rate_limited' || code === 'unavailable' || code === 'internal';
    if (!req) {
      if (code === 'rate_limited') return;
      if (code === 'not_joined' && f.room && S.rooms.has(f.room)) {
        const room = S.rooms.get(f.room);
        room.joined = false;
        joinRoom(room);
        return;
      }
      toast(ERROR_TEXT[code] ? ERROR_TEXT[code] + ' (' + msg + ')' : msg);
      return;
    }
    switch (req.type) {
      case 'join': {
        const room = S.rooms.get(req.key);
        if (transient) {
          retryLater(req); // joinInFlight stays set until the retry is answered
          return;
        }
        if (room) {
          S.rooms.delete(room.key);
          for (const p of [...S.pending.values()]) if (p.key === room.key) S.pending.delete(p.cid);
          if (S.active === room.key) S.active = S.rooms.size ? S.rooms.keys().next().value : null;
        }
        toast('Could not join #' + req.key + ': ' + msg);
        persistSoon();
        return;
      }
      case 'send':
      case 'dm': {
        const p = S.pending.get(req.cid);
        if (!p) return;
        if (transient) {
          retryLater(req);
          return;
        }
        if (code === 'not_joined') {
          const room = S.rooms.get(p.key);
          if (room) {
            room.joined = false;
            joinRoom(room);
            transmitPending(p);
          }
          return;
        }
        p.state = 'failed';
        p.error = msg;
        persistSoon();
        return;
      }
      case 'history': {
        const room = S.rooms.get(req.key);
        if (!room || room.kind !== 'room' || req.gen !== room.gen) return;
        if (req.older) room.olderBusy = false;
        else room.historyBusy = false;
        if (HISTORY_TRANSIENT.has(code)) retryHistory(room, !!req.older, code, msg);
        else room.historyError = ERROR_TEXT[code] ? ERROR_TEXT[code] + ' (' + msg + ')' : msg;
        return;
      }
      default:
        return;
    }
  }

  // ---- user actions ------------------------------------------------------

  function signIn(auth) {
    S.auth = auth;
    S.me = '';
    S.everWelcomed = false;
    attempt = 0;
    persistNow();
    connect();
    renderAll();
  }

  // signOut forgets the identity. keepRooms (after a token expired) keeps
  // the rooms and unsent messages for the next sign-in of the same user.
  function signOut(errorText, keepRooms) {
    S.keptFor = keepRooms ? S.me : '';
    S.auth = null;
    S.me = '';
    dropSocket();
    clearTimeout(retryTimer);
    retryTimer = null;
    clearInterval(countdownTimer);
    countdownTimer = null;
    if (!keepRooms) {
      S.rooms.clear();
      S.pending.clear();
      S.active = null;
    }
    sessionStorage.removeItem(SESSION_KEY);
    setConn('offline');
    showSignIn();
    if (errorText) showSignInError(errorText);
    renderAll();
  }

  function joinFromForm(raw) {
    const name = raw.trim().replace(/^#/, '');
    const err = $('room-error');
    let problem = '';
    if (!name) problem = 'Enter a room name.';
    else if (name.length > 64) problem = 'Room names are at most 64 characters.';
    else if (!ROOM_RE.test(name)) problem = 'Use only letters, digits and - _ . : / (no spaces).';
    else if (!S.rooms.has(name) && roomCount() >= (S.limits.max_rooms || 100)) problem = 'You can be in at most ' + S.limits.max_rooms + ' rooms.';
    if (problem) {
      err.textContent = problem;
      err.hidden = false;
      $('room-input').setAttribute('aria-invalid', 'true');
      return false;
    }
    err.hidden = true;
    $('room-input').removeAttribute('aria-invalid');
    const existing = S.rooms.get(name);
    if (existing && (existing.joined || existing.joinInFlight || S.conn !== 'online')) {
      setActive(name); // already in it (or rejoined on reconnect)
      return true;
    }
    const room = ensureConversation(name);
    joinRoom(room);
    setActive(name);
    persistSoon();
    return true;
  }

  const roomCount = () => [...S.rooms.values()].filter((c) => c.kind === 'room').length;

  function leave(key) {
    const c = S.rooms.get(key);
    if (!c) return;
    if (c.kind === 'room' && (c.joined || c.joinInFlight)) {
      enqueue({ type: 'leave', id: newReqID('l'), room: c.name }, { type: 'leave', key });
    }
    S.rooms.delete(key);
    for (const p of [...S.pending.values()]) if (p.key === key) S.pending.delete(p.cid);
    if (S.active === key) S.active = S.rooms.size ? S.rooms.keys().next().value : null;
    persistSoon();
    renderAll();
  }

  function openDM(user) {
    user = String(user).trim().replace(/^@/, '');
    if (!user) return;
    if (user.length > 64) {
      toast('User ids are at most 64 bytes.');
      return;
    }
    ensureConversation('@' + user);
    setActive('@' + user);
    persistSoon();
  }

  function setActive(key) {
    const prev = S.rooms.get(S.active);
    if (prev) prev.scrollTop = atBottom() ? null : $('messages').scrollTop;
    S.active = key;
    const c = S.rooms.get(key);
    if (c) c.unread = 0;
    lastRenderedKey = null;
    renderAll();
    $('composer').focus();
    persistSoon();
  }

  function submitComposer() {
    const box = $('composer');
    const conv = S.rooms.get(S.active);
    if (!conv) return;
    const text = box.value.replace(/^(?:[ \t]*\r?\n)+/, '').replace(/\s+$/, '');
    if (!text.trim()) return;
    if (utf8Len(text) > (S.limits.max_text_bytes || 4096)) {
      toast('Messages are limited to ' + S.limits.max_text_bytes + ' bytes.');
      return;
    }
    const p = { cid: newCID(), key: conv.key, text, ts: Date.now(), state: 'pending', error: '' };
    S.pending.set(p.cid, p);
    box.value = '';
    autosize();
    updateCounter();
    clearTimeout(typingTrail); // the text is sent: nothing left to announce
    typingTrail = null;
    conv.scrollTop = null;
    forceBottom = true;
    transmitPending(p);
    persistSoon();
    scheduleRender();
  }

  // Typing signals go out at most every TYPING_SEND_EVERY_MS, which is
  // above the server's per-user interval (1s): a signal inside that interval
  // is dropped without a word. Typing during the pause is announced when the
  // pause ends (trailing edge), so a short burst of keys is never lost.
  let lastTypingSent = 0;
  let typingTrail = null;
  function noteTyping() {
    const conv = S.rooms.get(S.active);
    if (!conv || conv.kind !== 'room' || !conv.joined) return;
    if (!$('composer').value.trim()) return;
    const wait = lastTypingSent + TYPING_SEND_EVERY_MS - Date.now();
    if (wait > 0) {
      if (!typingTrail) {
        typingTrail = setTimeout(() => {
          typingTrail = null;
          noteTyping();
        }, wait);
      }
      return;
    }
    lastTypingSent = Date.now();
    sendUnmetered({ type: 'typing', room: conv.name });
  }

  // ---- rendering ---------------------------------------------------------

  let renderQueued = false;
  let forceBottom = false;
  let lastRenderedKey = null;

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    queueMicrotask(() => {
      renderQueued = false;
      renderAll();
    });
  }

  function showSignIn() {
    $('connect').classList.remove('busy');
    $('connect').disabled = false;
    $('signin').hidden = false;
    $('main').hidden = true;
    $('me').hidden = true;
    const saved = localStorage.getItem(NAME_KEY) || '';
    if (!$('name-input').value) $('name-input').value = saved;
    setTimeout(() => $('name-input').focus(), 0);
  }

  function showMain() {
    $('signin').hidden = true;
    $('main').hidden = false;
  }

  function showSignInError(text, soft) {
    const e = $('signin-error');
    e.textContent = text;
    e.hidden = false;
    e.classList.toggle('soft', !!soft);
    $('connect').disabled = false;
    $('connect').classList.remove('busy');
  }

  function hideSignInError() {
    $('signin-error').hidden = true;
  }

  function renderAll() {
    renderConn();
    renderMe();
    if (!$('main').hidden) {
      renderSidebar();
      renderHeader();
      renderMessages();
      renderTyping();
      renderMembers();
      renderComposer();
    }
    let unread = 0;
    for (const c of S.rooms.values()) unread += c.unread;
    set(document, 'title', (unread ? '(' + unread + ') ' : '') + (S.active ? (S.active.startsWith('@') ? S.active : '#' + S.active) + ' · ' : '') + 'ringchat');
  }

  function renderConn() {
    const box = $('conn');
    let text;
    switch (S.conn) {
      case 'connecting': text = 'Connecting…'; break;
      case 'online': text = 'Online'; break;
      case 'reconnecting': text = 'Reconnecting in ' + Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) + 's'; break;
      default: text = retryTimer ? 'Offline · retrying in ' + Math.max(0, Math.ceil((retryAt - Date.now()) / 1000)) + 's' : 'Offline';
    }
    setData(box, 'state', S.conn);
    set(box, 'title', S.conn === 'online' && S.server ? 'Connected to ' + S.server : '');
    if ($('conn-text').textContent !== text) $('conn-text').textContent = text;
    set($('conn-retry'), 'hidden', !(S.auth && (S.conn === 'reconnecting' || S.conn === 'offline')));
  }

  function renderMe() {
    const me = $('me');
    if (!S.auth || !S.me) {
      set(me, 'hidden', true);
      return;
    }
    set(me, 'hidden', false);
    set($('me-name'), 'textContent', S.me);
    const av = $('me-avatar');
    set(av, 'className', 'avatar avatar-sm c' + (hashString(S.me) % 8));
    set(av, 'textContent', initials(S.me));
    set($('me-anon'), 'hidden', !S.anonymous);
  }

  // set writes a DOM property only when the value changes, and setData a
  // data attribute: writing the same value again still dirties the page's
  // style and layout, which a long message list pays for on every render.
  function set(node, prop, value) {
    if (node[prop] !== value) node[prop] = value;
  }

  function setData(node, key, value) {
    if (node.dataset[key] !== value) node.dataset[key] = value;
  }

  // syncChildren makes nodes the children of parent, touching the DOM only
  // where the list changed, so focus, hover and selection survive renders,
  // and a long list that gains a page or a message has only those nodes
  // inserted (replacing every child would lay the whole list out again).
  function syncChildren(parent, nodes) {
    const cur = parent.children;
    if (cur.length === nodes.length) {
      let same = true;
      for (let i = 0; same && i < nodes.length; i++) same = cur[i] === nodes[i];
      if (same) return;
    }
    const keep = new Set(nodes);
    for (let c = parent.firstChild; c;) {
      const next = c.nextSibling;
      if (!keep.has(c)) c.remove();
      c = next;
    }
    let ref = parent.firstChild;
    for (const n of nodes) {
      if (n === ref) ref = ref.nextSibling;
      else parent.insertBefore(n, ref); // inserts, or moves it here
    }
  }

  const sidebarNodes = new Map(); // conversation key -> {li, link, badge}

  function sidebarItem(c) {
    let it = sidebarNodes.get(c.key);
    if (!it) {
      const key = c.key;
      const li = h('li', { 'data-testid': 'room-item', 'data-room': key, 'data-kind': c.kind });
      const link = h('button', { type: 'button', class: 'room-link', title: c.kind === 'room' ? '#' + c.name : 'Direct messages with ' + c.name, on: { click: () => setActive(key) } });
      if (c.kind === 'room') link.append(h('span', { class: 'room-hash', 'aria-hidden': 'true', text: '#' }));
      else link.append(avatar(c.name, 'avatar-xs'));
      link.append(h('span', { class: 'room-name', text: c.name }));
      li.append(link, h('button', {
        type: 'button', class: 'room-leave', 'data-testid': 'leave',
        title: c.kind === 'room' ? 'Leave #' + c.name : 'Close conversation',
        'aria-label': c.kind === 'room' ? 'Leave ' + c.name : 'Close ' + c.name,
        text: '×', on: { click: (e) => { e.stopPropagation(); leave(key); } },
      }));
      it = { li, link, badge: h('span', { class: 'badge', 'data-testid': 'unread' }) };
      sidebarNodes.set(key, it);
    }
    const cls = 'room-item' + (c.key === S.active ? ' active' : '') + (c.unread ? ' has-unread' : '') + (c.kind === 'room' && !c.joined ? ' not-joined' : '');
    if (it.li.className !== cls) it.li.className = cls;
    if (c.kind === 'room') setData(it.li, 'joined', String(c.joined));
    if (c.unread) {
      const text = c.unread > 99 ? '99+' : String(c.unread);
      if (it.badge.textContent !== text) it.badge.textContent = text;
      if (it.badge.parentNode !== it.link) it.link.append(it.badge);
    } else if (it.badge.parentNode) {
      it.badge.remove();
    }
    return it.li;
  }

  function renderSidebar() {
    const rooms = [];
    const dms = [];
    for (const c of S.rooms.values()) (c.kind === 'room' ? rooms : dms).push(sidebarItem(c));
    for (const key of sidebarNodes.keys()) if (!S.rooms.has(key)) sidebarNodes.delete(key);
    syncChildren($('room-list'), rooms);
    syncChildren($('dm-list'), dms);
    set($('rooms-empty'), 'hidden', rooms.length > 0);
  }

  function renderHeader() {
    const c = S.rooms.get(S.active);
    const sub = $('chat-sub');
    if (!c) {
      set($('chat-kind'), 'textContent', '');
      set($('chat-name'), 'textContent', 'ringchat');
      set(sub, 'textContent', '');
      return;
    }
    set($('chat-kind'), 'textContent', c.kind === 'room' ? '#' : '@');
    set($('chat-name'), 'textContent', c.name);
    if (c.kind === 'dm') set(sub, 'textContent', 'Direct messages');
    else if (!c.joined) set(sub, 'textContent', S.conn === 'online' ? 'Joining…' : 'Waiting for connection…');
    else set(sub, 'textContent', c.count === 1 ? '1 member online' : c.count + ' members online');
  }

  function msgKey(m) {
    const key = m.seq ? 's' + m.seq : m.mid ? 'm' + m.mid : 'c' + m.cid;
    return m.deleted ? key + ':deleted' : key;
  }

  function atBottom() {
    const list = $('messages');
    return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  }

  function buildMessageNode(conv, m) {
    const li = h('li', { class: 'msg', 'data-testid': 'message', 'data-room': conv.key, 'data-from': m.from });
    if (m.seq) li.setAttribute('data-seq', String(m.seq));
    if (m.mid) li.setAttribute('data-mid', m.mid);
    if (m.cid) li.setAttribute('data-cid', m.cid);
    const when = new Date(m.ts);
    const gutter = h('div', { class: 'msg-gutter' },
      avatar(m.from || '?'),
      h('time', { class: 'msg-hover-time', datetime: when.toISOString(), title: fullFmt.format(when), text: timeFmt.format(when) }));
    const author = h('button', { type: 'button', class: 'msg-author', 'data-testid': 'author', title: 'Message ' + m.from, text: m.from });
    author.addEventListener('click', () => { if (m.from && m.from !== S.me) openDM(m.from); });
    const meta = h('div', { class: 'msg-meta' },
      author,
      m.from === S.me ? h('span', { class: 'tag tag-you', text: 'you' }) : null,
      h('time', { class: 'msg-time', datetime: when.toISOString(), title: fullFmt.format(when), text: timeFmt.format(when) }));
    const text = h('div', { class: 'msg-text', 'data-testid': 'message-text' });
    if (m.deleted) {
      li.setAttribute('data-deleted', 'true');
      text.classList.add('msg-deleted');
      text.append(h('em', { text: 'message deleted' }));
    } else {
      text.append(richText(m.text));
    }
    const status = h('div', { class: 'msg-status' });
    li.append(gutter, h('div', { class: 'msg-body' }, meta, text, status));
    return li;
  }

  function updateMessageState(li, conv, m, p) {
    let state = 'sent';
    let note = '';
    if (p) {
      state = p.state;
      note = p.state === 'failed' ? 'Not sent: ' + (p.error || 'error') : S.conn === 'online' ? 'Sending…' : 'Waiting for connection…';
    } else if (conv.kind === 'dm' && m.from === S.me && m.delivered === 0) {
      state = 'undelivered';
      note = conv.name + ' is offline — not delivered';
    }
    if (li.rcState === state && li.rcNote === note) return;
    li.rcState = state;
    li.rcNote = note;
    setData(li, 'state', state);
    setData(li, 'note', note);
    li.classList.toggle('pending', state === 'pending');
    li.classList.toggle('failed', state === 'failed');
    const status = li.querySelector('.msg-status');
    status.replaceChildren();
    if (note) status.append(h('span', { text: note }));
    if (state === 'failed' && p) {
      status.append(
        h('button', { type: 'button', class: 'linklike', 'data-testid': 'retry', text: 'Retry', on: { click: () => { p.state = 'pending'; p.error = ''; transmitPending(p); persistSoon(); scheduleRender(); } } }),
        h('button', { type: 'button', class: 'linklike', 'data-testid': 'discard', text: 'Discard', on: { click: () => { S.pending.delete(p.cid); persistSoon(); scheduleRender(); } } }),
      );
    }
  }

  function renderMessages() {
    const list = $('messages'); // the scroller
    const run = $('message-run'); // the items in it
    const conv = S.rooms.get(S.active);
    set($('empty-state'), 'hidden', !!conv);
    set(list, 'hidden', !conv);
    if (!conv) {
      run.replaceChildren();
      set($('jump'), 'hidden', true);
      return;
    }
    const switched = lastRenderedKey !== conv.key;
    const wasBottom = switched ? conv.scrollTop === null : atBottom();
    const oldTop = list.scrollTop;
    // The message at the top of the view keeps its place on screen when
    // older pages are prepended (or anything above it changes).
    const anchor = !switched && !wasBottom ? topVisibleMessage(list, run) : null;
    const anchorY = anchor ? anchor.getBoundingClientRect().top : 0;

    // Pending sends whose message has not come back yet go last.
    const pendingOnly = [];
    const pendingByCid = new Map();
    for (const p of S.pending.values()) {
      if (p.key !== conv.key) continue;
      pendingByCid.set(p.cid, p);
      const echoed = conv.kind === 'room' ? p.seq && conv.bySeq.has(p.seq) : p.mid && conv.byMid.has(p.mid);
      if (!echoed) pendingOnly.push({ seq: 0, mid: '', from: S.me || (S.auth && S.auth.name) || 'you', cid: p.cid, text: p.text, ts: p.ts, pending: p });
    }
    pendingOnly.sort((a, b) => a.ts - b.ts);

    // Every node is cached per conversation under a key that captures its
    // content, so a render that changes nothing touches nothing (and keeps
    // the reader's text selection).
    const seen = new Set();
    const cached = (key, build) => {
      seen.add(key);
      let n = conv.nodes.get(key);
      if (!n) {
        n = build();
        conv.nodes.set(key, n);
      }
      return n;
    };
    const nodes = [];
    if (conv.kind === 'room') {
      const retry = conv.olderRetry || conv.historyRetry;
      if (conv.historyError) {
        const text = 'Could not load older messages: ' + conv.historyError;
        nodes.push(cached('n:history-error:' + text, () => h('li', { class: 'list-note history-error', 'data-testid': 'history-error', role: 'alert' },
          h('span', { text: text + ' ' }),
          h('button', { type: 'button', class: 'linklike', 'data-testid': 'history-retry', text: 'Try again', on: { click: () => retryHistoryNow(conv) } }))));
      } else if (retry) {
        nodes.push(cached('n:history-retry:' + retry.note, () => h('li', { class: 'list-note loading-older', 'data-testid': 'load-older', 'data-state': 'retrying' },
          h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' ' + retry.note)));
      } else if (moreOlder(conv)) {
        nodes.push(conv.olderBusy
          ? cached('n:older-busy', () => h('li', { class: 'list-note loading-older', 'data-testid': 'load-older', 'data-state': 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading older messages…'))
          : cached('n:older', () => h('li', { class: 'list-note loading-older', 'data-testid': 'load-older', 'data-state': 'idle', text: 'Scroll up for older messages' })));
      } else if (conv.historyBusy || (!conv.joined && conv.msgs.length === 0)) {
        nodes.push(cached('n:loading', () => h('li', { class: 'list-note' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Loading…')));
      } else {
        const empty = !(conv.msgs.length || pendingOnly.length);
        const first = conv.msgs.length ? conv.msgs[0].seq : 0;
        const text = empty ? 'No messages yet. Say hello!'
          : first <= 1 ? 'This is the beginning of the room.'
            : 'This is the start of the room’s kept history: older messages are no longer kept.';
        nodes.push(cached('n:start:' + text, () => h('li', { class: 'room-start', 'data-testid': 'room-start', 'data-first-seq': String(first) },
          h('div', { class: 'room-start-icon', 'aria-hidden': 'true', text: '#' }),
          h('h3', { text: 'Welcome to #' + conv.name }),
          h('p', { class: 'muted', text }))));
      }
    } else if (conv.msgs.length === 0 && pendingOnly.length === 0) {
      nodes.push(cached('n:dm-start', () => h('li', { class: 'room-start' },
        avatar(conv.name, 'avatar-lg'),
        h('h3', { text: conv.name }),
        h('p', { class: 'muted', text: 'Direct messages are delivered live and are not stored by the server.' }))));
    }

    // This loop runs over every message shown on every render: what it
    // can, it remembers (the day of a message, the classes of a node).
    let prev = null;
    let prevDay = '';
    for (const m of conv.msgs.concat(pendingOnly)) {
      if (m.hidden) continue;
      const day = m.day || (m.day = dayKey(m.ts));
      if (!prev || prevDay !== day) {
        const label = dayLabel(m.ts);
        nodes.push(cached('d:' + day + ':' + label, () => h('li', { class: 'day-sep', role: 'separator' }, h('span', { text: label }))));
        prev = null;
      }
      const li = cached(msgKey(m), () => buildMessageNode(conv, m));
      const grouped = !!prev && prev.from === m.from && m.ts - prev.ts < GROUP_GAP_MS && m.ts >= prev.ts;
      const own = m.from === S.me;
      if (li.rcGrouped !== grouped) li.classList.toggle('grouped', (li.rcGrouped = grouped));
      if (li.rcOwn !== own) li.classList.toggle('own', (li.rcOwn = own));
      const p = m.pending || (m.from === S.me && m.cid ? pendingByCid.get(m.cid) : undefined);
      updateMessageState(li, conv, m, p);
      nodes.push(li);
      prev = m;
      prevDay = day;
    }
    for (const k of conv.nodes.keys()) if (!seen.has(k)) conv.nodes.delete(k);

    syncChildren(run, nodes);
    setData(list, 'room', conv.key);

    if (switched) {
      list.scrollTop = conv.scrollTop === null ? list.scrollHeight : conv.scrollTop;
    } else if (wasBottom || forceBottom) {
      list.scrollTop = list.scrollHeight;
    } else if (anchor && anchor.isConnected) {
      list.scrollTop = oldTop + (anchor.getBoundingClientRect().top - anchorY);
    } else {
      list.scrollTop = oldTop;
    }
    forceBottom = false;
    lastRenderedKey = conv.key;
    if (isVisible(conv.key)) conv.unread = 0;
    set($('jump'), 'hidden', atBottom());
    // Still near the top after this render (a page that does not fill the
    // view cannot scroll, so no scroll event would come): fetch more.
    loadOlderIfNear();
  }

  // topVisibleMessage is the first message element of run whose bottom is
  // below the top of the scroller's view.
  function topVisibleMessage(list, run) {
    const top = list.getBoundingClientRect().top;
    const items = run.children;
    let lo = 0;
    let hi = items.length;
    while (lo < hi) { // children are laid out top to bottom
      const mid = (lo + hi) >> 1;
      if (items[mid].getBoundingClientRect().bottom <= top) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < items.length; i++) if (items[i].dataset.seq) return items[i];
    return null;
  }

  // retryHistoryNow is the "Try again" after a refused history request.
  function retryHistoryNow(conv) {
    conv.historyError = '';
    conv.historyAttempt = conv.olderAttempt = 0;
    if (conv.msgs.length === 0) requestHistory(conv, false);
    else requestHistory(conv, true);
    scheduleRender();
  }

  function typingText(users) {
    if (users.length === 0) return '';
    if (users.length === 1) return users[0] + ' is typing…';
    if (users.length === 2) return users[0] + ' and ' + users[1] + ' are typing…';
    if (users.length === 3) return users[0] + ', ' + users[1] + ' and ' + users[2] + ' are typing…';
    return users[0] + ', ' + users[1] + ' and ' + (users.length - 2) + ' others are typing…';
  }

  function renderTyping() {
    const conv = S.rooms.get(S.active);
    const now = Date.now();
    const users = conv ? [...conv.typing].filter(([, until]) => until > now).map(([u]) => u).sort() : [];
    const box = $('typing');
    const text = typingText(users);
    setData(box, 'users', users.join(','));
    if (box.dataset.text === text) return;
    setData(box, 'text', text);
    box.replaceChildren();
    if (text) box.append(h('span', { class: 'typing-dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', { text }));
  }

  function renderMembers() {
    const conv = S.rooms.get(S.active);
    const list = $('member-list');
    const count = $('members-count');
    const title = $('members-title');
    $('members').classList.toggle('stale', !!conv && conv.kind === 'room' && !conv.joined);
    if (!conv) {
      set(title, 'textContent', 'Members');
      set(count, 'textContent', '');
      list.replaceChildren();
      return;
    }
    if (conv.kind === 'dm') {
      set(title, 'textContent', 'Conversation');
      set(count, 'textContent', '');
      syncChildren(list, S.me && S.me !== conv.name ? [memberItem(conv.name), memberItem(S.me)] : [memberItem(conv.name)]);
      return;
    }
    set(title, 'textContent', conv.listMode ? 'Members — ' + conv.count : 'Members');
    if (!conv.joined && conv.count === 0) {
      set(count, 'textContent', '');
      list.replaceChildren();
      return;
    }
    if (!conv.listMode) {
      set(count, 'textContent', conv.count + ' people online — too many to list');
      list.replaceChildren();
      return;
    }
    set(count, 'textContent', '');
    const users = [...conv.present].sort((a, b) => (a === S.me) - (b === S.me) || a.localeCompare(b));
    syncChildren(list, users.map(memberItem));
    if (memberNodes.size > 4 * users.length + 100) {
      const keep = new Set(users.map((u) => u + '|' + (u === S.me)));
      for (const k of memberNodes.keys()) if (!keep.has(k)) memberNodes.delete(k);
    }
  }

  const memberNodes = new Map(); // "user|self" -> li

  function memberItem(user) {
    const self = user === S.me;
    const key = user + '|' + self;
    let li = memberNodes.get(key);
    if (!li) {
      li = buildMemberItem(user, self);
      memberNodes.set(key, li);
    }
    return li;
  }

  function buildMemberItem(user, self) {
    const li = h('li', { class: 'member' + (self ? ' self' : ''), 'data-testid': 'presence-user', 'data-user': user });
    const btn = h('button', { type: 'button', class: 'member-btn', title: self ? 'You' : 'Message ' + user, disabled: self ? true : null },
      h('span', { class: 'member-avatar' }, avatar(user), h('span', { class: 'online-dot', 'aria-hidden': 'true' })),
      h('span', { class: 'member-name', text: user }),
      self ? h('span', { class: 'tag tag-you', text: 'you' }) : null);
    if (!self) btn.addEventListener('click', () => openDM(user));
    li.append(btn);
    return li;
  }

  function renderComposer() {
    const conv = S.rooms.get(S.active);
    const box = $('composer');
    box.disabled = !conv;
    $('send').disabled = !conv;
    const ph = !conv ? 'Join a room to start chatting' : conv.kind === 'room' ? 'Message #' + conv.name : 'Message ' + conv.name;
    if (box.placeholder !== ph) box.placeholder = ph;
  }

  function autosize() {
    const box = $('composer');
    box.style.height = 'auto';
    box.style.height = Math.min(box.scrollHeight, 200) + 'px';
  }

  function updateCounter() {
    const n = utf8Len($('composer').value);
    const max = S.limits.max_text_bytes || 4096;
    const c = $('counter');
    c.hidden = n < max * 0.8;
    c.textContent = n + ' / ' + max;
    c.classList.toggle('over', n > max);
  }

  // ---- wiring ------------------------------------------------------------

  function selectTab(which) {
    const name = which === 'name';
    $('tab-name').classList.toggle('active', name);
    $('tab-token').classList.toggle('active', !name);
    $('tab-name').setAttribute('aria-selected', String(name));
    $('tab-token').setAttribute('aria-selected', String(!name));
    $('panel-name').hidden = !name;
    $('panel-token').hidden = name;
    hideSignInError();
    (name ? $('name-input') : $('token-input')).focus();
  }

  function wire() {
    $('tab-name').addEventListener('click', () => selectTab('name'));
    $('tab-token').addEventListener('click', () => selectTab('token'));
    $('signin-form').addEventListener('submit', (e) => {
      e.preventDefault();
      hideSignInError();
      if (!$('panel-token').hidden) {
        const token = $('token-input').value.trim();
        if (!token) {
          showSignInError('Paste a token first.');
          return;
        }
        $('connect').classList.add('busy');
        signIn({ token });
        return;
      }
      const name = $('name-input').value.trim();
      if (!NAME_RE.test(name)) {
        showSignInError(name ? 'Names are 1–32 letters, digits, “_”, “-” or “.” — no spaces.' : 'Enter a display name.');
        return;
      }
      $('connect').classList.add('busy');
      signIn({ name });
    });
    $('signout').addEventListener('click', () => signOut(''));
    $('conn-retry').addEventListener('click', reconnectNow);
    $('join-form').addEventListener('submit', (e) => {
      e.preventDefault();
      if (joinFromForm($('room-input').value)) $('room-input').value = '';
    });
    $('room-input').addEventListener('input', () => {
      $('room-error').hidden = true;
      $('room-input').removeAttribute('aria-invalid');
    });
    $('suggest-room').addEventListener('click', () => joinFromForm('general'));
    $('dm-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('dm-input').value;
      if (v.trim()) {
        openDM(v);
        $('dm-input').value = '';
      }
    });
    $('composer-form').addEventListener('submit', (e) => {
      e.preventDefault();
      submitComposer();
      $('composer').focus();
    });
    $('composer').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submitComposer();
      }
    });
    // Some input paths (IMEs, synthetic key events) deliver Enter's
    // character separately from its keydown; keep it out of the box too.
    $('composer').addEventListener('keypress', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) e.preventDefault();
    });
    $('composer').addEventListener('input', () => {
      autosize();
      updateCounter();
      noteTyping();
    });
    $('messages').addEventListener('scroll', () => {
      const conv = S.rooms.get(S.active);
      if (!conv) return;
      set($('jump'), 'hidden', atBottom());
      loadOlderIfNear();
    }, { passive: true });
    $('jump').addEventListener('click', () => {
      const list = $('messages');
      list.scrollTop = list.scrollHeight;
      $('jump').hidden = true;
    });
    $('toggle-members').addEventListener('click', () => {
      $('main').classList.toggle('members-open');
    });
    document.addEventListener('visibilitychange', () => {
      const conv = S.rooms.get(S.active);
      if (conv && document.visibilityState === 'visible') conv.unread = 0;
      scheduleRender();
    });
    window.addEventListener('online', reconnectNow);
    window.addEventListener('offline', () => { if (S.conn === 'reconnecting') setConn('offline'); });
    window.addEventListener('pagehide', persistNow);
    window.addEventListener('beforeunload', persistNow);
  }

  // A read-only view of the client's state for tests and for debugging from
  // the console.
  window.ringchat = Object.freeze({
    snapshot() {
      return {
        conn: S.conn,
        me: S.me,
        active: S.active,
        attempt,
        rooms: [...S.rooms.values()].map((c) => ({
          key: c.key, kind: c.kind, joined: c.joined, epoch: c.epoch, lastSeq: c.lastSeq, head: c.head,
          seqs: c.msgs.map((m) => m.seq), unread: c.unread, lastJoin: c.lastJoin,
          oldestKept: c.oldestKept, reachedStart: !!c.reachedStart, historyError: c.historyError || '',
          present: [...c.present], count: c.count,
        })),
        pending: [...S.pending.values()].map((p) => ({ cid: p.cid, key: p.key, state: p.state })),
      };
    },
  });

  function start() {
    wire();
    if (restore()) {
      showMain();
      renderAll();
      connect();
    } else {
      showSignIn();
      renderAll();
    }
  }

  start();
})();
