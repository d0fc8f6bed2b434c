//! Kafka framing: a big-endian i32 size, then that many bytes of request.
//!
//! ```text
//! 0      4                      4+size
//! +------+----------------------+
//! | size | request (header+body)|
//! +------+----------------------+
//! ```

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {size} is negative")]
    Negative { size: i32 },
    #[error("frame size {size} exceeds socket.request.max.bytes {max}")]
    TooLarge { size: usize, max: usize },
}

/// Takes one whole frame off the front of `buf`. `Ok(None)` means more bytes
/// are needed; an oversized or negative size is an error before anything is
/// allocated for it. `reserve` tells the caller how much room to make.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = frame_size(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// The size of the frame at the front of `buf`, once its prefix is there;
/// negative or oversized sizes are errors.
pub fn frame_size(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = usize::try_from(size).map_err(|_| FrameError::Negative { size })?;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(Some(size))
}

/// How many more bytes the frame at the front of `buf` needs (0 if unknown
/// or complete), capped so that a slow sender cannot make us allocate a
/// huge buffer up front.
pub fn bytes_wanted(buf: &BytesMut, cap: usize) -> usize {
    if buf.len() < 4 {
        return 4 - buf.len();
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize;
    (4 + size).saturating_sub(buf.len()).min(cap)
}

/// Prepends the size prefix: the response bytes must start with 4 spare bytes.
pub fn finish_frame(mut out: BytesMut) -> Bytes {
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

/// A whole response frame, size prefix included, as one or more buffers to
/// be written back to back (a Fetch response keeps its record bytes as the
/// segment map's own `Bytes`; see `protocol::splice`).
#[derive(Debug)]
pub struct OutFrame {
    chunks: Vec<Bytes>,
}

impl OutFrame {
    pub fn from_chunks(chunks: Vec<Bytes>) -> OutFrame {
        OutFrame { chunks }
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }
}

impl From<Bytes> for OutFrame {
    fn from(frame: Bytes) -> OutFrame {
        OutFrame {
            chunks: vec![frame],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_incomplete_frame_is_not_an_error() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 5, 1, 2][..]);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&[3, 4, 5, 9]);
        assert_eq!(
            take_frame(&mut buf, 100).unwrap().unwrap(),
            Bytes::from_static(&[1, 2, 3, 4, 5])
        );
        assert_eq!(&buf[..], &[9]);
    }

    #[test]
    fn oversized_and_negative_sizes_are_refused_before_the_body_arrives() {
        let mut buf = BytesMut::from(&0x7fff_ffffi32.to_be_bytes()[..]);
        assert!(matches!(
            take_frame(&mut buf, 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(matches!(
            take_frame(&mut buf, 1 << 20),
            Err(FrameError::Negative { .. })
        ));
    }

    proptest! {
        #[test]
        fn frames_split_anywhere_reassemble(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8), cut in 0usize..512) {
            let mut wire = Vec::new();
            for b in &bodies {
                wire.extend_from_slice(&(b.len() as i32).to_be_bytes());
                wire.extend_from_slice(b);
            }
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = take_frame(&mut buf, 1024).unwrap() { got.push(f.to_vec()); }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = take_frame(&mut buf, 1024).unwrap() { got.push(f.to_vec()); }
            prop_assert_eq!(got, bodies);
            prop_assert!(buf.is_empty());
        }
    }
}
