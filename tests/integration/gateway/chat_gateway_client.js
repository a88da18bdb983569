// chat_gateway_client.js - the chat example's list_rooms action through the
// action gateway, from a real node client (npm ws) with the TypeScript
// client's frames. Usage: node chat_gateway_client.js WS_URL HTTP_URL
'use strict';
const assert = require('assert');
const path = require('path');
const wsc = require(path.join(__dirname, '../../support/node/ws_client.js'));

const { waitFrame } = wsc;
const [wsUrl, httpUrl] = process.argv.slice(2);
let seq = 0;

const open = () => wsc.open(wsUrl, ['daebus-v1']);

async function message(ws, type, data) {
  const id = 'm' + ++seq;
  ws.send(JSON.stringify({ type, data, request_id: id }));
  const r = await waitFrame(ws, (f) => f.request_id === id);
  assert.strictEqual(r.success, true, JSON.stringify(r));
  return r.data;
}

const sendAction = (ws, action, payload) => wsc.sendAction(ws, 'chat_service', action, payload);

async function rooms(query) {
  const r = await fetch(httpUrl + '/api/rooms' + (query || ''));
  assert.strictEqual(r.status, 200);
  return r.json();
}

(async () => {
  const ws = await open();
  assert.strictEqual(ws.protocol, 'daebus-v1');
  await message(ws, 'register', { username: 'gw_alice' });
  for (const room of ['lobby', 'zeta', 'alpha']) await message(ws, 'join_room', { room });
  await message(ws, 'chat_message', { room: 'lobby', message: 'hi' });

  const all = await sendAction(ws, 'list_rooms', {});
  assert.strictEqual(all.success, true, JSON.stringify(all));
  assert.deepStrictEqual(all.data, await rooms());
  assert.deepStrictEqual(all.data.rooms.map((r) => r.name), ['alpha', 'lobby', 'zeta']);
  assert.strictEqual(all.data.rooms.find((r) => r.name === 'lobby').message_count, 1);

  const page = await sendAction(ws, 'list_rooms', { limit: 2 });
  assert.deepStrictEqual(page.data, await rooms('?limit=2'));
  assert.strictEqual(page.data.next_after, 'lobby');
  const rest = await sendAction(ws, 'list_rooms', { after: page.data.next_after });
  assert.deepStrictEqual(rest.data, await rooms('?after=lobby'));
  assert.deepStrictEqual(rest.data.rooms.map((r) => r.name), ['zeta']);
  console.log('ok   list_rooms through the gateway = GET /api/rooms');

  const bad = await sendAction(ws, 'list_rooms', { limit: 'x' });
  assert.strictEqual(bad.success, false);
  assert.strictEqual(bad.error, 'after must be a string and limit a number');
  console.log('ok   list_rooms refuses a bad payload');

  for (const action of ['get_connected_clients', 'kick_client', 'shutdown']) {
    const r = await sendAction(ws, action, {});
    assert.strictEqual(r.success, false);
    assert.strictEqual(r.error, `Action 'chat_service.${action}' is not allowed through the gateway`);
  }
  console.log('ok   the admin actions are not callable');
  ws.close();
  process.exit(0);
})().catch((e) => { console.log('FAIL ' + (e && e.stack || e)); process.exit(1); });
