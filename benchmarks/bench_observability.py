"""Per-request cost of kfadapter.observability (request id, metrics, access log).

Run by hand: `.venv/bin/python benchmarks/bench_observability.py [requests]`. Prints the
time per request through Flask's test client for a bare app and for the same app with
`observability.install` (access log going to a null handler, as at WARNING level it
would be filtered anyway) and a `kfp_call` around a no-op. The two apps take turns in
ten rounds and the figures are the medians of the rounds, so that both are measured in
the same moments of a noisy machine.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time

from flask import Flask
from flask.testing import FlaskClient

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


ROUNDS = 10


def mean_seconds(client: FlaskClient, count: int) -> float:
    """Mean time of `count` requests."""
    started = time.perf_counter()
    for index in range(count):
        client.get(f"/things/{index}")
    return (time.perf_counter() - started) / count


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.INFO)
    clients = [make_app(False).test_client(), make_app(True).test_client()]
    for client in clients:
        mean_seconds(client, 200)  # warm up
    rounds: list[list[float]] = [[], []]
    for _ in range(ROUNDS):
        for index, client in enumerate(clients):
            rounds[index].append(mean_seconds(client, count // ROUNDS))
    bare, instrumented = (statistics.median(times) for times in rounds)
    print(f"requests: {count}")
    print(f"bare app:          {bare * 1e6:8.1f} us/request")
    print(f"with observability:{instrumented * 1e6:8.1f} us/request")
    print(f"overhead:          {(instrumented - bare) * 1e6:8.1f} us/request")


if __name__ == "__main__":
    main()
