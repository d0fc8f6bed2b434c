//! Record batch compression in pure Rust, so the client has no C dependencies.
//!
//! kafka-protocol's own codecs (its `gzip` / `lz4` / `snappy` / `zstd` features)
//! link lz4 and zstd from C, so the client turns those features off: the
//! producer's batch builder calls [`compress`], and [`decompress`] is handed
//! to `RecordBatchDecoder`. The wire formats are the ones the Java client
//! and librdkafka use:
//!
//! - gzip: a gzip stream (`flate2` on `miniz_oxide`); concatenated members are
//!   read too, as Java's `GZIPInputStream` does.
//! - snappy: written xerial-framed (`\x82SNAPPY\0` header, then 32 KiB blocks
//!   each prefixed with its big-endian compressed length) as the Java client
//!   writes it; read either xerial-framed (Java) or raw (librdkafka), telling
//!   them apart by the magic like snappy-java does (`snap`).
//! - lz4: the LZ4 *frame* format with independent 64 KiB blocks, which the
//!   Java client requires (`lz4_flex`); any valid frame is read.
//! - zstd: a zstd frame (`ruzstd`). Its encoder only implements the
//!   "fastest" level (about zstd level 1, where kafka-protocol used level 3):
//!   batches come out somewhat larger, but any zstd decoder reads them.
//!
//! Errors carry their cause in their message (the client prints them with
//! `{}`). Decompression is bounded: a batch that inflates beyond
//! [`MAX_DECOMPRESSED_BATCH`] is an error, not an out-of-memory abort, so a
//! hostile broker cannot feed the consumer a decompression bomb.

use std::io::{Read, Write};

use anyhow::{anyhow, bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;

/// The most bytes one record batch may decompress to (64 MiB).
pub(crate) const MAX_DECOMPRESSED_BATCH: usize = 64 << 20;

/// xerial snappy-java's stream header: magic, version 1, compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// The part of [`XERIAL_HEADER`] snappy-java itself checks when reading.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// snappy-java's default block size.
const XERIAL_BLOCK: usize = 32 * 1024;

/// The signature `RecordBatchEncoder::encode_with_custom_compression` wants.
#[cfg(test)]
pub(crate) type CompressFn = fn(&mut BytesMut, &mut BytesMut, Compression) -> Result<()>;

/// The compressor to give `RecordBatchEncoder::encode_with_custom_compression`:
/// `None` for uncompressed batches, which the encoder then writes in place.
/// (The tests compare our codecs with kafka-protocol's through its encoder.)
#[cfg(test)]
pub(crate) fn compressor(compression: crate::Compression) -> Option<CompressFn> {
    (compression != crate::Compression::None).then_some(compress as CompressFn)
}

/// Compresses a batch's encoded `records` onto the end of `out`.
pub(crate) fn compress(
    records: &mut BytesMut,
    out: &mut BytesMut,
    compression: Compression,
) -> Result<()> {
    match compression {
        Compression::None => out.extend_from_slice(records),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(out.writer(), flate2::Compression::default());
            e.write_all(records)
                .map_err(|e| anyhow!("gzip compress: {e}"))?;
            e.finish().map_err(|e| anyhow!("gzip compress: {e}"))?;
        }
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_HEADER);
            let mut enc = snap::raw::Encoder::new();
            for block in records.chunks(XERIAL_BLOCK) {
                let start = out.len();
                out.put_u32(0);
                out.resize(start + 4 + snap::raw::max_compress_len(block.len()), 0);
                let n = enc
                    .compress(block, &mut out[start + 4..])
                    .map_err(|e| anyhow!("snappy compress: {e}"))?;
                out.truncate(start + 4 + n);
                out[start..start + 4].copy_from_slice(&(n as u32).to_be_bytes());
            }
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .content_checksum(true);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, out.writer());
            e.write_all(records)
                .map_err(|e| anyhow!("lz4 compress: {e}"))?;
            e.finish().map_err(|e| anyhow!("lz4 compress: {e}"))?;
        }
        Compression::Zstd => {
            ruzstd::encoding::compress(
                &records[..],
                out.writer(),
                ruzstd::encoding::CompressionLevel::Fastest,
            );
        }
    }
    Ok(())
}

/// The decompressor to give `RecordBatchDecoder::decode_with_custom_compression`:
/// the records of a batch, decompressed, capped at [`MAX_DECOMPRESSED_BATCH`].
/// Public (as `strom_client::decompress_records`) so the broker and the CLI
/// decode with the same capped, pure-Rust codecs.
pub fn decompress(records: &mut Bytes, compression: Compression) -> Result<Bytes> {
    decompress_limited(std::mem::take(records), compression, MAX_DECOMPRESSED_BATCH)
}

