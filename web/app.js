// The page's glue: reads config.json and the location hash, logs in (nkey or no auth), finds the
// identity's role by asking the server, starts the KV watches, the polls and the live events,
// and opens a node's detail with its history.
"use strict";
(() => {
  const { NatsClient, Timeline, watchBucket, Views, Actions, el, scheduleRender } = globalThis.nodeha;
  const kNodeListEveryMs = 1000;
  const kNodeListBigEveryMs = 10000;
  const kBigReplyBytes = 256 * 1024;
  const kAlertsEveryMs = 5000;
  const kRoleRetryMs = 5000;

  let config = { servers: [], prefix: "nodeha", alerts: false };
  let nc = null;
  let views = null;
  let actions = null;
  let role = "";
  let nodeTimeline = null;
  let vmTimeline = null;
  const watches = [];

  const $ = (id) => document.getElementById(id);

  function setStatus(state, text) {
    const s = $("status");
    s.dataset.state = state;
    s.textContent = text;
    // The login form goes once connected and comes back only when connecting failed for good.
    if (state === "connected") document.body.classList.add("connected");
    if (state === "error") document.body.classList.remove("connected");
  }

  async function loadConfig() {
    try {
      const r = await fetch("config.json", { cache: "no-store" });
      if (r.ok) config = { ...config, ...(await r.json()) };
    } catch {
      // served as a file: the hash or the form gives the servers
    }
  }

  // Reads #servers=...&user=...&seed=...&connect=1 and takes the seed out of the address bar.
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const out = Object.fromEntries(params);
    if (params.has("seed")) {
      params.delete("seed");
      history.replaceState(null, "", `${location.pathname}${location.search}#${params}`);
    }
    return out;
  }

  // As the host names it: the prefix upper-cased, dots as underscores.
  function eventsStream() {
    return `${config.prefix.toUpperCase().replace(/\./g, "_")}_EVENTS`;
  }

  function command(op, body, timeout = 5000) {
    return nc.request(`${config.prefix}.cmd.${op}`, JSON.stringify(body), { timeout }).then((m) => m.json());
  }

  // An admin's request on node.disable without a node is refused by the controller
  // (missing_field) and changes nothing; a viewer's is refused by the server (-ERR).
  async function detectRole() {
    try {
      await command("node.disable", {}, 3000);
      setRole("admin");
    } catch (e) {
      if (e.code === "permission_denied") return setRole("viewer");
      $("role-info").textContent = `Role not known yet (${e.message}); asking again.`;
      setTimeout(detectRole, kRoleRetryMs);
    }
  }

  function setRole(r) {
    role = r;
    document.body.dataset.role = r;
    $("role-info").textContent = r === "admin" ? "Signed in as admin: actions are enabled." : "Signed in as viewer: read only.";
    const node = $("node-detail").dataset.node;
    if (node) showActions(node);
  }

  function showActions(node) {
    if (role !== "admin") {
      $("node-actions").replaceChildren();
      return;
    }
    actions ??= new Actions({ command });
    actions.show(node);
  }

  function renderFacts(node) {
    const r = views.nodes.get(node) || {};
    const facts = [
      ["Management", r.management || "enabled"], ["Monitor", r.monitor || ""], ["Reason", r.reason || ""],
      ["Lock", r.lock ? `${r.lock.kind} ${r.lock.task} by ${r.lock.owner || "?"}` : "none"],
      ["Boot id", r.boot_id || ""], ["VMs", String(views.vmCount.get(node) || 0)],
    ];
    if (r.recovery) facts.push(["Recovery", `${r.recovery.state}: ${r.recovery.reason || ""}`]);
    if (r.stranded) facts.push(["Stranded VMs", String(r.stranded)]);
    $("node-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function renderVmFacts(uuid) {
    const r = views.vms.get(uuid) || {};
    $("vm-detail-h").textContent = `VM ${r.name || uuid}`;
    const facts = [
      ["UUID", uuid], ["Node", r.node || ""], ["State", r.state || ""], ["Desired", r.desired || ""],
      ["Generation", String(r.generation ?? "")], ["Automatic recovery", r.ha === undefined || r.ha === "off" ? "off" : `priority ${r.ha}`],
      ["Resources", r.vcpus ? `${r.vcpus} vCPU, ${r.memory_mib} MiB, ${r.disk_gib} GiB${r.local_disk ? ", local disk" : ""}` : ""],
    ];
    if (r.stranded) facts.push(["Stranded", `on ${r.stranded.node}: ${r.stranded.reason || ""}`]);
    $("vm-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  function showVm(uuid) {
    const box = $("vm-detail");
    box.hidden = false;
    box.dataset.vm = uuid;
    renderVmFacts(uuid);
    vmTimeline.show(`${config.prefix}.evt.vm.${uuid}`);
  }

  function showNode(node) {
    const box = $("node-detail");
    box.hidden = false;
    box.dataset.node = node;
    $("node-detail-h").textContent = `Node ${node}`;
    $("action-result").textContent = "";
    delete $("action-result").dataset.ok;
    delete $("action-result").dataset.code;
    renderFacts(node);
    showActions(node);
    nodeTimeline.show(`${config.prefix}.evt.node.${node}`);
  }

  // node.list comes in pages (a page that was cut names its last node in `next`, sent back as
  // `after`). Once the nodes bucket is watched, only the ages are asked (`ages`: each node's id
  // and heartbeat_age_s, not its whole record); a big cluster's list is polled less often.
  async function pollNodeList() {
    let every = kNodeListEveryMs;
    try {
      const nodes = [];
      const agesOnly = Boolean(watches[0] && watches[0].caughtUp);
      let bytes = 0;
      for (let after = ""; ;) {
        const request = agesOnly ? { ages: true } : {};
        if (after) request.after = after;
        const body = JSON.stringify(request);
        const msg = await nc.request(`${config.prefix}.cmd.node.list`, body, { timeout: 5000 });
        bytes += msg.data.length;
        const reply = msg.json();
        if (!reply.ok || !reply.result || !Array.isArray(reply.result.nodes)) throw new Error(reply.error ? reply.error.message : "not a node list");
        nodes.push(...reply.result.nodes);
        const next = reply.result.next;
        if (typeof next !== "string" || next <= after) break;
        after = next;
      }
      if (bytes > kBigReplyBytes) every = kNodeListBigEveryMs;
      views.setHeartbeats(nodes);
      // The watch is the live source; the list fills in when the bucket cannot be watched.
      if (!agesOnly) for (const n of nodes) if (n.node && !views.nodes.get(n.node)) views.putNode(n.node, n);
    } catch (e) {
      console.warn("node.list:", e.message);
    }
    setTimeout(pollNodeList, every);
  }

  async function pollAlerts() {
    try {
      const r = await fetch("/api/alerts", { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      views.setAlerts(await r.json());
    } catch (e) {
      $("alerts-info").textContent = `Alerts cannot be read: ${e.message}`;
    }
  }

  // The selected task's steps, kept in chunks in bucket task_steps under "<task id>.<k>": watched
  // while it is selected, the previous task's watch stopped.
  let stepsWatch = null;
  function watchTaskSteps(id) {
    if (stepsWatch) stepsWatch.stop();
    stepsWatch = watchBucket(nc, "task_steps", {
      keys: `${id}.>`, onPut: (k, v) => views.putTaskChunk(k, v),
      onError: (e) => console.warn("watch task_steps:", e.message),
    });
  }

  function start() {
    views = new Views({ onNodeSelected: showNode, onVmSelected: showVm, onTaskSelected: watchTaskSteps });
    nodeTimeline = new Timeline(nc, { stream: eventsStream(), list: "history", info: "history-info" });
    vmTimeline = new Timeline(nc, { stream: eventsStream(), list: "vm-history", info: "vm-history-info" });
    const renderSelectedVm = () => renderVmFacts($("vm-detail").dataset.vm);
    views.onVmChanged = (uuid) => {
      if ($("vm-detail").dataset.vm === uuid) scheduleRender(renderSelectedVm);
    };
    const renderSelectedFacts = () => renderFacts($("node-detail").dataset.node);
    views.onNodeChanged = (id) => {
      if ($("node-detail").dataset.node === id) scheduleRender(renderSelectedFacts);
    };
    const bucketError = (bucket) => (e) => {
      console.warn(`watch ${bucket}:`, e.message);
      $("notice").textContent = `Cannot watch ${bucket}: ${e.message}`;
    };
    const caughtUp = () => {
      if (watches.every((w) => w.caughtUp)) $("notice").textContent = "";
    };
    watches.push(watchBucket(nc, "nodes", { onPut: (k, v) => views.putNode(k, v), onError: bucketError("nodes"), onCaughtUp: caughtUp }));
    watches.push(watchBucket(nc, "vms", { onPut: (k, v) => views.putVm(k, v), onError: bucketError("vms"), onCaughtUp: caughtUp }));
    watches.push(watchBucket(nc, "tasks", { onPut: (k, v) => views.putTask(k, v), onError: bucketError("tasks"), onCaughtUp: caughtUp }));
    nc.subscribe(`${config.prefix}.evt.>`, (msg) => {
      let event;
      try {
        event = msg.json();
      } catch {
        return;
      }
      views.addLiveEvent(msg.subject, event);
      nodeTimeline.onLive(msg.subject, event);
      vmTimeline.onLive(msg.subject, event);
    });
    pollNodeList();
    if (config.alerts) {
      $("alerts-section").hidden = false;
      pollAlerts();
      setInterval(pollAlerts, kAlertsEveryMs);
    }
    detectRole();
  }

  async function connect(servers, user, seed) {
    if (nc) return;
    try {
      nc = new NatsClient({ servers, user, seed });
    } catch (e) {
      nc = null;
      return setStatus("error", e.message);
    }
    nc.on("status", setStatus);
    nc.on("permission", (err, kind, subject) => {
      // The seed decides who we are; a name that is not the seed's gets no inbox of its own.
      if (kind === "subscription" && subject.startsWith(`${nc.inboxPrefix}.`))
        setStatus("error", `Signed in, but this identity may not use the inbox ${nc.inboxPrefix}: is "${user}" the name that goes with this seed?`);
    });
    try {
      await nc.connect();
    } catch (e) {
      nc.close();
      nc = null;
      return setStatus("error", `Cannot connect: ${e.message}`);
    }
    start();
  }

  async function main() {
    const hash = readHash();
    await loadConfig();
    const form = $("login");
    const servers = hash.servers || (config.servers || []).join(",");
    form.elements.servers.value = servers;
    form.elements.user.value = hash.user || "";
    form.elements.seed.value = "";
    if (hash.prefix) config.prefix = hash.prefix;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const seed = form.elements.seed.value.trim();
      form.elements.seed.value = "";
      const list = form.elements.servers.value.split(",").map((s) => s.trim()).filter(Boolean);
      connect(list, form.elements.user.value.trim(), seed);
    });
    if (hash.connect === "1") connect(servers.split(",").map((s) => s.trim()).filter(Boolean), hash.user || "", hash.seed || "");
  }

  main();
})();
