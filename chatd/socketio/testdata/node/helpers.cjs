// Helpers for the Socket.IO tests: real chatd processes (the binary the Go
// test built, CHATD_BIN), a round-robin HTTP proxy in front of a cluster,
// and waits with deadlines derived from the timeout scale.
"use strict";
const { spawn } = require("node:child_process");
const http = require("node:http");
const net = require("node:net");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const scale = Number(process.env.RINGCHAT_TEST_TIMEOUT_SCALE || "1");
// bound scales a "this never takes this long" bound, as chatd/internal/testtime does.
const bound = (ms) => Math.round(ms * scale);
const TIMEOUT = bound(10000);
// SLACK is how late an event the server schedules at a configured time may
// come on a loaded machine (testtime.Slack): windows around configured
// times are [configured, configured + SLACK].
const SLACK = bound(2000);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

// waitFor polls cond (sync or async) until it returns a truthy value or the
// deadline passes; the error names what was awaited.
async function waitFor(what, cond, within = TIMEOUT, every = 50) {
  const deadline = Date.now() + within;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${within} ms waiting for ${what}${last ? ": " + last.message : ""}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// once resolves with the next emission of event on emitter, or rejects at the deadline.
function once(emitter, event, within = TIMEOUT) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${within} ms waiting for "${event}"`)), within);
    emitter.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

class Node {
  constructor(name, args) {
    this.name = name;
    this.args = args;
    this.logs = "";
    this.exited = false;
  }
  async start() {
    this.proc = spawn(process.env.CHATD_BIN, this.args, {
      env: process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exit = new Promise((resolve) => this.proc.on("exit", (code, sig) => { this.exited = true; resolve({ code, sig }); }));
    const onData = (d) => { this.logs += d.toString(); };
    this.proc.stdout.on("data", onData);
    this.proc.stderr.on("data", onData);
    await waitFor(`${this.name} listening`, () => {
      if (this.exited) throw new Error(`${this.name} exited:\n${this.logs.slice(-2000)}`);
      return this.logs.includes('"msg":"chatd listening"');
    }, bound(30000));
  }
  get url() { return `http://${this.addr}`; }
  async get(path) {
    const res = await fetch(this.url + path);
    return { status: res.status, text: await res.text() };
  }
  // getAdmin reads path on the node's admin listener (the admin API and
  // /metrics; loopback, so no token).
  async getAdmin(path) {
    const res = await fetch(`http://${this.admin}${path}`);
    return { status: res.status, text: await res.text() };
  }
  async metric(series) {
    const { text } = await this.getAdmin("/metrics");
    for (const line of text.split("\n")) {
      if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
    }
    return 0;
  }
  // kill stops the process and fails when it reported a data race (a
  // chatd built with -race: CHATD_BIN of a race build). A process that has
  // not exited within the bound (a drain is bounded by --drain-timeout and
  // --shutdown-timeout, far below it) is a hang: it gets SIGQUIT, so Go
  // prints every goroutine's stack into its output, and the test fails
  // with that output instead of waiting for good.
  async kill(sig = "SIGKILL", within = bound(60000)) {
    if (!this.exited) this.proc.kill(sig);
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), within); });
    const status = await Promise.race([this.exit, late]);
    clearTimeout(timer);
    if (status === null) {
      this.proc.kill("SIGQUIT");
      await Promise.race([this.exit, new Promise((r) => setTimeout(r, 5000))]);
      if (!this.exited) this.proc.kill("SIGKILL");
      throw new Error(`${this.name} did not exit within ${within} ms of ${sig}; its output ends with:\n${this.logs.slice(-30000)}`);
    }
    if (this.logs.includes("WARNING: DATA RACE")) throw new Error(`${this.name} reported a data race:\n${this.logs.slice(this.logs.indexOf("WARNING: DATA RACE"), this.logs.indexOf("WARNING: DATA RACE") + 6000)}`);
    return status;
  }
}

// startNode runs one unclustered chatd with extra flags.
async function startNode(extra = [], name = "single") {
  const port = await freePort();
  const admin = await freePort();
  const n = new Node(name, ["--listen", `127.0.0.1:${port}`, "--admin-listen", `127.0.0.1:${admin}`, "--allow-anonymous", "--node-name", name, "--log-level", "info", ...extra]);
  n.addr = `127.0.0.1:${port}`;
  n.admin = `127.0.0.1:${admin}`;
  await n.start();
  return n;
}

