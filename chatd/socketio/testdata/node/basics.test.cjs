// The real socket.io-client (pinned in package-lock.json) against one real
// chatd process: the three transports, acknowledgements, errors, namespaces,
// JWT, the rate limit, binary packets, and a native client in the same room.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const WebSocket = require("ws");
const { startNode, once, waitFor, hs256, bound, TIMEOUT, SLACK, secretFile } = require("./helpers.cjs");

const SECRET = "socketio-test-jwt-secret-0123456789abcdef";
// The recovery window test: a socket that reconnects after RECONNECT_MS
// has missed messages at most RECONNECT_MS plus a reconnection old, so
// a window of RECONNECT_MS + 2 × SLACK recovers it on a loaded machine;
// one that reconnects after the window and SLACK more has missed a message
// older than the window.
const RECONNECT_MS = 300;
const WINDOW_MS = RECONNECT_MS + 2 * SLACK;
const LATE_RECONNECT_MS = WINDOW_MS + SLACK;
const API_KEY = "socketio-test-api-key-0123456789";
let node, jwtNode, limitedNode, windowNode, expiryNode, apiNode;

before(async () => {
  [node, jwtNode, limitedNode, windowNode, expiryNode, apiNode] = await Promise.all([
    startNode(["--socketio-namespaces", "/,/support,/staff:token", "--rate", "1000", "--rate-burst", "1000"]),
    startNode(["--jwt-secret-file", secretFile(SECRET), "--allow-anonymous=false", "--socketio-namespaces", "/,/support"], "jwt"),
    // A bucket of 3 that refills one token per ten TIMEOUTs: nothing
    // refills while the rate limit test runs, however slow the machine.
    startNode(["--rate", String(1000 / (10 * TIMEOUT)), "--rate-burst", "3", "--rate-abuse-limit", "1000"], "limited"),
    startNode(["--socketio-recovery-window", `${WINDOW_MS}ms`, "--history-size", "20", "--send-queue", "100"], "window"),
    startNode(["--jwt-secret-file", secretFile(SECRET), "--allow-anonymous=false", "--jwt-leeway", "0s"], "expiry"),
    startNode(["--api-key-file", secretFile(API_KEY + "\n"), "--socketio-recovery-window", `${WINDOW_MS}ms`], "api"),
  ]);
});
after(async () => {
  await Promise.all([node, jwtNode, limitedNode, windowNode, expiryNode, apiNode].map((n) => n && n.kill()));
});

const sockets = [];
function connect(url, opts = {}) {
  const s = io(url, { reconnection: false, timeout: TIMEOUT, ...opts });
  sockets.push(s);
  return s;
}
after(() => sockets.forEach((s) => s.close()));

async function connected(s) {
  if (s.connected) return;
  const [err] = await Promise.race([once(s, "connect").then(() => [null]), once(s, "connect_error")]);
  if (err) throw new Error("connect_error: " + err.message + " " + JSON.stringify(err.data));
}

let cidN = 0;
const cid = () => `c-${process.pid}-${++cidN}`;

// collect records the message events a socket gets, per room.
function collect(s) {
  const got = [];
  s.on("message", (m) => got.push(m));
  return got;
}

for (const [name, transports, finalTransport] of [
  ["websocket only", ["websocket"], "websocket"],
  ["polling only", ["polling"], "polling"],
  ["polling with upgrade", ["polling", "websocket"], "websocket"],
]) {
  test(`${name}: join, send, message and ack`, async () => {
    const room = "t-" + finalTransport + "-" + transports.length;
    const s = connect(node.url, { transports, auth: { name: "ann" } });
    await connected(s);
    assert.equal(s.recovered, false);
    if (transports.length > 1) {
      await waitFor("the upgrade to websocket", () => s.io.engine.transport.name === "websocket");
    }
    const got = collect(s);
    const joined = await s.emitWithAck("join", { room });
    assert.equal(joined.room, room);
    assert.equal(joined.head, 0);
    assert.deepEqual(joined.present, ["ann"]);
    assert.equal(typeof joined.epoch, "string");
    const c = cid();
    const ack = await s.emitWithAck("send", { room, cid: c, text: "hello " + name });
    assert.equal(ack.seq, 1);
    assert.equal(ack.cid, c);
    assert.equal(ack.mid, `${joined.epoch}-1`);
    await waitFor("the message event", () => got.length === 1);
    assert.deepEqual({ room: got[0].room, seq: got[0].seq, from: got[0].from, text: got[0].text, cid: got[0].cid },
      { room, seq: 1, from: "ann", text: "hello " + name, cid: c });
    assert.equal(got[0].type, undefined, "payloads are native frames without type");
    assert.equal(s.io.engine.transport.name, finalTransport);
    // The idempotent resend by cid, as on /ws.
    const dup = await s.emitWithAck("send", { room, cid: c, text: "again" });
    assert.equal(dup.duplicate, true);
    assert.equal(dup.seq, 1);
    s.close();
  });
}

