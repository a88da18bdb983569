// The chat page in headless Chromium through nginx over https:// (see
// run_browser_replicas.sh and deploy_env.py): two pages whose WebSocket
// connections land on two different replicas register, join one room and
// chat with each other, so room updates and messages cross replicas.
// Chromium trusts the throw-away certificate by its key's pin
// (--ignore-certificate-errors-spki-list), not by ignoring TLS errors.
'use strict';

const http = require('http');
const os = require('os');
const path = require('path');
const {STEP, logger, withContext, openPage, register, join, say, expectMessage} =
  require(path.join(__dirname, '..', '..', 'browser', 'browser_common.js'));

const url = process.env.DEPLOY_URL; // https://localhost:PORT/ (nginx)
const replicas = process.env.DEPLOY_REPLICAS.split(','); // http://127.0.0.1:PORT each (direct)
const spki = process.env.DEPLOY_SPKI;
const shotDir = process.env.SHOT_DIR || os.tmpdir();
const log = logger('browser replicas');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function getJson(u) {
  return new Promise((resolve, reject) => {
    http.get(u, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

// WebSocket clients each replica holds itself (its own /health, not through nginx).
async function clientsPerReplica() {
  const out = [];
  for (const r of replicas) out.push((await getJson(r + '/health')).checks.websocket.clients);
  return out;
}

async function waitCounts(want, what) {
  const deadline = Date.now() + STEP;
  let got;
  while (Date.now() < deadline) {
    got = await clientsPerReplica();
    if (want(got)) return got;
    await sleep(50);
  }
  throw new Error(`${what}: clients per replica ${JSON.stringify(got)}`);
}

async function scenario(context) {
  if (replicas.length !== 2) throw new Error('want 2 replicas, got ' + replicas.length);
  const a = await openPage(context, url, 'alice');
  const afterA = await waitCounts((c) => c[0] + c[1] === 1, 'alice connected');
  const ra = afterA.indexOf(1);
  const proto = await a.evaluate(() => location.protocol);
  if (proto !== 'https:') throw new Error('page not served over https: ' + proto);

  // bob's page: load (again) until its WebSocket is on the other replica.
  // Round robin counts every request (page, script, style, upgrade), so
  // where it lands depends on what else went through nginx.
  let b = null;
  let rb = -1;
  for (let attempt = 0; attempt < 8 && rb !== 1 - ra; attempt++) {
    if (b) await b.close();
    await waitCounts((c) => c[ra] === 1 && c[1 - ra] === 0 && c[0] + c[1] === 1, 'bob\'s previous page gone');
    b = await openPage(context, url, 'bob');
    const c = await waitCounts((n) => n[0] + n[1] === 2, 'bob connected');
    rb = c[1 - ra] === 1 ? 1 - ra : ra;
  }
  if (rb !== 1 - ra) throw new Error('bob\'s WebSocket never landed on the other replica in 8 loads');
  log(`alice's WebSocket is on replica ${ra + 1}, bob's on replica ${rb + 1} (through nginx, wss://)`);

  await register(a, 'alice');
  await register(b, 'bob');
  await join(a, 'lobby');
  await join(b, 'lobby');
  log('both registered and joined #lobby');
  await a.locator('#messages li.event', {hasText: 'bob joined #lobby'}).waitFor({timeout: STEP})
    .catch(() => { throw new Error('alice did not see bob join #lobby (room update across replicas)'); });

  await say(a, 'hello from alice on replica ' + (ra + 1));
  await expectMessage(b, 'hello from alice on replica ' + (ra + 1), 'bob');
  await say(b, 'hi alice, bob on replica ' + (rb + 1));
  await expectMessage(a, 'hi alice, bob on replica ' + (rb + 1), 'alice');
  log('messages delivered both ways across the replicas');

  // Still one page per replica: nothing moved.
  const end = await clientsPerReplica();
  if (end[0] !== 1 || end[1] !== 1) throw new Error('clients per replica at the end: ' + JSON.stringify(end));
  await a.screenshot({path: path.join(shotDir, 'replicas-alice.png')});
  await b.screenshot({path: path.join(shotDir, 'replicas-bob.png')});

  // bob leaves: alice, on the other replica, sees him go.
  await b.close();
  await a.locator('#messages li.event', {hasText: 'bob left #lobby'}).waitFor({timeout: STEP})
    .catch(() => { throw new Error('alice did not see bob leave #lobby'); });
  log('alice saw bob leave');
}

// Chromium trusts nginx's throw-away certificate by its key's pin only.
function main() {
  return withContext(shotDir, scenario,
                     {extraArgs: ['--ignore-certificate-errors-spki-list=' + spki], prefix: 'replicas-'});
}

main().then(() => process.exit(0), (e) => {
  console.error('FAILED: browser replicas test: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
