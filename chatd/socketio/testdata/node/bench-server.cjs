// The Node.js socket.io 4.8 server doing the job chatbench measures on
// chatd's /socket.io/: rooms and broadcast with its default in-memory
// adapter, the event vocabulary of docs/socketio.md (join and send with
// acknowledgements, message to the room, the sender included), a sequence
// number per room. No history, no persistence, no replication.
//
//   NODE_PATH=<node_modules> taskset -c 0 node bench-server.cjs 127.0.0.1 18095
//   chatbench fanout --url ws://127.0.0.1:18095/socket.io/ …
"use strict";
const http = require("node:http");
const { Server } = require("socket.io");

const [host = "127.0.0.1", port = "18095"] = process.argv.slice(2);
const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket", "polling"], serveClient: false, perMessageDeflate: false });
const rooms = new Map(); // room → { seq, members }
const epoch = Date.now().toString(36);

io.on("connection", (socket) => {
  const user = String((socket.handshake.auth && socket.handshake.auth.name) || socket.id);
  socket.on("join", ({ room } = {}, ack) => {
    if (typeof room !== "string" || !room) return ack && ack({ error: { code: "invalid_room", message: "room required" } });
    socket.join(room);
    const r = rooms.get(room) || { seq: 0 };
    rooms.set(room, r);
    if (ack) ack({ room, epoch, head: r.seq, oldest: r.seq + 1, count: io.sockets.adapter.rooms.get(room)?.size || 1 });
  });
  socket.on("send", ({ room, cid, text } = {}, ack) => {
    if (!socket.rooms.has(room)) return ack && ack({ error: { code: "not_joined", message: "join the room before sending to it", room } });
    const r = rooms.get(room);
    const seq = ++r.seq;
    const ts = Date.now();
    const mid = `${epoch}-${seq}`;
    io.to(room).emit("message", { room, seq, mid, from: user, cid, text, ts });
    if (ack) ack({ room, cid, seq, mid, ts });
  });
});

httpServer.listen(Number(port), host, () => console.log(`socket.io ${require("socket.io/package.json").version} on http://${host}:${port}/socket.io/ (node ${process.version}, pid ${process.pid})`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
