"""Fixtures for the interop suite: a real `strom serve` per test.

- `broker`: a broker on default settings, started for the test.
- `start_broker(config=None)`: start more brokers / brokers with a config.
- `topic`: a fresh topic name (not created).
Every broker is stopped at teardown (SIGTERM, must exit 0 within 15 s) and
its temp dir removed, even when the test fails; when a test fails, each
broker's stderr is attached to the report.
"""

import itertools
import os
import shutil
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from strom_broker import Broker, BrokerError, strom_bin  # noqa: E402


def pytest_report_header(config):
    kcat = shutil.which("kcat")
    kcat_version = "MISSING"
    if kcat:
        out = subprocess.run([kcat, "-V"], capture_output=True, text=True, timeout=10).stdout
        kcat_version = next((line.strip() for line in out.splitlines() if "librdkafka" in line), out.strip())
    try:
        import confluent_kafka

        ck = f"{confluent_kafka.__version__} (bundled librdkafka {confluent_kafka.libversion()[0]})"
    except ImportError:
        ck = "MISSING"
    try:
        import kafka

        kp = kafka.__version__
    except ImportError:
        kp = "MISSING"
    return [
        f"strom binary: {strom_bin()}",
        f"kcat: {kcat_version}",
        f"confluent-kafka: {ck}",
        f"kafka-python: {kp}",
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_strom_brokers", []):
            rep.sections.append((f"strom {b.name} stderr ({b.log_path})", f"[{b.status()}]\n{b.log()}"))


def _teardown(brokers):
    """Stop every broker cleanly (checked), then remove everything."""
    errors = []
    for b in brokers:
        try:
            if b.running():
                b.stop()
        except BrokerError as e:
            errors.append(f"{b.name}: {e}")
        finally:
            b.cleanup()
    if errors:
        pytest.fail("clean shutdown failed:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(autouse=True)
def _release_admin_clients():
    yield
    import interop_helpers

    interop_helpers.release_clients()


@pytest.fixture
def start_broker(request):
    """Factory: start_broker(config=None, name=...) -> running Broker."""
    brokers = []
    counter = itertools.count(1)
    request.node._strom_brokers = brokers

    def start(config=None, name=None):
        b = Broker(config=config, name=name or f"broker{next(counter)}")
        brokers.append(b)
        return b.start()

    yield start
    _teardown(brokers)


@pytest.fixture
def broker(start_broker):
    return start_broker()


@pytest.fixture
def topic(request):
    """A unique, valid topic name derived from the test name."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def kcat_bin():
    """kcat is required: a missing client is a failure, not a skip."""
    path = shutil.which("kcat")
    if not path:
        pytest.fail("kcat is not installed (scripts/test installs it: apt-get install -y kcat)", pytrace=False)
    return path