/// [`decompress`] with an explicit cap on the output size.
pub(crate) fn decompress_limited(
    records: Bytes,
    compression: Compression,
    limit: usize,
) -> Result<Bytes> {
    let out = match compression {
        Compression::None => return Ok(records),
        Compression::Gzip => read_limited(
            flate2::read::MultiGzDecoder::new(&records[..]),
            "gzip",
            limit,
        )?,
        Compression::Snappy => snappy_decompress(&records, limit)?,
        Compression::Lz4 => read_limited(
            lz4_flex::frame::FrameDecoder::new(&records[..]),
            "lz4",
            limit,
        )?,
        Compression::Zstd => {
            // A frame cannot need a window larger than its whole output.
            let window = limit.clamp(1 << 20, 128 << 20) as u64;
            let d =
                ruzstd::decoding::StreamingDecoder::new_with_max_window_size(&records[..], window)
                    .map_err(|e| anyhow!("zstd decompress: {e}"))?;
            read_limited(d, "zstd", limit)?
        }
    };
    Ok(Bytes::from(out))
}

/// Reads `r` to its end, failing once it yields more than `limit` bytes.
fn read_limited(r: impl Read, codec: &str, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("{codec} decompress: {e}"))?;
    if out.len() > limit {
        bail!("{codec} batch decompresses to more than {limit} bytes");
    }
    Ok(out)
}

