// The real socket.io-client against a cluster of three real chatd
// processes: clients on different nodes chat; long-polling through a proxy
// that sends every HTTP request to the next node (no sticky sessions); and
// connection state recovery while one node is drained (SIGTERM) and another
// killed (SIGKILL): every socket comes back recovered, in its room, and has
// every acknowledged message exactly once, in order.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { startCluster, RoundRobinProxy, once, waitFor, bound, TIMEOUT } = require("./helpers.cjs");

let nodes;
before(async () => { nodes = await startCluster(3); });
after(async () => { await Promise.all((nodes || []).map((n) => n.kill())); });

const sockets = [];
after(() => sockets.forEach((s) => s.close()));
function connect(url, opts) {
  const s = io(url, { timeout: TIMEOUT, ...opts });
  sockets.push(s);
  return s;
}
async function connected(s) {
  if (s.connected) return;
  await once(s, "connect");
}

test("clients on different nodes chat", async () => {
  const room = "across";
  const [a, b, c] = nodes.map((n, i) => connect(n.url, { transports: [["websocket"], ["polling"], ["polling", "websocket"]][i], auth: { name: "u" + i }, reconnection: false }));
  await Promise.all([a, b, c].map(connected));
  const got = [[], [], []];
  [a, b, c].forEach((s, i) => s.on("message", (m) => got[i].push(m)));
  for (const s of [a, b, c]) assert.equal((await s.emitWithAck("join", { room })).room, room);
  for (const [i, s] of [a, b, c].entries()) {
    const ack = await s.emitWithAck("send", { room, cid: "x" + i, text: "from node " + i });
    assert.equal(ack.seq, i + 1);
  }
  await waitFor("every message on every node", () => got.every((g) => g.length === 3));
  for (const g of got) assert.deepEqual(g.map((m) => `${m.seq}/${m.from}`), ["1/u0", "2/u1", "3/u2"]);
  [a, b, c].forEach((s) => s.close());
});

test("long-polling without sticky sessions: each request goes to the next node", async () => {
  const proxy = new RoundRobinProxy(nodes);
  await proxy.start();
  try {
    const before = await Promise.all(nodes.map((n) => n.metric("chatd_socketio_forwards_total")));
    const room = "roundrobin";
    const p = connect(proxy.url, { transports: ["polling"], auth: { name: "poller" }, reconnection: false });
    const q = connect(proxy.url, { transports: ["polling"], auth: { name: "poller2" }, reconnection: false });
    await Promise.all([connected(p), connected(q)]);
    const got = [];
    q.on("message", (m) => got.push(m.seq));
    await p.emitWithAck("join", { room });
    await q.emitWithAck("join", { room });
    for (let i = 1; i <= 20; i++) assert.equal((await p.emitWithAck("send", { room, cid: "rr" + i, text: "m" + i })).seq, i);
    await waitFor("20 messages", () => got.length === 20);
    assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.equal(p.io.engine.transport.name, "polling");
    const after_ = await Promise.all(nodes.map((n) => n.metric("chatd_socketio_forwards_total")));
    const forwarded = after_.reduce((a, v, i) => a + v - before[i], 0);
    assert.ok(forwarded >= 20, `requests forwarded to the session's node: ${forwarded}`);
    assert.ok([...proxy.requests.values()].filter((v) => v > 0).length === 3, "the proxy used every node");
    p.close();
    q.close();
  } finally {
    await proxy.close();
  }
});

