"""Per-request cost of kfadapter.observability (request id, metrics, access log).

Run by hand: `.venv/bin/python benchmarks/bench_observability.py [requests]`. Prints the
mean time per request through Flask's test client for a bare app and for the same app
with `observability.install` (access log going to a null handler, as at WARNING level it
would be filtered anyway) and a `kfp_call` around a no-op.
"""

from __future__ import annotations

import logging
import sys
import time

from flask import Flask

from kfadapter import observability


def make_app(instrumented: bool) -> Flask:
    app = Flask("bench")
    if instrumented:
        observability.install(app)

    @app.get("/things/<name>")
    def thing(name: str):
        if instrumented:
            with observability.kfp_call("get_thing"):
                pass
        return {"name": name}

    return app


def mean_seconds(app: Flask, count: int) -> float:
    client = app.test_client()
    for _ in range(200):  # warm up
        client.get("/things/x")
    started = time.perf_counter()
    for index in range(count):
        client.get(f"/things/{index}")
    return (time.perf_counter() - started) / count


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.INFO)
    bare = mean_seconds(make_app(False), count)
    instrumented = mean_seconds(make_app(True), count)
    print(f"requests: {count}")
    print(f"bare app:          {bare * 1e6:8.1f} us/request")
    print(f"with observability:{instrumented * 1e6:8.1f} us/request")
    print(f"overhead:          {(instrumented - bare) * 1e6:8.1f} us/request")


if __name__ == "__main__":
    main()
