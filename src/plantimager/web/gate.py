"""The gate in front of every route when the page has accounts: session, CSRF token, role.

:class:`WebAuth` holds what the gate needs (the accounts, the key signing session cookies, how long
a session lasts); :class:`AuthGate` is the ASGI middleware that checks each request, inside
Starlette's ``SessionMiddleware`` (which signs the cookie with itsdangerous):

- no session, or an expired one, a logged-out one (its cookie kept or copied elsewhere), or one whose
  account was removed or whose password changed: a page is redirected to ``/login``, anything else
  answered 401 with ``{"error": ...}``;
- a state-changing request (any method but GET, HEAD and OPTIONS) needs the session's CSRF token
  in the ``X-CSRF-Token`` header (or, for a plain HTML form, in its ``csrf_token`` field, so the
  form works before or without the page's script), else 403 and nothing runs;
- a state-changing request other than logging out needs the operator role, else 403 naming the
  action and the role.

A stream that outlives its session (previews, live events) is ended within :data:`RECHECK`
seconds of the session's end. Only ``/login`` and ``/static/`` are open. Every refusal is logged
with the peer's address and the account name, never a password, token or cookie.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .accounts import OPERATOR, Account, AccountStore
from .throttle import LoginThrottle

__all__ = [
    "ACCOUNT_KEY",
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "DEFAULT_LIFETIME",
    "RECHECK",
    "TOKEN_ACCOUNT",
    "AuthGate",
    "WebAuth",
    "action_of",
    "page_context",
    "peer_of",
    "session_cookie",
]

logger = logging.getLogger(__name__)

#: Header carrying the session's CSRF token on state-changing requests.
CSRF_HEADER = "x-csrf-token"
#: Where the gate puts the request's :class:`~plantimager.web.accounts.Account` in the ASGI scope.
ACCOUNT_KEY = "plantimager.account"
#: Seconds a login lasts (12 hours: a working day at the rig).
DEFAULT_LIFETIME = 12 * 3600.0
#: The account of a session opened with the server's token (not a valid account name).
TOKEN_ACCOUNT = "(token)"
#: Name of the session cookie.
COOKIE = "plantimager_session"
# The browser keeps the cookie an hour past the session's end, so an expired session is named as such.
_COOKIE_GRACE = 3600
#: Seconds between two checks of the session of a stream (previews, events) while it runs.
RECHECK = 5.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Form field carrying the CSRF token of a plain HTML form (the header's stand-in).
CSRF_FIELD = "csrf_token"
# Largest form body the gate reads to find the token; a form of the page is a few hundred bytes.
_MAX_FORM = 16 * 1024
_OPEN_PATHS = ("/login", "/static/")
_ACTIONS = (
    ("/api/capture", "capture"),
    ("/api/download", "download"),
    ("/api/scan", "scan"),
    ("/api/scan/stop", "stop the scan"),
    ("/api/settings", "change camera settings"),
    ("/api/session", "start a new session"),
    ("/api/shutdown", "shut down the camera nodes"),
)


@dataclass
class WebAuth:
    """Accounts and sessions of a web page.

    Parameters
    ----------
    store : AccountStore
        The accounts.
    secret : str
        Key signing the session cookies; by default a new random one, so restarting the server
        logs everyone out.
    lifetime : float
        Seconds a login lasts.
    clock : callable
        Wall-clock time in seconds (``time.time``).
    throttle : LoginThrottle
        Failed logins per client and account (by default, 5 in 5 minutes lock them for 30 s).
    token : str, optional
        A token that logs in as an operator (``/login?token=...``), as Jupyter's: made at each
        start and printed for whoever started the server. It is shown in the page as the account
        :data:`TOKEN_ACCOUNT`.
    """

    store: AccountStore
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    lifetime: float = DEFAULT_LIFETIME
    clock: Callable[[], float] = time.time
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    token: str | None = None
    #: Session id -> its expiry, for the sessions logged out before they expired.
    _ended: dict[str, float] = field(default_factory=dict, repr=False)

    def check_token(self, sent: str) -> Account | None:
        """The token's operator account if ``sent`` is the server's token, else None."""
        if not self.token or not sent:
            return None
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), self.token.encode("utf-8")):
            return None
        return self._token_account()

    def _token_account(self) -> Account:
        stamp = hashlib.sha256((self.token or "").encode("utf-8")).hexdigest()[:16]
        return Account(TOKEN_ACCOUNT, OPERATOR, stamp)

    def open_session(self, session: dict[str, Any], account: Account) -> None:
        """Fill a fresh session for ``account`` (a new CSRF token: a token known before login is useless)."""
        session.clear()
        session.update(
            account=account.name,
            stamp=account.stamp,
            sid=secrets.token_urlsafe(16),
            csrf=secrets.token_urlsafe(24),
            expires=self.clock() + self.lifetime,
        )

    def end_session(self, session: dict[str, Any]) -> None:
        """Log ``session`` out for good: its cookie, even a copy kept elsewhere, is no session any more.

        The signed cookie cannot be taken back from the browser, so the server remembers the
        session's id until the session would have expired (the cookie key changes at every start,
        which ends every session anyway).
        """
        sid, expires = session.get("sid"), session.get("expires")
        if isinstance(sid, str) and isinstance(expires, (int, float)):
            now = self.clock()
            self._ended = {ended: until for ended, until in self._ended.items() if until > now}
            self._ended[sid] = float(expires)
        session.clear()

    def csrf_of(self, session: dict[str, Any]) -> str:
        """The session's CSRF token, created if it has none yet (the login form's)."""
        token = session.get("csrf")
        if not isinstance(token, str) or not token:
            token = session["csrf"] = secrets.token_urlsafe(24)
        return token

    def account_of(self, session: dict[str, Any]) -> tuple[Account | None, str]:
        """The session's account, or None and why not (for the refusal)."""
        name = session.get("account")
        if not isinstance(name, str):
            return None, "log in first"
        expires = session.get("expires")
        if not isinstance(expires, (int, float)) or expires <= self.clock():
            return None, "your session expired: log in again"
        sid = session.get("sid")
        if not isinstance(sid, str) or sid in self._ended:
            return None, "this session was logged out: log in again"
        if name == TOKEN_ACCOUNT:
            account = self._token_account() if self.token else None
            if account is None or account.stamp != session.get("stamp"):
                return None, "the login token is no longer valid (it changes at every start): log in again"
            return account, ""
        account = self.store.get(name)
        if account is None or account.stamp != session.get("stamp"):
            return None, f"account {name!r} was removed or its password changed: log in again"
        return account, ""