/// Reads xerial-framed snappy (the Java client) or, without its magic, raw
/// snappy (librdkafka), as snappy-java's `SnappyInputStream` does.
fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let too_big = || anyhow!("snappy batch decompresses to more than {limit} bytes");
    let mut dec = snap::raw::Decoder::new();
    if data.len() < XERIAL_HEADER.len() || !data.starts_with(XERIAL_MAGIC) {
        let len = snap::raw::decompress_len(data).map_err(|e| anyhow!("snappy decompress: {e}"))?;
        if len > limit {
            return Err(too_big());
        }
        let mut out = vec![0; len];
        let n = dec
            .decompress(data, &mut out)
            .map_err(|e| anyhow!("snappy decompress: {e}"))?;
        out.truncate(n);
        return Ok(out);
    }
    let mut rest = &data[XERIAL_HEADER.len()..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            bail!("snappy decompress: truncated block length");
        }
        let n = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        rest = &rest[4..];
        if rest.len() < n {
            bail!("snappy decompress: block of {n} bytes, {} left", rest.len());
        }
        let (block, tail) = rest.split_at(n);
        rest = tail;
        let len =
            snap::raw::decompress_len(block).map_err(|e| anyhow!("snappy decompress: {e}"))?;
        let start = out.len();
        if len > limit - start {
            return Err(too_big());
        }
        out.resize(start + len, 0);
        let written = dec
            .decompress(block, &mut out[start..])
            .map_err(|e| anyhow!("snappy decompress: {e}"))?;
        out.truncate(start + written);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const COMPRESSED: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Compressible but not trivial data, larger than a snappy / lz4 block.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 16) as u8
                } else {
                    b"strom kafka"[i % 11]
                }
            })
            .collect()
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                sequence: i as i32 - 1, // offset - sequence constant: one batch
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(sample(100 + i % 300))),
                headers: Default::default(),
            })
            .collect()
    }

    fn ours(c: Compression) -> Vec<u8> {
        let data = sample(300_000);
        let mut out = BytesMut::new();
        compress(&mut BytesMut::from(&data[..]), &mut out, c).unwrap();
        out.to_vec()
    }

    #[test]
    fn round_trip_every_codec() {
        for c in CODECS {
            for len in [0, 1, 100, XERIAL_BLOCK, 65_536 + 1, 300_000] {
                let data = sample(len);
                let mut out = BytesMut::from(&b"prefix"[..]);
                compress(&mut BytesMut::from(&data[..]), &mut out, c).unwrap();
                assert_eq!(&out[..6], b"prefix", "{c:?} must append");
                let back = decompress(&mut out.freeze().slice(6..), c).unwrap();
                assert_eq!(back.len(), data.len(), "{c:?} {len}");
                assert!(back[..] == data[..], "{c:?} {len}");
            }
        }
    }

    #[test]
    fn compression_compresses() {
        let data = sample(300_000);
        for c in COMPRESSED {
            let n = ours(c).len();
            // The same data through kafka-protocol's codecs (C lz4 and zstd).
            let options = RecordEncodeOptions {
                version: 2,
                compression: c,
            };
            let rec = |v: &[u8]| Record {
                value: Some(Bytes::copy_from_slice(v)),
                key: None,
                ..records(1).remove(0)
            };
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            RecordBatchEncoder::encode(&mut a, [&rec(&data)], &options).unwrap();
            RecordBatchEncoder::encode_with_custom_compression(
                &mut b,
                [&rec(&data)],
                &options,
                compressor(to_client(c)),
            )
            .unwrap();
            eprintln!(
                "{c:?}: ours {n} bytes; batch ours {} vs kafka-protocol {}",
                b.len(),
                a.len()
            );
            assert!(n < 300_000 * 6 / 10, "{c:?}: {n} bytes");
        }
    }

    /// Batches we encode decode with kafka-protocol's C-backed codecs
    /// (lz4-sys, zstd-sys; the dev-dependency turns them on), and batches
    /// those codecs encode decode with ours.
    #[test]
    fn interoperates_with_kafka_protocol_codecs() {
        let recs = records(2000);
        for c in CODECS {
            let options = RecordEncodeOptions {
                version: 2,
                compression: c,
            };
            let mut mine = BytesMut::new();
            RecordBatchEncoder::encode_with_custom_compression(
                &mut mine,
                recs.iter(),
                &options,
                compressor(to_client(c)),
            )
            .unwrap();
            let set = RecordBatchDecoder::decode(&mut mine.freeze()).unwrap();
            assert_eq!(set.compression, c);
            assert_eq!(set.records, recs, "{c:?}: C codec reading ours");

            let mut theirs = BytesMut::new();
            RecordBatchEncoder::encode(&mut theirs, recs.iter(), &options).unwrap();
            let set = RecordBatchDecoder::decode_with_custom_compression(
                &mut theirs.freeze(),
                Some(decompress),
            )
            .unwrap();
            assert_eq!(set.compression, c);
            assert_eq!(set.records, recs, "{c:?}: ours reading the C codec");
        }
    }

    fn to_client(c: Compression) -> crate::Compression {
        crate::Compression::ALL
            .into_iter()
            .find(|x| x.to_protocol() == c)
            .unwrap()
    }

    /// Framings other producers use that kafka-protocol's encoder does not.
    #[test]
    fn reads_other_producers_framings() {
        let data = sample(200_000);

        // librdkafka: raw snappy, no xerial framing.
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let back = decompress(&mut Bytes::from(raw), Compression::Snappy).unwrap();
        assert!(back[..] == data[..]);

        // lz4 frames with linked blocks, 4 MiB blocks and no checksum (C liblz4).
        let mut e = lz4::EncoderBuilder::new()
            .block_mode(lz4::BlockMode::Linked)
            .block_size(lz4::BlockSize::Max4MB)
            .checksum(lz4::ContentChecksum::NoChecksum)
            .level(9)
            .build(Vec::new())
            .unwrap();
        e.write_all(&data).unwrap();
        let (lz, res) = e.finish();
        res.unwrap();
        let back = decompress(&mut Bytes::from(lz), Compression::Lz4).unwrap();
        assert!(back[..] == data[..]);

        // zstd at a high level (long window) and with a checksum (C libzstd).
        let mut e = zstd::Encoder::new(Vec::new(), 19).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        let back = decompress(&mut Bytes::from(z), Compression::Zstd).unwrap();
        assert!(back[..] == data[..]);

        // gzip written as two concatenated members.
        let mut g = Vec::new();
        for half in data.chunks(data.len() / 2) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(half).unwrap();
            g.extend(e.finish().unwrap());
        }
        let back = decompress(&mut Bytes::from(g), Compression::Gzip).unwrap();
        assert!(back[..] == data[..]);
    }

    /// What we write, the C codecs read (not only through kafka-protocol).
    #[test]
    fn c_codecs_read_ours() {
        let data = sample(300_000);
        let mut back = Vec::new();
        lz4::Decoder::new(&ours(Compression::Lz4)[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        assert!(zstd::decode_all(&ours(Compression::Zstd)[..]).unwrap() == data);
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let limit = 1 << 20;
        let zeros = vec![0u8; 10 << 20];
        for c in COMPRESSED {
            let mut bomb = BytesMut::new();
            compress(&mut BytesMut::from(&zeros[..]), &mut bomb, c).unwrap();
            assert!(bomb.len() < 1 << 20, "{c:?}: {} bytes", bomb.len());
            let err = decompress_limited(bomb.freeze(), c, limit).unwrap_err();
            assert!(err.to_string().contains("more than"), "{c:?}: {err:#}");
            // Exactly at the limit is fine.
            let mut ok = BytesMut::new();
            compress(&mut BytesMut::from(&zeros[..limit]), &mut ok, c).unwrap();
            assert_eq!(
                decompress_limited(ok.freeze(), c, limit).unwrap().len(),
                limit
            );
        }

        // Raw snappy claiming a huge length is refused before allocating.
        let mut lie = Vec::new();
        let mut n: u32 = 1 << 30;
        while n >= 0x80 {
            lie.push((n as u8) | 0x80);
            n >>= 7;
        }
        lie.push(n as u8);
        lie.extend_from_slice(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        let err = decompress(&mut Bytes::from(lie), Compression::Snappy).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err:#}");

        // The default cap applies to what the consumer decodes.
        let big = vec![0u8; MAX_DECOMPRESSED_BATCH + 1];
        let mut bomb = BytesMut::new();
        compress(&mut BytesMut::from(&big[..]), &mut bomb, Compression::Lz4).unwrap();
        assert!(decompress(&mut bomb.freeze(), Compression::Lz4).is_err());
    }

    #[test]
    fn corrupt_input_is_an_error() {
        for c in COMPRESSED {
            let mut data = ours(c);
            let mid = data.len() / 2;
            data.truncate(mid);
            assert!(
                decompress(&mut Bytes::from(data), c).is_err(),
                "{c:?} truncated"
            );
            assert!(
                decompress(&mut Bytes::from_static(b"\x01\x02garbage"), c).is_err(),
                "{c:?} garbage"
            );
        }
    }
}
