#!/usr/bin/env node
// Drives examples/test_server with the real sockjs-client 1.6.1: in Node
// through every transport Node's client offers, and in headless Chromium
// through every transport the browser client offers, from a page on another
// origin and from a same-origin page. Prints a table of transport × check
// and exits non-zero on any FAIL.
//
// Usage: node run.js [--server PATH] [--only REGEX]
// The server binary defaults to ../target/debug/examples/test_server;
// Chromium to /usr/bin/chromium (or $CHROMIUM).
'use strict';

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { spawn } = require('child_process');

const { runTransport, checkNames } = require('./checks.js');

const NODE_TRANSPORTS = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource'];
const BROWSER_TRANSPORTS = [
  'websocket', 'xhr-streaming', 'eventsource', 'iframe-eventsource', 'htmlfile',
  'iframe-htmlfile', 'xhr-polling', 'iframe-xhr-polling', 'jsonp-polling',
];
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const RUN_LIMIT_MS = 15 * 60 * 1000;

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

// A folder with the client build, the checks and the page, served both by
// the SockJS server (same origin) and by a second server (other origin).
function staticDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockjs-interop-'));
  fs.copyFileSync(require.resolve('sockjs-client/dist/sockjs.js'), path.join(dir, 'sockjs.js'));
  fs.copyFileSync(path.join(__dirname, 'checks.js'), path.join(dir, 'checks.js'));
  fs.copyFileSync(path.join(__dirname, 'page.html'), path.join(dir, 'page.html'));
  return dir;
}

function startServer(bin, dir) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--port', '0', '--static', dir, '--sockjs-url', '/static/sockjs.js'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.on('error', reject);
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      const port = Number(line.trim().split(':').pop());
      port ? resolve({ child, port }) : reject(new Error('unexpected first line: ' + line));
    });
  });
}

function startPageServer(dir) {
  const types = { '.js': 'application/javascript', '.html': 'text/html; charset=UTF-8' };
  const server = http.createServer((req, res) => {
    const name = path.basename(new URL(req.url, 'http://x').pathname);
    fs.readFile(path.join(dir, name), (err, data) => {
      if (err) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, { 'Content-Type': types[path.extname(name)] || 'application/octet-stream' });
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function other(transport, env) {
  if (transport === 'websocket') return env === 'node' ? 'xhr-streaming' : 'xhr-polling';
  return 'websocket';
}

async function main() {
  const only = new RegExp(arg('--only', '.'));
  const bin = arg('--server', path.join(__dirname, '..', 'target', 'debug', 'examples', 'test_server'));
  const dir = staticDir();
  const { child, port } = await startServer(bin, dir);
  // Whatever happens (a client library throwing from a callback included),
  // the server does not outlive the run.
  process.on('exit', () => child.kill());
  process.on('uncaughtException', (err) => {
    console.error('interop: uncaught exception, failing the run: ' + (err && err.stack || err));
    process.exit(1);
  });
  const pages = await startPageServer(dir);
  const base = 'http://127.0.0.1:' + port;
  const rows = [];
  const watchdog = setTimeout(() => { console.error('interop: run limit reached'); process.exit(2); }, RUN_LIMIT_MS);

  try {
    const SockJS = require('sockjs-client');
    for (const t of NODE_TRANSPORTS) {
      if (!only.test('node ' + t)) continue;
      rows.push({ env: 'node', transport: t, results: await runTransport(SockJS, base, t, other(t, 'node')) });
    }

    const { chromium } = require('playwright-core');
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
    });
    try {
      const origins = [
        ['cross-origin', 'http://127.0.0.1:' + pages.address().port + '/page.html'],
        ['same-origin', base + '/static/page.html'],
      ];
      for (const [env, url] of origins) {
        for (const t of BROWSER_TRANSPORTS) {
          if (!only.test(env + ' ' + t)) continue;
          const page = await browser.newPage();
          const console_ = [];
          page.on('console', (m) => console_.push(m.type() + ': ' + m.text()));
          page.on('pageerror', (e) => console_.push('pageerror: ' + e.message));
          await page.goto(url);
          const results = await page.evaluate(
            ([b, tr, o]) => window.runTransport(window.SockJS, b, tr, o),
            [base, t, other(t, 'browser')],
          );
          rows.push({ env, transport: t, results, console: console_ });
          await page.close();
        }
      }
    } finally {
      await browser.close();
    }
  } finally {
    clearTimeout(watchdog);
    child.kill();
    pages.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return report(rows);
}

function report(rows) {
  const width = 32;
  const head = 'transport'.padEnd(width) + checkNames.map((c) => c.padEnd(10)).join('');
  console.log(head);
  console.log('-'.repeat(head.length));
  let passed = 0, failed = 0, refused = 0;
  for (const row of rows) {
    const cells = checkNames.map((c) => {
      const s = row.results[c] ? row.results[c].status : 'FAIL';
      if (s === 'PASS') passed++; else if (s === 'REFUSED') refused++; else failed++;
      return s.padEnd(10);
    });
    console.log((row.env + ' ' + row.transport).padEnd(width) + cells.join(''));
  }
  const notes = [];
  for (const row of rows) {
    for (const c of checkNames) {
      const r = row.results[c];
      if (r && r.status !== 'PASS') {
        notes.push(`${r.status} ${row.env} ${row.transport} ${c}: ${r.detail}`);
      }
    }
    if (row.console && Object.values(row.results).some((r) => r.status === 'FAIL')) {
      row.console.slice(-10).forEach((l) => notes.push(`    console (${row.env} ${row.transport}) ${l}`));
    }
  }
  if (notes.length) {
    console.log('');
    notes.forEach((n) => console.log(n));
  }
  console.log('');
  console.log('REFUSED: the client itself will not use that transport there (not a pass, not a failure).');
  console.log(`interop: ${passed} passed, ${failed} failed, ${refused} skipped`);
  return failed === 0 && rows.length > 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => {
  console.error('interop: ' + (err && err.stack || err));
  process.exit(1);
});
