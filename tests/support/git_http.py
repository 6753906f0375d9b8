# Git's smart HTTP on loopback for the polling tests: `git http-backend`
# (CGI) behind a small server that wants HTTP Basic credentials. A request
# without them, or with others, gets 401 and `WWW-Authenticate: Basic`, as
# a forge answers; each request's Authorization header is appended to
# SEEN (one line each), so the test sees what git sent.
#
# usage: git_http.py PORT PROJECT_ROOT USER:PASSWORD SEEN
import base64, os, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, root, credentials, seen = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
expected = "Basic " + base64.b64encode(credentials.encode()).decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def handle_one(self):
        given = self.headers.get("Authorization", "")
        with open(seen, "a") as f:
            f.write(given + "\n")
        if given != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": credentials.split(":")[0],
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True
        ).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    def do_GET(self):
        self.handle_one()

    def do_POST(self):
        self.handle_one()


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
