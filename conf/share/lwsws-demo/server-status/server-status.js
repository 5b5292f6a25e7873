/* lwsws server-status page: renders each lws-server-status document as it arrives.
 * Plain ES2017, no libraries; the socket goes to the host and port the page came from. */
"use strict";

(function () {
  const WS_URL = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/";
  const RETRY_MS = 3000;
  const PAGE = 4096; /* statm counts pages; 4 KiB on the platforms lwsws runs on */

  function $(id) {
    return document.getElementById(id);
  }

  function setState(state) {
    const el = $("ss-status");
    el.dataset.state = state;
    el.textContent = state;
  }

  function text(id, value) {
    $(id).textContent = value;
  }

  function el(tag, content, cls) {
    const e = document.createElement(tag);
    if (content instanceof Node) e.appendChild(content);
    else if (content !== undefined && content !== null) e.textContent = String(content);
    if (cls) e.className = cls;
    return e;
  }

  function emptyRow(cols, message) {
    const tr = el("tr", null, "empty");
    const td = el("td", message);
    td.colSpan = cols;
    tr.appendChild(td);
    return tr;
  }

  function duration(secs) {
    const s = Math.max(0, Math.floor(secs));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    const parts = [];
    if (d) parts.push(d + "d");
    if (d || h) parts.push(h + "h");
    if (d || h || m) parts.push(m + "m");
    parts.push(r + "s");
    return parts.join(" ");
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function yesNo(v) {
    const on = String(v) === "1";
    return el("span", on ? "yes" : "no", on ? "yes" : "no");
  }

  function renderStatm(statm) {
    const tbody = $("ss-statm").tBodies[0];
    const f = String(statm || "").trim().split(/\s+/).filter(Boolean).map(Number);
    if (!f.length || f.some(Number.isNaN)) {
      tbody.replaceChildren(emptyRow(7, "Not reported"));
      text("ss-mem", "–");
      text("ss-mem-sub", "\u00a0");
      return;
    }
    const tr = el("tr");
    for (let i = 0; i < 7; i++) {
      const v = f[i];
      const td = el("td", v === undefined ? "–" : v + " ", "mono nowrap");
      if (v !== undefined) td.appendChild(el("span", "(" + bytes(v * PAGE) + ")", "muted"));
      tr.appendChild(td);
    }
    tbody.replaceChildren(tr);
    text("ss-mem", bytes(f[1] * PAGE));
    text("ss-mem-sub", "of " + bytes(f[0] * PAGE) + " virtual");
  }

  function renderVhosts(contexts) {
    const tbody = $("ss-vhosts").tBodies[0];
    const rows = document.createDocumentFragment();
    let any = false;
    let hidden = true;
    for (const ctx of contexts) {
      if (!Array.isArray(ctx.vhosts)) continue;
      hidden = false;
      for (const v of ctx.vhosts) {
        any = true;
        const tr = el("tr");
        tr.appendChild(el("td", v.name, "nowrap"));
        tr.appendChild(el("td", v.port, "mono"));
        tr.appendChild(el("td", yesNo(v.use_ssl)));
        tr.appendChild(el("td", yesNo(v.sts)));
        const mounts = el("ul", null, "plain");
        for (const m of Array.isArray(v.mounts) ? v.mounts : []) {
          const li = el("li");
          li.appendChild(el("code", m.mountpoint));
          li.appendChild(el("span", "\u2192", "arrow"));
          li.appendChild(el("span", m.origin, "mono small"));
          mounts.appendChild(li);
        }
        if (!mounts.childNodes.length) mounts.appendChild(el("li", "none", "muted"));
        tr.appendChild(el("td", mounts));
        const protos = el("div");
        for (const p of Array.isArray(v["ws-protocols"]) ? v["ws-protocols"] : []) {
          protos.appendChild(el("span", typeof p === "string" ? p : JSON.stringify(p), "tag"));
        }
        if (!protos.childNodes.length) protos.appendChild(el("span", "none", "muted"));
        tr.appendChild(el("td", protos));
        rows.appendChild(tr);
      }
    }
    if (!any) rows.appendChild(emptyRow(6, hidden ? "Hidden by the server (hide-vhosts)" : "No vhosts"));
    tbody.replaceChildren(rows);
  }

  function renderFiles(files) {
    const tbody = $("ss-files").tBodies[0];
    const rows = document.createDocumentFragment();
    for (const f of Array.isArray(files) ? files : []) {
      const tr = el("tr");
      tr.appendChild(el("td", f.path, "mono nowrap"));
      tr.appendChild(el("td", el("pre", f.val === "" ? "(empty)" : f.val, "file")));
      rows.appendChild(tr);
    }
    if (!rows.childNodes.length) {
      rows.appendChild(emptyRow(2, "No files configured (the protocol's filepath option)"));
    }
    tbody.replaceChildren(rows);
  }

  function render(doc) {
    const i = doc.i || {};
    const contexts = Array.isArray(i.contexts) ? i.contexts : [];
    text("ss-version", i.version || "–");
    text("ss-contexts", contexts.length + (contexts.length === 1 ? " context" : " contexts"));
    const up = Number(i.uptime);
    if (Number.isFinite(up)) {
      text("ss-uptime", duration(up));
      $("ss-uptime").dataset.seconds = String(up);
      text("ss-uptime-secs", up + " seconds");
    }
    text("ss-load", [i.l1, i.l2, i.l3].map(function (v) { return v === undefined ? "–" : v; }).join("  "));
    renderStatm(i.statm);
    const server = i.server || {};
    text("ss-requests", server.requests || "–");
    text("ss-conns", (server.connections_open || "0") + " connections open");
    text("ss-reloads", (server.reloads_ok || "0") + " applied \u00b7 " + (server.reloads_failed || "0") + " refused");
    text("ss-reload-error", server.last_reload_error ? "last refused: " + server.last_reload_error : "\u00a0");
    renderVhosts(contexts);
    renderFiles(doc.files);
    text("ss-updated", "Live from lws-server-status \u00b7 updated " + new Date().toLocaleTimeString());
  }

  let stopped = false;
  let ws = null;

  function open() {
    setState("connecting");
    try {
      ws = new WebSocket(WS_URL, "lws-server-status");
    } catch (e) {
      setState("closed");
      setTimeout(open, RETRY_MS);
      return;
    }
    ws.onopen = function () { setState("connected"); };
    ws.onmessage = function (ev) {
      let doc;
      try {
        doc = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      render(doc);
    };
    ws.onclose = function () {
      ws = null;
      setState("closed");
      if (!stopped) setTimeout(open, RETRY_MS);
    };
  }

  window.addEventListener("pagehide", function () {
    stopped = true;
    if (ws) ws.close();
  });
  open();
})();
