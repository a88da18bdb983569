// channels_node_client.js - the TypeScript client's channel frames (daebus-client
// 0.1: subscribeToChannel, unsubscribe, broadcast) from a real node client (npm ws)
// against two replicas of channels_service.c. Usage:
//   node channels_node_client.js PORT1 PORT2
// One client per replica, on the daebus-v1 subprotocol. Exit 0 when every case
// passed; prints one line per case.
'use strict';
const assert = require('assert');
const path = require('path');
const wsc = require(path.join(__dirname, '../../support/node/ws_client.js'));

const { waitFrame, requestId, sleep } = wsc;
const [p1, p2] = process.argv.slice(2).map(Number);

const open = (port, id) => wsc.open(`ws://127.0.0.1:${port}/ws?id=${id}`, ['daebus-v1']);

// Sends frame with a fresh request id (the TypeScript client's req_<time>_<n>);
// resolves with the frame that carries that id back.
function ask(ws, frame) {
  const id = requestId();
  ws.send(JSON.stringify({ ...frame, request_id: id }));
  return waitFrame(ws, (f) => f.request_id === id).then((f) => ({ id, f }));
}

function ok({ id, f }) {
  assert.strictEqual(f.type, 'response', JSON.stringify(f));
  assert.strictEqual(f.success, true, JSON.stringify(f));
  assert.strictEqual(f.request_id, id);
  return f;
}

function refused({ id, f }, text) {
  assert.strictEqual(f.type, 'error', JSON.stringify(f));
  assert.strictEqual(f.success, false, JSON.stringify(f));
  assert.strictEqual(f.request_id, id);
  assert.ok(f.error.includes(text), `"${f.error}" lacks "${text}"`);
}

const messages = (ws, channel) => ws.frames.filter((f) => f.type === 'channel_message' &&
  f.channel === channel);

async function op(port, body) {
  const r = await fetch(`http://127.0.0.1:${port}/op`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return r.json();
}

async function main() {
  // both replicas in cluster mode (else a subscriber list is only local)
  for (const p of [p1, p2]) {
    const end = Date.now() + 10000;
    while (!(await op(p, { op: 'subscribers', channel: 'x' })).cluster) {
      assert.ok(Date.now() < end, `replica on ${p} never joined the cluster`);
      await sleep(50);
    }
  }
  const a = await open(p1, 'node_a');
  const b = await open(p2, 'node_b');
  assert.strictEqual(a.protocol, 'daebus-v1');
  assert.strictEqual(b.protocol, 'daebus-v1');
  console.log('ok: daebus-v1 subprotocol on both replicas');

  // subscribe, answered with the channel
  let f = ok(await ask(a, { type: 'subscribe', channel: 'order:n' }));
  assert.deepStrictEqual(f.data, { channel: 'order:n' });
  ok(await ask(b, { type: 'subscribe', channel: 'order:n' }));
  console.log('ok: subscribe answered on both replicas');

  // broadcast from replica 2 reaches both, data parsed (an object, not a string)
  const payload = { text: 'hello', n: 1, nested: { list: [1, 2, 3] } };
  ok(await ask(b, { type: 'broadcast', channel: 'order:n', data: payload }));
  for (const ws of [a, b]) {
    const m = await waitFrame(ws, (x) => x.type === 'channel_message' && x.channel === 'order:n');
    assert.deepStrictEqual(m.data, payload);
    // offset/epoch come with history (docs/channels/history.md); none here
    assert.deepStrictEqual(Object.keys(m).filter((k) => k !== 'offset' && k !== 'epoch').sort(),
      ['channel', 'data', 'type'], JSON.stringify(m));
  }
  console.log('ok: broadcast from replica 2 delivered as channel_message to both');

  // 100 server publishes on replica 1: both get all of them, once, in order
  assert.strictEqual((await op(p1, { op: 'publish_many', channel: 'order:n', n: 100, tag: 'm' })).rc, 0);
  for (const ws of [a, b]) {
    const end = Date.now() + 10000;
    while (messages(ws, 'order:n').length < 101) {
      assert.ok(Date.now() < end, 'not all 100 publishes arrived');
      await sleep(10);
    }
    const seqs = messages(ws, 'order:n').slice(1).map((m) => m.data.seq);
    assert.deepStrictEqual(seqs, Array.from({ length: 100 }, (_, i) => i + 1));
  }
  console.log('ok: 100 publishes delivered once each, in order, on both replicas');

  // unsubscribe: answered; nothing more delivered to b; a second one says so
  f = ok(await ask(b, { type: 'unsubscribe', channel: 'order:n' }));
  assert.strictEqual(f.data.was_subscribed, true);
  f = ok(await ask(b, { type: 'unsubscribe', channel: 'order:n' }));
  assert.strictEqual(f.data.was_subscribed, false);
  ok(await ask(a, { type: 'broadcast', channel: 'order:n', data: { after: true } }));
  await waitFrame(a, (x) => x.type === 'channel_message' && x.data && x.data.after === true);
  await sleep(300);
  assert.strictEqual(messages(b, 'order:n').length, 101);
  console.log('ok: unsubscribe answered; no delivery after it');

  // closed by default: refused subscribe / broadcast answered with the request id
  refused(await ask(a, { type: 'subscribe', channel: 'closed:x' }),
    "Not allowed to subscribe to channel 'closed:x'");
  refused(await ask(b, { type: 'broadcast', channel: 'news:x', data: 1 }),
    "Not allowed to publish on channel 'news:x'");
  refused(await ask(a, { type: 'subscribe', channel: 'open:secret' }), 'secret is closed');
  refused(await ask(a, { type: 'subscribe' }), 'Missing "channel"');
  // nothing was delivered from the refused channel
  await op(p1, { op: 'publish', channel: 'closed:x', data: { leak: 1 } });
  await op(p2, { op: 'publish', channel: 'open:secret', data: { leak: 2 } });
  await sleep(300);
  for (const ws of [a, b]) {
    assert.ok(!ws.frames.some((x) => x.type === 'channel_message' &&
      (x.channel === 'closed:x' || x.channel === 'open:secret')), 'a refused channel delivered');
  }
  console.log('ok: refused subscribe/broadcast answered with request_id; nothing leaked');

  // the subscriptions end with the connection
  a.close();
  b.close();
  const end = Date.now() + 10000;
  while ((await op(p2, { op: 'subscribers', channel: 'order:n' })).list.length !== 0) {
    assert.ok(Date.now() < end, 'subscriptions outlived the connection');
    await sleep(50);
  }
  console.log('ok: subscriptions end with the connection (cluster-wide list empty)');
}

main().then(() => process.exit(0), (e) => { console.error('FAILED:', e.stack || e); process.exit(1); });
