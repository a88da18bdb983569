/* daebus-c chat page: plain JavaScript, no build step.
 *
 * Speaks the Daebus WebSocket protocol: the page sends {type, data, request_id}
 * and gets {type: "response", data, request_id} back, plus server pushes
 * (new_message, room_update, direct_message, notification, disconnect_notice,
 * system_status, server_shutdown). "/msg user text" sends a direct message.
 *
 * Reconnection: when the connection drops (anything but a kick) the page says
 * "reconnecting", retries with capped exponential backoff (0.5 s doubling to
 * 5 s), registers again under the same name and re-joins every room it was in
 * with "since" = the last {offset, epoch} it saw there (new_message frames of
 * a room channel with history carry "channel", "offset" and "epoch"). The
 * server then sends the missed messages as ordinary new_message frames; the
 * page keeps its list, drops duplicates (same message id, or an offset not
 * after the last one seen in the same epoch) and keeps the list in offset
 * order. When the server cannot recover ("recovered": false: history trimmed
 * or lost) the page fills in from the join reply's history and says that
 * earlier messages may be missing. Against a server without offsets it does
 * the same without "since". A kick (disconnect_notice) stops the automatic
 * reconnection until the user asks for it.
 */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const wsPath = params.get('ws') || '/ws';
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + wsPath;

  const state = {
    socket: null,
    clientId: null,
    username: null,
    rooms: new Map(),        // room -> {messages: [], ids: Set, pos: {offset, epoch}|null, members: n}
    current: null,           // room shown
    pending: new Map(),      // request_id -> {resolve, reject, timer}
    nextId: 1,
    backoff: 500,            // ms, doubles up to maxBackoff
    maxBackoff: 5000,
    reconnectTimer: null,
    kicked: false,
    recoveries: [],          // {room, since, recovered}: one per re-join (for the browser test)
    registerRetries: 0,      // register refused with "already taken" after a reconnection
  };

  /* ---- UI helpers ---- */

  function setStatus(text, cls) {
    const el = $('status');
    el.textContent = text;
    el.className = 'status ' + cls;
  }

  function showNotice(text, kind, action) {
    const box = $('notice');
    box.className = 'notice' + (kind ? ' ' + kind : '');
    $('notice-text').textContent = text;
    const old = box.querySelector('.action');
    if (old) old.remove();
    if (action) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'action';
      b.textContent = action.label;
      b.addEventListener('click', action.run);
      $('notice-text').after(b);
    }
    box.hidden = false;
  }

  function hideNotice() { $('notice').hidden = true; }

  function fmtTime(ts) {
    const d = new Date((typeof ts === 'number' ? ts : Date.now() / 1000) * 1000);
    return d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }

  function roomState(name) {
    if (!state.rooms.has(name)) state.rooms.set(name, {messages: [], ids: new Set(), pos: null, members: 0});
    return state.rooms.get(name);
  }

  function renderRooms() {
    const ul = $('room-list');
    ul.textContent = '';
    for (const [name, r] of state.rooms) {
      const li = document.createElement('li');
      li.dataset.room = name;
      if (name === state.current) li.classList.add('active');
      li.textContent = '#' + name;
      const c = document.createElement('span');
      c.className = 'count';
      c.textContent = r.members ? r.members + ' online' : '';
      li.appendChild(c);
      li.addEventListener('click', () => showRoom(name));
      ul.appendChild(li);
    }
  }

  function renderMessages() {
    const ol = $('messages');
    ol.textContent = '';
    const r = state.current ? state.rooms.get(state.current) : null;
    if (!r) return;
    for (const m of r.messages) ol.appendChild(messageItem(m));
    ol.scrollTop = ol.scrollHeight;
  }

  function messageItem(m) {
    const li = document.createElement('li');
    if (m.event) {
      li.className = 'event' + (m.gap ? ' gap' : '');
      li.textContent = m.event;
      return li;
    }
    li.className = 'message' + (m.sender === state.username ? ' mine' : '');
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = m.sender + ' \u00b7 ' + fmtTime(m.timestamp);
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.text;
    li.append(meta, text);
    return li;
  }

  const MAX_KEPT = 200; // messages kept per room

  function hasOffset(m) { return typeof m.offset === 'number' && m.epoch !== undefined; }

  // Where m goes: at the end, unless entries of its epoch with a larger
  // offset come after the last one with a smaller offset; then before the
  // first of those. Entries without an offset (events, our own messages,
  // history) keep their places.
  function insertIndex(list, m) {
    let at = list.length;
    if (!hasOffset(m)) return at;
    for (let j = list.length - 1; j >= 0; j--) {
      const x = list[j];
      if (!hasOffset(x) || x.epoch !== m.epoch) continue;
      if (x.offset < m.offset) break;
      at = j;
    }
    return at;
  }

  // Moves a room's last seen position forward to {offset, epoch}.
  function notePosition(r, offset, epoch) {
    if (typeof offset !== 'number' || epoch === undefined) return;
    if (!r.pos || r.pos.epoch !== epoch || offset > r.pos.offset) r.pos = {offset, epoch};
  }

  // Adds a message (or an event) to a room once: a message whose id is known,
  // or whose offset is not after the last one seen in the same epoch, is a
  // duplicate (a replay overlapping what arrived live). Returns true if added.
  function addToRoom(room, m) {
    const r = roomState(room);
    if (m.id !== undefined && r.ids.has(m.id)) {
      const known = r.messages.find((x) => x.id === m.id);
      if (known && hasOffset(m) && !hasOffset(known)) { known.offset = m.offset; known.epoch = m.epoch; }
      notePosition(r, m.offset, m.epoch);
      return false;
    }
    if (hasOffset(m) && r.pos && r.pos.epoch === m.epoch && m.offset <= r.pos.offset) return false;
    const at = insertIndex(r.messages, m);
    r.messages.splice(at, 0, m);
    if (m.id !== undefined) r.ids.add(m.id);
    notePosition(r, m.offset, m.epoch);
    if (r.messages.length > MAX_KEPT) {
      for (const old of r.messages.splice(0, r.messages.length - MAX_KEPT))
        if (old.id !== undefined) r.ids.delete(old.id);
    }
    if (room === state.current) {
      if (at === r.messages.length - 1) {
        const ol = $('messages');
        ol.appendChild(messageItem(m));
        ol.scrollTop = ol.scrollHeight;
      } else {
        renderMessages();
      }
    }
    return true;
  }

  function setSendEnabled(on) {
    $('message-input').disabled = !on;
    $('send-btn').disabled = !on;
  }

  function showRoom(name) {
    state.current = name;
    $('room-title').textContent = '#' + name;
    setSendEnabled(!!(state.socket && state.socket.readyState === WebSocket.OPEN));
    renderRooms();
    renderMessages();
    $('message-input').focus();
  }

  /* ---- protocol ---- */

  function request(type, data, timeoutMs) {
    return new Promise((resolve, reject) => {
      const s = state.socket;
      if (!s || s.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected'));
        return;
      }
      const id = 'r-' + state.nextId++;
      const timer = setTimeout(() => {
        state.pending.delete(id);
        reject(new Error('no answer from the server'));
      }, timeoutMs || 5000);
      state.pending.set(id, {resolve, reject, timer});
      s.send(JSON.stringify({type, data, request_id: id}));
    });
  }

  function settle(msg) {
    let id = msg.request_id;
    if (id === undefined || !state.pending.has(id)) {
      // A server that does not echo request_id: answer the oldest request.
      const first = state.pending.keys().next();
      if (first.done) return false;
      id = first.value;
    }
    const p = state.pending.get(id);
    state.pending.delete(id);
    clearTimeout(p.timer);
    if (msg.type === 'error') {
      const err = (msg.data && msg.data.error) || msg.error || 'error';
      p.reject(new Error(err));
    } else if (msg.data && msg.data.status === 'error') {
      p.reject(new Error(msg.data.error || 'error'));
    } else {
      p.resolve(msg.data);
    }
    return true;
  }

  function onMessage(ev) {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    const d = msg.data || {};
    switch (msg.type) {
      case 'response':
        if (d.status === 'connected' && d.client_id && msg.request_id === undefined) {
          state.clientId = d.client_id;
          $('client-id').textContent = 'client ' + d.client_id;
          return;
        }
        settle(msg);
        return;
      case 'error':
        if (!settle(msg)) showNotice('Server error: ' + (d.error || msg.error), 'bad');
        return;
      case 'new_message': {
        // A room channel with history numbers its messages: keep the
        // position next to the message (offset, epoch).
        const m = Object.assign({}, d);
        if (typeof msg.offset === 'number' && msg.epoch !== undefined) {
          m.offset = msg.offset;
          m.epoch = msg.epoch;
        }
        if (typeof m.room === 'string') addToRoom(m.room, m);
        return;
      }
      case 'room_update':
        if (state.rooms.has(d.room)) {
          const r = roomState(d.room);
          if (typeof d.members === 'number') r.members = d.members;
          else if (d.action === 'joined') r.members += 1;
          else if (d.action === 'left' && r.members > 0) r.members -= 1;
          addToRoom(d.room, {event: d.user + ' ' + d.action + ' #' + d.room});
          renderRooms();
          refreshAllRooms();
        }
        return;
      case 'direct_message':
        if (state.current)
          addToRoom(state.current, {sender: d.from + ' (private)', text: d.text,
                                    timestamp: d.timestamp});
        else
          showNotice('Private message from ' + d.from + ': ' + d.text, 'info');
        return;
      case 'notification':
      case 'message':
        showNotice('Notification: ' + (d.message || JSON.stringify(d)), 'info');
        return;
      case 'disconnect_notice':
        state.kicked = true;
        showNotice('Disconnected by the server: ' + (d.reason || 'no reason given'), 'bad',
                   {label: 'Reconnect', run: manualReconnect});
        return;
      case 'server_shutdown':
        showNotice('Server is shutting down: ' + (d.message || '') + ' (will reconnect)', 'bad');
        return;
      case 'system_status':
        showSystemStatus(d);
        return;
      default:
        return;
    }
  }

  function showSystemStatus(d) {
    const el = $('system-status');
    const parts = [];
    if (d.active_users !== undefined) parts.push(d.active_users + ' users');
    if (d.rooms !== undefined) parts.push(d.rooms + ' rooms');
    if (d.cluster_connections !== undefined) parts.push(d.cluster_connections + ' connections');
    else if (d.connections !== undefined) parts.push(d.connections + ' connections');
    if (d.memory_mb !== undefined) parts.push(d.memory_mb + ' MB');
    el.textContent = 'Server: ' + parts.join(', ') + ' (' + fmtTime(d.timestamp) + ')';
    el.hidden = false;
  }

  async function register(name) {
    const res = await request('register', {username: name});
    state.username = res.username || name;
    $('me').textContent = state.username;
    $('login').hidden = true;
    $('chat').hidden = false;
    if (Array.isArray(res.available_rooms)) renderAllRooms(res.available_rooms.map((n) => ({name: n})));
    return res;
  }

  // Usernames are unique among connected clients: until the server notices
  // that our previous connection is gone (at once after a clean close, at
  // worst its idle time-out) the name is still taken, so try again every
  // second for up to 30 s.
  const REGISTER_RETRY_MS = 1000, REGISTER_RETRY_FOR_MS = 30000;

  async function registerAgain(s, name) {
    const until = Date.now() + REGISTER_RETRY_FOR_MS;
    for (;;) {
      try {
        return await register(name);
      } catch (e) {
        if (!/already taken/.test(e.message) || Date.now() >= until || state.socket !== s) throw e;
        state.registerRetries++;
        setStatus('reconnecting: waiting for the name ' + name, 'connecting reconnecting');
        await new Promise((r) => setTimeout(r, REGISTER_RETRY_MS));
      }
    }
  }

  // Merges a join reply's history into a room: messages not shown yet go in,
  // in the reply's order, before those that arrived live during the join
  // (offsets after the reply's position).
  function mergeHistory(room, res) {
    const r = roomState(room);
    const hist = Array.isArray(res.history) ? res.history : [];
    const later = typeof res.offset === 'number'
      ? r.messages.filter((m) => hasOffset(m) && m.epoch === res.epoch && m.offset > res.offset)
      : [];
    const keep = r.messages.filter((m) => !later.includes(m));
    const seen = new Set(keep.filter((m) => m.id !== undefined).map((m) => m.id));
    const fresh = hist.filter((m) => m && (m.id === undefined || !seen.has(m.id)));
    r.messages = keep.concat(fresh, later);
    r.ids = new Set(r.messages.filter((m) => m.id !== undefined).map((m) => m.id));
    if (typeof res.offset === 'number') {
      if (r.pos && r.pos.epoch !== res.epoch) r.pos = null; // history lost: a new numbering
      notePosition(r, res.offset, res.epoch);
      for (const m of later) notePosition(r, m.offset, m.epoch);
    }
  }

  async function join(room) {
    const res = await request('join_room', {room});
    const r = roomState(room);
    r.members = res.members || 1;
    mergeHistory(room, res);
    showRoom(room);
    refreshAllRooms();
    return res;
  }

  // Re-joins a room after a reconnection. With a known position the server
  // replays what came after it (new_message frames, possibly before this
  // reply) and answers "recovered": true; otherwise the page fills in from
  // the reply's history and notes the possible gap.
  async function rejoin(room) {
    const r = roomState(room);
    const since = r.pos ? {offset: r.pos.offset, epoch: r.pos.epoch} : null;
    const res = await request('join_room', since ? {room, since} : {room});
    r.members = res.members || r.members;
    state.recoveries.push({room, since, recovered: res.recovered === true});
    if (res.recovered === true) {
      notePosition(r, res.offset, res.epoch);
    } else {
      // Before what arrived live during the join; mergeHistory keeps it last.
      r.messages.push({event: 'Reconnected: earlier messages may be missing', gap: true});
      mergeHistory(room, res);
    }
    if (room === state.current) renderMessages();
    return res;
  }

  async function send(text) {
    const room = state.current;
    const dm = /^\/msg\s+(\S+)\s+([\s\S]+)$/.exec(text);
    if (dm) { // a private message to a user, on whichever server holds it
      const res = await request('direct_message', {to: dm[1], message: dm[2]});
      addToRoom(room, {sender: state.username + ' \u2192 ' + dm[1] + ' (private)', text: dm[2],
                       timestamp: res.timestamp});
      return res;
    }
    const res = await request('chat_message', {room, message: text});
    addToRoom(room, {id: res.message_id, room, sender: state.username, text, timestamp: res.timestamp});
    return res;
  }

  function renderAllRooms(list) {
    const ul = $('all-rooms');
    ul.textContent = '';
    for (const r of list) {
      const li = document.createElement('li');
      li.textContent = '#' + r.name;
      if (r.members !== undefined) {
        const c = document.createElement('span');
        c.className = 'count';
        c.textContent = r.members;
        li.appendChild(c);
      }
      li.addEventListener('click', () => join(r.name).catch((e) => showNotice(e.message, 'bad')));
      ul.appendChild(li);
    }
  }

  function refreshAllRooms() {
    // /api/rooms answers one page (100 rooms by default) and the total.
    fetch('/api/rooms').then((r) => r.json()).then((j) => {
      renderAllRooms(j.rooms || []);
      const more = (j.total || 0) - (j.rooms || []).length;
      if (more > 0) {
        const li = document.createElement('li');
        li.className = 'more';
        li.textContent = '\u2026 and ' + more + ' more';
        $('all-rooms').appendChild(li);
      }
    }).catch(() => {});
  }

  /* ---- connection and reconnection ---- */

  function connect() {
    clearTimeout(state.reconnectTimer);
    setStatus('connecting', 'connecting');
    let s;
    try {
      s = new WebSocket(wsUrl);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.socket = s;
    s.onopen = async () => {
      setStatus('connected', 'open');
      setSendEnabled(!!state.current);
      state.backoff = 500;
      if (!state.kicked) hideNotice();
      if (state.username) {
        // Reconnected: register again and re-join the rooms we were in.
        try {
          await registerAgain(s, state.username);
          setStatus('connected', 'open');
          const failed = [];
          for (const room of Array.from(state.rooms.keys())) {
            // One room refused (e.g. the server's limits changed) does not
            // keep the page out of the others.
            try { await rejoin(room); } catch (e) { if (state.socket !== s) throw e; failed.push('#' + room + ': ' + e.message); }
          }
          renderRooms();
          if (failed.length) showNotice('Could not re-join ' + failed.join('; '), 'bad');
        } catch (e) {
          if (state.socket === s) setStatus('connected, not signed in', 'closed');
          showNotice('Could not restore the session: ' + e.message, 'bad');
        }
      }
    };
    s.onmessage = onMessage;
    s.onclose = () => {
      if (state.socket !== s) return;
      state.socket = null;
      for (const [, p] of state.pending) { clearTimeout(p.timer); p.reject(new Error('connection closed')); }
      state.pending.clear();
      setSendEnabled(false);
      if (state.kicked) {
        setStatus('disconnected', 'closed');
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const delay = Math.round(state.backoff * (0.75 + Math.random() * 0.5));
    state.backoff = Math.min(state.backoff * 2, state.maxBackoff);
    setStatus('reconnecting in ' + Math.ceil(delay / 1000) + ' s', 'closed reconnecting');
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function manualReconnect() {
    state.kicked = false;
    state.backoff = 500;
    hideNotice();
    connect();
  }

  /* ---- wiring ---- */

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('username').value.trim();
    $('login-error').hidden = true;
    register(name).catch((e) => {
      $('login-error').textContent = e.message;
      $('login-error').hidden = false;
    });
  });

  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = $('room-input').value.trim();
    if (!room) return;
    join(room).then(() => { $('room-input').value = ''; })
      .catch((e) => showNotice('Could not join: ' + e.message, 'bad'));
  });

  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('message-input').value.trim();
    if (!text || !state.current) return;
    send(text).then(() => { $('message-input').value = ''; })
      .catch((e) => showNotice('Not sent: ' + e.message, 'bad'));
  });

  $('notice-close').addEventListener('click', hideNotice);
  $('refresh-rooms').addEventListener('click', refreshAllRooms);

  window.daebusChat = state; // for debugging and the browser test
  connect();
  refreshAllRooms();
})();
