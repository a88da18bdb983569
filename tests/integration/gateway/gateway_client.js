// gateway_client.js - the TypeScript client's frames (daebus-client 0.1) against
// the action gateway, from a real node client (npm ws). Usage:
//   node gateway_client.js WS_URL HTTP_URL
// Exit 0 when every case passed; prints one line per case. REDIS_PORT and
// WORK_DIR (set by run_gateway_test.sh): the Redis restart case stops that
// redis-server and starts a new one on the same port (pid file in WORK_DIR).
'use strict';
const assert = require('assert');
const { execFileSync } = require('child_process');
const path = require('path');
const wsc = require(path.join(__dirname, '../../support/node/ws_client.js'));

const { waitFrame, send, sendAction, requestId, sleep } = wsc;
const [wsUrl, httpUrl] = process.argv.slice(2);
const open = (protocols) => wsc.open(wsUrl, protocols);

async function stats() {
  const r = await fetch(httpUrl + '/gw/stats');
  return r.json();
}

const cases = [];
const test = (name, fn) => cases.push([name, fn]);

test('subprotocol daebus-v1 is selected', async () => {
  const ws = await open(['daebus-v1']);
  assert.strictEqual(ws.protocol, 'daebus-v1');
  const r = await sendAction(ws, 'gw_target', 'echo', { a: 1 });
  assert.strictEqual(r.success, true);
  ws.close();
});

test('sendAction round trip to another service process', async () => {
  const ws = await open();
  const payload = { text: 'héllo', n: [1, 2, 3], nested: { ok: true } };
  const r = await sendAction(ws, 'gw_target', 'echo', payload);
  assert.strictEqual(r.type, 'response');
  assert.strictEqual(r.success, true);
  assert.deepStrictEqual(r.data.echo, payload);
  assert.ok(typeof r.data.instance === 'string' && r.data.instance.length > 0);
  assert.strictEqual(r.error, undefined);
  // payload omitted: {}
  const id = requestId();
  ws.send(JSON.stringify({ type: 'publish', channel: 'gw_target', data: { action: 'echo', request_id: id } }));
  const r2 = await waitFrame(ws, (f) => f.request_id === id);
  assert.deepStrictEqual(r2.data.echo, {});
  // an action of the gateway's own service, allowed as gw_front.ping
  const r3 = await sendAction(ws, 'gw_front', 'ping', {});
  assert.deepStrictEqual(r3.data, { ok: true });
  ws.close();
});

test('handler failure => success:false with its error', async () => {
  const ws = await open();
  const r = await sendAction(ws, 'gw_target', 'fail', {});
  assert.strictEqual(r.success, false);
  assert.strictEqual(r.error, 'echo failed on purpose');
  ws.close();
});

test('unknown action => success:false with the service error', async () => {
  const ws = await open();
  const r = await sendAction(ws, 'gw_target', 'nope', {});
  assert.strictEqual(r.success, false);
  assert.strictEqual(r.error, "Unknown action 'nope'");
  ws.close();
});

test('no service listening => success:false at once', async () => {
  const ws = await open();
  const t0 = Date.now();
  const r = await sendAction(ws, 'gw_absent', 'x', {});
  assert.strictEqual(r.success, false);
  assert.strictEqual(r.error, "No service is answering 'gw_absent.x'");
  assert.ok(Date.now() - t0 < 900, 'answered before the time-out');
  ws.close();
});

test('reply over the WebSocket queue limit => clear error response', async () => {
  const ws = await open();
  const small = await sendAction(ws, 'gw_target', 'big', { bytes: 1000 });
  assert.strictEqual(small.data.text.length, 1000);
  const r = await sendAction(ws, 'gw_target', 'big', { bytes: 100000 });
  assert.strictEqual(r.success, false);
  assert.strictEqual(r.error, "Reply of 'gw_target.big' too large for the WebSocket");
  ws.close();
});

test('not on the allow-list => refused, not sent', async () => {
  const ws = await open();
  const before = await stats();
  for (const [svc, act] of [['gw_front', 'secret'], ['gw_other', 'echo'], ['gw_target.echo', 'x']]) {
    const r = await sendAction(ws, svc, act, {});
    assert.strictEqual(r.success, false);
    assert.strictEqual(r.error, `Action '${svc}.${act}' is not allowed through the gateway`);
  }
  const after = await stats();
  assert.strictEqual(after.calls, before.calls);
  assert.strictEqual(after.refused - before.refused, 3);
  ws.close();
});

