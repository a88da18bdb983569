// Helpers shared by the browser tests of the chat example (browser_test.js,
// browser_reconnect.js): Chromium through playwright-core, and the page's
// register / join / send steps.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const STEP = 15000; // ms per wait; generous for a loaded machine

let chromium;
try {
  ({chromium} = require('playwright-core'));
} catch (e) {
  console.error('FAILED: cannot load playwright-core: ' + e.message);
  process.exit(1);
}

function logger(name) { return (msg) => console.log(name + ': ' + msg); }

// A persistent Chromium context (extraArgs: more command-line flags), or
// exit 77 when Chromium cannot start.
async function launch(extraArgs = []) {
  const profile = process.env.PROFILE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'daebus-chromium-'));
  try {
    return await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             ...extraArgs],
      viewport: {width: 1100, height: 700},
      timeout: 60000,
    });
  } catch (e) {
    console.error('SKIPPED: browser test: Chromium cannot start: ' + e.message.split('\n')[0]);
    process.exit(77);
  }
}

// Runs scenario(context); on failure leaves screenshots of every page in
// shotDir (<prefix>failure-page<i>.png).
async function withContext(shotDir, scenario, {extraArgs = [], prefix = ''} = {}) {
  const context = await launch(extraArgs);
  try {
    await scenario(context);
  } catch (e) {
    for (const [i, page] of context.pages().entries())
      await page.screenshot({path: path.join(shotDir, `${prefix}failure-page${i}.png`)}).catch(() => {});
    throw e;
  } finally {
    await context.close();
  }
}

// A page of the chat at url whose WebSocket is open (errors logged as name).
async function openPage(context, url, name) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[${name}] console: ${m.text()}`); });
  await page.goto(url);
  await page.waitForSelector('#status.open', {timeout: STEP});
  return page;
}

async function register(page, name) {
  await page.fill('#username', name);
  await page.click('#register-btn');
  await page.waitForSelector('#chat:not([hidden])', {timeout: STEP});
  const me = await page.textContent('#me');
  if (me !== name) throw new Error(`${name}: page says signed in as '${me}'`);
}

async function openUser(context, url, name) {
  const page = await openPage(context, url, name);
  await register(page, name);
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

module.exports = {STEP, logger, withContext, openPage, register, openUser, join, say, expectMessage};
