// Browser test of the chat page's reconnection with channel recovery (see
// run_browser_test.sh). alice's page talks to the service through a small TCP
// proxy; bob's page talks to it directly. The proxy cuts alice's connections
// (no WebSocket close frame: the sockets are reset) and refuses new ones for
// about 3 s while bob sends 12 messages. Then it lets connections through
// again: alice's page reconnects by itself, registers again, re-joins #lobby
// with "since" and must show every missed message exactly once, in order,
// after its earlier ones, then live ones - without reloading the page.
'use strict';

const {execFile} = require('child_process');
const net = require('net');
const os = require('os');
const path = require('path');
const common = require('./browser_common.js');

const {STEP, say, join, expectMessage} = common;
const url = new URL(process.env.CHAT_URL);
const shotDir = process.env.SHOT_DIR || os.tmpdir();
const redisUrl = process.env.REDIS_URL;
const log = common.logger('browser reconnect');
const MISSED = 12;
const DROP_MS = 3000;

// A TCP proxy to the service. drop(holdMs) resets the browser side of every
// open connection (the page sees it die without a close frame) and resets
// new ones until restore(). The service side is reset at once, or, with
// holdMs, kept open (what reaches it is dropped) until holdMs after the first
// connection let through again: the server has not noticed yet that the
// client went away when the page is back.
function startProxy(port, host) {
  const pairs = new Set();
  let dropped = false;
  let held = [];
  const kill = (sock) => { if (sock.resetAndDestroy) sock.resetAndDestroy(); else sock.destroy(); };
  const server = net.createServer((client) => {
    if (dropped) { kill(client); return; }
    if (held.length) {
      const release = held;
      held = [];
      setTimeout(() => release.forEach(({upstream}) => kill(upstream)), release[0].holdMs);
    }
    const upstream = net.connect(port, host);
    const pair = {client, upstream, held: false};
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      if (!pair.held) upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    drop(holdMs) {
      dropped = true;
      for (const pair of pairs) {
        const {client, upstream} = pair;
        if (holdMs) {
          pair.held = true;
          upstream.unpipe(client);
          client.unpipe(upstream);
          upstream.on('data', () => {});
          held.push({upstream, holdMs});
        } else {
          kill(upstream);
        }
        kill(client);
      }
      pairs.clear();
    },
    restore() { dropped = false; },
    close() {
      server.close();
      for (const {client, upstream} of pairs) { client.destroy(); upstream.destroy(); }
      for (const {upstream} of held) upstream.destroy();
    },
  })));
}

// The texts of the chat messages alice's page shows in #lobby, in order.
const shownTexts = (page) => page.$$eval('#messages li.message .text', (els) => els.map((e) => e.textContent));

async function scenario(context, proxy) {
  const viaProxy = `http://127.0.0.1:${proxy.port}/`;
  const alice = await common.openUser(context, viaProxy, 'alice');
  await join(alice, 'lobby');
  const bob = await common.openUser(context, url.href, 'bob');
  await join(bob, 'lobby');
  await alice.locator('#messages li.event', {hasText: 'bob joined #lobby'}).waitFor({timeout: STEP});
  await say(alice, 'a-1 before the drop');
  await expectMessage(bob, 'a-1 before the drop', 'bob');
  await say(bob, 'b-1 before the drop');
  await expectMessage(alice, 'b-1 before the drop', 'alice');
  log('alice (through the proxy) and bob chat in #lobby');

  const mark = 'loaded-' + Math.random();
  await alice.evaluate((m) => { window.daebusTestMark = m; }, mark);

  // 1: the connection dies; the service notices at once (alice leaves #lobby).
  const want = ['a-1 before the drop', 'b-1 before the drop'];
  want.push(...await cutOff(alice, bob, proxy, 'missed', 0));
  // 2: the service notices only 2 s after the page is back: the name is
  // still taken for a while and bob's messages go to the dead connection.
  want.push(...await cutOff(alice, bob, proxy, 'lost', 2000));
  const retries = await alice.evaluate(() => window.daebusChat.registerRetries);
  if (!(retries > 0)) throw new Error('alice\'s page never retried register (name still taken): ' + retries);
  log(`alice's page retried register ${retries} times while the name was still held`);
  // 3: the room's history is lost meanwhile (its epoch key deleted, as by a
  // Redis flush): no replay ("recovered": false); the page fills in from the
  // join reply's history (the rooms' own store still has the messages) under
  // a note that earlier messages may be missing.
  want.push(...await cutOff(alice, bob, proxy, 'epoch', 0, () => redis(['DEL', EPOCH_KEY])));

  await alice.screenshot({path: path.join(shotDir, 'reconnect-alice.png')});
  const got = await shownTexts(alice);
  if (JSON.stringify(got) !== JSON.stringify(want))
    throw new Error('alice\'s page shows ' + JSON.stringify(got) + ', want ' + JSON.stringify(want));
  log('alice shows every missed message once, in order, then the live ones');

  const st = await alice.evaluate(() => ({
    mark: window.daebusTestMark,
    recoveries: window.daebusChat.recoveries,
    gap: document.querySelectorAll('#messages li.event.gap').length,
    pos: window.daebusChat.rooms.get('lobby').pos,
    navigations: performance.getEntriesByType('navigation').length,
  }));
  if (st.mark !== mark) throw new Error('alice\'s page was reloaded (mark ' + st.mark + ')');
  const rec = st.recoveries.filter((r) => r.room === 'lobby');
  if (rec.length !== 3 || rec.some((r) => !r.since) || !rec[0].recovered || !rec[1].recovered ||
      rec[2].recovered || rec[2].since.epoch === st.pos.epoch)
    throw new Error('want three re-joins of #lobby with since, recovered, recovered, not recovered ' +
                    '(new epoch): ' + JSON.stringify(st.recoveries) + ' now at ' + JSON.stringify(st.pos));
  if (st.gap !== 1) throw new Error(`alice's page shows ${st.gap} "messages may be missing" notes, want 1`);
  log('no reload; re-joins with since ' + rec.map((r) => JSON.stringify(r.since)).join(', ') +
      ': recovered, recovered, not (a note); now at ' + JSON.stringify(st.pos));
}