test("acks carry native replies and errors; errors without an ack arrive as error events", async () => {
  const s = connect(node.url, { transports: ["websocket"], auth: { name: "bob" } });
  await connected(s);
  const room = "acks";
  await s.emitWithAck("join", { room });
  for (let i = 1; i <= 3; i++) await s.emitWithAck("send", { room, cid: cid(), text: "m" + i });
  const page = await s.emitWithAck("history", { room, limit: 2 });
  assert.deepEqual(page.messages.map((m) => m.seq), [2, 3]);
  assert.equal(page.more, true);
  assert.equal(page.head, 3);
  const notJoined = await s.emitWithAck("send", { room: "elsewhere", cid: cid(), text: "x" });
  assert.equal(notJoined.error.code, "not_joined");
  assert.equal(notJoined.error.room, "elsewhere");
  const bad = await s.emitWithAck("join", { room: "bad room!" });
  assert.equal(bad.error.code, "invalid_room");
  const reserved = await s.emitWithAck("join", { room: "/support/general" });
  assert.equal(reserved.error.code, "invalid_room", "names starting with / belong to other namespaces");
  const unknown = await s.emitWithAck("shout", { text: "hi" });
  assert.equal(unknown.error.code, "unknown_type");
  const noCid = await s.emitWithAck("send", { room, text: "hi" });
  assert.equal(noCid.error.code, "bad_request");
  const pong = await s.emitWithAck("ping", {});
  assert.equal(typeof pong.ts, "number");
  const left = await s.emitWithAck("leave", { room });
  assert.equal(left.room, room);
  // Without an acknowledgement the error comes as an "error" event.
  const errEvent = once(s, "error");
  s.emit("send", { room, cid: cid(), text: "after leaving" });
  const [e] = await errEvent;
  assert.equal(e.code, "not_joined");
  // A binary argument is refused with a clear error; the socket stays.
  const binErr = once(s, "error");
  s.emit("send", Buffer.from("binary"));
  const [b] = await binErr;
  assert.equal(b.code, "bad_frame");
  assert.match(b.message, /binary/);
  const pong2 = await s.emitWithAck("ping", {});
  assert.equal(typeof pong2.ts, "number");
});

test("namespaces are separate spaces of rooms; unknown and closed ones are refused", async () => {
  const main = connect(node.url, { transports: ["websocket"], auth: { name: "carl" } });
  const support = connect(node.url + "/support", { transports: ["websocket"], auth: { name: "dana" } });
  await Promise.all([connected(main), connected(support)]);
  const inMain = collect(main);
  const inSupport = collect(support);
  await main.emitWithAck("join", { room: "general" });
  const sj = await support.emitWithAck("join", { room: "general" });
  assert.equal(sj.room, "general", "rooms are named as the namespace's client names them");
  assert.deepEqual(sj.present, ["dana"], "carl is in / general, not in /support general");
  await main.emitWithAck("send", { room: "general", cid: cid(), text: "in main" });
  const ack = await support.emitWithAck("send", { room: "general", cid: cid(), text: "in support" });
  assert.equal(ack.room, "general");
  await waitFor("both messages", () => inMain.length === 1 && inSupport.length === 1);
  assert.equal(inMain[0].text, "in main");
  assert.equal(inSupport[0].text, "in support");
  assert.equal(inSupport[0].room, "general");

  const nowhere = connect(node.url + "/nowhere", { transports: ["websocket"], auth: { name: "eve" } });
  const [err] = await once(nowhere, "connect_error");
  assert.equal(err.data.code, "invalid_namespace");
  const staff = connect(node.url + "/staff", { transports: ["websocket"], auth: { name: "eve" } });
  const [err2] = await once(staff, "connect_error");
  assert.equal(err2.data.code, "forbidden");
});

