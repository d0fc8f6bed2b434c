//! Record batches (magic 2) built in place: each record is encoded straight
//! into its batch's buffer as it is sent, and the header is filled in once,
//! when the batch is sealed for its first Produce request.
//!
//! ```text
//! offset size  field                  what the producer writes
//!  0      8    baseOffset             0 (the broker assigns offsets)
//!  8      4    batchLength            bytes after this field
//! 12      4    partitionLeaderEpoch   -1
//! 16      1    magic                  2
//! 17      4    crc                    CRC-32C of bytes 21..end
//! 21      2    attributes             bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4,
//!                                     4 zstd); bit 3 timestamp type, 0 = create time
//! 23      4    lastOffsetDelta        records - 1
//! 27      8    baseTimestamp          the first record's timestamp
//! 35      8    maxTimestamp           the largest record timestamp
//! 43      8    producerId             -1 without idempotence
//! 51      2    producerEpoch          -1 without idempotence
//! 53      4    baseSequence           -1 without idempotence
//! 57      4    records                record count
//! 61      ..   records, the whole run compressed when attributes name a codec
//!
//! record (varints are zigzag, as in Kafka's ByteUtils.writeVarint):
//!   length varint (bytes after it) | attributes i8 = 0 | timestampDelta varlong
//!   | offsetDelta varint | keyLength varint (-1 = null) | key
//!   | valueLength varint (-1 = null) | value | headerCount varint
//!   | per header: keyLength varint, key (UTF-8), valueLength varint (-1 = null), value
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::record::Compression;

/// Bytes before the first record.
pub(crate) const HEADER_LEN: usize = 61;
/// Where the CRC'd part of the header starts (attributes).
const CRC_FROM: usize = 21;

/// One record's fields, borrowed from the caller. `headers` is iterated twice
/// (to size the record, then to write it), hence `Clone`.
pub(crate) struct Fields<'a, H> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: H,
    pub(crate) timestamp: i64,
}

/// The producer identity a sealed batch carries (all -1 without idempotence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIds {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) base_sequence: i32,
}

impl ProducerIds {
    pub(crate) const NONE: ProducerIds = ProducerIds {
        producer_id: -1,
        epoch: -1,
        base_sequence: -1,
    };
}

/// A batch being filled: [`HEADER_LEN`] placeholder bytes, then the records.
pub(crate) struct BatchBuilder {
    buf: BytesMut,
    records: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty batch whose buffer holds `capacity` bytes before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> BatchBuilder {
        BatchBuilder::with_buffer(BytesMut::with_capacity(capacity.max(HEADER_LEN + 64)))
    }

    /// An empty batch in `buf` (a recycled buffer; its contents are dropped).
    pub(crate) fn with_buffer(mut buf: BytesMut) -> BatchBuilder {
        buf.clear();
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder {
            buf,
            records: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Encoded bytes so far, header included.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `rec` would add if appended now, or an error if no batch can hold it.
    pub(crate) fn record_len<'a, H>(&self, rec: &Fields<'a, H>) -> Result<usize>
    where
        H: Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let body = self.body_len(rec)?;
        Ok(varint_len(body as i64) + body)
    }

