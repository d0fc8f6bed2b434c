"""A real `strom serve` process on 127.0.0.1, an ephemeral port and a temp dir.

Used by conftest.py; the tests only see `Broker` objects through fixtures.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

READY_RE = re.compile(r"listening addr=([0-9.]+):(\d+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 15


def strom_bin():
    """Path of the broker binary: $STROM_BIN, else <target>/release/strom."""
    path = os.environ.get("STROM_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO_ROOT, "target")
        path = os.path.join(target, "release", "strom")
    return os.path.abspath(path)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML form for {value!r}")


# Kafka broker setting name -> (section, key) in strom's broker.toml.  Tests
# speak Kafka names; this table is the one place that knows strom's layout.
KAFKA_TO_TOML = {
    "listeners": ("server", "listen"),
    "advertised.listeners": ("server", "advertised_listener"),
    "log.dirs": ("server", "data_dir"),
    "socket.request.max.bytes": ("server", "socket_request_max_bytes"),
    "max.connections": ("server", "max_connections"),
    "auto.create.topics.enable": ("topics", "auto_create"),
    "num.partitions": ("topics", "num_partitions"),
    "log.segment.bytes": ("log", "segment_bytes"),
    "log.roll.ms": ("log", "segment_time"),
    "log.retention.ms": ("log", "retention_time"),
    "log.retention.bytes": ("log", "retention_bytes"),
    "log.index.interval.bytes": ("log", "index_interval_bytes"),
    "log.index.size.max.bytes": ("log", "index_max_bytes"),
    "message.max.bytes": ("log", "message_max_bytes"),
    "log.retention.check.interval.ms": ("log", "retention_check_interval"),
    "log.flush.interval.ms": ("flush", "interval"),
    "flush.mode": ("flush", "mode"),
    "group.initial.rebalance.delay.ms": ("groups", "initial_rebalance_delay"),
    "group.min.session.timeout.ms": ("groups", "min_session_timeout"),
    "group.max.session.timeout.ms": ("groups", "max_session_timeout"),
}


def toml_config(settings):
    """broker.toml text from {kafka_name: value} (see KAFKA_TO_TOML).

    Sizes are given in bytes and durations in milliseconds (plain integers),
    which broker.toml accepts besides human units.
    """
    sections = {}
    for name, value in settings.items():
        if name not in KAFKA_TO_TOML:
            raise KeyError(f"no broker.toml mapping for Kafka setting {name!r}; add it to KAFKA_TO_TOML")
        section, key = KAFKA_TO_TOML[name]
        sections.setdefault(section, []).append(f"{key} = {toml_value(value)}  # [{name}]")
    lines = ["# written by tests/interop"]
    for section, entries in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(entries)
    return "\n".join(lines) + "\n"


_SETPRIV = None


def _setpriv_pdeathsig():
    """True if `setpriv --pdeathsig` works here (util-linux >= 2.33)."""
    global _SETPRIV
    if _SETPRIV is None:
        _SETPRIV = False
        if shutil.which("setpriv"):
            try:
                r = subprocess.run(["setpriv", "--pdeathsig", "KILL", "--", "true"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
                _SETPRIV = r.returncode == 0
            except (OSError, subprocess.SubprocessError):
                pass
    return _SETPRIV


class BrokerError(AssertionError):
    pass


class Broker:
    """One broker process and its data dir.

    `config` is a dict of broker settings (written as TOML and passed with
    --config) or a str of raw TOML.  The data dir survives restart(); the
    whole temp dir is removed by cleanup().
    """

    def __init__(self, config=None, name="broker"):
        self.name = name
        self.binary = strom_bin()
        self.dir = tempfile.mkdtemp(prefix="strom-interop-")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "broker-stderr.log")
        self.config_path = None
        if config is not None:
            text = config if isinstance(config, str) else toml_config(config)
            self.config_path = os.path.join(self.dir, "broker.toml")
            with open(self.config_path, "w") as f:
                f.write(text)
        self.proc = None
        self.host = None
        self.port = None
        self.starts = 0
        self._log_offset = 0

    # ------------------------------------------------------------ lifecycle

    @property
    def bootstrap(self):
        assert self.port is not None, "broker is not running"
        return f"{self.host}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self):
        cmd = [self.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
               "--metrics-listen", "127.0.0.1:0"]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd

    def start(self):
        assert not self.running(), "broker already running"
        if not os.path.exists(self.binary):
            raise BrokerError(
                f"broker binary {self.binary} does not exist: build it with "
                "`cargo build --release -p strom` or set STROM_BIN"
            )
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        env.setdefault("RUST_BACKTRACE", "1")
        cmd = self.command()
        # If pytest dies hard, take the broker with it (util-linux setpriv).
        if _setpriv_pdeathsig():
            cmd = ["setpriv", "--pdeathsig", "KILL", "--"] + cmd
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.dir,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = self._log_since_start()
            m = READY_RE.search(text)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                assert self.host == "127.0.0.1", f"broker bound {self.host}, expected 127.0.0.1"
                return self
            code = self.proc.poll()
            if code is not None:
                raise BrokerError(
                    f"strom serve exited with code {code} before it was ready.\n"
                    f"command: {' '.join(self.command())}\n--- stderr ---\n{self.log()}"
                )
            if time.monotonic() > deadline:
                self._kill_quietly()
                raise BrokerError(
                    f"strom serve printed no `listening addr=` line within {START_TIMEOUT_S}s.\n"
                    f"command: {' '.join(self.command())}\n--- stderr ---\n{self.log()}"
                )
            time.sleep(0.02)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM; the broker must exit 0 within `timeout` seconds."""
        assert self.proc is not None, "broker was never started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_quietly()
            raise BrokerError(f"broker did not exit within {timeout}s of SIGTERM\n{self.log_tail()}")
        finally:
            self.port = None
        if code != 0:
            raise BrokerError(f"broker exited with code {code} after SIGTERM (expected 0)\n{self.log_tail()}")
        return code

    def kill(self):
        """SIGKILL (kill -9): no chance to flush or checkpoint."""
        assert self.running(), "broker is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.port = None

    def restart(self, kill=False):
        """Stop (SIGTERM, or SIGKILL with kill=True) and start on the same data dir."""
        if self.running():
            self.kill() if kill else self.stop()
        return self.start()

    def cleanup(self):
        """Always safe to call: ends the process and removes the temp dir."""
        try:
            self._kill_quietly()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_quietly(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self.port = None

    def status(self):
        """One line for failure reports: process state and whether the port answers."""
        if self.proc is None:
            return "never started"
        code = self.proc.poll()
        state = f"pid {self.proc.pid} running" if code is None else f"pid {self.proc.pid} exited with code {code}"
        if self.port is None:
            return state + ", not listening (stopped or killed by the test)"
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                probe = "accepts connections"
        except OSError as e:
            probe = f"connect failed: {e}"
        return f"{state}, {self.bootstrap} {probe}"

    # ------------------------------------------------------------ logs

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return ANSI_RE.sub("", f.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            return "(no broker log)"

    def log_tail(self, lines=60):
        return "--- broker stderr (tail) ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def _log_since_start(self):
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return ANSI_RE.sub("", f.read().decode("utf-8", "replace"))

    # ------------------------------------------------------------ data dir

    def partition_dirs(self, topic):
        """Names of `<topic>-<n>` directories in the data dir."""
        if not os.path.isdir(self.data_dir):
            return []
        pat = re.compile(re.escape(topic) + r"-\d+")
        return sorted(d for d in os.listdir(self.data_dir) if pat.fullmatch(d))

    def rss_kib(self, field="VmRSS"):
        """Resident memory of the broker process (from /proc), in KiB;
        field="VmHWM" gives the peak since it started."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0
