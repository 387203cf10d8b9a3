"""Query strings hold exactly what the operation declares: no unknown names, no repeated values.

FastAPI ignores query parameters it does not know and keeps the last of repeated ones, so a typo
(``?enviroment=live``) or ``?at=a&at=b`` is answered as if it were not there. The schema says
otherwise (no additional parameters, one value each), so the server refuses both with a ``422``
naming the parameter, as for any other invalid request (a request-validation error: the one
refusal handler answers, counts and logs it). Mounted as an app-wide dependency.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


def known_query_only(request: Request) -> None:
    """Refuse query parameters the matched route does not declare, and repeated ones."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema or not request.query_params:
        return  # /metrics is not in the schema: scrape configs may add their own parameters
    declared = {param.alias for param in route.dependant.query_params}
    for dependency in route.dependant.dependencies:  # parameters of dependencies (none today)
        declared |= {param.alias for param in dependency.query_params}
    for name in request.query_params:
        if name not in declared:
            raise _invalid(name[:64], "unknown query parameter")
        if len(request.query_params.getlist(name)) > 1:
            raise _invalid(name, "give this parameter once")


def _invalid(name: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "query_parameter", "loc": (f"query.{name}",), "msg": message}])
