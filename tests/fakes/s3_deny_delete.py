"""An S3 endpoint that refuses every delete, as a bucket policy denying s3:DeleteObject does.

It forwards every other request to the moto server unchanged and answers deletes itself, in the
shapes real S3 uses: ``DeleteObjects`` (POST ``?delete``) succeeds at the HTTP level and lists an
``AccessDenied`` error per key; a single ``DeleteObject`` is a 403. The tests then do not depend on
how a given moto release emulates IAM.
"""

from __future__ import annotations

import http.client
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host"}


class DenyDeleteS3Proxy:
    """``with DenyDeleteS3Proxy(moto_endpoint) as proxy: ... proxy.endpoint ...``"""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        handler = type("Handler", (_Handler,), {"upstream": (target.hostname, target.port)})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.refused: list[str] = []
        handler.refused = self.refused
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DenyDeleteS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    upstream: tuple[str, int]
    refused: list[str]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        if "delete" in urlsplit(self.path).query.split("&"):
            self._refuse_delete_objects()
        else:
            self._forward()

    def do_DELETE(self) -> None:
        self._read_body()
        self.refused.append(urlsplit(self.path).path)
        self._reply(403, _error_xml("AccessDenied", "Access Denied"))

    def _refuse_delete_objects(self) -> None:
        request = ET.fromstring(self._read_body())
        keys = [node.text or "" for node in request.iter(f"{_S3_NS}Key")] or [
            node.text or "" for node in request.iter("Key")]
        self.refused.extend(keys)
        errors = "".join(
            f"<Error><Key>{key}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            for key in keys)
        self._reply(200, f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="{_S3_NS[1:-1]}">'
                         f"{errors}</DeleteResult>")

    def _forward(self) -> None:
        body = self._read_body()
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, xml: str) -> None:
        payload = xml.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _error_xml(code: str, message: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
