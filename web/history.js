// A subject's history in a stream, read one message at a time with
// `$JS.API.STREAM.MSG.GET.<stream>` {"seq": N, "next_by_subj": subject}: the operator
// identities may read the events stream this way but may not make consumers on it (their
// delivery subject would be theirs to choose). After the first walk, `poke()` (on each live
// event of the subject) reads on from the last sequence, so nothing is shown twice or missed.
"use strict";
(() => {
  const kMaxReads = 5000;  // one walk's bound: a node with more events shows its oldest 5000 first
  const kTimeoutMs = 5000;
  const kPollMs = 5000;    // a backstop for live events lost to a reconnect

  function base64Text(b64) {
    const bytes = Uint8Array.from(atob(b64 || ""), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  class HistoryReader {
    // onEvent(event, timeMs) in stream order; onDone() after the first walk; onError(err) when
    // the server refuses (then it stops).
    constructor(nc, { stream, subject, onEvent, onDone = () => {}, onError = () => {} }) {
      Object.assign(this, { nc, stream, subject, onEvent, onDone, onError });
      this.nextSeq = 1;
      this.stopped = false;
      this.chain = Promise.resolve();
    }

    start() {
      this.timer = setInterval(() => this.poke(), kPollMs);
      this.poke();
    }

    stop() {
      this.stopped = true;
      clearInterval(this.timer);
    }

    // Reads what is new since the last read; calls are queued, never run side by side. A lost
    // connection or a slow reply is retried by the next poke; a refusal ends the reading.
    poke() {
      this.chain = this.chain
        .then(() => this.readOn())
        .then(() => {
          if (this.done || this.stopped || this.failed) return;
          this.done = true;
          this.onDone();
        })
        .catch((e) => {
          if (e.code === "disconnected" || e.code === "timeout") return;
          this.failed = true;
          clearInterval(this.timer);
          this.onError(e);
        });
      return this.chain;
    }

    async readOn() {
      for (let reads = 0; reads < kMaxReads && !this.stopped && !this.failed; reads++) {
        const reply = (await this.nc.request(`$JS.API.STREAM.MSG.GET.${this.stream}`,
                                             JSON.stringify({ seq: this.nextSeq, next_by_subj: this.subject }),
                                             { timeout: kTimeoutMs })).json();
        if (reply.error) {
          if (reply.error.code === 404) return;  // no message at or after nextSeq: up to date
          throw Object.assign(new Error(`${this.stream}: ${reply.error.description}`), { code: "jetstream" });
        }
        const m = reply.message || {};
        if (!(m.seq >= this.nextSeq)) throw new Error(`${this.stream}: a reply without a sequence`);
        this.nextSeq = m.seq + 1;
        let event;
        try {
          event = JSON.parse(base64Text(m.data));
        } catch {
          continue;  // not JSON: no event we can show
        }
        if (!this.stopped) this.onEvent(event, Date.parse(m.time) || 0);
      }
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { HistoryReader });
})();
