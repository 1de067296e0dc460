// What arrives from NATS: a message with its headers and status (HMSG's "NATS/1.0 503" is no
// responders, "100" a JetStream heartbeat or flow control request), and the client's errors.
// A classic script (modules do not load from file://): it adds its names to globalThis.nodeha.
"use strict";
(() => {
  const decoder = new TextDecoder();

  class NatsError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  class Msg {
    constructor(subject, sid, reply, headerBytes, data) {
      this.subject = subject;
      this.sid = sid;
      this.reply = reply;
      this.data = data;
      this.headers = new Map();
      this.status = 0;
      this.description = "";
      if (headerBytes) this.parseHeaders(decoder.decode(headerBytes));
    }
    parseHeaders(text) {
      const lines = text.split("\r\n");
      const first = lines.shift() || "";  // "NATS/1.0 100 Idle Heartbeat"
      const m = /^NATS\/1\.0(?:\s+(\d{3}))?(?:\s+(.*))?$/.exec(first);
      if (m && m[1]) {
        this.status = Number(m[1]);
        this.description = (m[2] || "").trim();
      }
      for (const line of lines) {
        const i = line.indexOf(":");
        if (i > 0) this.headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
    }
    header(name) {
      return this.headers.get(name.toLowerCase());
    }
    string() {
      return decoder.decode(this.data);
    }
    json() {
      return JSON.parse(this.string());
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { NatsError, Msg });
})();
