"""Fan-out: the per-viewer step of forwarding one packet (decide, patch, protect, send).

Two viewers with one interface and one result. A NativeViewer keeps its state in a C struct,
and a Group's native viewers get each packet in one call into fanout.c (built at install),
with no Python in the per-viewer loop. A PythonViewer is the reference: the same step with
`forwarder.rewrite` and the route's `rtp_rewritten`; a test checks that both send identical
datagrams. Native is used when the module is built, unless `--fanout python` asks otherwise.

What is not per packet stays in Python: the step only reports events (started, blocked,
failed) and the Subscription decides what follows (a sender report, a resync).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from netra.media import aiortc_private
from netra.media.aiortc_private import BLOCKED, SENT
from netra.media.forwarder import TS_MASK, TrackRewrite, rewrite

if TYPE_CHECKING:
    from netra.media.aiortc_private import SrtpRoute

try:
    from netra.media._fanout import ffi, lib
except ImportError:  # not built here (no compiler or Python headers at install)
    ffi = lib = None

MODES = ("auto", "native", "python")
# fanout.h's NETRA_EVENT_*: what happened to a viewer that Python must act on.
EVENT_STARTED = 1  # its stream began (a sender report follows)
EVENT_BLOCKED = 2  # a send would have blocked: dropped, not queued (a resync follows)
EVENT_FAILED = 4  # protect or send failed
_SCRATCH_BYTES = 64 * 1536  # fanout.c's BATCH viewers of NETRA_STRIDE bytes

_native = lib is not None
_scratch: Any = None


def available() -> bool:
    return lib is not None


def select(mode: str) -> str:
    """Choose the path for viewers made from now on (process-wide, like aiortc's patches);
    returns the one in use."""
    global _native, _scratch
    if mode not in MODES:
        raise ValueError(f"fan-out must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "native" and lib is None:
        raise RuntimeError("not built: install gcc and Python's headers, then reinstall Netra")
    _native = mode != "python" and lib is not None
    if _native:
        lib.netra_set_protect(ffi.cast("netra_protect_fn", aiortc_private.srtp_protect_address()))
        if _scratch is None:
            _scratch = ffi.new("uint8_t[]", _SCRATCH_BYTES)  # one: the loop is single-threaded
    return "native" if _native else "python"


def native() -> bool:
    return _native


class Sender(Protocol):
    def rtp_rewritten(self, template: bytes, seq: int, timestamp: int, ssrc: int) -> int: ...


@dataclass(slots=True)
class ViewerState(TrackRewrite):
    """The Python twin of fanout.h's `struct netra_viewer`: rewrite state and counters."""

    copies: int = 1
    packets: int = 0
    octets: int = 0
    dropped: int = 0
    send_failures: int = 0
    blocked: int = 0


class PythonViewer:
    """The reference step, one viewer at a time."""

    __slots__ = ("state", "_sender")

    def __init__(self, sender: Sender, state: ViewerState) -> None:
        self.state = state
        self._sender = sender

    def forward(self, template: bytes, seq: int, ts: int, can_start: bool) -> int:
        """Send one packet; returns the EVENT_* flags that Python must act on."""
        state = self.state
        was_started = state.started
        out_seq = rewrite(state, seq, can_start)
        if out_seq < 0:
            state.dropped += 1
            return 0
        events = 0 if was_started else EVENT_STARTED
        result = self._sender.rtp_rewritten(
            template, out_seq, (ts + state.ts_offset) & TS_MASK, state.ssrc
        )
        if result == SENT:
            state.packets += 1
            state.octets += len(template) - 12
            if state.copies > 1:  # a pull's: each is lost on its own; SRTP drops the rest
                for _ in range(1, state.copies):
                    self._sender.rtp_rewritten(
                        template, out_seq, (ts + state.ts_offset) & TS_MASK, state.ssrc
                    )
        elif result == BLOCKED:
            state.blocked += 1
            events |= EVENT_BLOCKED
        else:
            state.send_failures += 1
            events |= EVENT_FAILED
        return events

    def close(self) -> None:
        pass


class NativeViewer:
    """The same step in C. It owns a duplicate of the route's socket, so that no descriptor
    it sends on is closed under it, and holds the SRTP session, so that libsrtp's state lives
    as long as the struct that points at it."""

    __slots__ = ("state", "_socket", "_session")

    def __init__(self, route: SrtpRoute, state: ViewerState) -> None:
        cdata = ffi.new("struct netra_viewer *")
        for field in fields(ViewerState):
            setattr(cdata, field.name, getattr(state, field.name))
        host, port = route.address[0], route.address[1]
        if lib.netra_set_address(cdata, str(host).encode(), int(port)) != 0:
            raise ValueError(f"not a numeric address: {host!r}")
        self._socket = socket.socket(fileno=os.dup(route.socket.fileno()))
        self._socket.setblocking(False)
        cdata.fd = self._socket.fileno()
        cdata.srtp = ffi.cast("void *", route.srtp_address)
        self._session = route.session
        self.state: Any = cdata

    def forward(self, template: bytes, seq: int, ts: int, can_start: bool) -> int:
        if lib.netra_fan_out([self.state], 1, template, len(template), seq, ts, can_start,
                             _scratch):  # fmt: skip
            return self.take_events()
        return 0

    def take_events(self) -> int:
        events = int(self.state.events)
        self.state.events = 0
        return events

    def close(self) -> None:
        self._socket.close()


Viewer = PythonViewer | NativeViewer


def viewer(sender: Sender, route: SrtpRoute | None, state: ViewerState) -> Viewer:
    """A native viewer when the native path is on and the route is known, else a Python one
    sending through `sender`."""
    if _native and route is not None:
        try:
            return NativeViewer(route, state)
        except (OSError, ValueError):
            pass
    return PythonViewer(sender, state)


class Member(Protocol):
    """A Group's view of a subscription."""

    viewer: Viewer | None

    def on_events(self, events: int) -> None: ...


class NativeFanout:
    """A group's native viewers as one array of struct addresses: one call per packet."""

    __slots__ = ("_members", "_array", "_count")

    def __init__(self) -> None:
        self._members: list[Member] = []
        self._array: Any = ffi.new("struct netra_viewer *[]", 1)
        self._count = 0

    def add(self, member: Member) -> None:
        self._members.append(member)
        self._rebuild()

    def remove(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)
            self._rebuild()

    def _rebuild(self) -> None:
        states = [m.viewer.state for m in self._members if isinstance(m.viewer, NativeViewer)]
        self._array = ffi.new("struct netra_viewer *[]", states or 1)
        self._count = len(states)

    def send(self, template: bytes, seq: int, ts: int, can_start: bool) -> None:
        if self._count and lib.netra_fan_out(
            self._array, self._count, template, len(template), seq, ts, can_start, _scratch
        ):
            for member in self._members:
                viewer = member.viewer
                if isinstance(viewer, NativeViewer) and viewer.state.events:
                    member.on_events(viewer.take_events())
