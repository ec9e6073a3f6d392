"""Who may call what: every route of the serving app is public or protected, decided when the app is built.

Data endpoints (``/predict``, ``/feedback``) need the API key when one is configured (``LOOPML_API_KEY``);
admin endpoints (``/admin/...``) always need the admin token (``LOOPML_ADMIN_TOKEN``) and are disabled
without one. Secrets are compared in constant time.

>>> secrets = Secrets.resolve(api_key="k", admin_token=None)
>>> secrets.api_key, secrets.admin_token
('k', None)
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

API_KEY_ENV = "LOOPML_API_KEY"
ADMIN_TOKEN_ENV = "LOOPML_ADMIN_TOKEN"

# Probes, metrics and the docs answer anyone: an orchestrator or a scraper holds no key.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

_bearer = HTTPBearer(auto_error=False, scheme_name="BearerKey",
                     description="`Authorization: Bearer <key>`: the API key (data endpoints) or the admin token.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey",
                        description="`X-API-Key: <key>`: the API key, when LOOPML_API_KEY is set.")
_admin_header = APIKeyHeader(name="X-Admin-Token", auto_error=False, scheme_name="AdminToken",
                             description="`X-Admin-Token: <token>`: the admin token (LOOPML_ADMIN_TOKEN).")


@dataclass(frozen=True)
class Secrets:
    """The API key and admin token an app checks; ``None`` means not configured."""

    api_key: str | None
    admin_token: str | None

    @classmethod
    def resolve(cls, api_key: str | None, admin_token: str | None) -> Secrets:
        """Explicit values win; else the environment; an empty value counts as not set."""
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV)
        return cls(api_key=key or None, admin_token=token or None)


def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    key: Annotated[str | None, Security(_api_key)],
) -> None:
    """Dependency of the data endpoints: passes when no API key is configured or the right one is sent."""
    expected = request.app.state.secrets.api_key
    if expected is None:
        return
    sent = key if key is not None else (bearer.credentials if bearer else None)
    if sent is None:
        raise _unauthorized("no API key sent; send the header 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if not _same(sent, expected):
        raise _unauthorized("the API key is not valid; send the key set in LOOPML_API_KEY as "
                            "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")


def require_admin(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    token: Annotated[str | None, Security(_admin_header)],
) -> None:
    """Dependency of the admin endpoints: 403 while no admin token is configured, 401 without the right one."""
    expected = request.app.state.secrets.admin_token
    if expected is None:
        raise HTTPException(403, detail=f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV}")
    sent = token if token is not None else (bearer.credentials if bearer else None)
    if sent is None or not _same(sent, expected):
        raise _unauthorized(f"{'no' if sent is None else 'wrong'} admin token; send the token set in "
                            f"{ADMIN_TOKEN_ENV} as 'Authorization: Bearer <token>' or 'X-Admin-Token: <token>'")


PROTECTIONS = (require_api_key, require_admin)


def unguarded_routes(app: FastAPI) -> list[str]:
    """Routes that are neither public nor behind :func:`require_api_key` / :func:`require_admin`."""
    found = []
    for route in app.routes:
        path = getattr(route, "path", repr(route))
        if path in PUBLIC_PATHS:
            continue
        calls = {d.call for d in route.dependant.dependencies} if isinstance(route, APIRoute) else set()
        if not calls & set(PROTECTIONS):
            found.append(path)
    return found


def _same(sent: str, expected: str) -> bool:
    # Bytes, because compare_digest refuses non-ASCII str, and a client may send any header bytes.
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
