import pytest

from netra.errors import UserError
from netra.rooms.participant import Participant, Role
from netra.rooms.registry import RoomRegistry


class Listener:
    def __init__(self):
        self.events = []

    def stream_started(self, room):
        self.events.append(("started", room.id))

    def stream_ended(self, reason):
        self.events.append(("ended", reason))

    def viewers_changed(self, count):
        self.events.append(("viewers", count))

    def stream_stalled(self, reason):
        self.events.append(("stalled", reason))

    def stream_resumed(self):
        self.events.append(("resumed",))


class Codec:
    def __init__(self, mime_type="video/VP8"):
        self.mimeType = mime_type
        self.clockRate = 90000
        self.parameters = {}


class FakePublication:
    """What the Room asks of a Publication: its kind and codec, adopt and close."""

    def __init__(self, kind="video", mime_type="video/VP8"):
        self.kind = kind
        self.codec = Codec(mime_type)
        self.adopted = []
        self.closed = False

    def adopt(self, other):
        self.adopted.append(other)

    def close(self):
        self.closed = True

    def snapshot(self):
        return {}


def participant(client_id, role):
    return Participant(client_id, role, Listener())


def test_a_room_is_created_on_first_join_and_dropped_when_empty():
    rooms = RoomRegistry()
    viewer = participant("v1", Role.VIEWER)
    room = rooms.join("r", viewer)
    assert rooms.get("r") is room and len(rooms) == 1
    rooms.leave(room, viewer)
    assert rooms.get("r") is None and len(rooms) == 0


def test_a_second_streamer_is_refused_and_the_first_keeps_the_room():
    rooms = RoomRegistry()
    first = participant("s1", Role.STREAMER)
    room = rooms.join("r", first)
    with pytest.raises(UserError) as info:
        rooms.join("r", participant("s2", Role.STREAMER))
    assert info.value.code == "streamer-exists"
    assert room.streamer is first


def test_a_refused_join_does_not_leave_an_empty_room_behind(monkeypatch):
    rooms = RoomRegistry()

    def refuse(self, participant):
        raise UserError("no", code="streamer-exists")

    monkeypatch.setattr("netra.rooms.room.Room.join", refuse)
    with pytest.raises(UserError):
        rooms.join("r", participant("s1", Role.STREAMER))
    assert rooms.get("r") is None and len(rooms) == 0


def test_a_room_past_its_viewer_limit_refuses_with_room_full():
    rooms = RoomRegistry(max_viewers_per_room=2)
    for n in range(2):
        rooms.join("r", participant(f"v{n}", Role.VIEWER))
    with pytest.raises(UserError) as info:
        rooms.join("r", participant("v2", Role.VIEWER))
    assert info.value.code == "room-full" and info.value.retry_after
    rooms.join("r", participant("s", Role.STREAMER))  # the streamer is not a viewer


def test_a_server_past_its_room_limit_refuses_a_new_room_but_not_an_open_one():
    rooms = RoomRegistry(max_rooms=1)
    rooms.join("a", participant("v1", Role.VIEWER))
    with pytest.raises(UserError) as info:
        rooms.join("b", participant("v2", Role.VIEWER))
    assert info.value.code == "too-many-rooms" and rooms.get("b") is None
    rooms.join("a", participant("v3", Role.VIEWER))


def live_room():
    rooms = RoomRegistry()
    streamer, viewer = participant("s", Role.STREAMER), participant("v", Role.VIEWER)
    room = rooms.join("r", streamer)
    rooms.join("r", viewer)
    first = [FakePublication("audio", "audio/opus"), FakePublication()]
    room.start_stream(streamer, first)
    viewer.listener.events.clear()
    return room, streamer, viewer, first


def test_a_streamer_reconnecting_in_the_same_codecs_carries_the_stream_on():
    room, streamer, viewer, first = live_room()
    room.stall_stream(streamer, "streamer-reconnecting")
    again = [FakePublication(), FakePublication("audio", "audio/opus")]  # another order
    room.start_stream(streamer, again)
    assert room.publications == tuple(first)  # what viewers subscribe to stays
    assert first[0].adopted == [again[1]] and first[1].adopted == [again[0]]
    room.resume_stream(streamer)
    assert viewer.listener.events == [("stalled", "streamer-reconnecting"), ("resumed",)]


def test_a_streamer_reconnecting_in_another_codec_offers_the_stream_again():
    room, streamer, viewer, first = live_room()
    again = [FakePublication("audio", "audio/opus"), FakePublication("video", "video/H264")]
    room.start_stream(streamer, again)
    assert room.publications == tuple(again) and all(p.closed for p in first)
    assert viewer.listener.events == [("started", "r")]  # not ended: a new offer follows


def test_stalls_are_told_once_per_reason_and_only_while_live():
    room, streamer, viewer, _ = live_room()
    room.stall_stream(streamer, "no-media")
    room.stall_stream(streamer, "no-media")
    room.stall_stream(viewer, "no-media")  # not the streamer: ignored
    room.stall_stream(streamer, "streamer-reconnecting")
    room.end_stream(streamer, "streamer-vanished")
    room.stall_stream(streamer, "no-media")
    assert viewer.listener.events == [
        ("stalled", "no-media"),
        ("stalled", "streamer-reconnecting"),
        ("ended", "streamer-vanished"),
    ]


def test_everyone_hears_the_viewer_count_change():
    rooms = RoomRegistry()
    streamer = participant("s", Role.STREAMER)
    room = rooms.join("r", streamer)
    v1 = participant("v1", Role.VIEWER)
    rooms.join("r", v1)
    rooms.leave(room, v1)
    assert [e for e in streamer.listener.events if e[0] == "viewers"] == [
        ("viewers", 0),
        ("viewers", 1),
        ("viewers", 0),
    ]
    assert ("viewers", 1) in v1.listener.events


def test_a_streamer_joining_does_not_change_the_viewer_count_others_hear():
    rooms = RoomRegistry()
    viewer = participant("v", Role.VIEWER)
    rooms.join("r", viewer)
    streamer = participant("s", Role.STREAMER)
    rooms.join("r", streamer)
    assert viewer.listener.events == [("viewers", 1)]
    assert streamer.listener.events == [("viewers", 1)]


def test_rooms_are_isolated():
    rooms = RoomRegistry()
    s_a, v_a = participant("sa", Role.STREAMER), participant("va", Role.VIEWER)
    v_b = participant("vb", Role.VIEWER)
    room_a = rooms.join("a", s_a)
    rooms.join("a", v_a)
    rooms.join("b", v_b)
    room_a.start_stream(s_a, [FakePublication()])
    assert ("started", "a") in v_a.listener.events
    assert not any(e[0] == "started" for e in v_b.listener.events)
    assert not rooms.get("b").live


def test_starting_and_ending_a_stream_tells_viewers_and_only_the_streamer_can():
    rooms = RoomRegistry()
    streamer, viewer = participant("s", Role.STREAMER), participant("v", Role.VIEWER)
    room = rooms.join("r", viewer)
    rooms.join("r", streamer)
    room.start_stream(viewer, [FakePublication()])  # not the streamer: ignored
    assert not room.live
    room.start_stream(streamer, [FakePublication()])
    assert room.live and ("started", "r") in viewer.listener.events
    room.end_stream(streamer, "streamer-left")
    assert not room.live
    assert ("ended", "streamer-left") in viewer.listener.events
    assert ("ended", "streamer-left") in streamer.listener.events
