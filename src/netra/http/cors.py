"""CORS for the WHIP and WHEP routes, so that a player or publisher page on another origin
can use them: browsers preflight every call (Authorization, Content-Type and If-Match are not
simple headers), and a library cannot read Location, ETag or Link unless they are exposed."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

PREFIXES = ("/whip/", "/whep/")
ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, If-Match, ETag, Accept, Cache-Control"
EXPOSE_HEADERS = "Location, ETag, Link, Retry-After, Accept-Post, Accept-Patch"


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PREFIXES):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    # Tokens travel in Authorization, never in cookies, so any origin may call.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    if isinstance(response, web.HTTPException):
        raise response
    return response