test("JWT: a good token connects as its subject, a bad one gets CONNECT_ERROR with the native code", async () => {
  const now = Math.floor(Date.now() / 1000);
  const good = connect(jwtNode.url, { transports: ["websocket"], auth: { token: hs256({ sub: "u-42", exp: now + 600, rooms: ["team-*", "/support/*"] }, SECRET) } });
  await connected(good);
  const j = await good.emitWithAck("join", { room: "team-a" });
  assert.deepEqual(j.present, ["u-42"]);
  const f = await good.emitWithAck("join", { room: "lobby" });
  assert.equal(f.error.code, "forbidden");
  const sup = connect(jwtNode.url + "/support", { transports: ["websocket"], auth: { token: hs256({ sub: "u-42", exp: now + 600, rooms: ["/support/*"] }, SECRET) } });
  await connected(sup);
  assert.equal((await sup.emitWithAck("join", { room: "desk" })).room, "desk");
  const noSupport = connect(jwtNode.url + "/support", { transports: ["websocket"], auth: { token: hs256({ sub: "u-43", exp: now + 600, rooms: ["team-*"] }, SECRET) } });
  assert.equal((await once(noSupport, "connect_error"))[0].data.code, "forbidden");

  for (const [auth, code] of [
    [{ token: hs256({ sub: "u-1", exp: now + 600 }, "another-secret-of-enough-length-0123456789") }, "token_bad_signature"],
    [{ token: hs256({ sub: "u-1", exp: now - 3600 }, SECRET) }, "token_expired"],
    [{ name: "anon" }, "anonymous_disabled"],
    [{}, "token_missing"],
  ]) {
    const bad = connect(jwtNode.url, { transports: ["polling"], auth });
    const [err] = await once(bad, "connect_error");
    assert.equal(err.data.code, code, JSON.stringify(auth));
    assert.equal(typeof err.data.message, "string");
  }
});

test("token expiry: an error event token_expired, then the server disconnects the socket, at the token's exp", async () => {
  const exp = Math.floor(Date.now() / 1000) + 2; // JWT times are whole seconds
  const s = connect(expiryNode.url, { transports: ["websocket"], auth: { token: hs256({ sub: "u-exp", exp }, SECRET) } });
  await connected(s);
  assert.equal((await s.emitWithAck("join", { room: "expiring" })).room, "expiring");
  const errored = once(s, "error", exp * 1000 - Date.now() + SLACK + TIMEOUT);
  const disconnected = once(s, "disconnect", exp * 1000 - Date.now() + SLACK + TIMEOUT);
  const [e] = await errored;
  const erroredAt = Date.now();
  assert.equal(e.code, "token_expired");
  const [reason] = await disconnected;
  assert.equal(reason, "io server disconnect", "a server DISCONNECT, which clients do not retry");
  // --jwt-leeway 0s: at exp, not before, and within SLACK of it.
  assert.ok(erroredAt >= exp * 1000 && erroredAt <= exp * 1000 + SLACK, `token_expired ${erroredAt - exp * 1000} ms after exp, want within [0, ${SLACK}]`);
  assert.equal(s.connected, false);
});

test("rate limit: the native token bucket, refusals in the acks", async () => {
  const s = connect(limitedNode.url, { transports: ["websocket"], auth: { name: "fay" } });
  await connected(s); // the CONNECT took one token of 3
  const answers = await Promise.all([1, 2, 3, 4].map(() => s.emitWithAck("ping", {})));
  const limited = answers.filter((a) => a.error && a.error.code === "rate_limited");
  const ok = answers.filter((a) => typeof a.ts === "number");
  assert.equal(ok.length, 2, JSON.stringify(answers));
  assert.equal(limited.length, 2, JSON.stringify(answers));
});

