"""Shared fixtures for the client conformance suites: the weaviate-test-server BINARY, started
once per session on a free port (scripts/conformance passes its path in WEAVIATE_TEST_SERVER)."""

import os
import subprocess
import uuid

import pytest


class Server(str):
    """The server's base URL, with the port where gRPC is refused."""

    def __new__(cls, url, grpc_port):
        self = super().__new__(cls, url)
        self.grpc_port = grpc_port
        return self


@pytest.fixture(scope="session")
def server_url():
    binary = os.environ["WEAVIATE_TEST_SERVER"]
    process = subprocess.Popen(
        [binary, "--port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The binary prints these lines once it accepts connections: no polling, no sleep.
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://"), f"unexpected first line: {line!r}"
        grpc = process.stdout.readline().strip()
        assert grpc.startswith("grpc refused on "), f"unexpected second line: {grpc!r}"
        yield Server(line.removeprefix("listening on "), int(grpc.rsplit(":", 1)[1]))
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def class_name():
    """A class name of its own for every test, so tests never see each other's objects."""
    return "C" + uuid.uuid4().hex[:12]
