"""The wire contract byte for byte: code writes long field names, the wire keeps short keys.

The literals below are what boxes and stations have always sent; a change here is a change
of the protocol (a new ``v``), not a refactoring.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from roadside.wire.commands import (
    ClipParams,
    CommandMsg,
    ErrorCode,
    NoParams,
    ReplyMsg,
    ReplyState,
)
from roadside.wire.messages import (
    CountMsg,
    EventMsg,
    EventPhase,
    HealthMsg,
    Message,
    OfflineReason,
    Presence,
    StatusMsg,
    dumps_line,
)
from roadside.wire.transfer import (
    XferAbort,
    XferAck,
    XferAckState,
    XferInit,
    pack_chunk,
    unpack_chunk,
)

ID = "01J5Z8K3QW4V7X2M9N6P1R0T5A"
XID = "01J5Z9C4D5E6F7G8H9J0K1M2N3"

PINNED: list[tuple[str, Message, bytes]] = [
    (
        "event end, every field",
        EventMsg(
            id=ID,
            phase=EventPhase.END,
            label="car",
            score=0.87,
            first_seen=1718003652.12,
            last_seen=1718003655.91,
            box=(0.412, 0.288, 0.071, 0.064),
            track=1042,
            direction="SE",
            zones=["left-lanes"],
            unsynced=1,
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","k":"e","c":"car","s":0.87,'
        b'"t0":1718003652.12,"t1":1718003655.91,"b":[0.412,0.288,0.071,0.064],"tr":1042,'
        b'"dir":"SE","z":["left-lanes"],"ns":1}',
    ),
    (
        "event start, optional fields left out",
        EventMsg(
            id=ID,
            phase=EventPhase.START,
            label="person",
            score=0.5,
            first_seen=1.0,
            last_seen=2.0,
            box=(0, 0, 1, 1),
            track=0,
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","k":"s","c":"person","s":0.5,"t0":1.0,'
        b'"t1":2.0,"b":[0.0,0.0,1.0,1.0],"tr":0}',
    ),
    (
        "count",
        CountMsg(id=ID, start=1718003640.0, end=1718003700.0, counts={"car": 14, "truck": 2}),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","t0":1718003640.0,"t1":1718003700.0,'
        b'"n":{"car":14,"truck":2}}',
    ),
    (
        "status offline (the last will)",
        StatusMsg(
            id=ID,
            state=Presence.OFFLINE,
            at=1718003600.55,
            reason=OfflineReason.LOST,
            software="0.1.0",
            model="ssd_mobilenet_v1_coco_quant",
            config_hash="3f9a1c0d2b7e",
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","st":"offline","t":1718003600.55,'
        b'"why":"lost","sw":"0.1.0","m":"ssd_mobilenet_v1_coco_quant","cfg":"3f9a1c0d2b7e"}',
    ),
    (
        "health, every reading",
        HealthMsg(
            id=ID,
            at=1718003900.0,
            uptime_s=86412,
            agent_uptime_s=3605,
            load_1m=1.42,
            cpu_temp_c=58.4,
            throttled=0,
            memory_mib=(612, 3796),
            disk_mib={"used": 5120.4, "free": 23310.2, "seg": 4096.0, "ob": 0.2},
            frames_in=54012,
            frames_out=53990,
            frames_dropped=22,
            detect_latency_ms=48.3,
            outbox_depth=0,
            outbox_losses={"health": 3, "fold": 1},
            link_up=1,
            reconnects=2,
            clock_synced=1,
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","t":1718003900.0,"up":86412,"au":3605,'
        b'"ld":1.42,"tc":58.4,"thr":0,"mem":[612,3796],'
        b'"dk":{"used":5120.4,"free":23310.2,"seg":4096.0,"ob":0.2},"fi":54012,"fo":53990,'
        b'"fd":22,"dl":48.3,"ob":0,"od":{"health":3,"fold":1},"ln":1,"rc":2,"ck":1}',
    ),
    (
        "command",
        CommandMsg(
            id="req-7_A",
            requester="officer@station",
            params={"from": 1718003600.0, "to": 1718003630.0, "quality": "low"},
            expires=1718007200.0,
        ),
        b'{"v":1,"id":"req-7_A","by":"officer@station",'
        b'"p":{"from":1718003600.0,"to":1718003630.0,"quality":"low"},"exp":1718007200.0}',
    ),
    (
        "reply done",
        ReplyMsg(
            id=ID,
            request_id="req-7_A",
            state=ReplyState.DONE,
            result={"xid": XID, "bytes": 1234},
            transfer_id=XID,
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","rq":"req-7_A","st":"done",'
        b'"r":{"xid":"01J5Z9C4D5E6F7G8H9J0K1M2N3","bytes":1234},'
        b'"xid":"01J5Z9C4D5E6F7G8H9J0K1M2N3"}',
    ),
    (
        "reply error",
        ReplyMsg(
            id=ID,
            request_id="req-7_A",
            state=ReplyState.ERROR,
            code=ErrorCode.OUT_OF_RANGE,
            detail="no footage",
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","rq":"req-7_A","st":"error",'
        b'"code":"out_of_range","msg":"no footage"}',
    ),
    (
        "reply progress",
        ReplyMsg(
            id=ID,
            request_id="req-7_A",
            state=ReplyState.PROGRESS,
            progress=0.25,
            detail="cutting",
            transfer_id=XID,
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","rq":"req-7_A","st":"progress",'
        b'"msg":"cutting","pg":0.25,"xid":"01J5Z9C4D5E6F7G8H9J0K1M2N3"}',
    ),
    (
        "xfer init",
        XferInit(
            id=XID,
            kind="clip",
            request_id="req-7_A",
            requester="officer@station",
            name="clip-1.mp4",
            size=70000,
            sha256="a" * 64,
            chunk_size=16384,
            at=1718003700.5,
            expires=1718025300.5,
            asking=2,
            meta={"asked": [1.0, 2.0], "quality": "original"},
        ),
        b'{"v":1,"id":"01J5Z9C4D5E6F7G8H9J0K1M2N3","kind":"clip","rq":"req-7_A",'
        b'"by":"officer@station","name":"clip-1.mp4","size":70000,"sha256":"' + b"a" * 64 + b'",'
        b'"cs":16384,"t":1718003700.5,"exp":1718025300.5,"q":2,'
        b'"meta":{"asked":[1.0,2.0],"quality":"original"}}',
    ),
    (
        "xfer ack receiving",
        XferAck(
            id=ID,
            transfer_id=XID,
            state=XferAckState.RECEIVING,
            held=3,
            ranges=[(5, 7)],
            asking=2,
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","x":"01J5Z9C4D5E6F7G8H9J0K1M2N3",'
        b'"st":"recv","n":3,"r":[[5,7]],"q":2}',
    ),
    (
        "xfer ack failed",
        XferAck(
            id=ID,
            transfer_id=XID,
            state=XferAckState.FAILED,
            code=ErrorCode.DEADLINE,
            detail="too slow",
        ),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","x":"01J5Z9C4D5E6F7G8H9J0K1M2N3",'
        b'"st":"fail","n":0,"r":[],"code":"deadline","msg":"too slow"}',
    ),
    (
        "xfer abort",
        XferAbort(id=ID, code=ErrorCode.CANCELLED, detail="cancelled by officer"),
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","code":"cancelled",'
        b'"msg":"cancelled by officer"}',
    ),
]


@pytest.mark.parametrize(("what", "msg", "wire"), PINNED, ids=[p[0] for p in PINNED])
def test_the_bytes_on_the_wire_are_pinned(what: str, msg: Message, wire: bytes) -> None:
    assert msg.encode() == wire
    assert type(msg).decode(wire) == msg  # and they read back into the same message


def test_console_lines_and_chunks_are_pinned() -> None:
    event = PINNED[0][1]
    assert dumps_line("junction-07", event) == (
        '{"dev":"junction-07","type":"event","v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","k":"e",'
        '"c":"car","s":0.87,"t0":1718003652.12,"t1":1718003655.91,'
        '"b":[0.412,0.288,0.071,0.064],"tr":1042,"dir":"SE","z":["left-lanes"],"ns":1}'
    )
    chunk = pack_chunk(16384, b"hello")
    assert chunk.hex() == "524301003610a686000000000000400068656c6c6f"
    assert unpack_chunk(chunk) == (16384, b"hello")


def test_states_keep_their_wire_values() -> None:
    assert [p.value for p in EventPhase] == ["s", "e"]
    assert [s.value for s in Presence] == ["online", "offline"]
    assert [r.value for r in OfflineReason] == ["stop", "lost"]
    assert [s.value for s in ReplyState] == ["done", "error", "progress"]
    assert [s.value for s in XferAckState] == ["recv", "done", "fail", "unknown"]
    assert [c.value for c in ErrorCode] == [
        "bad_request",
        "unknown_command",
        "bad_params",
        "out_of_range",
        "too_large",
        "not_found",
        "busy",
        "expired",
        "cancelled",
        "deadline",
        "unavailable",
        "failed",
        "bad_config",
        "would_disconnect",
        "rolled_back",
    ]


def test_unknown_keys_are_ignored_and_long_names_do_not_count_on_the_wire() -> None:
    newer = (
        b'{"v":1,"id":"01J5Z8K3QW4V7X2M9N6P1R0T5A","k":"s","c":"car","s":0.8,"t0":1,"t1":2,'
        b'"b":[0,0,1,1],"tr":1,"colour":"red"}'
    )
    assert EventMsg.decode(newer).label == "car"
    long_named = newer.replace(b'"k":"s"', b'"phase":"s"')
    with pytest.raises(ValidationError) as err:
        EventMsg.decode(long_named)
    first = err.value.errors()[0]
    assert (first["loc"], first["type"]) == (("k",), "missing")  # errors name the wire key
    bad_phase = newer.replace(b'"k":"s"', b'"k":"x"')
    with pytest.raises(ValidationError) as err:
        EventMsg.decode(bad_phase)
    assert err.value.errors()[0]["loc"] == ("k",)
    assert err.value.errors()[0]["msg"] == "Input should be 's' or 'e'"
    # a reason code a newer box invents still parses: codes travel as plain strings
    reply = ReplyMsg.decode(
        b'{"v":1,"id":"%s","rq":"r1","st":"error","code":"new_one"}' % ID.encode()
    )
    assert reply.code == "new_one" and reply.final


def test_command_parameters_stay_strict() -> None:
    cmd = CommandMsg.decode(PINNED[5][2])
    assert ClipParams.model_validate(cmd.params).end == 1718003630.0
    with pytest.raises(ValidationError) as err:
        ClipParams.model_validate({"from": 1.0, "to": 2.0, "form": "low"})
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        ClipParams.model_validate({"from": "1", "to": 2.0})  # strict: no strings for numbers
    with pytest.raises(ValidationError):
        NoParams.model_validate({"x": 1})
    assert CommandMsg.from_wire({"id": "r1", "by": "a@b", "extra": 1}).params == {}
