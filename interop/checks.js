// The checks every transport goes through, shared by the Node runner and the
// browser page. `runTransport(SockJS, base, transport, other)` resolves to
// an object: check name -> { status: 'PASS' | 'FAIL' | 'REFUSED', detail }.
(function (root) {
  'use strict';

  var TIMEOUT = 20000;

  function messages() {
    return [
      ['ascii', 'hello world'],
      ['non-latin', 'żółć Привет 漢字 عربى ελληνικά'],
      ['emoji', '😀🎉 👍🏽 🇺🇦'],
      ['escaped ranges', '\u2028\u2029\u200c\u200d\u200e\u2060\u206f\ufff0\ufff9\uffff'],
      ['control characters', '\u0000\u0001\b\t\n\v\f\r\u001f\u007f\u0085'],
      ['percent', '% %41 %%25 100%'],
      ['script end', 'a</script>b'],
      ['comment and script', '<!--<script>alert(1)</script>'],
      // A lone surrogate cannot live in a Rust String: it comes back as U+FFFD.
      ['lone surrogate', 'x\ud800y\udc00z', 'x\ufffdy\ufffdz'],
      ['100 KB', new Array(100 * 1024 + 1).join('x')],
    ];
  }

  function describe(s) {
    if (s.length > 60) {
      return JSON.stringify(s.slice(0, 30)) + '… (' + s.length + ' chars)';
    }
    return JSON.stringify(s);
  }

  // Opens a socket; resolves with it, or rejects with {refused, code, reason}.
  function open(SockJS, url, transport) {
    return new Promise(function (resolve, reject) {
      var sock = new SockJS(url, null, { transports: [transport] });
      var timer = setTimeout(function () {
        reject(new Error('no open within ' + TIMEOUT + ' ms'));
        sock.close();
      }, TIMEOUT);
      sock.inbox = [];
      sock.waiters = [];
      sock.onmessage = function (e) {
        var w = sock.waiters.shift();
        if (w) { w(e.data); } else { sock.inbox.push(e.data); }
      };
      sock.onopen = function () {
        clearTimeout(timer);
        if (sock.transport !== transport) {
          reject(new Error('opened over ' + sock.transport + ', not ' + transport));
          sock.close();
          return;
        }
        resolve(sock);
      };
      sock.onclose = function (e) {
        clearTimeout(timer);
        var err = new Error('closed before open: ' + e.code + ' ' + e.reason);
        err.refused = e.code === 2000;
        reject(err);
      };
    });
  }

  function next(sock) {
    return new Promise(function (resolve, reject) {
      if (sock.inbox.length) { resolve(sock.inbox.shift()); return; }
      var timer = setTimeout(function () { reject(new Error('no message within ' + TIMEOUT + ' ms')); }, TIMEOUT);
      sock.waiters.push(function (data) { clearTimeout(timer); resolve(data); });
    });
  }

  function closed(sock) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(new Error('no close within ' + TIMEOUT + ' ms')); }, TIMEOUT);
      sock.onclose = function (e) { clearTimeout(timer); resolve(e); };
    });
  }

  function expectEqual(got, want, what) {
    if (got !== want) {
      throw new Error(what + ': got ' + describe(String(got)) + ', want ' + describe(want));
    }
  }

  var checks = {
    echo: async function (ctx) {
      var sock = await open(ctx.SockJS, ctx.base + '/echo', ctx.transport);
      try {
        var list = messages();
        for (var i = 0; i < list.length; i++) {
          sock.send(list[i][1]);
          expectEqual(await next(sock), list[i].length > 2 ? list[i][2] : list[i][1], 'echo of ' + list[i][0]);
        }
        // Several sends in a row keep their order.
        for (var j = 0; j < 20; j++) { sock.send('m' + j); }
        for (var k = 0; k < 20; k++) { expectEqual(await next(sock), 'm' + k, 'ordered echo'); }
        return list.length + 20 + ' messages';
      } finally { sock.close(); }
    },
    close: async function (ctx) {
      var sock = await open(ctx.SockJS, ctx.base + '/close', ctx.transport);
      var e = await closed(sock);
      expectEqual(e.code + ' ' + e.reason, '3000 Go away!', 'close');
      return 'closed with 3000 "Go away!"';
    },
    amplify: async function (ctx) {
      var sock = await open(ctx.SockJS, ctx.base + '/amplify', ctx.transport);
      try {
        var ns = [17, 1, 13, 16, 3];
        ns.forEach(function (n) { sock.send(String(n)); });
        for (var i = 0; i < ns.length; i++) {
          var got = await next(sock);
          expectEqual(got.length, Math.pow(2, ns[i]), 'length of answer ' + i);
        }
        return 'answers of 2^17, 2, 2^13, 2^16, 8 bytes';
      } finally { sock.close(); }
    },
    broadcast: async function (ctx) {
      var a = await open(ctx.SockJS, ctx.base + '/broadcast', ctx.transport);
      var b = await open(ctx.SockJS, ctx.base + '/broadcast', ctx.other);
      try {
        var tag = 'bc-' + Math.random().toString(36).slice(2);
        a.send(tag + '-a');
        expectEqual(await next(a), tag + '-a', 'sender gets its broadcast');
        expectEqual(await next(b), tag + '-a', ctx.other + ' gets the broadcast');
        b.send(tag + '-b');
        expectEqual(await next(a), tag + '-b', 'broadcast from ' + ctx.other);
        expectEqual(await next(b), tag + '-b', 'own broadcast');
        return 'with a ' + ctx.other + ' client';
      } finally { a.close(); b.close(); }
    },
    cookie: async function (ctx) {
      var sock = await open(ctx.SockJS, ctx.base + '/cookie_needed_echo', ctx.transport);
      try {
        sock.send('cookie?');
        expectEqual(await next(sock), 'cookie?', 'echo');
        return 'echo on /cookie_needed_echo';
      } finally { sock.close(); }
    },
  };

  async function runTransport(SockJS, base, transport, other) {
    var results = {};
    var ctx = { SockJS: SockJS, base: base, transport: transport, other: other };
    var names = Object.keys(checks);
    for (var i = 0; i < names.length; i++) {
      var name = names[i];
      try {
        results[name] = { status: 'PASS', detail: await checks[name](ctx) };
      } catch (e) {
        results[name] = { status: e.refused ? 'REFUSED' : 'FAIL', detail: String(e && e.message || e) };
        if (e.refused) {
          // The client will not use this transport here: every check is refused.
          names.slice(i + 1).forEach(function (n) { results[n] = { status: 'REFUSED', detail: 'client refused the transport' }; });
          break;
        }
      }
    }
    return results;
  }

  root.runTransport = runTransport;
  root.checkNames = Object.keys(checks);
  if (typeof module !== 'undefined' && module.exports) {
    module.exports = { runTransport: runTransport, checkNames: Object.keys(checks) };
  }
})(typeof window !== 'undefined' ? window : globalThis);
