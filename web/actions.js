// Admin actions on the selected node (built only for an identity the server treats as admin):
// enable and disable after a confirmation; drain, migrate, rebuild and maintenance after a dry
// run whose plan is shown and confirmed, then sent with its plan id so the server runs exactly
// that plan or refuses (plan_drifted and what changed).
"use strict";
(() => {
  const { el } = globalThis.nodeha;
  const kSimple = ["enable", "disable"];
  const kPlanned = ["drain", "migrate", "rebuild", "maintenance"];
  const kWithTarget = new Set(["migrate", "rebuild"]);
  const kCommandTimeoutMs = 15000;

  function confirmDialog(text) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  function planArea() {
    const area = el("div", { id: "plan-area", hidden: "" });
    const table = el("table", { id: "plan" });
    const head = el("tr");
    for (const h of ["VM", "Name", "Action", "Target or why skipped"]) head.append(el("th", { scope: "col" }, h));
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    area.append(el("h3", {}, "Plan"), el("p", { id: "plan-info" }), table,
                el("button", { id: "plan-confirm", type: "button" }, "Run this plan"),
                el("button", { id: "plan-cancel", type: "button" }, "Cancel"));
    return area;
  }

  class Actions {
    constructor({ command }) {
      this.command = command;  // (op, body) -> Promise<{ok, result|error}>
      this.node = "";
      this.pending = null;     // the planned action awaiting confirmation
      // Built here, for admins only: a viewer's page has no control that could send a command.
      document.getElementById("node-actions").after(planArea());
      document.getElementById("plan-confirm").addEventListener("click", () => this.confirmPlan());
      document.getElementById("plan-cancel").addEventListener("click", () => this.hidePlan("Cancelled; nothing was sent."));
    }

    // Builds the buttons for `node` (called when an admin selects a node).
    show(node) {
      this.node = node;
      this.hidePlan("");
      const box = document.getElementById("node-actions");
      const buttons = [...kSimple, ...kPlanned].map((a) => {
        const b = el("button", { type: "button", "data-action": a }, a[0].toUpperCase() + a.slice(1));
        b.addEventListener("click", () => this.start(a));
        return b;
      });
      const target = el("label", {}, "Target node (migrate, rebuild; empty: the scheduler picks) ");
      target.append(el("input", { id: "action-target", name: "target" }));
      box.replaceChildren(el("h3", {}, "Actions"), ...buttons, el("br"), target);
    }

    result(ok, code, text) {
      const r = document.getElementById("action-result");
      r.dataset.ok = String(ok);
      if (code) r.dataset.code = code;
      else delete r.dataset.code;
      r.textContent = text;
    }

    refusal(error) {
      const code = (error && error.code) || "error";
      const message = (error && error.message) || "refused";
      if (code === "plan_drifted") return this.result(false, code, `Not run: the cluster changed since the plan (${message}). Ask for a new plan.`);
      if (code === "plan_expired") return this.result(false, code, `Not run: the plan expired (${message}). Ask for a new plan.`);
      this.result(false, code, `Refused: ${code}: ${message}`);
    }

    async send(op, body) {
      try {
        const reply = await this.command(op, body, kCommandTimeoutMs);
        if (!reply || reply.ok !== true) {
          this.refusal(reply && reply.error);
          return null;
        }
        return reply.result || {};
      } catch (e) {
        this.result(false, e.code || "error", `Failed: ${e.message}`);
        return null;
      }
    }

    body(action) {
      const body = { node: this.node };
      const target = (document.getElementById("action-target") || {}).value;
      if (kWithTarget.has(action) && target && target.trim()) body.target = target.trim();
      return body;
    }

    async start(action) {
      const node = this.node;
      if (kSimple.includes(action)) {
        if (!(await confirmDialog(`${action[0].toUpperCase() + action.slice(1)} node ${node}?`))) return this.result(false, "cancelled", "Cancelled; nothing was sent.");
        const r = await this.send(`node.${action}`, { node });
        if (r) this.result(true, "", `${node} is ${r.management}${r.changed === false ? " (it already was)" : ""}.`);
        return;
      }
      this.hidePlan("");
      this.result(true, "", `Asking for the ${action} plan of ${node}…`);
      const body = this.body(action);
      const r = await this.send(`node.${action}`, { ...body, dry_run: true });
      if (!r || node !== this.node) return;
      this.pending = { action, body, planId: r.plan_id || "" };
      this.showPlan(action, r);
    }

    showPlan(action, r) {
      const plan = Array.isArray(r.plan) ? r.plan : [];
      const table = document.getElementById("plan");
      if (r.plan_id) table.dataset.planId = r.plan_id;
      else delete table.dataset.planId;
      const rows = plan.map((p) => {
        const tr = el("tr", { "data-vm": p.vm || "", "data-action": p.action || "" });
        tr.append(el("td", { "data-field": "vm" }, p.vm || ""), el("td", { "data-field": "name" }, p.name || ""),
                  el("td", { "data-field": "action" }, p.action || ""),
                  el("td", { "data-field": "target" }, p.target ? `→ ${p.target}${p.reason ? ` (${p.reason})` : ""}` : p.reason || (p.action === "stop" ? "stopped on this node" : "")));
        return tr;
      });
      table.tBodies[0].replaceChildren(...rows);
      const expires = r.expires_at ? `; the plan expires at ${new Date(r.expires_at).toLocaleTimeString()}` : "";
      document.getElementById("plan-info").textContent =
        `${action} ${this.node}: ${plan.length} VM${plan.length === 1 ? "" : "s"}${expires}. Nothing has changed yet.`;
      document.getElementById("plan-area").hidden = false;
      this.result(true, "", "Check the plan, then run it or cancel.");
    }

    hidePlan(text) {
      this.pending = null;
      document.getElementById("plan-area").hidden = true;
      delete document.getElementById("plan").dataset.planId;
      document.getElementById("plan").tBodies[0].replaceChildren();
      if (text) this.result(false, "cancelled", text);
    }

    async confirmPlan() {
      const p = this.pending;
      if (!p) return;
      this.pending = null;
      document.getElementById("plan-area").hidden = true;
      const body = p.planId ? { ...p.body, plan: p.planId } : p.body;
      this.result(true, "", `Sending ${p.action} of ${p.body.node}…`);
      const r = await this.send(`node.${p.action}`, body);
      if (r) this.result(true, "", `${p.action} of ${p.body.node} started${r.task ? `: task ${r.task}` : ""}.`);
    }
  }

  Object.assign((globalThis.nodeha ??= {}), { Actions });
})();
