"""The loopback redirect of an OAuth sign-in (RFC 8252 §7.3).

The app listens on ``http://127.0.0.1:<random port>/`` while the person signs in in their
browser; the provider redirects the browser there with ``?code=...&state=...`` (or posts the
same fields, for ``response_mode=form_post``). :class:`LoopbackReceiver` is that listener: it
accepts exactly one redirect, answers the browser with a short page saying it may be closed, and
hands the parameters to the flow, which checks ``state`` and redeems the code with its PKCE
verifier through the provider's SDK.

On a machine without a desktop the browser runs elsewhere and the redirect cannot arrive; the
person pastes the address their browser ended on instead (:meth:`Browser.redirected`).
:func:`authorize` waits for whichever comes first.
"""

from __future__ import annotations

import html
import http.server
import logging
import threading
import time
import urllib.parse
from types import TracebackType

from safekeep.common.cancel import NEVER, CancelToken
from safekeep.common.errors import SafekeepError
from safekeep.storage.signin import Browser

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


class SignInError(SafekeepError):
    """Signing in did not complete (refused, timed out, or the answer did not match)."""

    exit_code = 13


_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Safekeep</title></head>'
    '<body style="font-family:sans-serif;max-width:36em;margin:4em auto">'
    "<h1>{title}</h1><p>{text}</p></body></html>"
)


class LoopbackReceiver:
    """Receives one OAuth redirect on 127.0.0.1. Use as a context manager.

    ``port`` 0 (the default) takes a free port; a provider that matches redirect addresses
    exactly, port included (Dropbox), passes the port registered with it. A busy port raises
    ``OSError``.
    """

    def __init__(self, *, path: str = "/", port: int = 0) -> None:
        self._path = path
        self._params: dict[str, str] | None = None
        self._arrived = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                receiver._accept(self, parts.path, urllib.parse.parse_qsl(parts.query))

            def do_POST(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20)).decode("utf-8", "replace")
                receiver._accept(self, parts.path, urllib.parse.parse_qsl(body))

            def log_message(self, format: str, *args: object) -> None:
                log.debug("loopback: " + format, *args)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-loopback", daemon=True)
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._path}"

    def _accept(
        self, handler: http.server.BaseHTTPRequestHandler, path: str, pairs: list[tuple[str, str]]
    ) -> None:
        params = dict(pairs)
        if path != self._path or not ({"code", "error"} & params.keys()):
            handler.send_error(404)
            return
        if "error" in params:
            title, text = "Sign-in was not completed", params.get("error_description") or params["error"]
        else:
            title, text = "Signed in", "Safekeep has what it needs. You can close this window."
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        if self._params is None:
            self._params = params
            self._arrived.set()

    def wait(self, timeout: float, cancel: CancelToken = NEVER) -> dict[str, str] | None:
        """The redirect's parameters, or ``None`` if none arrived within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._arrived.wait(0.1):
            cancel.raise_if_cancelled()
            if time.monotonic() >= deadline:
                return None
        return self._params

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackReceiver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def parse_redirect(address: str) -> dict[str, str]:
    """The parameters of a redirected address the person pasted (query or fragment)."""
    parts = urllib.parse.urlsplit(address.strip())
    return dict(urllib.parse.parse_qsl(parts.query or parts.fragment))


def authorize(
    url: str,
    receiver: LoopbackReceiver,
    browser: Browser,
    *,
    provider: str,
    timeout: float = DEFAULT_TIMEOUT,
    cancel: CancelToken = NEVER,
) -> dict[str, str]:
    """Show the consent page and return the redirect's parameters (``code`` and ``state``).

    The caller (the SDK) checks ``state`` and redeems the code. An ``error`` answer (the person
    clicked "Cancel" or the organisation does not allow the app) becomes :class:`SignInError`.
    """
    browser.open(url)
    result: dict[str, str] | None = None
    pasted: list[str | None] = []

    def ask() -> None:
        try:
            pasted.append(browser.redirected(cancel))
        except Exception as exc:  # the person closed the prompt; the loopback may still answer
            log.debug("no pasted address: %s", exc)
            pasted.append(None)

    asker = threading.Thread(target=ask, name="oauth-paste", daemon=True)
    asker.start()
    deadline = time.monotonic() + timeout
    while result is None:
        cancel.raise_if_cancelled()
        result = receiver.wait(0.2, cancel)
        if result is None and pasted and pasted[0]:
            result = parse_redirect(pasted[0])
        if result is None and time.monotonic() >= deadline:
            raise SignInError(
                f"Signing in to {provider} took too long.",
                hint="Start the sign-in again and finish it in the browser within five minutes.",
            )
    if "error" in result:
        raise SignInError(
            f"{provider} did not allow the sign-in: {result.get('error_description') or result['error']}.",
            hint="Sign in again and choose 'Allow'; if your organisation manages the account, ask its "
            "administrator to allow Safekeep.",
        )
    if "code" not in result:
        raise SignInError(
            f"The address from {provider} has no sign-in code.",
            hint="Copy the whole address from the browser's address bar after signing in.",
        )
    return result
