"""python-socketio's AsyncClient (Debian's python3-socketio) against chatd:
connect with a name, join, send with an acknowledgement, receive the message
event, an error in an acknowledgement, and a second client's view."""
import asyncio
import sys

import socketio

URL, TIMEOUT = sys.argv[1], float(sys.argv[2])


async def main():
    ann, bob = socketio.AsyncClient(), socketio.AsyncClient()
    got = asyncio.Queue()

    @bob.on("message")
    async def on_message(m, *offset):
        await got.put(m)

    await ann.connect(URL, auth={"name": "ann"}, transports=["websocket"], wait_timeout=TIMEOUT)
    await bob.connect(URL, auth={"name": "bob"}, transports=["polling"], wait_timeout=TIMEOUT)
    joined = await ann.call("join", {"room": "py"}, timeout=TIMEOUT)
    assert joined["room"] == "py" and joined["present"] == ["ann"], joined
    joined = await bob.call("join", {"room": "py"}, timeout=TIMEOUT)
    assert joined["present"] == ["ann", "bob"], joined
    ack = await ann.call("send", {"room": "py", "cid": "py-1", "text": "hello from python"}, timeout=TIMEOUT)
    assert ack["seq"] == 1 and ack["cid"] == "py-1", ack
    m = await asyncio.wait_for(got.get(), TIMEOUT)
    assert (m["room"], m["seq"], m["from"], m["text"]) == ("py", 1, "ann", "hello from python"), m
    dup = await ann.call("send", {"room": "py", "cid": "py-1", "text": "again"}, timeout=TIMEOUT)
    assert dup["duplicate"] is True and dup["seq"] == 1, dup
    err = await ann.call("send", {"room": "elsewhere", "cid": "py-2", "text": "x"}, timeout=TIMEOUT)
    assert err["error"]["code"] == "not_joined", err
    page = await bob.call("history", {"room": "py"}, timeout=TIMEOUT)
    assert [x["seq"] for x in page["messages"]] == [1], page
    await ann.disconnect()
    await bob.disconnect()
    print("python-socketio AsyncClient: join, send, ack, message, duplicate, error, history ok")


asyncio.run(main())