def session_cookie(auth: WebAuth) -> dict[str, Any]:
    """Keyword arguments of Starlette's ``SessionMiddleware`` for ``auth``'s sessions.

    The cookie is signed (not readable by the page's script, never sent to another site); its
    age is checked by the signature too, on top of the session's own expiry.
    """
    return {
        "session_cookie": COOKIE,
        "max_age": int(auth.lifetime) + _COOKIE_GRACE,
        "same_site": "strict",
        "https_only": False,
    }


def page_context(request: Request) -> dict[str, Any]:
    """What every template may show of the login: ``account``, ``can_operate``, ``csrf_token``.

    Without accounts there is no login: ``account`` and ``csrf_token`` are None and anyone may
    operate.
    """
    account: Account | None = request.scope.get(ACCOUNT_KEY)
    if account is None:
        return {"account": None, "can_operate": request.app.state.auth is None, "csrf_token": None}
    return {"account": account, "can_operate": account.operates, "csrf_token": request.session.get("csrf")}


def peer_of(scope: Scope) -> str:
    """``host:port`` of the client of a request (``-`` if unknown)."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def action_of(method: str, path: str) -> str:
    """What a state-changing request does, in words (for a refusal)."""
    if path.endswith("/capture") and path.startswith("/api/cameras/"):
        return "capture"
    if path.endswith("/settings") and path.startswith("/api/cameras/"):
        return "change camera settings"
    for prefix, action in _ACTIONS:
        if path == prefix:
            return action
    return f"{method} {path}"


def _csrf_matches(sent: str | None, expected: Any) -> bool:
    if not sent or not isinstance(expected, str) or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8"))


class AuthGate:
    """ASGI middleware refusing requests without a valid session, CSRF token or role.

    Parameters
    ----------
    app : ASGI app
        The app behind the gate (inside ``SessionMiddleware``).
    auth : WebAuth
        Accounts and sessions.
    """

    def __init__(self, app: ASGIApp, auth: WebAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        sent, receive = await self._sent_token(scope, receive)
        refusal = self._check(scope, sent)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        ended = asyncio.Event()  # streams are answers to GET
        await self.app(scope, self._listen(receive, ended), self._guard(scope, send, ended))

    def _guard(self, scope: Scope, send: Send, ended: asyncio.Event) -> Send:
        """``send`` that ends a long response once its session is no longer valid.

        It sends the end of the body and sets ``ended``, which makes the app see the client leave
        (see :meth:`_listen`): the stream stops as if the viewer had closed it.
        """
        session: dict[str, Any] = scope["session"]
        auth = self.auth
        next_check = auth.clock() + RECHECK

        async def guarded(message: dict[str, Any]) -> None:
            nonlocal next_check
            if ended.is_set():
                return  # the response was ended here; the rest of the stream is dropped
            if message["type"] == "http.response.body" and message.get("more_body"):
                now = auth.clock()
                if now >= next_check:
                    next_check = now + RECHECK
                    account, why = auth.account_of(session)
                    if account is None:
                        self._log(scope, session.get("account"), f"{why} (stream ended)")
                        ended.set()
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        return
            await send(message)

        return guarded

    @staticmethod
    def _listen(receive: Receive, ended: asyncio.Event) -> Receive:
        """``receive`` that reports the client gone once ``ended`` is set."""

        async def listening() -> dict[str, Any]:
            if ended.is_set():
                return {"type": "http.disconnect"}
            message = asyncio.ensure_future(receive())
            stop = asyncio.ensure_future(ended.wait())
            try:
                await asyncio.wait((message, stop), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not message.done():
                    message.cancel()
            if message.done() and not message.cancelled():
                return message.result()
            return {"type": "http.disconnect"}

        return listening

    @staticmethod
    async def _sent_token(scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
        """The CSRF token a request sent, and the ``receive`` the app reads the body from.

        The header wins. A state-changing request with a form body and no header has its body
        read here (up to :data:`_MAX_FORM` bytes) for the ``csrf_token`` field, and replayed to
        the app unchanged.
        """
        headers = dict(scope["headers"])
        sent = headers.get(CSRF_HEADER.encode("latin-1"))
        if sent is not None or scope["method"] in _SAFE_METHODS:
            return (sent.decode("latin-1") if sent is not None else None), receive
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/x-www-form-urlencoded":
            return None, receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= _MAX_FORM:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        body = b"".join(chunks)
        token = None
        if not more:
            fields = parse_qs(body.decode("latin-1"), max_num_fields=16)
            token = (fields.get(CSRF_FIELD) or [None])[0]
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await receive()

        return token, replay

    def _check(self, scope: Scope, sent: str | None) -> Response | None:
        session: dict[str, Any] = scope["session"]
        method, path = scope["method"], scope["path"]
        account, why = self.auth.account_of(session)
        if account is None:
            # The session is kept as it is (a new login replaces it): every request says why.
            self._log(scope, session.get("account"), why)
            return self._unauthenticated(scope, why)
        scope[ACCOUNT_KEY] = account
        if method in _SAFE_METHODS:
            return None
        if not _csrf_matches(sent, session.get("csrf")):
            why = (
                f"missing CSRF token: send the page's token in the {CSRF_HEADER} header"
                if not sent
                else "the CSRF token does not belong to this session: reload the page"
            )
            self._log(scope, account.name, why)
            return JSONResponse({"error": f"refused: {why}"}, status_code=403)
        if path != "/logout" and not account.operates:
            action = action_of(method, path)
            why = f"{action} needs the {OPERATOR} role; account {account.name!r} is a {account.role}"
            self._log(scope, account.name, why)
            return JSONResponse(
                {"error": f"refused: {why}", "action": action, "role": OPERATOR}, status_code=403
            )
        return None

    @staticmethod
    def _log(scope: Scope, account: Any, why: str) -> None:
        logger.warning(
            "refused %s %s from %s (account %s): %s",
            scope["method"],
            scope["path"],
            peer_of(scope),
            account if isinstance(account, str) else "-",
            why,
        )

    @staticmethod
    def _unauthenticated(scope: Scope, why: str) -> Response:
        headers = dict(scope["headers"])
        accept = headers.get(b"accept", b"").decode("latin-1")
        page = scope["method"] == "GET" and not scope["path"].startswith("/api/") and "text/html" in accept
        if page:
            query = scope["query_string"].decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            expired = "&expired=1" if why.startswith("your session expired") else ""
            return RedirectResponse(f"/login?next={quote(target, safe='')}{expired}", status_code=303)
        return JSONResponse({"error": f"not logged in: {why}"}, status_code=401)
