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

    def replaced(self):
        self.events.append(("replaced",))


class FakePublication:
    kind = "video"

    class codec:
        mimeType = "video/VP8"

    def snapshot(self):
        return {}


def participant(client_id, role, resume_key=""):
    return Participant(client_id, role, Listener(), resume_key=resume_key)


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


def test_a_rejoin_with_the_resume_key_replaces_the_old_streamer_at_once():
    rooms = RoomRegistry()
    old = participant("s1", Role.STREAMER, resume_key="k1")
    viewer = participant("v", Role.VIEWER)
    room = rooms.join("r", old)
    rooms.join("r", viewer)
    room.start_stream(old, [FakePublication()])
    new = participant("s2", Role.STREAMER, resume_key="k2")
    assert rooms.join("r", new, resume_key="k1") is room
    assert room.streamer is new and not room.live
    assert ("replaced",) in old.listener.events
    assert ("ended", "streamer-disconnected") in viewer.listener.events


def test_a_wrong_resume_key_or_role_replaces_nobody():
    rooms = RoomRegistry()
    streamer = participant("s1", Role.STREAMER, resume_key="k1")
    rooms.join("r", streamer)
    with pytest.raises(UserError):
        rooms.join("r", participant("s2", Role.STREAMER), resume_key="guess")
    rooms.join("r", participant("v", Role.VIEWER), resume_key="k1")  # a viewer cannot take it
    assert rooms.get("r").streamer is streamer
    assert ("replaced",) not in streamer.listener.events


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