test('authorise hook refuses with its reason, then allows', async () => {
  const ws = await open();
  const r = await sendAction(ws, 'gw_target', 'admin_only', {});
  assert.strictEqual(r.success, false);
  assert.strictEqual(r.error, 'admins only');
  ws.send(JSON.stringify({ type: 'become_admin', request_id: 'adm' }));
  await waitFrame(ws, (f) => f.request_id === 'adm');
  const r2 = await sendAction(ws, 'gw_target', 'admin_only', {});
  assert.strictEqual(r2.success, true);
  ws.close();
});

test('time-out => clear error response', async () => {
  const ws = await open();
  const t0 = Date.now();
  const r = await sendAction(ws, 'gw_target', 'slow', { ms: 2500 }, 4000);
  const took = Date.now() - t0;
  assert.strictEqual(r.success, false);
  assert.strictEqual(r.error, "Action 'gw_target.slow' timed out after 1 s");
  assert.ok(took >= 900 && took < 2200, 'took ' + took);
  ws.close();
});

test('at most 3 calls in flight per client', async () => {
  const ws = await open();
  const other = await open();
  const before = await stats();
  const ids = [];
  for (let i = 0; i < 4; i++) ids.push(send(ws, 'gw_target', 'slow', { ms: 500 }));
  // another client is not limited by this one's calls
  const ro = await sendAction(other, 'gw_target', 'echo', { x: 1 });
  assert.strictEqual(ro.success, true);
  const fourth = await waitFrame(ws, (f) => f.request_id === ids[3]);
  assert.strictEqual(fourth.success, false);
  assert.strictEqual(fourth.error, 'Too many calls in flight (max 3)');
  for (const id of ids.slice(0, 3)) {
    const r = await waitFrame(ws, (f) => f.request_id === id);
    assert.strictEqual(r.success, true);
    assert.strictEqual(r.data.slept, 500);
  }
  // answered ones no longer count
  const again = await sendAction(ws, 'gw_target', 'echo', {});
  assert.strictEqual(again.success, true);
  // 3 slow + the other client's echo + again: the refused 4th was never sent
  const after = await stats();
  assert.strictEqual(after.calls - before.calls, 5);
  assert.strictEqual(after.refused - before.refused, 1);
  ws.close();
  other.close();
});

test('progress replies relayed as progress frames, in order, before the response', async () => {
  const ws = await open();
  const id = send(ws, 'gw_target', 'progress', { n: 4 });
  const r = await waitFrame(ws, (f) => f.type === 'response' && f.request_id === id);
  assert.strictEqual(r.success, true);
  assert.deepStrictEqual(r.data, { steps: 4 });
  const mine = ws.frames.filter((f) => f.request_id === id);
  assert.deepStrictEqual(mine.map((f) => f.type), ['progress', 'progress', 'progress', 'progress', 'response']);
  assert.deepStrictEqual(mine.slice(0, 4).map((f) => f.data.step), [1, 2, 3, 4]);
  ws.close();
});

test('bad frames answered clearly', async () => {
  const ws = await open();
  const bad = [
    [{ type: 'publish', channel: 'gw_target', request_id: 'b1' }, 'b1',
      'publish needs "data": an object with "action" and "payload"'],
    [{ type: 'publish', channel: 'gw_target', data: { request_id: 'b2', payload: {} } }, 'b2',
      'publish needs "data.action": the action name (a string)'],
    [{ type: 'publish', channel: 'gw_target', data: { request_id: 'b3', action: 'echo', payload: [1] } }, 'b3',
      '"data.payload" must be an object'],
    [{ type: 'publish', channel: 'gw_target', data: { request_id: 'b4', action: 'echo', payload: 'x' } }, 'b4',
      '"data.payload" must be an object'],
    [{ type: 'publish', data: { request_id: 'b5', action: 'echo' } }, 'b5',
      'publish needs "channel": the service name (a string)'],
    [{ type: 'publish', channel: 7, data: { request_id: 'b6', action: 'echo' } }, 'b6',
      'publish needs "channel": the service name (a string)'],
    [{ type: 'publish', channel: 'gw_target', data: 'echo', request_id: 'b7' }, 'b7',
      'publish needs "data": an object with "action" and "payload"'],
    [{ type: 'publish', channel: 'gw_target', data: { request_id: 'b8', action: 5 } }, 'b8',
      'publish needs "data.action": the action name (a string)'],
  ];
  for (const [frame, id, error] of bad) {
    ws.send(JSON.stringify(frame));
    const r = await waitFrame(ws, (f) => f.request_id === id);
    assert.deepStrictEqual(r, { type: 'response', request_id: id, success: false, error });
  }
  // still usable
  const r = await sendAction(ws, 'gw_target', 'echo', {});
  assert.strictEqual(r.success, true);
  ws.close();
});