test("recovery: a node drained and another killed; every socket recovers, nothing lost or repeated", async () => {
  const proxy = new RoundRobinProxy(nodes);
  await proxy.start();
  const room = "recovery";
  const transports = [["websocket"], ["polling"], ["polling", "websocket"]];
  const opts = (name, i) => ({
    transports: transports[i % 3], auth: { name }, reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0.5,
  });
  // Subscribers, spread by the proxy over the three nodes.
  const subs = [];
  for (let i = 0; i < 6; i++) {
    const s = connect(proxy.url, opts("sub" + i, i));
    const rec = { s, got: [], connects: 0, recoveredConnects: 0, notRecovered: 0 };
    s.on("message", (m) => rec.got.push(m));
    s.on("connect", () => {
      rec.connects++;
      if (rec.connects > 1) {
        if (s.recovered) rec.recoveredConnects++;
        else rec.notRecovered++;
      }
    });
    subs.push(rec);
  }
  await Promise.all(subs.map((r) => connected(r.s)));
  for (const r of subs) assert.equal((await r.s.emitWithAck("join", { room })).room, room);

  // The publisher resends with the same cid until acknowledged: the dedupe
  // makes that safe; acked records each message's seq.
  const pub = connect(proxy.url, opts("pub", 0));
  await connected(pub);
  await pub.emitWithAck("join", { room });
  // A reconnection that did not recover leaves the publisher in no room.
  let rejoin = false;
  pub.on("connect", () => { if (!pub.recovered) rejoin = true; });
  const acked = new Map();
  let stop = false;
  let stopAt = 0;
  const publishing = (async () => {
    for (let i = 1; !stop; i++) {
      for (;;) {
        // Once asked to stop, the message in flight gets a bounded time to
        // be acknowledged: a publisher that can no longer get an ack is a
        // failure to report, not a reason to wait for good.
        if (stop && Date.now() - stopAt > bound(60000)) {
          throw new Error(`the publisher could not get p${i} acknowledged within ${bound(60000)} ms of the end (connected ${pub.connected}, recovered ${pub.recovered}, rejoin ${rejoin})`);
        }
        try {
          if (!pub.connected) await once(pub, "connect", bound(60000));
          if (rejoin) {
            const j = await pub.timeout(TIMEOUT).emitWithAck("join", { room });
            if (!j.error) rejoin = false;
          }
          const ack = await pub.timeout(bound(5000)).emitWithAck("send", { room, cid: "p" + i, text: "m" + i });
          if (ack.error) { await new Promise((r) => setTimeout(r, 100)); continue; }
          acked.set("p" + i, ack.seq);
          break;
        } catch { /* timed out: resend with the same cid */ }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const until = (n) => waitFor(`${n} acknowledged messages`, () => acked.size >= n, bound(60000));
  await until(30);
  // Drain one node (SIGTERM: rooms handed off, sessions closed with 1012),
  // then kill another outright.
  const [drained, killed] = [nodes[0], nodes[1]];
  const t0 = acked.size;
  await drained.kill("SIGTERM");
  await until(t0 + 30);
  const t1 = acked.size;
  await killed.kill("SIGKILL");
  await until(t1 + 30);
  stop = true;
  stopAt = Date.now();
  await publishing;
  const last = Math.max(...acked.values());
  await waitFor("every subscriber caught up", () => subs.every((r) => r.got.length > 0 && r.got[r.got.length - 1].seq >= last), bound(60000));

  const seqs = [...acked.values()].sort((a, b) => a - b);
  for (const [i, r] of subs.entries()) {
    const got = r.got.map((m) => m.seq);
    // Exactly once, in order: strictly increasing, and containing every acked seq.
    for (let k = 1; k < got.length; k++) assert.ok(got[k] > got[k - 1], `sub${i} out of order or repeated: ${got.slice(Math.max(0, k - 3), k + 2)}`);
    const set = new Set(got);
    const missing = seqs.filter((q) => !set.has(q));
    assert.deepEqual(missing, [], `sub${i} missed acknowledged messages`);
    assert.equal(r.notRecovered, 0, `sub${i} reconnected without recovery`);
  }
  const reconnected = subs.filter((r) => r.connects > 1);
  assert.ok(reconnected.length >= 2, `sockets on the drained and killed nodes reconnected: ${reconnected.length}`);
  for (const r of reconnected) assert.equal(r.recoveredConnects, r.connects - 1);
  console.log(`recovery: ${acked.size} messages acknowledged; reconnections per subscriber ${subs.map((r) => r.connects - 1).join(",")}, all recovered`);
  [pub, ...subs.map((r) => r.s)].forEach((s) => s.close());
  await proxy.close();
});