test("a native client and a Socket.IO client in one room see the same messages, order and seq", async () => {
  const room = "cross";
  const ws = new WebSocket(`ws://${node.addr}/ws`);
  const frames = [];
  ws.on("message", (d) => { for (const l of d.toString().split("\n")) if (l) frames.push(JSON.parse(l)); });
  await once(ws, "open");
  ws.send(JSON.stringify({ type: "hello", name: "native" }));
  await waitFor("welcome", () => frames.some((f) => f.type === "welcome"));
  ws.send(JSON.stringify({ type: "join", id: "j", room }));
  await waitFor("joined", () => frames.some((f) => f.type === "joined"));
  const s = connect(node.url, { transports: ["polling"], auth: { name: "sio" } });
  await connected(s);
  const got = collect(s);
  await s.emitWithAck("join", { room });
  for (let i = 0; i < 10; i++) {
    if (i % 2) ws.send(JSON.stringify({ type: "send", room, cid: "n" + i, text: "native " + i }));
    else await s.emitWithAck("send", { room, cid: "s" + i, text: "sio " + i });
  }
  const native = () => frames.filter((f) => f.type === "message");
  await waitFor("ten messages on both sides", () => got.length === 10 && native().length === 10);
  const key = (m) => `${m.seq}:${m.from}:${m.cid}:${m.text}:${m.mid}`;
  assert.deepEqual(got.map(key), native().map(key));
  assert.deepEqual(got.map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  ws.close();
});

test("server events: presence, typing, dm (to every namespace socket of the user), left", async () => {
  const room = "events";
  const a = connect(node.url, { transports: ["websocket"], auth: { name: "ev-a" } });
  const b = connect(node.url, { transports: ["polling"], auth: { name: "ev-b" } });
  const bSupport = connect(node.url + "/support", { transports: ["websocket"], auth: { name: "ev-b" } });
  await Promise.all([a, b, bSupport].map(connected));
  const events = (s, name) => { const got = []; s.on(name, (e) => got.push(e)); return got; };
  const [aPresence, aTyping, bTyping, bDM, bSupportDM, bLeft] =
    [events(a, "presence"), events(a, "typing"), events(b, "typing"), events(b, "dm"), events(bSupport, "dm"), events(b, "left")];

  assert.deepEqual((await a.emitWithAck("join", { room })).present, ["ev-a"]);
  assert.deepEqual((await b.emitWithAck("join", { room })).present, ["ev-a", "ev-b"]);
  await waitFor("ev-a told ev-b joined", () => aPresence.length === 1);
  assert.deepEqual({ ...aPresence[0] }, { room, count: 2, joined: ["ev-b"] });

  b.emit("typing", { room });
  await waitFor("typing on both sockets", () => aTyping.length === 1 && bTyping.length === 1);
  assert.deepEqual({ ...aTyping[0] }, { room, users: ["ev-b"] });

  const c = cid();
  const dm = await a.emitWithAck("dm", { to: "ev-b", cid: c, text: "psst" });
  assert.equal(dm.to, "ev-b");
  assert.equal(dm.cid, c);
  assert.equal(dm.delivered, 2, "ev-b has two namespace sockets");
  await waitFor("the dm on both of ev-b's sockets", () => bDM.length === 1 && bSupportDM.length === 1);
  for (const d of [bDM[0], bSupportDM[0]]) {
    assert.deepEqual({ from: d.from, to: d.to, cid: d.cid, text: d.text, mid: d.mid }, { from: "ev-a", to: "ev-b", cid: c, text: "psst", mid: dm.mid });
  }

  assert.equal((await b.emitWithAck("leave", { room })).room, room);
  await waitFor("ev-b's left event", () => bLeft.length === 1);
  assert.deepEqual({ ...bLeft[0] }, { room });
  await waitFor("ev-a told ev-b left", () => aPresence.length === 2);
  assert.deepEqual({ ...aPresence[1] }, { room, count: 1, left: ["ev-b"] });
  [a, b, bSupport].forEach((s) => s.close());
});

// dropThenReconnect cuts a socket's transport with reconnection off, runs
// meanwhile, and only then reconnects it: what meanwhile does is missed
// in full however slow the machine.
async function dropThenReconnect(s, meanwhile) {
  const down = once(s, "disconnect");
  s.io.reconnection(false);
  s.io.engine.close();
  await down;
  await meanwhile();
  const reconnected = once(s, "connect", TIMEOUT);
  s.io.reconnection(true);
  s.connect();
  await reconnected;
}

// dropAndWait cuts a socket's transport (the client reconnects after its
// reconnection delay), runs meanwhile, and resolves with the socket's next
// connect.
async function dropAndWait(s, meanwhile) {
  const reconnected = once(s, "connect", LATE_RECONNECT_MS + TIMEOUT);
  s.io.engine.close();
  await meanwhile();
  await reconnected;
}

test("recovery on one node: missed messages replayed once, in order; past the window or the history, recovered is false", async () => {
  const room = "window";
  const pub = connect(windowNode.url, { transports: ["websocket"], auth: { name: "pub" } });
  await connected(pub);
  await pub.emitWithAck("join", { room });
  const say = async (n) => { for (let i = 0; i < n; i++) await pub.emitWithAck("send", { room, cid: cid(), text: "m" }); };

  for (const transports of [["websocket"], ["polling"]]) {
    // Within the window: recovered, the missed messages follow.
    const s = connect(windowNode.url, { transports, auth: { name: "sub" }, reconnection: true, reconnectionDelay: RECONNECT_MS, reconnectionDelayMax: RECONNECT_MS, randomizationFactor: 0 });
    await connected(s);
    const got = collect(s);
    const joined = await s.emitWithAck("join", { room });
    await say(2);
    await waitFor("two live messages", () => got.length === 2);
    await dropAndWait(s, () => say(3));
    assert.equal(s.recovered, true, "reconnected within the window");
    await say(1);
    await waitFor("the replay and the live message", () => got.length === 6);
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 6 }, (_, i) => joined.head + 1 + i), transports.join());

    // Missed messages older than the window: not recovered, no room.
    const late = connect(windowNode.url, { transports, auth: { name: "late" }, reconnection: true, reconnectionDelay: LATE_RECONNECT_MS, reconnectionDelayMax: LATE_RECONNECT_MS, randomizationFactor: 0 });
    await connected(late);
    await late.emitWithAck("join", { room });
    await say(1);
    await dropAndWait(late, () => say(1));
    assert.equal(late.recovered, false, `a missed message older than the ${WINDOW_MS} ms window`);
    const notJoined = await late.emitWithAck("send", { room, cid: cid(), text: "x" });
    assert.equal(notJoined.error.code, "not_joined", "an unrecovered socket is in no room");

    // A gap beyond the room's history (20 messages): not recovered. The
    // socket comes back only once all 25 were sent (with a reconnection
    // delay, a slow machine could reconnect it after a few, and recover).
    const gap = connect(windowNode.url, { transports, auth: { name: "gap" }, reconnection: true, reconnectionDelay: RECONNECT_MS, reconnectionDelayMax: RECONNECT_MS, randomizationFactor: 0 });
    await connected(gap);
    await gap.emitWithAck("join", { room });
    await say(1);
    await dropThenReconnect(gap, () => say(25));
    assert.equal(gap.recovered, false, "a gap of 25 messages, 20 kept");
    [s, late, gap].forEach((x) => x.close());
  }
});

