// End-to-end test of the chat page in headless Chromium (see run_browser_test.sh).
// Two users register, join a room and exchange messages; an operator kicks one
// with daebus-call kick_client and the kicked page shows the notice.
'use strict';

const {execFile, spawn} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const url = process.env.CHAT_URL;
const caller = process.env.DAEBUS_CALL;
const redisUrl = process.env.REDIS_URL;
const shotDir = process.env.SHOT_DIR || os.tmpdir();
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP = 15000; // ms per wait; generous for a loaded machine

let chromium;
try {
  ({chromium} = require('playwright-core'));
} catch (e) {
  console.error('FAILED: cannot load playwright-core: ' + e.message);
  process.exit(1);
}

function log(msg) { console.log('browser test: ' + msg); }

function daebusCall(args) {
  return new Promise((resolve) => {
    execFile(caller, args, {timeout: 20000}, (err, stdout, stderr) => {
      resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr});
    });
  });
}

async function openUser(context, name) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[${name}] console: ${m.text()}`); });
  await page.goto(url);
  await page.waitForSelector('#status.open', {timeout: STEP});
  await page.fill('#username', name);
  await page.click('#register-btn');
  await page.waitForSelector('#chat:not([hidden])', {timeout: STEP});
  const me = await page.textContent('#me');
  if (me !== name) throw new Error(`${name}: page says signed in as '${me}'`);
  return page;
}

async function join(page, room) {
  await page.fill('#room-input', room);
  await page.click('#join-btn');
  await page.waitForFunction((r) => document.getElementById('room-title').textContent === '#' + r,
                             room, {timeout: STEP});
}

async function say(page, text) {
  await page.fill('#message-input', text);
  await page.click('#send-btn');
  // The sender's own copy appears once the server answered status "sent".
  await page.locator('#messages li.message.mine .text', {hasText: text}).waitFor({timeout: STEP});
}

async function expectMessage(page, text, who) {
  await page.locator('#messages li.message:not(.mine) .text', {hasText: text})
    .waitFor({timeout: STEP})
    .catch(() => { throw new Error(`${who} did not see the message '${text}'`); });
}

async function main() {
  const profile = process.env.PROFILE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'daebus-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: {width: 1100, height: 700},
      timeout: 60000,
    });
  } catch (e) {
    console.error('SKIPPED: browser test: Chromium cannot start: ' + e.message.split('\n')[0]);
    process.exit(77);
  }

  try {
    await scenario(context);
  } catch (e) {
    // Leave pictures of every page behind for the post-mortem.
    for (const [i, page] of context.pages().entries())
      await page.screenshot({path: path.join(shotDir, `failure-page${i}.png`)}).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
  await stopRestarted();
}

async function scenario(context) {
  {
    const alice = await openUser(context, 'alice');
    log('alice registered');
    await join(alice, 'lobby');
    const bob = await openUser(context, 'bob');
    log('bob registered');
    await join(bob, 'lobby');
    log('both joined #lobby');

    // alice sees bob join (room_update "joined").
    await alice.locator('#messages li.event', {hasText: 'bob joined #lobby'}).waitFor({timeout: STEP});

    await say(alice, 'hello from alice');
    await expectMessage(bob, 'hello from alice', 'bob');
    await say(bob, 'hi alice, bob here');
    await expectMessage(alice, 'hi alice, bob here', 'alice');
    log('messages delivered both ways');

    // GET /api/rooms from the page: lobby with two members.
    const rooms = await alice.evaluate(() => fetch('/api/rooms').then((r) => r.json()));
    const lobby = (rooms.rooms || []).find((r) => r.name === 'lobby');
    if (!lobby || lobby.members !== 2 || lobby.message_count !== 2)
      throw new Error('GET /api/rooms: ' + JSON.stringify(rooms));

    // system_status broadcast (CHAT_STATUS_INTERVAL=2 in the runner).
    await alice.waitForSelector('#system-status:not([hidden])', {timeout: STEP});

    await alice.screenshot({path: path.join(shotDir, 'chat-alice.png')});

    // Kick bob through the bus with daebus-call.
    const bobId = await bob.evaluate(() => window.daebusChat.clientId);
    if (!bobId) throw new Error('bob has no client id');
    const r = await daebusCall(['--redis', redisUrl, '--timeout', '10', 'chat_service', 'kick_client',
                                JSON.stringify({client_id: bobId, reason: 'Browser test kick'})]);
    if (r.code !== 0) throw new Error(`daebus-call kick_client exited ${r.code}: ${r.stderr}${r.stdout}`);
    const reply = JSON.parse(r.stdout.trim().split('\n').pop());
    if (reply.success !== true || reply.client_id !== bobId)
      throw new Error('kick_client reply: ' + r.stdout);
    log('daebus-call kick_client: ' + r.stdout.trim());

    await bob.locator('#notice:not([hidden])', {hasText: 'Browser test kick'}).waitFor({timeout: STEP});
    await bob.waitForSelector('#status.closed', {timeout: STEP});
    await alice.locator('#messages li.event', {hasText: 'bob left #lobby'}).waitFor({timeout: STEP});
    log('bob saw the disconnect notice; alice saw bob leave');
    await bob.screenshot({path: path.join(shotDir, 'chat-bob-kicked.png')});

    // bob reconnects by hand and is back in #lobby.
    await bob.click('#notice .action');
    await bob.waitForSelector('#status.open', {timeout: STEP});
    await alice.locator('#messages li.event', {hasText: 'bob joined #lobby'}).nth(1).waitFor({timeout: STEP});
    await say(bob, 'back again');
    await expectMessage(alice, 'back again', 'alice');
    log('bob reconnected and rejoined');

    // Restart the server: the shutdown action stops it (pages get
    // server_shutdown), a new process takes the same port, and both pages
    // reconnect on their own (backoff), register again and re-join #lobby.
    const s = await daebusCall(['--redis', redisUrl, '--timeout', '10', 'chat_service', 'shutdown',
                                JSON.stringify({message: 'Restarting for the test', timeout: 1})]);
    if (s.code !== 0) throw new Error(`daebus-call shutdown exited ${s.code}: ${s.stderr}`);
    await alice.locator('#notice:not([hidden])', {hasText: 'Restarting for the test'}).waitFor({timeout: STEP});
    await alice.waitForSelector('#status.closed', {timeout: STEP});
    log('server shut down; pages are reconnecting');
    await restartServer();
    for (const page of [alice, bob]) await page.waitForSelector('#status.open', {timeout: 30000});
    await say(alice, 'after the restart');
    await expectMessage(bob, 'after the restart', 'bob');
    log('both pages reconnected by themselves and chat again');
  }
}

let restarted = null;

async function restartServer() {
  const bin = process.env.CHAT_BIN;
  const port = new URL(url).port;
  for (let attempt = 0; attempt < 50; attempt++) {
    const child = spawn(bin, ['--port', port, '--redis', redisUrl], {stdio: ['ignore', 'pipe', 'pipe']});
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const ready = await new Promise((resolve) => {
      const t = setInterval(() => {
        if (/service "[^"]*" ready/.test(out)) { clearInterval(t); resolve(true); }
      }, 50);
      child.on('exit', () => { clearInterval(t); resolve(false); });
    });
    if (ready) {
      restarted = child;
      return;
    }
    await new Promise((r) => setTimeout(r, 200)); // the port may still be held
  }
  throw new Error('could not restart chat_service');
}

async function stopRestarted() {
  if (!restarted) return;
  const code = await new Promise((resolve) => {
    restarted.on('exit', (c, sig) => resolve(sig ? 128 : c));
    restarted.kill('SIGTERM');
  });
  if (code !== 0) throw new Error(`restarted chat_service exited ${code} after SIGTERM (want 0)`);
  log('restarted chat_service exited 0 on SIGTERM');
}

main().then(() => process.exit(0), (e) => {
  if (restarted) restarted.kill('SIGKILL');
  console.error('FAILED: browser test: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
