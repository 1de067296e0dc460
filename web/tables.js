// Paged, filtered tables keyed by id, rendered in batches: records change in a Map as messages
// arrive, and at most once a frame each dirty table puts its current page (100 rows) into the
// DOM, reusing the row of an id and touching only the cells whose text changed.
"use strict";
(() => {
  const kPageSize = 100;
  const collator = new Intl.Collator(undefined, { numeric: true });
  const dirty = new Set();
  let flushScheduled = false;

  function flush() {
    if (!flushScheduled) return;
    flushScheduled = false;
    const batch = [...dirty];
    dirty.clear();
    for (const fn of batch) {
      try {
        fn();
      } catch (e) {
        console.error("render:", e);
      }
    }
  }

  // Runs fn once in the next frame, however often it is asked for before then. A timer backs the
  // frame up: a hidden or headless page may get no frames.
  function scheduleRender(fn) {
    dirty.add(fn);
    if (flushScheduled) return;
    flushScheduled = true;
    requestAnimationFrame(flush);
    setTimeout(flush, 250);
  }

  function setCell(td, text, value) {
    const t = text === undefined || text === null ? "" : String(text);
    if (td.textContent !== t) td.textContent = t;
    const v = value === undefined ? t : String(value);
    if (td.dataset.value !== v) td.dataset.value = v;
  }

  class PagedTable {
    // columns: [{field, get(record, id) -> text, value?(record) -> data-value, num?}];
    // key: the row attribute (data-<key>); text(record, id): what the filter searches;
    // compare(a, b) over [id, record] pairs; onSelect(id) on a click.
    constructor({ name, key, columns, text, compare, onSelect, idColumn = true }) {
      this.table = document.getElementById(name);
      this.tbody = this.table.tBodies[0];
      this.filterInput = document.getElementById(`${name}-filter`);
      this.info = document.getElementById(`${name}-page-info`);
      this.prevButton = document.getElementById(`${name}-prev`);
      this.nextButton = document.getElementById(`${name}-next`);
      Object.assign(this, { key, columns, text, compare, onSelect, idColumn });
      this.records = new Map();
      this.rows = new Map();
      this.page = 0;
      this.filter = "";
      this.selected = "";
      this.render = this.render.bind(this);
      this.filterInput.addEventListener("input", () => {
        this.filter = this.filterInput.value.trim().toLowerCase();
        this.page = 0;
        this.changed();
      });
      this.sortColumn = -1;  // a header clicked: sort by that column's text; -1: `compare`
      this.sortDir = 1;
      this.table.tHead.addEventListener("click", (ev) => {
        const th = ev.target.closest("th");
        if (th) this.sortBy(th.cellIndex);
      });
      for (const th of this.table.tHead.rows[0].cells) th.title = "Sort by this column";
      this.prevButton.addEventListener("click", () => this.turn(-1));
      this.nextButton.addEventListener("click", () => this.turn(1));
      this.tbody.addEventListener("click", (ev) => {
        const tr = ev.target.closest("tr");
        if (tr && this.onSelect) this.select(tr.dataset[this.key]);
      });
      this.tbody.addEventListener("keydown", (ev) => {
        const tr = ev.target.closest("tr");
        if (tr && (ev.key === "Enter" || ev.key === " ") && this.onSelect) {
          ev.preventDefault();
          this.select(tr.dataset[this.key]);
        }
      });
      this.changed();
    }

    sortBy(index) {
      this.sortDir = index === this.sortColumn ? -this.sortDir : 1;
      this.sortColumn = index;
      for (const th of this.table.tHead.rows[0].cells)
        th.setAttribute("aria-sort", th.cellIndex === index ? (this.sortDir > 0 ? "ascending" : "descending") : "none");
      this.changed();
    }

    sortKey(index, id, record) {
      if (this.idColumn && index === 0) return id;
      const c = this.columns[index - (this.idColumn ? 1 : 0)];
      return c ? String(c.get(record, id) ?? "") : "";
    }

    select(id) {
      this.selected = id;
      this.onSelect(id);
      this.changed();
    }
    turn(delta) {
      this.page = Math.max(0, this.page + delta);
      this.changed();
    }
    changed() {
      scheduleRender(this.render);
    }
    set(id, record) {
      if (record === null) this.records.delete(id);
      else this.records.set(id, record);
      this.changed();
    }
    get(id) {
      return this.records.get(id);
    }
    clear() {
      this.records.clear();
      this.changed();
    }

    visible() {
      let list = [...this.records];
      if (this.filter) list = list.filter(([id, r]) => this.text(r, id).toLowerCase().includes(this.filter));
      if (this.sortColumn < 0) return list.sort(this.compare);
      const keyed = list.map((e) => [this.sortKey(this.sortColumn, e[0], e[1]), e]);
      keyed.sort((a, b) => this.sortDir * collator.compare(a[0], b[0]) || this.compare(a[1], b[1]));
      return keyed.map((k) => k[1]);
    }

    row(id) {
      let tr = this.rows.get(id);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset[this.key] = id;
        tr.tabIndex = 0;
        if (this.idColumn) {
          const th = document.createElement("th");
          th.scope = "row";
          th.textContent = id;
          tr.append(th);
        }
        for (const c of this.columns) {
          const td = document.createElement("td");
          td.dataset.field = c.field;
          if (c.num) td.className = "num";
          tr.append(td);
        }
        this.rows.set(id, tr);
      }
      return tr;
    }

    render() {
      const list = this.visible();
      const pages = Math.max(1, Math.ceil(list.length / kPageSize));
      if (this.page >= pages) this.page = pages - 1;
      const start = this.page * kPageSize;
      const shown = list.slice(start, start + kPageSize);
      const rows = shown.map(([id, r]) => {
        const tr = this.row(id);
        const cells = tr.querySelectorAll("td");
        this.columns.forEach((c, i) => setCell(cells[i], c.get(r, id), c.value ? c.value(r) : undefined));
        tr.classList.toggle("selected", id === this.selected);
        return tr;
      });
      const current = this.tbody.children;
      const same = rows.length === current.length && rows.every((tr, i) => current[i] === tr);
      if (!same) this.tbody.replaceChildren(...rows);
      // Rows of ids no longer shown are dropped, so memory follows the page, not the cluster.
      if (this.rows.size > 4 * kPageSize) {
        const keep = new Set(shown.map(([id]) => id));
        for (const id of this.rows.keys()) if (!keep.has(id)) this.rows.delete(id);
      }
      const total = list.length;
      this.info.textContent = total ? `${start + 1}-${start + shown.length} of ${total}` : "0-0 of 0";
      this.prevButton.disabled = this.page === 0;
      this.nextButton.disabled = this.page >= pages - 1;
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { PagedTable, scheduleRender, setCell, kPageSize });
})();