test("a message the backend deletes: a deleted event, history shows it deleted, recovery resumes after it", async () => {
  const room = "moderated";
  const s = connect(apiNode.url, { transports: ["websocket"], auth: { name: "sub" }, reconnection: true, reconnectionDelay: RECONNECT_MS, reconnectionDelayMax: RECONNECT_MS, randomizationFactor: 0 });
  await connected(s);
  const got = collect(s);
  const deleted = [];
  s.on("deleted", (d) => deleted.push(d));
  await s.emitWithAck("join", { room });
  for (const text of ["one", "oops", "three"]) await s.emitWithAck("send", { room, cid: cid(), text });
  await waitFor("three messages", () => got.length === 3);
  const target = got[1].seq;
  const res = await fetch(`http://${apiNode.admin}/api/v1/rooms/${room}/messages/${target}?by=mod`, { method: "DELETE", headers: { authorization: `Bearer ${API_KEY}` } });
  assert.equal(res.status, 200, await res.text());
  await waitFor("the deleted event", () => deleted.length === 1);
  assert.deepEqual([deleted[0].room, deleted[0].seq, deleted[0].target, deleted[0].from, deleted[0].text], [room, target + 2, target, "mod", ""]);
  const page = await s.emitWithAck("history", { room });
  const gone = page.messages.find((m) => m.seq === target);
  assert.deepEqual([gone.deleted, gone.text, gone.from], [true, "", "sub"], "the deleted message in history");
  assert.equal(page.messages.find((m) => m.seq === target + 2).type, "deleted");

  // The deletion moved the socket's offset: a recovery replays nothing.
  await dropAndWait(s, async () => {});
  assert.equal(s.recovered, true, "reconnected within the window");
  await s.emitWithAck("send", { room, cid: cid(), text: "four" });
  await waitFor("the next message", () => got.length === 4);
  assert.equal(got[3].seq, target + 3);
  assert.equal(deleted.length, 1, "the deletion is not replayed");
  s.close();
});