    fn body_len<'a, H>(&self, rec: &Fields<'a, H>) -> Result<usize>
    where
        H: Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let base = if self.records == 0 {
            rec.timestamp
        } else {
            self.base_timestamp
        };
        let mut n = 1
            + varint_len(rec.timestamp.wrapping_sub(base))
            + varint_len(self.records as i64)
            + bytes_len(rec.key)?
            + bytes_len(rec.value)?;
        let mut count = 0i64;
        for (k, v) in rec.headers.clone() {
            n += bytes_len(Some(k.as_bytes()))? + bytes_len(v)?;
            count += 1;
        }
        n += varint_len(count);
        if n > i32::MAX as usize {
            return Err(too_large(n));
        }
        Ok(n)
    }

    /// Appends `rec` as the next record (offset delta = records so far).
    pub(crate) fn append<'a, H>(&mut self, rec: Fields<'a, H>) -> Result<()>
    where
        H: Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let body = self.body_len(&rec)?;
        if self.records == i32::MAX {
            return Err(too_large(self.buf.len()));
        }
        if self.records == 0 {
            self.base_timestamp = rec.timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(rec.timestamp);
        let buf = &mut self.buf;
        buf.reserve(varint_len(body as i64) + body);
        put_varint(buf, body as i64);
        buf.put_u8(0);
        put_varint(buf, rec.timestamp.wrapping_sub(self.base_timestamp));
        put_varint(buf, self.records as i64);
        put_bytes(buf, rec.key);
        put_bytes(buf, rec.value);
        let count = rec.headers.clone().count();
        put_varint(buf, count as i64);
        for (k, v) in rec.headers {
            put_bytes(buf, Some(k.as_bytes()));
            put_bytes(buf, v);
        }
        self.records += 1;
        Ok(())
    }

    /// Writes the header (compressing the records first if asked) and returns
    /// the batch as it goes on the wire. Uncompressed batches are not copied.
    pub(crate) fn seal(self, ids: ProducerIds, compression: Compression) -> Result<Bytes> {
        debug_assert!(self.records > 0, "sealing an empty batch");
        let codec: i16 = match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        let mut buf = self.buf;
        if compression != Compression::None {
            let mut records = buf.split_off(HEADER_LEN);
            let mut out = BytesMut::with_capacity(HEADER_LEN + records.len() / 2 + 64);
            out.put_slice(&buf);
            crate::compression::compress(&mut records, &mut out, compression.to_protocol())
                .map_err(|e| Error::Protocol(format!("compress record batch: {e}")))?;
            buf = out;
        }
        let batch_len = i32::try_from(buf.len() - 12).map_err(|_| too_large(buf.len()))?;
        let mut header = &mut buf[..HEADER_LEN];
        header.put_i64(0);
        header.put_i32(batch_len);
        header.put_i32(-1);
        header.put_i8(2);
        header.put_u32(0); // CRC, below
        header.put_i16(codec);
        header.put_i32(self.records - 1);
        header.put_i64(self.base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(ids.producer_id);
        header.put_i16(ids.epoch);
        header.put_i32(ids.base_sequence);
        header.put_i32(self.records);
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(buf.freeze())
    }
}

fn too_large(n: usize) -> Error {
    Error::Config(format!(
        "record of {n} bytes: a record batch holds at most {} bytes",
        i32::MAX
    ))
}