// The epoch key of #lobby's channel history (docs/channels/history.md).
const EPOCH_KEY = 'daebus:chat_service:ch:room:lobby:epoch';

function redis(args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', ['-u', redisUrl, ...args], {timeout: 10000}, (err, stdout) => {
      if (err) reject(new Error('redis-cli ' + args.join(' ') + ': ' + err.message));
      else resolve(stdout.trim());
    });
  });
}

// Cuts alice off for DROP_MS (the service side after holdMs) while bob sends
// MISSED messages (after meanwhile() if given), then lets her back, and bob
// and alice chat again. Returns the texts alice must now show after what she
// showed before.
async function cutOff(alice, bob, proxy, tag, holdMs, meanwhile) {
  const t0 = Date.now();
  proxy.drop(holdMs);
  if (meanwhile) {
    const r = await meanwhile();
    if (r !== '1') throw new Error(`${tag}: want 1 key deleted, redis-cli says ${r}`);
  }
  await alice.waitForSelector('#status.reconnecting', {timeout: STEP});
  log(`${tag}: alice's connection dropped; her page says: ` + await alice.textContent('#status'));
  if (!holdMs) // bob sees alice leave: the server noticed the dead connection.
    await bob.locator('#messages li.event', {hasText: 'alice left #lobby'}).last().waitFor({timeout: STEP});
  const missed = [];
  for (let i = 1; i <= MISSED; i++) {
    const text = `${tag}-${String(i).padStart(2, '0')} from bob`;
    missed.push(text);
    await say(bob, text);
  }
  const wait = DROP_MS - (Date.now() - t0);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  const shownDuringDrop = await shownTexts(alice);
  if (shownDuringDrop.some((t) => t.startsWith(tag + '-')))
    throw new Error('alice saw a message while cut off: ' + JSON.stringify(shownDuringDrop));
  proxy.restore();
  log(`${tag}: connections restored after ${Date.now() - t0} ms; bob sent ${MISSED} messages meanwhile`);

  await alice.waitForSelector('#status.open', {timeout: 45000});
  await expectMessage(alice, missed[MISSED - 1], 'alice');
  log(`${tag}: alice reconnected and shows the last missed message ${Date.now() - t0} ms after the drop`);

  const live = [`${tag}: live-1 after the drop`, `${tag}: live-2 after the drop`];
  for (const text of live) {
    await say(bob, text);
    await expectMessage(alice, text, 'alice');
  }
  const mine = `${tag}: alice is back`;
  await say(alice, mine);
  await expectMessage(bob, mine, 'bob');
  return [...missed, ...live, mine];
}

async function main() {
  const proxy = await startProxy(Number(url.port), url.hostname);
  try {
    await common.withContext(shotDir, (context) => scenario(context, proxy));
  } finally {
    proxy.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error('FAILED: browser reconnect test: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
