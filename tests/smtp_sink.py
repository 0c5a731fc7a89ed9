"""A real SMTP server for the e-mail delivery tests (aiosmtpd 1.4.6).

Usage: smtp_sink.py PORT DIR [--mode ok|451|550] [--transient-rcpt TEXT]
                    [--permanent-rcpt TEXT] [--delay-ms N] [--auth USER:PASS]
                    [--starttls CERT KEY | --tls CERT KEY]

Listens on 127.0.0.1:PORT and stores each accepted message as DIR/<n>.eml (the
bytes as received) with its envelope in DIR/<n>.json ({"mail_from", "rcpt_tos",
"tls"}), where "tls" is null for a message received in clear, else
{"mode": "starttls"|"implicit", "version": "TLSv1.3", ...} as seen by the
server's own TLS layer (so a test can prove the message did not travel in clear).
Both are written to a temporary name and renamed, JSON first, so a reader that
sees <n>.eml also sees a complete <n>.json and never half a file. Numbering
continues after the highest number already in DIR (a restarted sink does not
overwrite).

--mode 451 / 550 answers every RCPT with a transient / permanent error;
--transient-rcpt / --permanent-rcpt do so only for recipients containing TEXT;
--auth USER:PASSWORD requires that login (AUTH PLAIN/LOGIN, no TLS);
--delay-ms waits before answering the final "." (to widen the window in which
a client can be killed mid-send). DIR/sessions holds the number of SMTP
sessions so far (EHLOs, not counting the second EHLO after STARTTLS).
--starttls CERT KEY offers STARTTLS with that certificate chain (PEM) and key and
refuses MAIL before it (require_starttls); --tls CERT KEY speaks TLS from the
first byte (smtps). DIR/handshakes counts TLS ClientHellos that named a server
(SNI), and DIR/sni holds the last name: a client that gives up on the
certificate never reaches EHLO under smtps, but it did reach the server.
Prints "ready" once it accepts connections.
"""

import argparse
import asyncio
import json
import os
import re
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out, mode, transient_rcpt, permanent_rcpt, delay_ms):
        self.out = out
        self.mode = mode
        self.transient_rcpt = transient_rcpt
        self.permanent_rcpt = permanent_rcpt
        self.delay = delay_ms / 1000.0
        nums = [int(m.group(1)) for f in os.listdir(out)
                if (m := re.fullmatch(r"(\d+)\.eml", f))]
        self.next = max(nums, default=0) + 1
        self.sessions = 0
        self.handshakes = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # One EHLO per SMTP session, counted in DIR/sessions so tests can check
        # that connections are reused. After STARTTLS the client says EHLO
        # again in a new session object whose `ssl` is set: not a new session.
        session.host_name = hostname
        if session.ssl is None:
            self.sessions += 1
            self._write("sessions", str(self.sessions).encode())
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "451" or (self.transient_rcpt and self.transient_rcpt in address):
            return "451 4.3.0 Try again later"
        if self.mode == "550" or (self.permanent_rcpt and self.permanent_rcpt in address):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def _write(self, name, data):
        tmp = os.path.join(self.out, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.out, name))

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        n = self.next
        self.next += 1
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                "tls": tls_info(server, session)}
        self._write(f"{n}.json", json.dumps(meta).encode())
        content = envelope.original_content
        if content is None:
            content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        self._write(f"{n}.eml", content)
        return f"250 2.0.0 Ok: queued as {n}"


def tls_info(server, session):
    """How the session is protected, from the transport the server reads from:
    an `ssl_object` there means the bytes were decrypted by TLS."""
    transport = server.transport
    obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if obj is None:
        return None
    return {
        # aiosmtpd sets session.ssl only for a session upgraded by STARTTLS.
        "mode": "starttls" if session.ssl is not None else "implicit",
        "version": obj.version(),
        "cipher": (obj.cipher() or [None])[0],
    }


def server_tls_context(sink, cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def on_client_hello(obj, name, _ctx):
        sink.handshakes += 1
        sink._write("handshakes", str(sink.handshakes).encode())
        sink._write("sni", (name or "").encode())
        return None  # go on with this context

    ctx.sni_callback = on_client_hello
    return ctx


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("dir")
    p.add_argument("--mode", choices=["ok", "451", "550"], default="ok")
    p.add_argument("--transient-rcpt", default="")
    p.add_argument("--permanent-rcpt", default="")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--auth", default="", help="USER:PASSWORD required (AUTH PLAIN/LOGIN)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"),
                     help="offer (and require) STARTTLS with this certificate")
    tls.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                     help="implicit TLS (smtps) with this certificate")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    sink = Sink(a.dir, a.mode, a.transient_rcpt, a.permanent_rcpt, a.delay_ms)
    kwargs = {}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            # handled=False: let aiosmtpd answer 535 on failure.
            return AuthResult(success=ok, handled=False)

        # Plain-text AUTH is fine on loopback in a test.
        kwargs = dict(authenticator=authenticator, auth_required=True,
                      auth_require_tls=False)
    if a.starttls:
        kwargs.update(tls_context=server_tls_context(sink, *a.starttls), require_starttls=True)
    if a.tls:
        kwargs.update(ssl_context=server_tls_context(sink, *a.tls))
    ctl = Controller(sink, hostname="127.0.0.1", port=a.port, **kwargs)
    ctl.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    ctl.stop()


if __name__ == "__main__":
    main()