/// Encoded size of a length-prefixed byte string (a null is just the -1).
fn bytes_len(b: Option<&[u8]>) -> Result<usize> {
    match b {
        None => Ok(1),
        Some(b) if b.len() > i32::MAX as usize => Err(too_large(b.len())),
        Some(b) => Ok(varint_len(b.len() as i64) + b.len()),
    }
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes of `v` as a zigzag varint. For values within i32 this is also the
/// size of Kafka's 32-bit varint.
fn varint_len(v: i64) -> usize {
    let bits = 64 - (zigzag(v) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = zigzag(v);
    let mut out = [0u8; 10];
    let mut n = 0;
    while z >= 0x80 {
        out[n] = (z as u8) | 0x80;
        z >>= 7;
        n += 1;
    }
    out[n] = z as u8;
    buf.put_slice(&out[..=n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::decompress;
    use kafka_protocol::records::RecordBatchDecoder;

    type OwnedHeaders = Vec<(String, Option<Vec<u8>>)>;
    type Row = (Option<Vec<u8>>, Option<Vec<u8>>, OwnedHeaders, i64);

    fn build(rows: &[Row]) -> BatchBuilder {
        let mut b = BatchBuilder::with_capacity(0);
        for (k, v, h, ts) in rows {
            let fields = Fields {
                key: k.as_deref(),
                value: v.as_deref(),
                headers: h.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
                timestamp: *ts,
            };
            let before = b.len();
            let want = b.record_len(&fields).unwrap();
            b.append(fields).unwrap();
            assert_eq!(
                b.len() - before,
                want,
                "record_len matches what append wrote"
            );
        }
        b
    }

    fn rows() -> Vec<Row> {
        let big = vec![7u8; 70_000];
        vec![
            (None, Some(b"v0".to_vec()), vec![], 1_700_000_000_000),
            (Some(b"k1".to_vec()), None, vec![], 1_700_000_000_005),
            (
                Some(vec![]),
                Some(vec![]),
                vec![("h".into(), Some(b"x".to_vec())), ("n".into(), None)],
                // Earlier than the base: a negative delta.
                1_699_999_999_000,
            ),
            (Some(b"k3".to_vec()), Some(big), vec![], 1_700_000_100_000),
        ]
    }

    #[test]
    fn kafka_protocol_decodes_built_batches_with_every_codec() {
        for compression in Compression::ALL {
            for ids in [
                ProducerIds::NONE,
                ProducerIds {
                    producer_id: 42,
                    epoch: 3,
                    base_sequence: 100,
                },
            ] {
                let case = format!("{compression:?} {ids:?}");
                let rows = rows();
                let mut wire = build(&rows).seal(ids, compression).unwrap();
                let batch_len = i32::from_be_bytes(wire[8..12].try_into().unwrap());
                assert_eq!(batch_len as usize, wire.len() - 12, "{case}");
                let base_seq = i32::from_be_bytes(wire[53..57].try_into().unwrap());
                assert_eq!(base_seq, ids.base_sequence, "{case}");
                let decoded =
                    RecordBatchDecoder::decode_with_custom_compression(&mut wire, Some(decompress))
                        .unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(decoded.compression, compression.to_protocol(), "{case}");
                assert!(wire.is_empty(), "{case}: one batch, nothing after it");
                let records = &decoded.records;
                assert_eq!(records.len(), rows.len(), "{case}");
                for (i, (r, (k, v, h, ts))) in records.iter().zip(&rows).enumerate() {
                    assert_eq!(r.offset, i as i64, "{case} #{i}");
                    assert_eq!(r.timestamp, *ts, "{case} #{i}");
                    assert_eq!(r.key.as_deref(), k.as_deref(), "{case} #{i}");
                    assert_eq!(r.value.as_deref(), v.as_deref(), "{case} #{i}");
                    assert_eq!(r.producer_id, ids.producer_id, "{case} #{i}");
                    assert_eq!(r.producer_epoch, ids.epoch, "{case} #{i}");
                    if ids.base_sequence >= 0 {
                        assert_eq!(r.sequence, ids.base_sequence + i as i32, "{case} #{i}");
                    }
                    let got: Vec<(String, Option<Vec<u8>>)> = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
                        .collect();
                    assert_eq!(&got, h, "{case} #{i}");
                }
            }
        }
    }

    #[test]
    fn header_carries_timestamps_and_count() {
        let wire = build(&rows())
            .seal(ProducerIds::NONE, Compression::None)
            .unwrap();
        let at = |o: usize, n: usize| &wire[o..o + n];
        assert_eq!(at(16, 1), &[2], "magic");
        assert_eq!(at(23, 4), &3i32.to_be_bytes(), "lastOffsetDelta");
        assert_eq!(at(27, 8), &1_700_000_000_000i64.to_be_bytes(), "base");
        assert_eq!(at(35, 8), &1_700_000_100_000i64.to_be_bytes(), "max");
        assert_eq!(at(57, 4), &4i32.to_be_bytes(), "records");
        assert_eq!(
            u32::from_be_bytes(at(17, 4).try_into().unwrap()),
            crc32c::crc32c(&wire[21..])
        );
    }

    #[test]
    fn varints_match_kafka_zigzag() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i32::MAX as i64, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (v, want) in cases {
            let mut b = BytesMut::new();
            put_varint(&mut b, *v);
            assert_eq!(&b[..], *want, "varint({v})");
            assert_eq!(varint_len(*v), want.len(), "varint_len({v})");
        }
    }
}
