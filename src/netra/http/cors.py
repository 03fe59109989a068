"""CORS for the WHIP and WHEP routes, so that a player or publisher page on another origin
can use them: browsers preflight every call (Authorization, Content-Type and If-Match are not
simple headers), and a library cannot read Location, ETag or Link unless they are exposed.

The headers go on as each response is prepared (aiohttp's on_response_prepare), so that a
streamed response (the WHEP event stream) and an error get them as well."""

from __future__ import annotations

from aiohttp import web

PREFIXES = ("/whip/", "/whep/")
ALLOW_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, If-Match, ETag, Accept, Cache-Control"
EXPOSE_HEADERS = "Location, ETag, Link, Retry-After, Accept-Post, Accept-Patch"


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(PREFIXES):
        return
    # Tokens travel in Authorization, never in cookies, so any origin may call.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
