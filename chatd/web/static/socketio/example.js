// A chat page written for socket.io-client, as a Socket.IO user would write
// it, talking to chatd (docs/socketio.md has the events). What differs from
// a Socket.IO server of one's own: events are chatd's (join, send, history,
// typing with acknowledgements; message, typing, presence), credentials go in
// auth, and a reconnection that is not recovered joins again and reloads
// the room's history.
"use strict";
(() => {
  const $ = (id) => document.querySelector(`[data-testid=${id}]`);
  const state = { socket: null, me: "", room: "", epoch: "", messages: [], typing: new Map() };
  let cid = 0;
  let lastTyping = 0;

  const setConn = (s) => { $("conn-state").dataset.state = s; $("conn-state").textContent = s; };

  function render() {
    const ul = $("messages");
    ul.replaceChildren(...state.messages.map((m) => {
      const li = document.createElement("li");
      li.dataset.testid = "message";
      li.dataset.seq = m.seq || "";
      li.dataset.from = m.from;
      li.dataset.state = m.seq ? "sent" : "pending";
      const from = document.createElement("span");
      from.className = "from";
      from.textContent = m.from;
      const text = document.createElement("span");
      text.dataset.testid = "message-text";
      text.textContent = m.text;
      li.append(from, text);
      return li;
    }));
    const now = Date.now();
    const typing = [...state.typing].filter(([u, until]) => u !== state.me && until > now).map(([u]) => u);
    $("typing").textContent = typing.length ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…` : "";
    $("room").textContent = state.room ? `in ${state.room}` : "";
  }

  // addMessage keeps the room's messages in seq order, each once: live
  // events, a recovery's replay and history pages may overlap.
  function addMessage(m) {
    if (m.room !== state.room) return;
    state.typing.delete(m.from);
    const mine = state.messages.findIndex((x) => !x.seq && x.cid === m.cid && x.from === m.from);
    if (mine >= 0) state.messages.splice(mine, 1);
    if (state.messages.some((x) => x.seq === m.seq)) return;
    state.messages.push(m);
    state.messages.sort((a, b) => (a.seq || Infinity) - (b.seq || Infinity));
    render();
  }

  async function join(room) {
    const joined = await state.socket.emitWithAck("join", { room });
    if (joined.error) { $("error").textContent = `${joined.error.code}: ${joined.error.message}`; return; }
    // Another room, or the room restarted (a new epoch: its seqs start
    // again): what was shown is not this room's history any more.
    if (room !== state.room || joined.epoch !== state.epoch) state.messages = state.messages.filter((m) => !m.seq && m.room === room);
    state.room = room;
    state.epoch = joined.epoch;
    const page = await state.socket.emitWithAck("history", { room, limit: 50 });
    if (!page.error) page.messages.forEach(addMessage);
    render();
  }

  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (state.socket) state.socket.close();
    state.me = $("name").value.trim();
    const t = $("transport").value;
    const transports = t === "websocket" ? ["websocket"] : t === "polling" ? ["polling"] : ["polling", "websocket"];
    // Same origin, path /socket.io/; the name (or auth: {token}) is the credential.
    const socket = io({ auth: { name: state.me }, transports, reconnectionDelayMax: 2000 });
    state.socket = socket;
    socket.on("connect", async () => {
      $("error").textContent = "";
      setConn("online");
      // Recovered: chatd put the socket back in its rooms and replays what
      // it missed. Not recovered (a first connection, or the gap is gone):
      // join again and reload.
      if (!socket.recovered && state.room) await join(state.room);
      for (const m of state.messages.filter((x) => !x.seq)) send(m); // unacknowledged: same cid
    });
    socket.on("disconnect", () => setConn("reconnecting"));
    socket.on("connect_error", (err) => {
      $("error").textContent = err.data ? `${err.data.code}: ${err.message}` : err.message;
      setConn(socket.active ? "reconnecting" : "offline");
    });
    socket.on("message", addMessage);
    socket.on("typing", ({ room, users }) => {
      if (room !== state.room) return;
      for (const u of users) state.typing.set(u, Date.now() + 3000);
      render();
      setTimeout(render, 3100);
    });
    socket.on("error", (e) => { $("error").textContent = `${e.code}: ${e.message}`; });
  });

  $("room-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (state.socket) join($("room-input").value.trim());
  });

  async function send(m) {
    if (!state.socket.connected) return; // sent again on connect
    const ack = await state.socket.emitWithAck("send", { room: m.room, cid: m.cid, text: m.text });
    if (!ack.error) addMessage({ ...m, seq: ack.seq, mid: ack.mid, ts: ack.ts });
  }

  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!state.socket || !state.room) return;
    const m = { room: state.room, from: state.me, cid: `${state.me}-${Date.now().toString(36)}-${++cid}`, text: $("text").value };
    $("text").value = "";
    state.messages.push(m);
    render();
    send(m);
  });

  $("text").addEventListener("input", () => {
    const now = Date.now();
    if (state.socket && state.room && now - lastTyping > 1000) {
      lastTyping = now;
      state.socket.emit("typing", { room: state.room });
    }
  });

  window.sioExample = {
    snapshot: () => ({
      connected: !!(state.socket && state.socket.connected),
      recovered: !!(state.socket && state.socket.recovered),
      transport: state.socket && state.socket.io.engine ? state.socket.io.engine.transport.name : "",
      room: state.room,
      messages: state.messages.map((m) => ({ seq: m.seq || 0, from: m.from, text: m.text })),
    }),
  };
})();
