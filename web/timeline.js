// A subject's event timeline in the page (a node's or a VM's history): read from the events
// stream (history.js), newest first, and kept live: each live event of the subject makes the
// reader read on. An identity that may not read the stream gets the live events only, and the
// page says why.
"use strict";
(() => {
  const { HistoryReader, describeEvent, el, scheduleRender } = globalThis.nodeha;
  const kMaxItems = 500;

  const timeText = (ms) => (ms ? new Date(ms).toLocaleString() : "");
  const eventTime = (event, fallbackMs) => (typeof event.time === "number" ? event.time : fallbackMs);

  class Timeline {
    constructor(nc, { stream, list, info }) {
      Object.assign(this, { nc, stream });
      this.list = document.getElementById(list);
      this.info = document.getElementById(info);
      this.subject = "";
      this.items = [];
      this.reader = null;
      this.fromStream = false;
      this.render = this.render.bind(this);
    }

    show(subject) {
      if (this.reader) this.reader.stop();
      this.subject = subject;
      this.items = [];
      this.list.replaceChildren();
      this.info.textContent = "Loading…";
      this.fromStream = true;
      this.reader = new HistoryReader(this.nc, {
        stream: this.stream, subject,
        onEvent: (event, timeMs) => this.add(subject, event, eventTime(event, timeMs)),
        onDone: () => scheduleRender(this.render),
        onError: (e) => {
          this.fromStream = false;
          this.info.textContent = `The stored history cannot be read (${e.message}); showing live events only.`;
        },
      });
      this.reader.start();
    }

    // Every live event (the page's evt.> subscription) passes here.
    onLive(subject, event) {
      if (!this.subject || subject !== this.subject) return;
      if (this.fromStream) this.reader.poke();  // read it from the stream, with its place there
      else this.add(subject, event, eventTime(event, Date.now()));
    }

    add(subject, event, timeMs) {
      if (subject !== this.subject) return;
      this.items.push({ event, timeMs });
      if (this.items.length > kMaxItems) this.items.shift();
      scheduleRender(this.render);
    }

    render() {
      const items = this.items.slice().reverse().map(({ event, timeMs }) => {
        const li = el("li", { "data-event": event.event || "" });
        // The whole evidence on hover: the text has its summary.
        if (event.evidence && typeof event.evidence === "object") li.title = JSON.stringify(event.evidence, null, 1);
        li.append(el("time", { datetime: new Date(timeMs).toISOString() }, timeText(timeMs)), describeEvent(event));
        return li;
      });
      this.list.replaceChildren(...items);
      if (this.fromStream) this.info.textContent = items.length ? "" : this.reader && this.reader.done ? "No events yet." : "Loading…";
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { Timeline });
})();
