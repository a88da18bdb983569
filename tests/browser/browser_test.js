// End-to-end test of the chat page in headless Chromium (see run_browser_test.sh).
// Two users register, join a room and exchange messages; an operator kicks one
// with daebus-call kick_client and the kicked page shows the notice.
'use strict';

const {execFile, spawn} = require('child_process');
const os = require('os');
const path = require('path');
const common = require('./browser_common.js');

const {STEP, say, join, expectMessage} = common;
const url = process.env.CHAT_URL;
const caller = process.env.DAEBUS_CALL;
const redisUrl = process.env.REDIS_URL;
const shotDir = process.env.SHOT_DIR || os.tmpdir();

const log = common.logger('browser test');
const openUser = (context, name) => common.openUser(context, url, name);

function daebusCall(args) {
  return new Promise((resolve) => {
    execFile(caller, args, {timeout: 20000}, (err, stdout, stderr) => {
      resolve({code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr});
    });
  });
}

async function main() {
  await common.withContext(shotDir, scenario);
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
