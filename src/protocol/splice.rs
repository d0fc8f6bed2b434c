//! Response frames written as several buffers, so record bytes read from a
//! segment map reach the socket without being copied into the frame.
//!
//! kafka-protocol encodes into a `ByteBufMut` and writes a `records` field
//! with `put_slice(&records)`. [`SpliceBuf`] knows the record `Bytes` the
//! response carries; when `put_slice` is handed exactly one of them (same
//! address, same length) it ends the current chunk and keeps a clone of the
//! `Bytes` (a reference count, no copy) as the next chunk. Everything else is
//! copied into the current chunk as usual. The Fetch response encoder writes
//! straight through and never seeks back, which a test checks byte for byte
//! against the plain encoder at every Fetch version strom serves.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::frame::OutFrame;

/// Record data shorter than this is copied: a separate iovec costs more
/// than copying a few KiB.
pub const SPLICE_MIN: usize = 4096;

struct SpliceBuf<'a> {
    /// The chunk being written.
    head: BytesMut,
    /// Finished chunks, in frame order.
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    done: usize,
    /// The `Bytes` that may be spliced in instead of copied.
    shared: &'a [Bytes],
}

impl SpliceBuf<'_> {
    fn finish(mut self) -> Vec<Bytes> {
        if !self.head.is_empty() {
            self.chunks.push(self.head.freeze());
        }
        self.chunks
    }
}

// The one `unsafe` outside the maps and the allocator: `BufMut` is an unsafe
// trait, and kafka-protocol encodes only into a `BufMut`. The alternative,
// hand-encoding the Fetch response at every version, is more code to get
// wrong than this delegation.
//
// SAFETY: `remaining_mut`, `advance_mut` and `chunk_mut` are BytesMut's own
// (which upholds the trait's contract) applied to `head`; `put_slice` only
// calls BytesMut's safe `split` and `extend_from_slice` on it.
#[allow(unsafe_code)]
unsafe impl BufMut for SpliceBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    #[allow(unsafe_code)]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller promises `cnt` bytes of `chunk_mut()` (head's)
        // were initialized, which is what head's advance_mut requires.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SPLICE_MIN {
            let found = self
                .shared
                .iter()
                .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len());
            if let Some(bytes) = found {
                if !self.head.is_empty() {
                    let chunk = self.head.split().freeze();
                    self.done += chunk.len();
                    self.chunks.push(chunk);
                }
                self.done += bytes.len();
                self.chunks.push(bytes.clone());
                return;
            }
        }
        self.head.extend_from_slice(src);
    }
}

impl ByteBufMut for SpliceBuf<'_> {
    fn offset(&self) -> usize {
        self.done + self.head.len()
    }

    // Seeking or patching inside a finished chunk cannot be done; positions
    // before `done` are clamped to the current chunk, and the length check
    // in `encode_response_spliced` turns any resulting damage into an error.
    fn seek(&mut self, offset: usize) {
        self.head.resize(offset.saturating_sub(self.done), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.done);
        let end = r.end.saturating_sub(self.done);
        &mut self.head[start..end]
    }
}

/// Encodes a whole response frame like [`super::encode_response`], but any
/// `records` field holding one of `shared` (at least [`SPLICE_MIN`] bytes)
/// becomes its own chunk of the frame instead of being copied.
pub fn encode_response_spliced<T: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &T,
    shared: &[Bytes],
) -> anyhow::Result<OutFrame> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = T::header_version(version);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let spliced: usize = shared
        .iter()
        .filter(|b| b.len() >= SPLICE_MIN)
        .map(Bytes::len)
        .sum();
    let mut out = SpliceBuf {
        head: BytesMut::with_capacity((4 + size).saturating_sub(spliced)),
        chunks: Vec::with_capacity(2 * shared.len() + 1),
        done: 0,
        shared,
    };
    let prefix = i32::try_from(size).map_err(|_| anyhow::anyhow!("response of {size} bytes"))?;
    out.put_i32(prefix);
    header.encode(&mut out, header_version)?;
    body.encode(&mut out, version)?;
    let written = out.offset();
    anyhow::ensure!(
        written == 4 + size,
        "spliced response is {written} bytes, expected {}",
        4 + size
    );
    Ok(OutFrame::from_chunks(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_response;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// A response using every field Fetch v`version` has.
    fn response(version: i16, records: &[Option<Bytes>]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64)
                    .with_last_stable_offset(1000 + i as i64)
                    .with_log_start_offset(if version >= 5 { 3 } else { -1 })
                    .with_aborted_transactions(
                        (i == 1).then(|| vec![AbortedTransaction::default()]),
                    )
                    .with_records(r.clone())
            })
            .collect();
        FetchResponse::default()
            .with_session_id(if version >= 7 { 9 } else { 0 })
            .with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("events")))
                    .with_partitions(partitions),
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("empty"))),
            ])
    }

    fn data(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn same_bytes_as_the_plain_encoder_at_every_fetch_version() {
        let records = vec![
            Some(data(SPLICE_MIN, 1)),
            Some(data(10, 2)),
            None,
            Some(Bytes::new()),
            Some(data(70_000, 3)),
        ];
        let (min, max) = super::super::supported_versions(kafka_protocol::messages::ApiKey::Fetch)
            .expect("fetch is served");
        for version in min..=max {
            let body = response(version, &records);
            let plain = encode_response(77, version, &body).unwrap();
            let shared: Vec<Bytes> = records.iter().flatten().cloned().collect();
            let frame = encode_response_spliced(77, version, &body, &shared).unwrap();
            let joined: Vec<u8> = frame.chunks().iter().flat_map(|c| c.to_vec()).collect();
            assert_eq!(joined, plain.to_vec(), "fetch v{version}");
            // The two large record sets are chunks of their own, pointing at
            // the same memory (not copies).
            for big in [&records[0], &records[4]] {
                let big = big.as_ref().unwrap();
                assert!(
                    frame.chunks().iter().any(|c| c.as_ptr() == big.as_ptr()),
                    "fetch v{version}: records of {} bytes were copied",
                    big.len()
                );
            }
        }
    }

    #[test]
    fn without_shared_bytes_it_is_one_chunk() {
        let body = response(12, &[Some(data(SPLICE_MIN * 2, 5))]);
        let frame = encode_response_spliced(1, 12, &body, &[]).unwrap();
        assert_eq!(frame.chunks().len(), 1);
        assert_eq!(frame.chunks()[0], encode_response(1, 12, &body).unwrap());
    }
}
