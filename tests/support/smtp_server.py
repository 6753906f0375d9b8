# A real SMTP server on loopback for the email notification tests:
# aiosmtpd (installed by .ci/run) on 127.0.0.1 and a port the system picks,
# printed as `ready PORT` once it listens. Each message it takes is written
# to OUT_DIR as NNNN.json (written aside, then renamed: a reader never sees
# half a file): the envelope, whether the session was under TLS, who
# logged in, the message's headers (decoded) and plain-text body (its
# transfer encoding undone, lines ending in LF), and the raw data as received.
#
# With --tls CERT KEY it offers STARTTLS with that certificate and
# requires it before MAIL; with --login USER:PASSWORD it requires AUTH
# (PLAIN or LOGIN, only under TLS when --tls is given) as that user.
#
# usage: smtp_server.py OUT_DIR [--tls CERT KEY] [--login USER:PASSWORD]
import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("out_dir")
parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
parser.add_argument("--login")
args = parser.parse_args()


class Handler:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "login": session.auth_data.decode() if session.authenticated else None,
            "headers": [[name, str(value)] for name, value in message.items()],
            "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
            "raw": raw.decode("utf-8", "replace"),
        }
        name = os.path.join(self.out_dir, "%04d.json" % self.count)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 2.0.0 Ok: queued as test-%d" % self.count


def authenticator(expected):
    user, _, password = expected.partition(":")

    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        if not ok:
            print("refused a login (%s)" % mechanism, file=sys.stderr, flush=True)
        # Not handled: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    return check


async def main():
    tls_context = None
    if args.tls:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls[0], args.tls[1])
    handler = Handler(args.out_dir)

    def factory():
        return SMTP(
            handler,
            hostname="mail.example.test",
            tls_context=tls_context,
            require_starttls=tls_context is not None,
            auth_required=args.login is not None,
            auth_require_tls=tls_context is not None,
            authenticator=authenticator(args.login) if args.login else None,
        )

    server = await asyncio.get_running_loop().create_server(
        factory, host="127.0.0.1", port=0
    )
    print("ready %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
