// sockjs-node 0.3.24 with the endpoints the load bench drives: /echo (every
// message back to its sender) and /broadcast (every message to every open
// session). Prints `listening on http://127.0.0.1:PORT` first, like our
// servers; `--port 0` picks a free port.
'use strict';
const http = require('http');
const sockjs = require('sockjs');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const port = Number(arg('--port', '8082'));
const quiet = { log: () => {}, response_limit: 128 * 1024 };

const echo = sockjs.createServer(quiet);
echo.on('connection', (conn) => conn.on('data', (msg) => conn.write(msg)));

const everyone = new Set();
const broadcast = sockjs.createServer(quiet);
broadcast.on('connection', (conn) => {
  everyone.add(conn);
  conn.on('close', () => everyone.delete(conn));
  conn.on('data', (msg) => {
    for (const c of everyone) c.write(msg);
  });
});

const server = http.createServer();
echo.installHandlers(server, { prefix: '/echo' });
broadcast.installHandlers(server, { prefix: '/broadcast' });
server.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
