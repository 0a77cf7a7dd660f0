#!/usr/bin/env python3
"""Test-only adapter in front of fake-gcs-server, for Safehold's object storage tests.

object_store writes to Google Cloud Storage through GCS's XML API (PUT object, XML multipart
uploads); fake-gcs-server implements reads, listing and deletes but not those writes. This proxy
turns the XML writes into the emulator's JSON media uploads and passes every other request through
unchanged, so the real client code talks to a real server for everything it can.

    gcs-xml-adapter.py LISTEN_PORT UPSTREAM_PORT
"""
import http.client
import http.server
import re
import sys
import threading
import urllib.parse
import uuid

LISTEN, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
uploads = {}  # upload id -> {part number: bytes}
lock = threading.Lock()


def upstream(method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheaders(), data


def media_upload(bucket, name, body):
    q = urllib.parse.urlencode({"uploadType": "media", "name": name})
    return upstream("POST", f"/upload/storage/v1/b/{bucket}/o?{q}", body, {"Content-Type": "application/octet-stream"})


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        length = str(len(body))
        for k, v in headers:
            if k.lower() == "content-length" and self.command == "HEAD":
                length = v  # a HEAD has no body but says the object's size
            elif k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def target(self):
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.lstrip("/").split("/", 1)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        return parts[0], urllib.parse.unquote(parts[1]) if len(parts) > 1 else "", q

    def passthrough(self):
        body = self.body()
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = f"127.0.0.1:{LISTEN}"
        status, hdrs, data = upstream(self.command, self.path, body, headers)
        self.reply(status, data, hdrs)

    def do_GET(self):
        self.passthrough()

    def do_HEAD(self):
        self.passthrough()

    def do_DELETE(self):
        bucket, name, q = self.target()
        if "uploadId" in q:
            with lock:
                uploads.pop(q["uploadId"][0], None)
            return self.reply(204)
        self.passthrough()

    def do_PUT(self):
        bucket, name, q = self.target()
        if self.path.startswith("/storage/") or self.path.startswith("/upload/") or not name:
            return self.passthrough()
        body = self.body()
        if "uploadId" in q:
            with lock:
                parts = uploads.get(q["uploadId"][0])
                if parts is None:
                    return self.reply(404, b"<Error><Code>NoSuchUpload</Code></Error>")
                n = int(q["partNumber"][0])
                parts[n] = body
            return self.reply(200, b"", [("ETag", f'"part-{n}"')])
        status, _, data = media_upload(bucket, name, body)
        self.reply(200 if status < 300 else status, b"" if status < 300 else data, [("ETag", f'"{uuid.uuid4().hex}"')])

    def do_POST(self):
        bucket, name, q = self.target()
        if self.path.startswith("/storage/") or self.path.startswith("/upload/"):
            return self.passthrough()
        body = self.body()
        if "uploads" in q:
            uid = uuid.uuid4().hex
            with lock:
                uploads[uid] = {}
            xml = f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{name}</Key><UploadId>{uid}</UploadId></InitiateMultipartUploadResult>"
            return self.reply(200, xml.encode(), [("Content-Type", "application/xml")])
        if "uploadId" in q:
            with lock:
                parts = uploads.pop(q["uploadId"][0], None)
            if parts is None:
                return self.reply(404, b"<Error><Code>NoSuchUpload</Code></Error>")
            order = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)] or sorted(parts)
            status, _, data = media_upload(bucket, name, b"".join(parts[n] for n in order))
            if status >= 300:
                return self.reply(status, data)
            xml = f'<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{name}</Key><ETag>"{uuid.uuid4().hex}"</ETag></CompleteMultipartUploadResult>'
            return self.reply(200, xml.encode(), [("Content-Type", "application/xml")])
        self.passthrough()


http.server.ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
