// The views over the cluster's records: nodes, VMs, tasks (with a task's steps), the live event
// list and the alerts. Records come from the KV watches
// (app.js); these functions only keep the maps and schedule the renders.
"use strict";
(() => {
  const { PagedTable, scheduleRender } = globalThis.nodeha;
  const kMaxEvents = 100;
  const kFinishedSteps = new Set(["succeeded", "failed", "skipped", "cancelled"]);

  const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const el = (tag, attrs = {}, text = "") => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text) e.textContent = text;
    return e;
  };

  function timeText(ms) {
    return ms ? new Date(ms).toLocaleString() : "";
  }

  function bytesText(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function lockText(lock) {
    if (!lock || typeof lock !== "object") return "";
    return `${lock.kind || "task"} ${lock.task || ""}`.trim();
  }

  // A state change and its evidence (who decided, on what) when the event carries one; else a
  // sentence from the event's own fields.
  function describeEvent(e) {
    if (!e || typeof e !== "object") return String(e);
    const ev = e.evidence;
    if (ev && typeof ev === "object" && ev.summary) {
      const change = e.from !== undefined && e.to !== undefined && typeof e.to !== "object" ? `${e.event} ${e.from || "(none)"} → ${e.to || "(none)"}: ` : "";
      const by = ev.by && !String(ev.summary).includes(ev.by) ? ` (decided by ${ev.by})` : "";
      return `${change}${ev.summary}${by}`;
    }
    switch (e.event) {
      case "monitor": return `monitor ${e.from} → ${e.to}${e.reason ? `: ${e.reason}` : ""}`;
      case "management": return `management ${e.from} → ${e.to}`;
      case "reason": return `reason while ${e.state}: ${e.from || "(none)"} → ${e.to || "(none)"}`;
      case "registered": return `registered, ${e.monitor}${e.reason ? `: ${e.reason}` : ""}`;
      case "rebooted": return `rebooted (boot id ${e.old_boot_id} → ${e.new_boot_id})`;
      case "created": case "step": case "progress": case "resumed": case "finished": case "reported":
        if (e.kind && e.id) return `task ${e.id} (${e.kind} of ${e.node}): ${e.event}, ${e.state}${Array.isArray(e.steps) || e.step_counts ? `, ${taskProgress(e)} steps done` : ""}${e.error ? `: ${e.error}` : ""}`;
      // fall through: a VM event of the same name
      default: {
        const rest = Object.fromEntries(Object.entries(e).filter(([k, v]) => !["event", "steps", "params", "evidence", "time", "vm"].includes(k) && v !== "" && v !== null));
        return `${e.event || "event"} ${JSON.stringify(rest)}`;
      }
    }
  }

  // "done/all": from the head's counts (steps kept in chunks: docs/node-operations.md), or from the
  // steps of a record written before chunks.
  function taskProgress(t) {
    if (t.step_counts && typeof t.step_counts === "object" && typeof t.step_count === "number") {
      const done = Object.entries(t.step_counts).reduce((n, [state, k]) => n + (kFinishedSteps.has(state) && typeof k === "number" ? k : 0), 0);
      return `${done}/${t.step_count}`;
    }
    const steps = Array.isArray(t.steps) ? t.steps : [];
    return `${steps.filter((s) => kFinishedSteps.has(s.state)).length}/${steps.length}`;
  }

  // Steps shown of a selected task, at most: its page lists them, a longer task says how many more.
  const kShownSteps = 500;

  class Views {
    // onTaskSelected(id): the page watches the chunks of that task's steps (putTaskChunk).
    constructor({ onNodeSelected, onVmSelected, onTaskSelected }) {
      this.taskChunks = new Map();  // chunk index -> steps, of the selected task
      this.heartbeat = new Map();  // node -> {age_s, at}: from cmd.node.list
      this.vmCount = new Map();    // node -> VMs recorded on it
      this.vmNode = new Map();     // uuid -> node, to keep vmCount right as VMs move
      this.selectedTask = "";
      this.nodes = new PagedTable({
        name: "nodes", key: "node",
        columns: [
          { field: "management", get: (r) => r.management || "enabled" },
          { field: "monitor", get: (r) => r.monitor || "" },
          { field: "reason", get: (r) => r.reason || "" },
          { field: "lock", get: (r) => lockText(r.lock) },
          { field: "heartbeat", get: (r, id) => this.heartbeatAge(r, id), num: true },
          { field: "vms", get: (r, id) => this.vmCount.get(id) || 0, num: true },
        ],
        text: (r, id) => `${id} ${r.management || "enabled"} ${r.monitor} ${r.reason} ${lockText(r.lock)}`,
        compare: ([a], [b]) => byText(a, b),
        onSelect: (id) => onNodeSelected(id),
      });
      this.vms = new PagedTable({
        name: "vms", key: "vm",
        columns: [
          { field: "name", get: (r) => r.name || "" },
          { field: "node", get: (r) => r.node || "" },
          { field: "state", get: (r) => r.state || "" },
          { field: "generation", get: (r) => r.generation ?? "", num: true },
        ],
        text: (r, id) => `${id} ${r.name || ""} ${r.node || ""}`,
        compare: ([ia, a], [ib, b]) => byText(a.node || "", b.node || "") || byText(a.name || "", b.name || "") || byText(ia, ib),
        onSelect: (id) => onVmSelected(id),
      });
      this.tasks = new PagedTable({
        name: "tasks", key: "task",
        columns: [
          { field: "kind", get: (r) => r.kind || "" },
          { field: "node", get: (r) => r.node || "" },
          { field: "state", get: (r) => r.state || "" },
          { field: "progress", get: (r) => taskProgress(r), num: true },
          { field: "updated", get: (r) => timeText(r.updated || r.created) },
        ],
        text: (r, id) => `${id} ${r.kind} ${r.node} ${r.state}`,
        compare: ([ia, a], [ib, b]) => (b.created || 0) - (a.created || 0) || byText(ia, ib),
        onSelect: (id) => {
          if (id !== this.selectedTask) this.taskChunks.clear();
          this.selectedTask = id;
          if (onTaskSelected) onTaskSelected(id);
          scheduleRender(this.renderTaskDetail);
        },
      });
      this.renderTaskDetail = this.renderTaskDetail.bind(this);
      // Ages grow between polls: the visible page is redrawn every second.
      setInterval(() => this.nodes.changed(), 1000);
    }

    heartbeatAge(record, id) {
      const hb = this.heartbeat.get(id);
      if (hb && typeof hb.age_s === "number") {
        // The age as the controller last said, grown by the time since: a dead node's age must
        // not stand still between polls (a live one's falls back at the next poll).
        return (hb.age_s + (Date.now() - hb.at) / 1000).toFixed(1);
      }
      if (record.last_heartbeat) return ((Date.now() - record.last_heartbeat) / 1000).toFixed(0);
      return "";
    }

    setHeartbeats(list) {
      const at = Date.now();
      for (const n of list) if (n && n.node) this.heartbeat.set(n.node, { age_s: n.heartbeat_age_s, at });
      this.nodes.changed();
    }

    putNode(id, record) {
      this.nodes.set(id, record);
      if (this.onNodeChanged) this.onNodeChanged(id);
    }

    putVm(uuid, record) {
      const before = this.vmNode.get(uuid);
      const after = record ? record.node || "" : undefined;
      if (before !== after) {
        if (before !== undefined) this.vmCount.set(before, (this.vmCount.get(before) || 1) - 1);
        if (after !== undefined) this.vmCount.set(after, (this.vmCount.get(after) || 0) + 1);
        if (after === undefined) this.vmNode.delete(uuid);
        else this.vmNode.set(uuid, after);
        this.nodes.changed();
        if (this.onNodeChanged) for (const node of [before, after]) if (node !== undefined) this.onNodeChanged(node);
      }
      this.vms.set(uuid, record);
      if (this.onVmChanged) this.onVmChanged(uuid);
    }

    putTask(id, record) {
      this.tasks.set(id, record);
      if (id === this.selectedTask) scheduleRender(this.renderTaskDetail);
    }

    // A chunk of the selected task's steps (key "<task id>.<k>", value {task, chunk, steps}).
    putTaskChunk(key, value) {
      const [id, k] = key.split(".");
      if (id !== this.selectedTask || !value || !Array.isArray(value.steps)) return;
      this.taskChunks.set(Number(k), value.steps);
      scheduleRender(this.renderTaskDetail);
    }

    // The selected task's steps: inline in a record written before chunks, else from its chunks.
    selectedSteps(t) {
      if (Array.isArray(t.steps)) return t.steps;
      return [...this.taskChunks.keys()].sort((a, b) => a - b).flatMap((k) => this.taskChunks.get(k));
    }

    renderTaskDetail() {
      const box = document.getElementById("task-detail");
      const t = this.tasks.get(this.selectedTask);
      if (!t) {
        box.hidden = true;
        return;
      }
      box.hidden = false;
      box.dataset.task = this.selectedTask;
      const list = el("ul");
      const steps = this.selectedSteps(t);
      for (const s of steps.slice(0, kShownSteps)) {
        const li = el("li", { "data-step": s.vm || "", "data-state": s.state || "" });
        let text = `${s.name || s.vm}${s.target ? ` → ${s.target}` : ""}: ${s.state}`;
        const p = s.progress;
        if (s.state === "running" && p && p.data_total > 0)
          text += ` ${Math.round((100 * p.data_processed) / p.data_total)} % (${bytesText(p.data_processed)} of ${bytesText(p.data_total)})`;
        if (s.state === "succeeded" && s.duration_ms) text += ` in ${(s.duration_ms / 1000).toFixed(1)} s`;
        if (s.reason) text += ` (${s.reason})`;
        if (s.error) text += ` (${s.error})`;
        li.textContent = text;
        list.append(li);
      }
      const head = el("h3", {}, `Task ${this.selectedTask}: ${t.kind} of ${t.node}, ${t.state}, ${taskProgress(t)} steps done`);
      const parts = [head];
      if (t.error) parts.push(el("p", {}, t.error));
      parts.push(list);
      if (steps.length > kShownSteps) parts.push(el("p", {}, `and ${steps.length - kShownSteps} more steps (\`nodeha task show ${this.selectedTask}\` lists them all)`));
      box.replaceChildren(...parts);
    }

    addLiveEvent(subject, event) {
      this.events ??= [];
      this.events.unshift({ subject, event, at: Date.now() });
      if (this.events.length > kMaxEvents) this.events.pop();
      scheduleRender(this.renderEvents ??= () => {
        const items = this.events.map(({ subject, event, at }) => {
          const li = el("li", { "data-event": event.event || "", "data-subject": subject });
          li.append(el("time", {}, new Date(at).toLocaleTimeString()), `${subject.split(".").slice(2).join(".")}: ${describeEvent(event)}`);
          return li;
        });
        document.getElementById("events").replaceChildren(...items);
      });
    }

    // Alertmanager's v2 list (an array) or v1's {data: [...]}: the firing ones, one item each.
    setAlerts(payload) {
      const list = Array.isArray(payload) ? payload : payload && Array.isArray(payload.data) ? payload.data : [];
      const items = list
        .filter((a) => !a.status || !a.status.state || a.status.state === "active")
        .map((a) => {
          const labels = a.labels || {};
          const ann = a.annotations || {};
          const name = labels.alertname || "alert";
          const text = [name, labels.node ? `node ${labels.node}` : "", labels.severity ? `(${labels.severity})` : "",
                        ann.summary || ann.description || ""].filter(Boolean).join(" ");
          return el("li", { "data-alert": name, "data-node": labels.node || "" }, text);
        });
      document.getElementById("alerts").replaceChildren(...items);
      document.getElementById("alerts-info").textContent = items.length ? "" : "No alert is firing.";
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { Views, describeEvent, taskProgress, el });
})();
