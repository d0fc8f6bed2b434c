//! Produce v0-2, which kafka-protocol no longer decodes. strom advertises
//! them (old librdkafka enables compression only if the Produce range starts
//! at 0) and answers every partition with UNSUPPORTED_VERSION, because these
//! versions carry message formats v0/v1, not record batches.
//!
//! ```text
//! request  v0-2: acks i16 | timeout_ms i32 | [topic: name string
//!                  | [partition: index i32 | records bytes (i32 length, -1 = null)]]
//! response v0:   [topic: name string | [partition: index i32 | error i16 | base_offset i64]]
//! response v1:   v0 + throttle_time_ms i32 at the end
//! response v2:   v1 + log_append_time_ms i64 after each base_offset
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The topic and partition indexes of a legacy produce request.
#[derive(Debug, PartialEq, Eq)]
pub struct LegacyProduce {
    pub acks: i16,
    pub topics: Vec<(Bytes, Vec<i32>)>,
}

fn need(buf: &Bytes, n: usize) -> Result<(), String> {
    if buf.remaining() < n {
        return Err(format!(
            "truncated: needed {n} bytes, {} left",
            buf.remaining()
        ));
    }
    Ok(())
}

fn get_len(buf: &mut Bytes, what: &str) -> Result<usize, String> {
    need(buf, 4)?;
    usize::try_from(buf.get_i32()).map_err(|_| format!("negative {what} count"))
}

/// Parses the parts of a v0-2 produce body needed to answer it.
pub fn decode(mut buf: Bytes) -> Result<LegacyProduce, String> {
    need(&buf, 6)?;
    let acks = buf.get_i16();
    let _timeout = buf.get_i32();
    let topic_count = get_len(&mut buf, "topic")?;
    let mut topics = Vec::new();
    for _ in 0..topic_count {
        need(&buf, 2)?;
        let name_len = usize::try_from(buf.get_i16()).map_err(|_| "null topic name".to_string())?;
        need(&buf, name_len)?;
        let name = buf.split_to(name_len);
        let partition_count = get_len(&mut buf, "partition")?;
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            need(&buf, 8)?;
            partitions.push(buf.get_i32());
            let len = buf.get_i32();
            if len > 0 {
                let len = len as usize;
                need(&buf, len)?;
                buf.advance(len);
            }
        }
        topics.push((name, partitions));
    }
    if buf.has_remaining() {
        return Err(format!("{} unexpected trailing bytes", buf.remaining()));
    }
    Ok(LegacyProduce { acks, topics })
}

/// Encodes a response body giving every partition `error_code`.
pub fn encode_response(request: &LegacyProduce, version: i16, error_code: i16, out: &mut BytesMut) {
    out.put_i32(request.topics.len() as i32);
    for (name, partitions) in &request.topics {
        out.put_i16(name.len() as i16);
        out.put_slice(name);
        out.put_i32(partitions.len() as i32);
        for &p in partitions {
            out.put_i32(p);
            out.put_i16(error_code);
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_produce_round_trips_to_an_error_per_partition() {
        let mut req = BytesMut::new();
        req.put_i16(1);
        req.put_i32(1000);
        req.put_i32(1);
        req.put_i16(3);
        req.put_slice(b"abc");
        req.put_i32(2);
        req.put_i32(0);
        req.put_i32(2);
        req.put_slice(&[9, 9]);
        req.put_i32(1);
        req.put_i32(-1);
        let parsed = decode(req.freeze()).unwrap();
        assert_eq!(
            parsed.topics,
            vec![(Bytes::from_static(b"abc"), vec![0, 1])]
        );
        let mut out = BytesMut::new();
        encode_response(&parsed, 2, 35, &mut out);
        assert_eq!(out.len(), 4 + 2 + 3 + 4 + 2 * (4 + 2 + 8 + 8) + 4);
    }

    #[test]
    fn truncated_legacy_produce_is_an_error() {
        assert!(decode(Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 5])).is_err());
    }
}