// startCluster runs n clustered chatd processes and waits until each is
// ready and sees all n as active.
async function startCluster(n, extra = []) {
  const nodes = [];
  for (let i = 0; i < n; i++) {
    // A port found free can be taken before chatd binds it (its inter-node
    // port is the gossip port + 1): such a node is started again on others.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const admin = await freePort();
      let gossip;
      do gossip = await freePort(); while (gossip >= 65000);
      const name = `sio-${i}`;
      const pki = process.env.CHATD_TEST_PKI;
      if (!pki) throw new Error("CHATD_TEST_PKI is not set: the Go test (clients_test.go) makes the certificates");
      const args = ["--listen", `127.0.0.1:${port}`, "--admin-listen", `127.0.0.1:${admin}`, "--allow-anonymous", "--node-name", name,
        "--peer-tls-cert-file", path.join(pki, `${name}.crt`), "--peer-tls-key-file", path.join(pki, `${name}.key`),
        "--peer-tls-ca-file", path.join(pki, "ca.crt"), "--gossip-keyring-file", path.join(pki, "gossip.keyring"),
        "--gossip-addr", `127.0.0.1:${gossip}`, "--gossip-profile", "local", "--rejoin-interval", "1s",
        "--rate", "100000", "--rate-burst", "100000", "--max-connections-per-ip", "0", "--log-level", "info",
        "--shutdown-timeout", "5s", "--drain-timeout", "10s"];
      if (i === 0) args.push("--bootstrap");
      else args.push("--join", nodes[0].gossip);
      const node = new Node(name, [...args, ...extra]);
      node.addr = `127.0.0.1:${port}`;
      node.admin = `127.0.0.1:${admin}`;
      node.gossip = `127.0.0.1:${gossip}`;
      try {
        await node.start();
      } catch (e) {
        if (attempt < 5 && node.logs.includes("address already in use")) continue;
        throw e;
      }
      nodes.push(node);
      break;
    }
  }
  await converged(nodes);
  return nodes;
}

async function converged(nodes) {
  const live = nodes.filter((n) => !n.exited);
  const want = live.map((n) => n.name).sort().join(",");
  await waitFor(`cluster of ${want} converged`, async () => {
    for (const n of live) {
      const r = await n.get("/readyz");
      if (r.status !== 200) return false;
      const st = JSON.parse((await n.getAdmin("/admin/cluster")).text);
      if ([...st.active].sort().join(",") !== want) return false;
    }
    return true;
  }, bound(45000), 100);
}

// RoundRobinProxy forwards each HTTP request, and each WebSocket upgrade, to
// the next live backend in turn: no stickiness at all, as a plain load
// balancer without session affinity. A backend that refuses the connection
// is skipped.
class RoundRobinProxy {
  constructor(backends) {
    this.backends = backends;
    this.next = 0;
    this.requests = new Map();
    this.tunnels = new Set();
  }
  pick() {
    const live = this.backends.filter((b) => !b.exited);
    if (live.length === 0) return null;
    return live[this.next++ % live.length];
  }
  async start() {
    this.server = http.createServer((req, res) => this.forward(req, res));
    this.server.on("clientError", (err, sock) => sock.destroy());
    this.server.on("upgrade", (req, sock, head) => this.tunnel(req, sock, head, 0));
    this.server.keepAliveTimeout = 1000;
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
  }
  forward(req, res) {
    const chunks = [];
    req.on("error", () => res.destroy());
    res.on("error", () => {});
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => this.forwardBody(req, res, Buffer.concat(chunks), 0));
  }
  // forwardBody sends a buffered request to the next live backend; one that
  // refuses the connection is skipped. A backend that fails later (killed
  // mid-request) drops the client's request, as a load balancer would.
  forwardBody(req, res, body, attempt) {
    const b = this.pick();
    if (!b) { res.writeHead(502); res.end(); return; }
    this.requests.set(b.name, (this.requests.get(b.name) || 0) + 1);
    const [host, port] = b.addr.split(":");
    const out = http.request({ host, port, method: req.method, path: req.url, headers: req.headers, agent: false }, (pres) => {
      pres.on("error", () => res.destroy());
      res.writeHead(pres.statusCode, pres.headers);
      pres.pipe(res);
    });
    out.on("error", (err) => {
      if (!res.headersSent && attempt < this.backends.length && err.code === "ECONNREFUSED") return this.forwardBody(req, res, body, attempt + 1);
      res.destroy();
    });
    out.end(body);
  }
  tunnel(req, sock, head, attempt) {
    const b = this.pick();
    if (!b) { sock.destroy(); return; }
    const [host, port] = b.addr.split(":");
    this.tunnels.add(sock);
    sock.on("close", () => this.tunnels.delete(sock));
    const up = net.connect(Number(port), host, () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + "\r\n");
      if (head && head.length) up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on("error", (err) => {
      if (err.code === "ECONNREFUSED" && attempt < this.backends.length) return this.tunnel(req, sock, head, attempt + 1);
      sock.destroy();
    });
    sock.on("error", () => up.destroy());
    up.on("close", () => sock.destroy());
    sock.on("close", () => up.destroy());
  }
  close() {
    for (const t of this.tunnels) t.destroy();
    this.server.closeAllConnections?.();
    return new Promise((r) => this.server.close(r));
  }
}

// hs256 signs a JWT with secret.
function hs256(claims, secret) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = enc({ alg: "HS256", typ: "JWT" }) + "." + enc(claims);
  return body + "." + crypto.createHmac("sha256", secret).update(body).digest("base64url");
}

// secretFile writes an HS256 secret to a file of its own and returns the
// path, for --jwt-secret-file (chatd takes secrets only as files).
function secretFile(secret) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sio-jwt-"));
  const file = path.join(dir, "secret");
  fs.writeFileSync(file, secret, { mode: 0o600 });
  return file;
}

module.exports = { bound, TIMEOUT, SLACK, waitFor, once, startNode, startCluster, converged, RoundRobinProxy, hs256, freePort, secretFile };
