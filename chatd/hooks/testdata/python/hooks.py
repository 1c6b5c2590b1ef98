"""python-socketio's AsyncClient (Debian's python3-socketio) against a chatd
with connect, join and send hooks: the session cookie of the Engine.IO
handshake decides who connects (over WebSocket and over long-polling), a
denied CONNECT is a connect error with the backend's reason, a denied join
an error in the acknowledgement, and a rewritten message what the room
gets."""
import asyncio
import sys

import socketio

URL, TIMEOUT = sys.argv[1], float(sys.argv[2])


async def main():
    stranger = socketio.AsyncClient(reconnection=False)
    refused = asyncio.Queue()

    @stranger.event
    async def connect_error(data):
        await refused.put(data)

    # wait=False: the connect error is awaited below, as an event.
    await stranger.connect(URL, auth={"name": "x"}, transports=["websocket"], wait=False)
    data = await asyncio.wait_for(refused.get(), TIMEOUT)
    assert data["message"] == "no session" and data["data"]["code"] == "hook_denied", data
    await stranger.disconnect()

    ann, bob = socketio.AsyncClient(), socketio.AsyncClient()
    got = asyncio.Queue()

    @bob.on("message")
    async def on_message(m, *offset):
        await got.put(m)

    await ann.connect(URL, headers={"Cookie": "session=py-ann"}, transports=["websocket"], wait_timeout=TIMEOUT)
    await bob.connect(URL, headers={"Cookie": "session=py-bob"}, transports=["polling"], wait_timeout=TIMEOUT)
    joined = await ann.call("join", {"room": "lobby"}, timeout=TIMEOUT)
    assert joined["room"] == "lobby" and joined["present"] == ["py-ann"], joined
    err = await ann.call("join", {"room": "staff"}, timeout=TIMEOUT)
    assert err["error"]["code"] == "forbidden" and err["error"]["message"] == "staff only", err
    await bob.call("join", {"room": "lobby"}, timeout=TIMEOUT)
    ack = await ann.call("send", {"room": "lobby", "cid": "py-1", "text": "a darn day"}, timeout=TIMEOUT)
    assert ack["seq"] == 1, ack
    m = await asyncio.wait_for(got.get(), TIMEOUT)
    assert (m["from"], m["text"]) == ("py-ann", "a **** day"), m
    await ann.disconnect()
    await bob.disconnect()
    print("python-socketio with hooks: cookie identity (websocket, polling), connect error, denied join, rewritten send ok")


asyncio.run(main())
