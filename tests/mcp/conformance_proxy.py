"""A local reverse proxy that adds an agent's bearer key to every request, for the conformance suite.

The official conformance CLI (`conformance server --url ...`) cannot send an Authorization header,
and jgate's /mcp rightly refuses unauthenticated requests. Instead of an insecure switch in the
product, the suite talks to this proxy, which forwards everything to `jgate serve` unchanged except:

* `Authorization: Bearer <key>` is added when the request has none;
* a Host or Origin naming the proxy itself is rewritten to name the upstream, so the suite's
  "a localhost Host/Origin is accepted" checks stay meaningful. Every other Host/Origin (e.g. the
  DNS-rebinding probe's evil.example.com) reaches jgate verbatim and must be refused there.

Responses (JSON or SSE) are streamed back as they arrive.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse

import anyio
import httpx2
import uvicorn

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length",
}


class AuthProxy:
    def __init__(self, upstream: str, key: str):
        u = urllib.parse.urlsplit(upstream)
        self.upstream_origin = f"{u.scheme}://{u.netloc}"
        self.upstream_host = u.netloc
        self.key = key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.url = f"http://{self.host}"
        self.requests = 0
        config = uvicorn.Config(
            self.app, interface="asgi3", proxy_headers=False, server_header=False, date_header=False,
            log_level="warning", lifespan="off", timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "AuthProxy":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the conformance auth proxy did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def _rewrite(self, name: str, value: str) -> str:
        if name == "host" and value == self.host:
            return self.upstream_host
        if name == "origin" and value == f"http://{self.host}":
            return self.upstream_origin
        return value

    async def app(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        self.requests += 1
        headers: list[tuple[str, str]] = []
        has_auth = False
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if name in HOP_BY_HOP:
                continue
            if name == "authorization":
                has_auth = True
            headers.append((name, self._rewrite(name, raw_value.decode("latin-1"))))
        if not has_auth:
            headers.append(("authorization", f"Bearer {self.key}"))
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = self.upstream_origin + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")

        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=None)) as client:
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            try:
                response = await client.send(request, stream=True)
            except httpx2.HTTPError as e:
                await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": f"proxy: upstream failed: {e!r}".encode()})
                return
            try:
                out_headers = [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in response.headers.multi_items()
                    if k.lower() not in HOP_BY_HOP
                ]
                await send({"type": "http.response.start", "status": response.status_code, "headers": out_headers})
                async with anyio.create_task_group() as tg:

                    async def watch_disconnect():
                        while (await receive())["type"] != "http.disconnect":
                            pass
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch_disconnect)
                    async for chunk in response.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    tg.cancel_scope.cancel()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await response.aclose()
