// The chat example's page in headless Chromium: two users in one room
// exchange messages; a third, in another room, sees none of them. Keeps a
// screenshot of each page in target/chat-pages/. Prints
// "chat page: N passed, M failed".
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { spawn } = require('child_process');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const TIMEOUT = 20000;
const root = path.join(__dirname, '..');

function startChat() {
  const bin = path.join(root, 'target', 'debug', 'examples', 'chat');
  const script = require.resolve('sockjs-client/dist/sockjs.min.js');
  return new Promise((resolve, reject) => {
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' };
    const child = spawn(bin, ['--port', '0', '--client-script', script], { stdio: ['ignore', 'pipe', 'inherit'], env });
    child.on('error', reject);
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      const port = Number(line.trim().split(':').pop());
      port ? resolve({ child, port }) : reject(new Error('unexpected first line: ' + line));
    });
  });
}

// Resolves once the page shows a message line equal to `text`.
function shows(page, text) {
  return page.waitForFunction(
    (t) => Array.from(document.querySelectorAll('#log .message')).some((d) => d.textContent === t),
    text,
    { timeout: TIMEOUT },
  );
}

async function lines(page) {
  return page.$$eval('#log .message', (ds) => ds.map((d) => d.textContent));
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#form button');
}

async function main() {
  const { child, port } = await startChat();
  process.on('exit', () => child.kill());
  const base = 'http://127.0.0.1:' + port;
  const shots = path.join(root, 'target', 'chat-pages');
  fs.mkdirSync(shots, { recursive: true });
  const results = [];
  const check = async (name, run) => {
    try {
      await run();
      results.push([name, 'PASS']);
    } catch (e) {
      results.push([name, 'FAIL: ' + (e && e.message || e)]);
    }
  };
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  try {
    const open = async (name, room) => {
      const page = await browser.newPage();
      await page.goto(base + '/?name=' + name + '&room=' + room);
      await shows(page, 'you are in ' + room);
      return page;
    };
    const ann = await open('ann', 'blue');
    const bob = await open('bob', 'blue');
    const cy = await open('cy', 'green');
    await check('the page loads the local client and connects', async () => {
      const status = await ann.textContent('#status');
      if (!status.startsWith('connected over ')) throw new Error('status: ' + status);
    });
    await check('two users in a room exchange messages', async () => {
      await say(ann, 'hello bob');
      await shows(bob, 'ann: hello bob');
      await say(bob, 'hi ann');
      await shows(ann, 'bob: hi ann');
    });
    await check('a user in another room sees none of them', async () => {
      // A private message sent after the room's: cy would have the room's first.
      await say(ann, '/to cy after the room');
      await shows(cy, 'ann (private): after the room');
      const seen = (await lines(cy)).filter((l) => l.includes('hello bob') || l.includes('hi ann'));
      if (seen.length) throw new Error('cy saw ' + JSON.stringify(seen));
    });
    await check('who is in the room', async () => {
      await say(bob, '/who');
      await shows(bob, 'in blue on this node: ann, bob');
    });
    for (const [name, page] of [['ann', ann], ['bob', bob], ['cy', cy]]) {
      await page.screenshot({ path: path.join(shots, name + '.png') });
    }
  } finally {
    await browser.close();
    child.kill();
  }
  for (const [name, status] of results) {
    console.log(status === 'PASS' ? 'PASS ' + name : 'FAIL ' + name + ' - ' + status);
  }
  const failed = results.filter(([, s]) => s !== 'PASS').length;
  console.log('chat page: ' + (results.length - failed) + ' passed, ' + failed + ' failed');
  return failed;
}

main().then((failed) => process.exit(failed ? 1 : 0), (e) => {
  console.error(e);
  process.exit(1);
});