test('client gone before its reply: reply dropped, nothing left in flight', async () => {
  const before = await stats();
  for (let i = 0; i < 3; i++) {
    const ws = await open();
    send(ws, 'gw_target', 'slow', { ms: 300 });
    send(ws, 'gw_target', 'progress', { n: 2 });
    await new Promise((r) => setTimeout(r, 20));
    ws.terminate(); // no close frame
  }
  await new Promise((r) => setTimeout(r, 900));
  const after = await stats();
  assert.strictEqual(after.in_flight, 0);
  assert.ok(after.orphaned - before.orphaned >= 3, JSON.stringify(after));
  const ws = await open();
  const r = await sendAction(ws, 'gw_target', 'echo', {});
  assert.strictEqual(r.success, true);
  ws.close();
});

test('round trips measured (300 sequential calls), one answer each', async () => {
  const ws = await open(['daebus-v1']);
  const times = [];
  for (let i = 0; i < 300; i++) {
    const t0 = process.hrtime.bigint();
    const r = await sendAction(ws, 'gw_target', 'echo', { i });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    assert.strictEqual(r.data.echo.i, i);
  }
  // one answer per call (two replicas of gw_target: each call taken once)
  const answers = ws.frames.filter((f) => f.type === 'response');
  assert.strictEqual(answers.length, 300);
  assert.strictEqual(new Set(answers.map((f) => f.request_id)).size, 300);
  const by = {};
  for (const f of answers) by[f.data.instance] = (by[f.data.instance] || 0) + 1;
  console.log(`     calls per gw_target replica: ${JSON.stringify(Object.values(by))}`);
  times.sort((a, b) => a - b);
  const p = (q) => times[Math.floor(q * (times.length - 1))].toFixed(3);
  console.log(`     gateway round trip: p50 ${p(0.5)} ms, p99 ${p(0.99)} ms`);
  ws.close();
});


test('Redis restart: pending call answered with an error, calls work again after', async () => {
  const port = process.env.REDIS_PORT, dir = process.env.WORK_DIR;
  assert.ok(port && dir, 'REDIS_PORT and WORK_DIR');
  const ws = await open();
  const id = send(ws, 'gw_target', 'slow', { ms: 700 });
  await sleep(100);
  try { execFileSync('redis-cli', ['-p', port, 'shutdown', 'nosave']); } catch (e) { /* it closes */ }
  const r = await waitFrame(ws, (f) => f.request_id === id, 3000);
  assert.strictEqual(r.success, false);
  assert.match(r.error, /^Action 'gw_target.slow' (failed|timed out)/);
  // while Redis is away: refused at once or failed, never silent
  const down = await sendAction(ws, 'gw_target', 'echo', {}, 3000);
  assert.strictEqual(down.success, false);
  assert.ok(down.error.length > 0);
  console.log(`     Redis gone: pending call "${r.error}"; new call "${down.error}"`);
  execFileSync('redis-server', ['--port', port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'yes', '--pidfile', dir + '/redis2.pid', '--loglevel', 'warning']);
  let ok = null;
  for (let i = 0; i < 100 && !ok; i++) {
    const a = await sendAction(ws, 'gw_target', 'echo', { back: true }, 3000);
    if (a.success) ok = a; else await sleep(100);
  }
  assert.ok(ok, 'calls work again after Redis came back');
  assert.deepStrictEqual(ok.data.echo, { back: true });
  assert.strictEqual((await stats()).in_flight, 0);
  ws.close();
});

(async () => {
  let failed = 0;
  for (const [name, fn] of cases) {
    try {
      await fn();
      console.log('ok   ' + name);
    } catch (e) {
      failed++;
      console.log('FAIL ' + name + ': ' + (e && e.stack || e));
    }
  }
  const s = await stats();
  console.log('stats ' + JSON.stringify(s));
  process.exit(failed ? 1 : 0);
})();
