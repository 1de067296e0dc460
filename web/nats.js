// A NATS client over nats-server's websocket listener: the text protocol in binary frames.
// Lengths on the wire are UTF-8 byte counts. One connection at a time; on loss it tries the
// next server with a growing delay and sends its subscriptions again (listeners of "reconnect"
// rebuild what lives on the server, such as JetStream consumers).
// A classic script (modules do not load from file://): it adds its names to globalThis.nodeha.
"use strict";
(() => {
  const { userKeyFromSeed, NatsError, Msg } = globalThis.nodeha;

  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const CRLF = encoder.encode("\r\n");
  const kPingEveryMs = 20000;
  const kMaxOutstandingPings = 2;
  const kConnectTimeoutMs = 10000;

  function concat(a, b) {
    if (a.length === 0) return b;
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  }

  function indexOfCrlf(buf, from) {
    for (let i = from; i + 1 < buf.length; i++) if (buf[i] === 13 && buf[i + 1] === 10) return i;
    return -1;
  }

  function randomToken() {
    const b = crypto.getRandomValues(new Uint8Array(8));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  class NatsClient {
    // servers: ["ws://host:port", ...]; user: identity name ("" = no auth); seed: "SU..." or "".
    constructor({ servers, user = "", seed = "", name = "nodeha-web" }) {
      if (!servers.length) throw new NatsError("bad_config", "no server to connect to");
      for (const url of servers)
        if (!/^wss?:\/\/[^\s/]+/.test(url)) throw new NatsError("bad_config", `"${url}" is no websocket URL: give wss://host:port (or ws:// without TLS)`);
      if (!!user !== !!seed) throw new NatsError("bad_config", "give both the identity's name and its seed, or neither");
      this.servers = servers;
      this.user = user;
      this.seedText = seed;
      this.name = name;
      this.inboxPrefix = user ? `_INBOX_${user}` : "_INBOX";
      this.listeners = new Map();
      this.subs = new Map();
      this.nextSid = 1;
      this.pending = new Map();  // request token -> {subject, resolve, reject, timer}
      this.respSub = null;
      this.respBase = "";
      this.ws = null;
      this.serverIndex = 0;
      this.attempt = 0;
      this.closed = false;
      this.connected = false;
      this.currentServer = "";
    }

    on(event, fn) {
      if (!this.listeners.has(event)) this.listeners.set(event, []);
      this.listeners.get(event).push(fn);
    }
    off(event, fn) {
      const list = this.listeners.get(event) || [];
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    emit(event, ...args) {
      for (const fn of this.listeners.get(event) || []) {
        try {
          fn(...args);
        } catch (e) {
          console.error(`nats ${event} listener:`, e);
        }
      }
    }

    // Resolves once the first server accepts us; rejects on a bad seed or an authorization error.
    async connect() {
      if (this.seedText) {
        this.key = await userKeyFromSeed(this.seedText);
        this.seedText = "";
      }
      return new Promise((resolve, reject) => {
        this.firstConnect = { resolve, reject };
        this.open();
      });
    }

    open() {
      if (this.closed) return;
      const url = this.servers[this.serverIndex % this.servers.length];
      this.currentServer = url;
      this.emit("status", "connecting", `connecting to ${url}`);
      this.buf = new Uint8Array(0);
      this.expect = null;
      this.outstandingPings = 0;
      this.connectSent = false;
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        this.onClose(`cannot open ${url}: ${e.message}`);
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onmessage = (ev) => {
        if (ws !== this.ws) return;
        const chunk = typeof ev.data === "string" ? encoder.encode(ev.data) : new Uint8Array(ev.data);
        this.buf = concat(this.buf, chunk);
        try {
          this.parse();
        } catch (e) {
          this.protocolError(e.message);
        }
      };
      ws.onclose = (ev) => {
        if (ws === this.ws) this.onClose(this.lastError || `connection to ${url} closed (${ev.code})`);
      };
      ws.onerror = () => {
        const hint = url.startsWith("wss:") ? " (is it up, and does this browser trust its certificate?)" : " (is it up?)";
        if (ws === this.ws) this.lastError = this.lastError || `cannot reach ${url}${hint}`;
      };
      clearTimeout(this.connectTimer);
      this.connectTimer = setTimeout(() => {
        if (ws === this.ws && !this.connected) this.protocolError(`${url} did not finish the handshake within ${kConnectTimeoutMs / 1000} s`);
      }, kConnectTimeoutMs);
    }

    onClose(why) {
      const wasConnected = this.connected;
      this.connected = false;
      this.ws = null;
      clearInterval(this.pingTimer);
      for (const [, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(new NatsError("disconnected", "the connection was lost before the reply"));
      }
      this.pending.clear();
      if (this.closed) return;
      if (this.fatal) {
        this.closed = true;
        this.emit("status", "error", this.fatal);
        if (this.firstConnect) this.firstConnect.reject(new NatsError("auth", this.fatal));
        this.firstConnect = null;
        return;
      }
      this.lastError = "";
      this.serverIndex++;
      this.attempt = wasConnected ? 0 : this.attempt + 1;
      const delay = Math.min(250 * 2 ** Math.min(this.attempt, 5), 5000) * (0.8 + Math.random() * 0.4);
      this.emit("status", "disconnected", `${why}; trying ${this.servers[this.serverIndex % this.servers.length]} in ${(delay / 1000).toFixed(1)} s`);
      this.reconnectTimer = setTimeout(() => this.open(), delay);
    }

    protocolError(why) {
      console.error("nats:", why);
      this.lastError = why;
      if (this.ws) this.ws.close();
    }

    send(bytes) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
    }
    sendLine(line) {
      this.send(encoder.encode(line + "\r\n"));
    }

    parse() {
      for (;;) {
        if (this.expect) {
          const need = this.expect.total + 2;
          if (this.buf.length < need) return;
          const body = this.buf.subarray(0, this.expect.total);
          const e = this.expect;
          const headerBytes = e.headerLen > 0 ? body.slice(0, e.headerLen) : null;
          const data = body.slice(e.headerLen);
          this.buf = this.buf.subarray(need);
          this.expect = null;
          this.deliver(new Msg(e.subject, e.sid, e.reply, headerBytes, data));
          continue;
        }
        const end = indexOfCrlf(this.buf, 0);
        if (end < 0) {
          if (this.buf.length > 1 << 20) throw new Error("protocol line too long");
          return;
        }
        const line = decoder.decode(this.buf.subarray(0, end));
        this.buf = this.buf.subarray(end + 2);
        this.control(line);
      }
    }

    control(line) {
      const sp = line.indexOf(" ");
      const op = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
      const rest = sp < 0 ? "" : line.slice(sp + 1);
      switch (op) {
        case "MSG": {
          const a = rest.trim().split(/\s+/);
          const [subject, sid] = a;
          const reply = a.length === 4 ? a[2] : "";
          this.expect = { subject, sid: Number(sid), reply, headerLen: 0, total: Number(a[a.length - 1]) };
          break;
        }
        case "HMSG": {
          const a = rest.trim().split(/\s+/);
          const [subject, sid] = a;
          const reply = a.length === 5 ? a[2] : "";
          this.expect = { subject, sid: Number(sid), reply, headerLen: Number(a[a.length - 2]), total: Number(a[a.length - 1]) };
          break;
        }
        case "PING":
          this.sendLine("PONG");
          break;
        case "PONG":
          this.outstandingPings = 0;
          if (!this.connected && this.ws) this.onConnected();
          break;
        case "INFO":
          this.onInfo(JSON.parse(rest));
          break;
        case "+OK":
          break;
        case "-ERR":
          this.onErr(rest.trim().replace(/^'|'$/g, ""));
          break;
        default:
          throw new Error(`unknown protocol line: ${line.slice(0, 40)}`);
      }
    }

    async onInfo(info) {
      this.info = info;
      if (this.connectSent) return;  // a later INFO (cluster changes) needs no answer
      this.connectSent = true;
      const ws = this.ws;
      const opts = { protocol: 1, headers: true, no_responders: true, verbose: false, pedantic: false,
                     lang: "javascript", version: "nodeha-web-1", name: this.name };
      if (this.key) {
        opts.nkey = this.key.publicKey;
        opts.sig = await this.key.sign(info.nonce || "");
      }
      if (ws !== this.ws) return;
      this.sendLine(`CONNECT ${JSON.stringify(opts)}`);
      this.sendLine("PING");
    }

    onConnected() {
      this.connected = true;
      this.attempt = 0;
      for (const sub of this.subs.values()) this.sendSub(sub);
      this.pingTimer = setInterval(() => {
        if (++this.outstandingPings > kMaxOutstandingPings) return this.protocolError("the server stopped answering pings");
        this.sendLine("PING");
      }, kPingEveryMs);
      this.emit("status", "connected", `connected to ${this.currentServer}`);
      if (this.firstConnect) {
        this.firstConnect.resolve();
        this.firstConnect = null;
      } else {
        this.emit("reconnect");
      }
    }

    onErr(message) {
      const lower = message.toLowerCase();
      const perm = /^permissions violation for (publish|subscription) to "?([^"\s]+)"?/i.exec(message);
      if (perm) {
        const kind = perm[1].toLowerCase(), subject = perm[2];
        const err = new NatsError("permission_denied", message);
        if (kind === "publish") {
          for (const [token, p] of this.pending) {
            if (p.subject !== subject) continue;
            clearTimeout(p.timer);
            this.pending.delete(token);
            p.reject(err);
          }
        } else {
          for (const sub of this.subs.values()) if (sub.subject === subject && sub.onError) sub.onError(err);
        }
        this.emit("permission", err, kind, subject);
        return;  // the connection stays open
      }
      if (lower.includes("authorization") || lower.includes("authentication")) this.fatal = `authorization violation (${message})`;
      this.emit("error", new NatsError("server", message));
      this.protocolError(message);  // the server closes after any other error; do not wait for it
    }

    deliver(msg) {
      const sub = this.subs.get(msg.sid);
      if (!sub) return;
      if (sub.max && ++sub.received >= sub.max) this.subs.delete(sub.sid);
      sub.callback(msg);
    }

    sendSub(sub) {
      this.sendLine(sub.queue ? `SUB ${sub.subject} ${sub.queue} ${sub.sid}` : `SUB ${sub.subject} ${sub.sid}`);
    }

    // callback(msg) for every message; onError(err) when the server refuses the subscription.
    subscribe(subject, callback, { queue = "", onError = null } = {}) {
      const sub = { sid: this.nextSid++, subject, queue, callback, onError, received: 0, max: 0 };
      this.subs.set(sub.sid, sub);
      if (this.connected) this.sendSub(sub);
      return {
        sid: sub.sid,
        unsubscribe: () => {
          if (!this.subs.delete(sub.sid)) return;
          if (this.connected) this.sendLine(`UNSUB ${sub.sid}`);
        },
      };
    }

    publish(subject, data = "", reply = "") {
      if (!this.connected) throw new NatsError("disconnected", "not connected");
      const payload = typeof data === "string" ? encoder.encode(data) : data;
      const head = encoder.encode(reply ? `PUB ${subject} ${reply} ${payload.length}\r\n` : `PUB ${subject} ${payload.length}\r\n`);
      const frame = new Uint8Array(head.length + payload.length + 2);
      frame.set(head);
      frame.set(payload, head.length);
      frame.set(CRLF, head.length + payload.length);
      this.send(frame);
    }

    newInbox() {
      return `${this.inboxPrefix}.${randomToken()}`;
    }

    // Resolves with the reply Msg; rejects with code no_responders, timeout, permission_denied or
    // disconnected.
    request(subject, data = "", { timeout = 5000 } = {}) {
      if (!this.respSub) {
        this.respBase = this.newInbox();
        this.respSub = this.subscribe(`${this.respBase}.*`, (msg) => {
          const token = msg.subject.slice(this.respBase.length + 1);
          const p = this.pending.get(token);
          if (!p) return;
          this.pending.delete(token);
          clearTimeout(p.timer);
          if (msg.status === 503) p.reject(new NatsError("no_responders", `nobody serves ${p.subject}: is a controller running?`));
          else p.resolve(msg);
        });
      }
      return new Promise((resolve, reject) => {
        const token = randomToken();
        const timer = setTimeout(() => {
          this.pending.delete(token);
          reject(new NatsError("timeout", `no reply on ${subject} within ${timeout / 1000} s`));
        }, timeout);
        this.pending.set(token, { subject, resolve, reject, timer });
        try {
          this.publish(subject, data, `${this.respBase}.${token}`);
        } catch (e) {
          clearTimeout(timer);
          this.pending.delete(token);
          reject(e);
        }
      });
    }

    close() {
      this.closed = true;
      clearTimeout(this.reconnectTimer);
      clearTimeout(this.connectTimer);
      clearInterval(this.pingTimer);
      if (this.ws) this.ws.close();
      this.ws = null;
      this.connected = false;
      this.emit("status", "disconnected", "closed");
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { NatsClient });
})();
