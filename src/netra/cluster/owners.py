"""Which node holds a session, and how one node hands a client's request to it.

A session id that a client keeps (a WHIP/WHEP resource's, a resume key) names the node that
holds the session, so that any node of a cluster can send the client's later requests there
(netra.http.forward, netra.signaling.remote).
"""

from __future__ import annotations

# Between a session's random id and its node; in no token_urlsafe and no node id.
NODE_SEPARATOR = "~"
# On a request one node passes to another: the passing node's id. Such a request is served
# where it lands, never passed on again.
FORWARDED = "X-Netra-Forwarded-By"
# On a piped WebSocket: the client's own address, trusted only with a `relay` token.
CLIENT_ADDRESS = "X-Netra-Client-Address"


def named(random_id: str, node: str | None) -> str:
    """A session id that names the node holding the session (one process: no node)."""
    return f"{random_id}{NODE_SEPARATOR}{node}" if node else random_id


def owner_node(session_id: str) -> str | None:
    """The node a session id names, if it names one."""
    _, separator, node = session_id.rpartition(NODE_SEPARATOR)
    return node if separator else None
