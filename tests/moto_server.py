"""moto's server mode, one request at a time.

moto applies a DynamoDB UpdateItem or a conditional PutItem as several Python steps, and its
threaded server interleaves concurrent requests between them, so two `list_append`s can lose
one another's element: something DynamoDB itself never does (each write to an item is atomic).
Serialising requests restores that atomicity; moto is bound to one core by the GIL anyway.

Usage: python tests/moto_server.py PORT
"""

import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serial(environ, start_response):
    with lock:
        return list(app(environ, start_response))


if __name__ == "__main__":
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        serial,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
