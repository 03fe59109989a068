"""NetraError → HTTP response: the status from netra.errors' one mapping, and an RFC 9457
problem+json body that tells a person what to fix."""

from __future__ import annotations

import json
import logging
import math

from aiohttp import web
from aiohttp.typedefs import Handler

from netra.errors import InternalError, NetraError

logger = logging.getLogger("netra.http")


def problem(error: NetraError) -> web.Response:
    status = error.http_status()
    body = {"type": f"urn:netra:error:{error.code}", "title": error.code, "status": status,
            "detail": error.message}  # fmt: skip
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="netra"'
    return web.Response(
        status=status,
        text=json.dumps(body) + "\n",
        content_type="application/problem+json",
        headers=headers,
    )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NetraError as error:
        logger.info("%s %s refused: %s %s", request.method, request.path, error.code, error.message)
        return problem(error)
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("internal error on %s %s", request.method, request.path)
        return problem(InternalError("internal server error"))
