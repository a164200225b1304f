"""Logging in and out: ``/login`` (a form, or JSON for scripts), ``/logout`` and ``/api/account``.

These routes exist only when the page has accounts (see :mod:`plantimager.web.gate`). The login
form carries a CSRF token of the not-yet-logged-in session; a JSON login needs no token, since a
page of another site cannot send a JSON body here (the browser would ask first, and this app never
allows it) and a browser's ``Origin`` header is checked. A successful login starts a new session
with a new CSRF token.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import ApiError
from ..gate import ACCOUNT_KEY, CSRF_HEADER, TOKEN_ACCOUNT, WebAuth, peer_of

__all__ = ["routes"]

logger = logging.getLogger(__name__)

_MAX_LOGIN_BODY = 4096
_WRONG = "wrong account name or password"


def _auth(request: Request) -> WebAuth:
    return request.app.state.auth


def _next_of(value: Any) -> str:
    """A local path to go to after login (anything else: the dashboard)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _render(request: Request, status: int = 200, **context: Any) -> Response:
    auth = _auth(request)
    context.setdefault("error", None)
    context.setdefault("next", _next_of(request.query_params.get("next")))
    context["login_csrf"] = auth.csrf_of(request.session)
    context["token_login"] = auth.token is not None
    context["password_login"] = bool(auth.store)
    return request.app.state.templates.TemplateResponse(request, "login.html", context, status_code=status)


async def login_page(request: Request) -> Response:
    """``GET /login[?token=...]``: the login form, or straight on if logged in or given the server's token."""
    auth = _auth(request)
    target = _next_of(request.query_params.get("next"))
    sent = request.query_params.get("token")
    if sent is not None:
        key = (request.client.host if request.client else "-", TOKEN_ACCOUNT)
        wait = auth.throttle.locked_for(key, auth.clock())
        account = auth.check_token(sent) if wait <= 0 else None
        if account is None:
            why = f"too many wrong tokens: try again in {wait:.0f} s" if wait > 0 else "wrong login token"
            if wait <= 0:
                auth.throttle.failed(key, auth.clock())
            _refuse(request, TOKEN_ACCOUNT, why)
            message = "This login token is not valid (a new one is printed at every start of the server)."
            return _render(request, 429 if wait > 0 else 401, error=message, next=target)
        auth.throttle.succeeded(key)
        auth.open_session(request.session, account)
        logger.info("%s logged in with the token", peer_of(request.scope))
        return RedirectResponse(target, status_code=303)  # the token leaves the address bar
    account, _why = auth.account_of(request.session)
    if account is not None:
        return RedirectResponse(target, status_code=303)
    notice = "Your session expired: log in again." if request.query_params.get("expired") else None
    return _render(request, notice=notice)


async def _body(request: Request) -> tuple[bytes, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_LOGIN_BODY:
            raise ApiError(413, f"a login is at most {_MAX_LOGIN_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks), ctype


def _refuse(request: Request, account: str, why: str) -> None:
    shown = "".join(c if c.isprintable() else "?" for c in account[:64])  # typed: no line breaks
    logger.warning("refused login from %s (account %s): %s", peer_of(request.scope), shown or "-", why)


async def login(request: Request) -> Response:
    """``POST /login``: check the account and password; start a session.

    A form (``account``, ``password``, ``csrf_token``, ``next``) is answered with a redirect, or the
    form again with the reason (401 wrong name or password, 403 a bad token); a JSON body
    (``{"account": ..., "password": ...}``) with ``{"account", "role", "csrf_token"}`` or 401/403.
    """
    auth = _auth(request)
    raw, ctype = await _body(request)
    as_json = ctype == "application/json"
    if as_json:
        try:
            fields = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(400, 'malformed JSON: send {"account": ..., "password": ...}') from None
        if not isinstance(fields, dict):
            raise ApiError(400, "the body must be a JSON object with account and password")
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
            _refuse(request, str(fields.get("account", "")), f"login from a page of {origin[:100]}")
            raise ApiError(403, f"refused: a page of {origin[:100]} may not log in here")
    elif ctype == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(raw.decode("utf-8"), max_num_fields=8)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "malformed login form") from None
        fields = {key: values[0] for key, values in parsed.items()}
    else:
        raise ApiError(415, "send the login as a form or as application/json")
    name, password = fields.get("account"), fields.get("password")
    name = name if isinstance(name, str) else ""
    target = _next_of(fields.get("next"))
    if not as_json:
        sent = fields.get("csrf_token") or ""
        expected = request.session.get("csrf") or ""
        if not sent or not expected or not hmac.compare_digest(sent.encode(), str(expected).encode()):
            _refuse(request, name, "the login form's CSRF token is missing or foreign")
            return _render(
                request,
                403,
                error="This login form is out of date: log in again.",
                login_name=name,
                next=target,
            )
    if not name or not isinstance(password, str) or not password:
        _refuse(request, name, "no account name or password")
        if as_json:
            raise ApiError(401, "give an account and a password")
        return _render(
            request, 401, error="Give your account name and password.", login_name=name, next=target
        )
    key = (request.client.host if request.client else "-", name)
    wait = auth.throttle.locked_for(key, auth.clock())
    if wait > 0:
        why = f"too many failed logins for {name[:64]!r}: try again in {wait:.0f} s"
        _refuse(request, name, why)
        if as_json:
            raise ApiError(429, why)
        return _render(
            request,
            429,
            error=f"Too many failed logins: try again in {wait:.0f} s.",
            login_name=name,
            next=target,
        )
    account = await run_in_threadpool(auth.store.check, name, password)
    if account is None:
        auth.throttle.failed(key, auth.clock())
        _refuse(request, name, _WRONG)
        if as_json:
            raise ApiError(401, _WRONG)
        return _render(request, 401, error=f"{_WRONG[0].upper()}{_WRONG[1:]}.", login_name=name, next=target)
    auth.throttle.succeeded(key)
    auth.open_session(request.session, account)
    logger.info("%s logged in as %s (%s)", peer_of(request.scope), account.name, account.role)
    if as_json:
        return JSONResponse(
            {"account": account.name, "role": account.role, "csrf_token": request.session["csrf"]}
        )
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    """``POST /logout`` (with the CSRF token): end the session."""
    account = request.scope.get(ACCOUNT_KEY)
    request.app.state.auth.end_session(request.session)  # a copy of its cookie is refused too
    if account is not None:
        logger.info("%s logged out (%s)", peer_of(request.scope), account.name)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"logged_out": True})
    return RedirectResponse("/login", status_code=303)


async def whoami(request: Request) -> Response:
    """``GET /api/account``: the session's ``account``, ``role``, ``expires`` and ``csrf_token``."""
    account = request.scope[ACCOUNT_KEY]
    session = request.session
    return JSONResponse(
        {
            "account": account.name,
            "role": account.role,
            "expires": session.get("expires"),
            "csrf_token": session.get("csrf"),
            "csrf_header": CSRF_HEADER,
        }
    )


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/api/account", whoami, methods=["GET"]),
]
