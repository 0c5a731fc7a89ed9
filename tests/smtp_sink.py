"""A real SMTP server for the e-mail delivery tests (aiosmtpd 1.4.6).

Usage: smtp_sink.py PORT DIR [--mode ok|451|550] [--transient-rcpt TEXT]
                    [--permanent-rcpt TEXT] [--delay-ms N] [--auth USER:PASS]

Listens on 127.0.0.1:PORT and stores each accepted message as DIR/<n>.eml (the
bytes as received) with its envelope in DIR/<n>.json ({"mail_from", "rcpt_tos"}).
Both are written to a temporary name and renamed, JSON first, so a reader that
sees <n>.eml also sees a complete <n>.json and never half a file. Numbering
continues after the highest number already in DIR (a restarted sink does not
overwrite).

--mode 451 / 550 answers every RCPT with a transient / permanent error;
--transient-rcpt / --permanent-rcpt do so only for recipients containing TEXT;
--auth USER:PASSWORD requires that login (AUTH PLAIN/LOGIN, no TLS);
--delay-ms waits before answering the final "." (to widen the window in which
a client can be killed mid-send). DIR/sessions holds the number of EHLOs
(SMTP sessions) so far. Prints "ready" once it accepts connections.
"""

import argparse
import asyncio
import json
import os
import re
import signal
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

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # One EHLO per SMTP session (no STARTTLS here): counted in DIR/sessions
        # so tests can check that connections are reused.
        session.host_name = hostname
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
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        self._write(f"{n}.json", json.dumps(meta).encode())
        content = envelope.original_content
        if content is None:
            content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        self._write(f"{n}.eml", content)
        return f"250 2.0.0 Ok: queued as {n}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("dir")
    p.add_argument("--mode", choices=["ok", "451", "550"], default="ok")
    p.add_argument("--transient-rcpt", default="")
    p.add_argument("--permanent-rcpt", default="")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--auth", default="", help="USER:PASSWORD required (AUTH PLAIN/LOGIN)")
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
