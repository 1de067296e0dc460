// JetStream ordered push consumers over the JetStream API, as the identities of docs/security.md
// may use them: created on `$JS.API.CONSUMER.CREATE.<stream>`, delivered to our own inbox, no
// acks, flow control and idle heartbeats answered here. A gap in the consumer sequence, a missed
// heartbeat or a reconnect makes a new consumer that starts after the last stream sequence seen,
// so the caller sees every message once, in order.
// A classic script (modules do not load from file://): it adds its names to globalThis.nodeha.
"use strict";
(() => {
  const kIdleHeartbeatMs = 5000;
  const kNanosPerMs = 1000000;

  function ackMeta(reply) {
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (9 tokens), or with
    // <domain>.<account hash> after $JS.ACK and a random token at the end (12 tokens).
    const t = reply.split(".");
    if (t[0] !== "$JS" || t[1] !== "ACK") return null;
    const off = t.length === 9 ? 2 : t.length >= 11 ? 4 : -1;
    if (off < 0) return null;
    return { stream: t[off], sseq: Number(t[off + 3]), cseq: Number(t[off + 4]),
             time: Math.floor(Number(t[off + 5]) / kNanosPerMs), pending: Number(t[off + 6]) };
  }

  class OrderedConsumer {
    // deliver: "last_per_subject" (KV state then live) or "all" (a stream's history then live).
    // onMessage(msg, meta{sseq, time, pending}); onCaughtUp() once the backlog is in;
    // onError(err) on a refusal (permissions, no such stream); it keeps retrying unless stopped.
    constructor(nc, { stream, filter, deliver = "last_per_subject", onMessage, onCaughtUp = () => {}, onError = () => {} }) {
      Object.assign(this, { nc, stream, filter, deliver, onMessage, onCaughtUp, onError });
      this.sseq = 0;
      this.cseq = 0;
      this.caughtUp = false;
      this.stopped = false;
      this.sub = null;
      this.consumerName = "";
      this.onReconnect = () => this.reset("reconnected");
      nc.on("reconnect", this.onReconnect);
    }

    start() {
      this.create();
      this.watchdog = setInterval(() => {
        if (this.sub && Date.now() - this.lastSeen > 3 * kIdleHeartbeatMs) this.reset("missed heartbeats");
      }, kIdleHeartbeatMs);
    }

    stop() {
      this.stopped = true;
      this.nc.off("reconnect", this.onReconnect);
      clearInterval(this.watchdog);
      clearTimeout(this.retryTimer);
      this.drop();
    }

    drop() {
      if (this.sub) this.sub.unsubscribe();
      this.sub = null;
      if (this.consumerName && this.nc.connected) {
        this.nc.request(`$JS.API.CONSUMER.DELETE.${this.stream}.${this.consumerName}`, "", { timeout: 2000 }).catch(() => {});
      }
      this.consumerName = "";
    }

    reset(why) {
      if (this.stopped) return;
      console.info(`consumer on ${this.stream} (${this.filter}) restarts: ${why}`);
      this.drop();
      clearTimeout(this.retryTimer);
      this.create();
    }

    async create() {
      if (this.stopped || !this.nc.connected) return;
      const inbox = this.nc.newInbox();
      this.cseq = 0;
      this.lastSeen = Date.now();
      const sub = this.nc.subscribe(inbox, (msg) => this.handle(msg, sub), { onError: (e) => this.onError(e) });
      this.sub = sub;
      const config = {
        deliver_subject: inbox, filter_subject: this.filter, ack_policy: "none", max_deliver: 1,
        flow_control: true, idle_heartbeat: kIdleHeartbeatMs * kNanosPerMs, mem_storage: true, num_replicas: 1,
        // An identity may lack the right to delete its consumers: the server drops them itself
        // a minute after we stop listening.
        inactive_threshold: 60 * 1000 * kNanosPerMs, replay_policy: "instant",
      };
      if (this.sseq > 0) {
        config.deliver_policy = "by_start_sequence";
        config.opt_start_seq = this.sseq + 1;
      } else {
        config.deliver_policy = this.deliver;
      }
      try {
        const reply = (await this.nc.request(`$JS.API.CONSUMER.CREATE.${this.stream}`,
                                             JSON.stringify({ stream_name: this.stream, config }), { timeout: 5000 })).json();
        if (reply.error) throw Object.assign(new Error(`${this.stream}: ${reply.error.description} (${reply.error.err_code || reply.error.code})`),
                                             { code: "jetstream" });
        if (sub !== this.sub) return;
        this.consumerName = reply.name;
        if (!this.caughtUp && reply.num_pending === 0 && this.cseq === 0) this.markCaughtUp();
      } catch (e) {
        if (sub !== this.sub) return;
        sub.unsubscribe();
        this.sub = null;
        this.onError(e);
        if (!this.stopped) this.retryTimer = setTimeout(() => this.create(), 5000);
      }
    }

    markCaughtUp() {
      this.caughtUp = true;
      this.onCaughtUp();
    }

    handle(msg, sub) {
      if (sub !== this.sub) return;
      this.lastSeen = Date.now();
      if (msg.status === 100) {
        if (msg.reply) this.nc.publish(msg.reply, "");  // flow control request
        const stalled = msg.header("Nats-Consumer-Stalled");
        if (stalled) this.nc.publish(stalled, "");
        const last = msg.header("Nats-Last-Consumer");
        if (last !== undefined && Number(last) !== this.cseq) this.reset("heartbeat shows a gap");
        return;
      }
      if (msg.status) return;  // other statuses carry no data
      const meta = ackMeta(msg.reply);
      if (!meta) return;
      if (meta.cseq !== this.cseq + 1) return this.reset(`gap: consumer sequence ${meta.cseq} after ${this.cseq}`);
      this.cseq = meta.cseq;
      this.sseq = meta.sseq;
      this.onMessage(msg, meta);
      if (!this.caughtUp && meta.pending === 0) this.markCaughtUp();
    }
  }

  // A KV bucket's keys as they change: onPut(key, value-or-null-on-delete).
  // `keys`: the keys watched, a subject pattern ("<task id>.>"); every key when absent.
  function watchBucket(nc, bucket, { onPut, onCaughtUp, onError, keys = ">" }) {
    const prefix = `$KV.${bucket}.`;
    const c = new OrderedConsumer(nc, {
      stream: `KV_${bucket}`, filter: `${prefix}${keys}`, deliver: "last_per_subject", onCaughtUp, onError,
      onMessage: (msg) => {
        const key = msg.subject.slice(prefix.length);
        const op = msg.header("KV-Operation");
        if (op === "DEL" || op === "PURGE") return onPut(key, null);
        let value;
        try {
          value = msg.json();
        } catch {
          return;  // a record that is not JSON is no record we can show
        }
        onPut(key, value);
      },
    });
    c.start();
    return c;
  }

  Object.assign((globalThis.nodeha ??= {}), { OrderedConsumer, watchBucket });
})();
