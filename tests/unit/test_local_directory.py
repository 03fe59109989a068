"""One process: its in-memory directory, and no Redis anywhere in it."""

from __future__ import annotations

import subprocess
import sys

from netra.cluster.directory import LocalDirectory, Node


async def test_one_process_is_the_origin_of_each_room_it_claims_and_of_no_other() -> None:
    directory = LocalDirectory(Node("solo", "http://127.0.0.1:8080"))
    first = await directory.claim("show")
    assert first.node.id == "solo" and first.epoch == 1
    assert await directory.claim("show") == first  # a streamer's reconnect claims it again
    assert await directory.origins(["show", "other"]) == {"show": first}
    await directory.release("show")
    assert await directory.origins(["show"]) == {}
    assert (await directory.claim("show")).epoch == 2


def test_a_server_without_redis_never_imports_redis() -> None:
    code = (
        "import sys\n"
        "from netra.app import create_app\n"
        "from netra.config import Config\n"
        "create_app(Config(host='127.0.0.1', port=0, auth_secret='x' * 40))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]", out
