"""Just enough of the Kafka wire protocol, by hand, to send bad input.

No client library: struct.pack only, so the bytes are exactly what we say.
Non-flexible request header v1: api_key i16, api_version i16,
correlation_id i32, client_id (i16-length string).  Response header v0:
correlation_id i32.
"""

import errno
import socket
import struct
import time

CLIENT_ID = b"strom-interop-raw"

# ---------------------------------------------------------------- CRC-32C
# Castagnoli, reflected polynomial 0x82F63B78; table-driven, pure Python.


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# ---------------------------------------------------------------- primitives


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    if isinstance(s, str):
        s = s.encode()
    return i16(len(s)) + s


def kbytes(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items):
    if items is None:
        return i32(-1)
    items = list(items)
    return i32(len(items)) + b"".join(items)


def uvarint(v):
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v):
    """Zigzag varint/varlong (record fields)."""
    return uvarint((v << 1) ^ (v >> 63))


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos} of {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self, item):
        n = self.i32()
        return None if n < 0 else [item(self) for _ in range(n)]

    def remaining(self):
        return len(self.data) - self.pos


# ---------------------------------------------------------------- record batch v2


def record(offset_delta, ts_delta, key, value, headers=()):
    body = (
        i8(0)
        + varint(ts_delta)
        + varint(offset_delta)
        + (varint(-1) if key is None else varint(len(key)) + key)
        + (varint(-1) if value is None else varint(len(value)) + value)
        + varint(len(headers))
        + b"".join(varint(len(k)) + k + varint(len(v)) + v for k, v in headers)
    )
    return varint(len(body)) + body


def record_batch(values, base_timestamp=None, keys=None):
    """An uncompressed magic-2 batch of `values` with a correct CRC-32C.

    Layout per DESIGN.md section 4 (61-byte header).
    """
    keys = keys or [None] * len(values)
    records = b"".join(record(i, 0, k, v) for i, (k, v) in enumerate(zip(keys, values)))
    return batch_of_records(records, len(values), base_timestamp=base_timestamp)


