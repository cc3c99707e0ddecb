"""A real SMTP server on loopback for the email connector's tests (aiosmtpd), on three ports:

    STARTTLS   STARTTLS required before anything else, AUTH required over TLS
               (user `testrelay`, password `smtp-test-password`): a submission port (587)
    TLS        TLS from the first byte (465), AUTH allowed, not required
    PLAIN      no TLS offered at all: a client that requires TLS must send nothing here

Certificates come from a throwaway CA (trustme) written to DIR/ca.pem, for 127.0.0.1 and
localhost. Each accepted message is written to DIR/<recipient>/<n>.eml for every recipient
(envelope in X-Envelope-* headers first) before the server answers 250, so a test reads it
as soon as its send returns.

Recipients whose local part starts with one of these get the answer real servers give:
    unknown-      550 5.1.1 ... User unknown in local recipient table        (Postfix)
    greylist-     450 4.2.0 ... Greylisted                                  (Postfix + postgrey)
    ratelimit-    450-4.2.1 The user you are trying to contact is receiving mail at a rate
                  that prevents additional messages from being delivered.   (Gmail)
    throttle-     454 Throttling failure: Maximum sending rate exceeded.     (SES SMTP)
    quota-        454 Throttling failure: Daily message quota exceeded.      (SES SMTP)
    unverified-   554 Message rejected: Email address is not verified. ...   (SES SMTP, at DATA)

Usage: python tests/smtp_server.py DIR STARTTLS_PORT TLS_PORT PLAIN_PORT
"""

import asyncio
import itertools
import os
import ssl
import sys
import uuid

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

USER, PASSWORD = b"testrelay", b"smtp-test-password"
counter = itertools.count()

RCPT_ANSWERS = {
    "unknown-": "550 5.1.1 <{addr}>: Recipient address rejected: User unknown in local recipient table",
    "greylist-": "450 4.2.0 <{addr}>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.test.html",
    "ratelimit-": "450-4.2.1 The user you are trying to contact is receiving mail at a rate that\r\n"
    "450 4.2.1 prevents additional messages from being delivered.",
    "throttle-": "454 Throttling failure: Maximum sending rate exceeded.",
    "quota-": "454 Throttling failure: Daily message quota exceeded.",
}


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER,
        PASSWORD,
    )
    # handled=False: aiosmtpd answers a failure itself (535 5.7.8).
    return AuthResult(success=ok, handled=False)


class Handler:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        for prefix, answer in RCPT_ANSWERS.items():
            if local.startswith(prefix):
                return answer.format(addr=address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        first = envelope.rcpt_tos[0]
        if first.split("@", 1)[0].startswith("unverified-"):
            return (
                "554 Message rejected: Email address is not verified. The following "
                f"identities failed the check in region US-EAST-1: {envelope.mail_from}"
            )
        # STARTTLS sets session.ssl; implicit TLS shows on the transport.
        tls = session.ssl or server.transport.get_extra_info("ssl_object") is not None
        head = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
            f"X-Envelope-TLS: {'yes' if tls else 'no'}\r\n"
            f"X-Envelope-Auth: {'yes' if session.authenticated else 'no'}\r\n"
        ).encode()
        n = next(counter)
        for rcpt in envelope.rcpt_tos:
            folder = os.path.join(self.directory, rcpt.lower())
            os.makedirs(folder, exist_ok=True)
            name = os.path.join(folder, f"{n:06d}.eml")
            with open(name + ".tmp", "wb") as f:
                f.write(head + envelope.original_content)
            os.rename(name + ".tmp", name)
        return f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:12].upper()}"


async def main(directory, starttls_port, tls_port, plain_port):
    os.makedirs(directory, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    handler = Handler(directory)
    loop = asyncio.get_running_loop()

    def factory(**kwargs):
        return lambda: SMTP(handler, hostname="smtp.test", data_size_limit=10 * 1024 * 1024, **kwargs)

    servers = [
        await loop.create_server(
            factory(
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=authenticator,
            ),
            "127.0.0.1",
            starttls_port,
        ),
        await loop.create_server(
            factory(authenticator=authenticator, auth_require_tls=False),
            "127.0.0.1",
            tls_port,
            ssl=context,
        ),
        await loop.create_server(factory(), "127.0.0.1", plain_port),
    ]
    # The CA last: its file existing means every port listens.
    ca.cert_pem.write_to_path(os.path.join(directory, "ca.pem.tmp"))
    os.rename(os.path.join(directory, "ca.pem.tmp"), os.path.join(directory, "ca.pem"))
    print(f"SMTP on 127.0.0.1: STARTTLS {starttls_port}, TLS {tls_port}, plain {plain_port}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
