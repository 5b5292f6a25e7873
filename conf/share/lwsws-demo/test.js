/* lwsws test page: the dumb-increment, mirror and lws-status panels, and the form results.
 * Plain ES2017, no libraries; every socket goes to the host and port the page came from. */
"use strict";

(function () {
  const WS_BASE = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host;
  const RETRY_MS = 3000;

  function $(id) {
    return document.getElementById(id);
  }

  function setState(el, state) {
    if (!el) return;
    el.dataset.state = state;
    el.textContent = state;
  }

  /* A websocket that shows its state in `statusEl` and reconnects after it closes. */
  function persistentSocket(opts) {
    const handle = { ws: null, send: null };
    let stopped = false;

    function open() {
      setState(opts.statusEl, "connecting");
      let ws;
      try {
        ws = new WebSocket(WS_BASE + (opts.path || "/"), opts.protocol);
      } catch (e) {
        setState(opts.statusEl, "closed");
        setTimeout(open, RETRY_MS);
        return;
      }
      handle.ws = ws;
      ws.onopen = function () {
        setState(opts.statusEl, "connected");
        if (opts.onopen) opts.onopen();
      };
      ws.onmessage = function (ev) {
        opts.onmessage(ev.data);
      };
      ws.onclose = function () {
        handle.ws = null;
        setState(opts.statusEl, "closed");
        if (opts.onclose) opts.onclose();
        if (!stopped) setTimeout(open, RETRY_MS);
      };
    }

    handle.send = function (data) {
      if (handle.ws && handle.ws.readyState === WebSocket.OPEN) {
        handle.ws.send(data);
        return true;
      }
      return false;
    };
    window.addEventListener("pagehide", function () {
      stopped = true;
      if (handle.ws) handle.ws.close();
    });
    open();
    return handle;
  }

  /* ---- dumb-increment-protocol ---- */

  function setupDumbIncrement() {
    const counter = $("counter");
    const reset = $("reset");
    const di = persistentSocket({
      protocol: "dumb-increment-protocol",
      statusEl: $("di-status"),
      onopen: function () { reset.disabled = false; },
      onclose: function () { reset.disabled = true; },
      onmessage: function (data) { counter.textContent = data; },
    });
    reset.addEventListener("click", function () {
      di.send("reset\n");
    });

    const closeBtn = $("close-test");
    const result = $("close-result");
    closeBtn.addEventListener("click", function () {
      closeBtn.disabled = true;
      result.className = "result";
      result.textContent = "connecting…";
      const ws = new WebSocket(WS_BASE + "/", "dumb-increment-protocol");
      const timer = setTimeout(function () {
        result.className = "result bad";
        result.textContent = "no close from the server after 5 s";
        ws.close();
      }, 5000);
      ws.onopen = function () {
        result.textContent = "sent closeme, waiting…";
        ws.send("closeme\n");
      };
      ws.onclose = function (ev) {
        clearTimeout(timer);
        closeBtn.disabled = false;
        const expected = ev.code === 1001 && ev.reason === "seeya";
        result.className = "result " + (expected ? "ok" : "bad");
        result.textContent = "closed: code " + ev.code + ", reason \u201c" + ev.reason + "\u201d";
      };
    });
  }

  /* ---- lws-mirror-protocol ---- */

  function setupMirror() {
    const canvas = $("mirror-canvas");
    const ctx = canvas.getContext("2d");
    const colour = $("mirror-colour");
    const info = $("mirror-info");
    const COLOUR_RE = /^#[0-9a-fA-F]{6}$/;
    const MAX_MESSAGE = 4000; /* the server mirrors messages of at most 4096 bytes */

    const instance = new URLSearchParams(location.search).get("mirror");
    const path = instance ? "/?mirror=" + encodeURIComponent(instance) : "/";

    let received = 0;
    let commands = 0;
    let pending = [];
    let flushTimer = null;
    let last = null;
    let moved = false;

    const mirror = persistentSocket({
      protocol: "lws-mirror-protocol",
      path: path,
      statusEl: $("mirror-status"),
      onmessage: function (data) {
        if (typeof data !== "string") return;
        received += 1;
        commands += draw(data);
        canvas.dataset.received = String(received);
        canvas.dataset.commands = String(commands);
        info.textContent = received + (received === 1 ? " message" : " messages") + " received" +
          (instance ? " \u00b7 instance \u201c" + instance + "\u201d" : "");
      },
    });

    function num(s) {
      const n = Number(s);
      return Number.isFinite(n) ? n : NaN;
    }

    /* Draws every command in one message; returns how many were understood. */
    function draw(text) {
      let n = 0;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = 3;
      for (const raw of text.split(";")) {
        const t = raw.trim().split(/\s+/);
        if (t.length < 2 || !COLOUR_RE.test(t[1])) continue;
        if (t[0] === "d" && t.length === 6) {
          const v = t.slice(2).map(num);
          if (v.some(Number.isNaN)) continue;
          ctx.strokeStyle = t[1];
          ctx.beginPath();
          ctx.moveTo(v[0], v[1]);
          ctx.lineTo(v[2], v[3]);
          ctx.stroke();
          n += 1;
        } else if (t[0] === "c" && t.length === 5) {
          const v = t.slice(2).map(num);
          if (v.some(Number.isNaN) || v[2] < 0) continue;
          ctx.fillStyle = t[1];
          ctx.beginPath();
          ctx.arc(v[0], v[1], v[2], 0, 2 * Math.PI);
          ctx.fill();
          n += 1;
        }
      }
      return n;
    }

    function flush() {
      flushTimer = null;
      let msg = "";
      for (const cmd of pending) {
        if (msg.length + cmd.length > MAX_MESSAGE) {
          mirror.send(msg);
          msg = "";
        }
        msg += cmd;
      }
      if (msg) mirror.send(msg);
      pending = [];
    }

    function queue(cmd) {
      pending.push(cmd);
      if (!flushTimer) flushTimer = setTimeout(flush, 20);
    }

    function point(ev) {
      const r = canvas.getBoundingClientRect();
      const x = (ev.clientX - r.left) * (canvas.width / r.width);
      const y = (ev.clientY - r.top) * (canvas.height / r.height);
      return { x: Math.round(x), y: Math.round(y) };
    }

    canvas.addEventListener("pointerdown", function (ev) {
      if (ev.button !== 0) return;
      canvas.setPointerCapture(ev.pointerId);
      last = point(ev);
      moved = false;
      ev.preventDefault();
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (!last) return;
      const p = point(ev);
      if (p.x === last.x && p.y === last.y) return;
      queue("d " + colour.value + " " + last.x + " " + last.y + " " + p.x + " " + p.y + ";");
      last = p;
      moved = true;
    });
    function end(ev) {
      if (!last) return;
      if (!moved && ev.type === "pointerup") {
        queue("c " + colour.value + " " + last.x + " " + last.y + " 2;");
      }
      last = null;
      flush();
    }
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);

    $("mirror-clear").addEventListener("click", function () {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
    });
  }

  /* ---- lws-status ---- */

  function setupStatus() {
    const tbody = $("status-table").tBodies[0];
    const count = $("status-count");
    const label = $("status-count-label");
    const server = $("status-server");

    function cell(text, cls) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      return td;
    }

    persistentSocket({
      protocol: "lws-status",
      statusEl: $("ls-status"),
      onmessage: function (data) {
        let doc;
        try {
          doc = JSON.parse(data);
        } catch (e) {
          return;
        }
        const conns = Array.isArray(doc.conns) ? doc.conns : [];
        count.textContent = String(conns.length);
        label.textContent = conns.length === 1 ? "connection" : "connections";
        server.textContent = [doc.hostname, doc.version].filter(Boolean).join(" \u00b7 ");
        const rows = document.createDocumentFragment();
        for (const c of conns) {
          const tr = document.createElement("tr");
          const secs = Number(c.time);
          const since = Number.isFinite(secs) && secs > 0 ? new Date(secs * 1000).toLocaleString() : "";
          tr.appendChild(cell(c.peer || "", "mono nowrap"));
          tr.appendChild(cell(since, "nowrap"));
          tr.appendChild(cell(c.ua || "", "ua"));
          rows.appendChild(tr);
        }
        if (!conns.length) {
          const tr = document.createElement("tr");
          tr.className = "empty";
          const td = cell("No connections");
          td.colSpan = 3;
          tr.appendChild(td);
          rows.appendChild(tr);
        }
        tbody.replaceChildren(rows);
      },
    });
  }

  /* ---- forms: give the server's plain result page the site's look ---- */

  function setupForms() {
    const frame = $("form-results");
    frame.addEventListener("load", function () {
      let doc;
      try {
        doc = frame.contentDocument;
      } catch (e) {
        return;
      }
      if (!doc || !doc.head || !doc.querySelector("table") || doc.querySelector("style[data-lwsws]")) return;
      const style = doc.createElement("style");
      style.dataset.lwsws = "1";
      style.textContent =
        "body{font:14px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1b2330;margin:14px 16px}" +
        "h1{font-size:15px;margin:0 0 10px}" +
        "table{border-collapse:collapse;width:100%;font-size:13px}" +
        "th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#64748b;background:#f8fafc}" +
        "th,td{padding:6px 10px;border:1px solid #e2e8f0;vertical-align:top}" +
        "td:first-child{width:9em}" +
        "td:nth-child(2){font-family:ui-monospace,Menlo,Consolas,monospace;width:5em}" +
        "td:last-child{word-break:break-all}" +
        "p:last-child{display:none}";
      doc.head.appendChild(style);
    });
  }

  setupDumbIncrement();
  setupMirror();
  setupStatus();
  setupForms();
})();