def batch_of_records(records, count, attributes=0, base_timestamp=None):
    """A magic-2 batch around an already encoded (maybe compressed) records
    section claiming `count` records, with a correct CRC-32C. attributes:
    the codec in bits 0-2 (1 gzip, 2 snappy, 3 lz4, 4 zstd)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    after_crc = (
        i16(attributes)
        + i32(count - 1)  # lastOffsetDelta
        + i64(base_timestamp)
        + i64(base_timestamp)  # maxTimestamp
        + i64(-1)  # producerId
        + i16(-1)  # producerEpoch
        + i32(-1)  # baseSequence
        + i32(count)
        + records
    )
    crc = crc32c(after_crc)
    # batchLength counts from partitionLeaderEpoch (offset 12) to the end.
    batch_length = 4 + 1 + 4 + len(after_crc)
    return i64(0) + i32(batch_length) + i32(-1) + i8(2) + struct.pack(">I", crc) + after_crc


def batch_crc_ok(batch):
    return struct.unpack(">I", batch[17:21])[0] == crc32c(batch[21:])


def flip_crc(batch):
    """The same batch with one bit of its stored CRC flipped."""
    b = bytearray(batch)
    b[17] ^= 0x01
    return bytes(b)


def flip_payload_bit(batch):
    """The same batch with one bit in the last record flipped (CRC untouched)."""
    b = bytearray(batch)
    b[-2] ^= 0x40
    return bytes(b)


# ---------------------------------------------------------------- requests

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19


def request_header(api_key, api_version, correlation_id, client_id=CLIENT_ID):
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def frame(payload):
    return i32(len(payload)) + payload


def encode_request(api_key, api_version, correlation_id, body=b""):
    return frame(request_header(api_key, api_version, correlation_id) + body)


def api_versions_request(correlation_id, version=0):
    """ApiVersions; v3+ uses header v2 (empty tagged fields) and a compact body."""
    if version >= 3:
        header = request_header(API_API_VERSIONS, version, correlation_id) + b"\x00"
        name, ver = b"strom-interop", b"1.0"
        body = uvarint(len(name) + 1) + name + uvarint(len(ver) + 1) + ver + b"\x00"
        return frame(header + body)
    return encode_request(API_API_VERSIONS, version, correlation_id)


def parse_api_versions_v0(body):
    """-> (error_code, {api_key: (min, max)})"""
    r = Reader(body)
    err = r.i16()
    keys = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
    return err, {k: (lo, hi) for k, lo, hi in keys}


def metadata_request_v4(correlation_id, topics=None, allow_auto_create=False):
    body = array(None if topics is None else [string(t) for t in topics]) + i8(1 if allow_auto_create else 0)
    return encode_request(API_METADATA, 4, correlation_id, body)


def parse_metadata_v4(body):
    r = Reader(body)
    r.i32()  # throttle
    brokers = r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))
    r.string()  # cluster id
    controller = r.i32()

    def partition(r):
        err, p, leader = r.i16(), r.i32(), r.i32()
        r.array(lambda r: r.i32())
        r.array(lambda r: r.i32())
        return {"error": err, "partition": p, "leader": leader}

    def topic(r):
        err, name = r.i16(), r.string()
        r.i8()  # is_internal
        return {"error": err, "name": name, "partitions": r.array(partition)}

    return {"brokers": brokers, "controller": controller, "topics": r.array(topic)}


def produce_request_v3(correlation_id, topic, partition, batch, acks=-1, timeout_ms=10000):
    body = (
        string(None)  # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + kbytes(batch)])])
    )
    return encode_request(API_PRODUCE, 3, correlation_id, body)


def parse_produce_v3(body):
    """-> list of (topic, partition, error_code, base_offset)"""
    r = Reader(body)
    out = []
    for name, parts in r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16(), r.i64(), r.i64())))):
        for p, err, base, _log_append_time in parts:
            out.append((name, p, err, base))
    return out


def list_offsets_request_v1(correlation_id, topic, partition, timestamp=-1):
    """timestamp -1 = latest (log end offset), -2 = earliest."""
    body = i32(-1) + array([string(topic) + array([i32(partition) + i64(timestamp)])])
    return encode_request(API_LIST_OFFSETS, 1, correlation_id, body)


def parse_list_offsets_v1(body):
    """-> list of (topic, partition, error_code, offset)"""
    r = Reader(body)
    out = []
    for name, parts in r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16(), r.i64(), r.i64())))):
        for p, err, _ts, off in parts:
            out.append((name, p, err, off))
    return out


# ---------------------------------------------------------------- connection


class Closed(Exception):
    """The broker closed (or reset) the connection."""


class Conn:
    """A blocking TCP connection where every wait is bounded by `timeout`."""

    def __init__(self, bootstrap, timeout=10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.next_corr = 1

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def corr(self):
        c = self.next_corr
        self.next_corr += 1
        return c

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e))

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise Closed(str(e))
            if not chunk:
                raise Closed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self):
        """-> raw response frame body (correlation id included). socket.timeout if none."""
        (size,) = struct.unpack(">i", self._recv_exact(4))
        assert 0 <= size < 64 << 20, f"absurd response size {size}"
        return self._recv_exact(size)

    def recv_response(self, expect_corr):
        payload = self.recv_frame()
        (corr,) = struct.unpack(">i", payload[:4])
        assert corr == expect_corr, f"response correlation id {corr}, expected {expect_corr}"
        return payload[4:]

    def roundtrip(self, make_request, *args, **kwargs):
        """Send make_request(corr, ...) and return the response body."""
        corr = self.corr()
        self.send(make_request(corr, *args, **kwargs))
        return self.recv_response(corr)

    def wait_closed(self, timeout=None):
        """True if the broker closes the connection within `timeout`.

        Any bytes it sends first (e.g. an error response) are read and
        returned as the second element: -> (closed, data).
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        data = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, bytes(data)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, bytes(data)
            except ConnectionResetError:
                return True, bytes(data)
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    return True, bytes(data)
                raise
            finally:
                self.sock.settimeout(self.timeout)
            if not chunk:
                return True, bytes(data)
            data += chunk
