"""moto's server mode, one request at a time.

moto applies a DynamoDB UpdateItem or a conditional PutItem as several Python steps, and its
threaded server interleaves concurrent requests between them, so two `list_append`s can lose
one another's element: something DynamoDB itself never does (each write to an item is atomic).
Serialising requests restores that atomicity; moto is bound to one core by the GIL anyway.

It also answers `GET /_testrelay/ses-sent?region=R`: every raw message SES (v1 or v2) took
in that region, as JSON `[{"id", "source", "destinations", "raw"}]`, for the email tests; and
`POST /_testrelay/ses-verify?identity=I&region=R`, which marks an SES identity verified for
sending, as its DNS records or its confirmation mail would (moto verifies none).

Usage: python tests/moto_server.py PORT
"""

import json
import sys
import threading
from urllib.parse import parse_qs

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def ses_sent(environ, start_response):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import RawMessage, ses_backends

    region = parse_qs(environ.get("QUERY_STRING", "")).get("region", ["us-east-1"])[0]
    backend = ses_backends[DEFAULT_ACCOUNT_ID][region]
    body = json.dumps([
        {"id": m.id, "source": m.source, "destinations": m.destinations, "raw": m.raw_data}
        for m in backend.sent_messages
        if isinstance(m, RawMessage)
    ]).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def ses_verify(environ, start_response):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    query = parse_qs(environ.get("QUERY_STRING", ""))
    region = query.get("region", ["us-east-1"])[0]
    identity = query["identity"][0]
    ses_backends[DEFAULT_ACCOUNT_ID][region].email_identities[identity].verified_for_sending_status = True
    start_response("204 No Content", [])
    return [b""]


def serial(environ, start_response):
    with lock:
        if environ.get("PATH_INFO") == "/_testrelay/ses-sent":
            return ses_sent(environ, start_response)
        if environ.get("PATH_INFO") == "/_testrelay/ses-verify":
            return ses_verify(environ, start_response)
        return list(app(environ, start_response))


if __name__ == "__main__":
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        serial,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
