//! The Kafka wire protocol as strom speaks it: framing, the table of API
//! versions it advertises, request header parsing and response encoding.
//! A pure codec: bytes in, types out, no I/O.

pub mod frame;
pub mod legacy_produce;
pub mod splice;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// The versions strom advertises in ApiVersions (DESIGN.md section 3).
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // Produce 0-2 are advertised but answered with UNSUPPORTED_VERSION:
    // librdkafka < 1.x only enables compression when the range includes 0.
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
];

/// The advertised (min, max) versions of `key`, if strom serves it.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// Why a request could not be parsed. All of these close the connection
/// except `ApiVersionsFallback`, which gets the error-35 answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {len} bytes is shorter than a request header")]
    Truncated { len: usize },
    #[error("unknown API key {key}")]
    UnknownApiKey { key: i16 },
    #[error("{key:?} version {version} is not supported (supported: {min}-{max})")]
    UnsupportedVersion {
        key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("cannot decode {key:?} v{version}: {message}")]
    Decode {
        key: ApiKey,
        version: i16,
        message: String,
    },
}

/// A parsed request: its header, and the undecoded body.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// The outcome of parsing one frame.
#[derive(Debug)]
pub enum Parsed {
    Request(Request),
    /// ApiVersions at a version newer than ours: answer v0 with error 35
    /// without parsing the body (KIP-511).
    ApiVersionsFallback {
        correlation_id: i32,
    },
}

fn decode_err(key: ApiKey, version: i16) -> impl FnOnce(anyhow::Error) -> RequestError {
    move |e| RequestError::Decode {
        key,
        version,
        message: e.to_string(),
    }
}

/// Parses the request header at the front of a frame.
pub fn parse_request(frame: Bytes) -> Result<Parsed, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::Truncated { len: frame.len() });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key =
        ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey { key: raw_key })?;
    let (min, max) = supported_versions(key).ok_or(RequestError::UnknownApiKey { key: raw_key })?;
    if key == ApiKey::ApiVersions && version > max {
        return Ok(Parsed::ApiVersionsFallback { correlation_id });
    }
    if version < min || version > max {
        return Err(RequestError::UnsupportedVersion {
            key,
            version,
            min,
            max,
        });
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(decode_err(key, version))?;
    Ok(Parsed::Request(Request {
        api_key: key,
        version,
        header,
        body,
    }))
}

impl Request {
    /// Decodes the body as `T` at this request's version. Trailing bytes
    /// are ignored, as Kafka brokers ignore them: librdkafka 2.16's
    /// AdminClient sends 3 extra bytes after a Metadata v12 body.
    pub fn decode<T: Decodable>(&self) -> Result<T, RequestError> {
        let mut body = self.body.clone();
        let value =
            T::decode(&mut body, self.version).map_err(decode_err(self.api_key, self.version))?;
        if body.has_remaining() {
            tracing::debug!(
                api = ?self.api_key,
                version = self.version,
                trailing = body.remaining(),
                "ignoring trailing request bytes"
            );
        }
        Ok(value)
    }
}

/// Decodes a request's body as the type its API key names, discarding the
/// value: for fuzzing and hostile-input tests, which care that decoding
/// returns (an error or a value) rather than what it returns.
#[doc(hidden)]
pub fn decode_body(req: &Request) -> Result<(), RequestError> {
    use kafka_protocol::messages::*;
    match req.api_key {
        ApiKey::Produce if req.version < 3 => legacy_produce::decode(req.body.clone())
            .map(drop)
            .map_err(|message| RequestError::Decode {
                key: req.api_key,
                version: req.version,
                message,
            }),
        ApiKey::Produce => req.decode::<ProduceRequest>().map(drop),
        ApiKey::Fetch => req.decode::<FetchRequest>().map(drop),
        ApiKey::ListOffsets => req.decode::<ListOffsetsRequest>().map(drop),
        ApiKey::Metadata => req.decode::<MetadataRequest>().map(drop),
        ApiKey::ApiVersions => req.decode::<ApiVersionsRequest>().map(drop),
        ApiKey::CreateTopics => req.decode::<CreateTopicsRequest>().map(drop),
        ApiKey::DeleteTopics => req.decode::<DeleteTopicsRequest>().map(drop),
        ApiKey::DescribeConfigs => req.decode::<DescribeConfigsRequest>().map(drop),
        ApiKey::OffsetCommit => req.decode::<OffsetCommitRequest>().map(drop),
        ApiKey::OffsetFetch => req.decode::<OffsetFetchRequest>().map(drop),
        ApiKey::FindCoordinator => req.decode::<FindCoordinatorRequest>().map(drop),
        ApiKey::JoinGroup => req.decode::<JoinGroupRequest>().map(drop),
        ApiKey::Heartbeat => req.decode::<HeartbeatRequest>().map(drop),
        ApiKey::LeaveGroup => req.decode::<LeaveGroupRequest>().map(drop),
        ApiKey::SyncGroup => req.decode::<SyncGroupRequest>().map(drop),
        ApiKey::DescribeGroups => req.decode::<DescribeGroupsRequest>().map(drop),
        ApiKey::ListGroups => req.decode::<ListGroupsRequest>().map(drop),
        ApiKey::DeleteGroups => req.decode::<DeleteGroupsRequest>().map(drop),
        ApiKey::InitProducerId => req.decode::<InitProducerIdRequest>().map(drop),
        ApiKey::DescribeLogDirs => req.decode::<DescribeLogDirsRequest>().map(drop),
        ApiKey::IncrementalAlterConfigs => req.decode::<IncrementalAlterConfigsRequest>().map(drop),
        ApiKey::CreatePartitions => req.decode::<CreatePartitionsRequest>().map(drop),
        ApiKey::DeleteRecords => req.decode::<DeleteRecordsRequest>().map(drop),
        // Keys strom does not serve never get past parse_request; a served
        // key missing above is caught by a test.
        other => Err(RequestError::UnknownApiKey { key: other as i16 }),
    }
}

/// A response header's largest size: correlation id, and in v1 an empty tagged-field count.
const RESPONSE_HEADER_MAX: usize = 5;

/// Encodes a whole response frame (size, header, body) for `api_key` v`version`.
pub fn encode_response<T: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &T,
) -> anyhow::Result<Bytes> {
    // Sized up front (size prefix + header + body): a Fetch response carries
    // up to max_bytes of records, and growing the buffer from 64 bytes by
    // doubling copied them over and over (BENCHMARKS.md, fetch assembly).
    let body_size = body.compute_size(version)?;
    let mut out = BytesMut::with_capacity(4 + RESPONSE_HEADER_MAX + body_size);
    out.extend_from_slice(&[0; 4]);
    let header =
        kafka_protocol::messages::ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut out, T::header_version(version))?;
    body.encode(&mut out, version)?;
    Ok(frame::finish_frame(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    fn frame_of(key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn flexible_request_headers_parse_with_their_body() {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("x"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let Parsed::Request(parsed) =
            parse_request(frame_of(ApiKey::ApiVersions, 3, &req)).unwrap()
        else {
            panic!("expected a request");
        };
        assert_eq!(parsed.header.correlation_id, 7);
        assert_eq!(parsed.header.client_id.as_deref(), Some("test"));
        assert_eq!(parsed.decode::<ApiVersionsRequest>().unwrap(), req);
    }

    #[test]
    fn unknown_keys_and_versions_are_told_apart() {
        let mut raw = BytesMut::new();
        raw.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            parse_request(raw.freeze()),
            Err(RequestError::UnknownApiKey { .. })
        ));
        let future_api_versions = Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 5, 0xff]);
        assert!(matches!(
            parse_request(future_api_versions),
            Ok(Parsed::ApiVersionsFallback { correlation_id: 5 })
        ));
        let old_fetch = Bytes::from_static(&[0, 1, 0, 1, 0, 0, 0, 5, 0, 0]);
        assert!(matches!(
            parse_request(old_fetch),
            Err(RequestError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            parse_request(Bytes::from_static(&[0, 1])),
            Err(RequestError::Truncated { .. })
        ));
    }
}

#[cfg(test)]
mod hostile_input {
    //! Arbitrary bytes through the parser and every request decoder must
    //! give an error or a value, never a panic.

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_served_api_has_a_body_decoder() {
        for &(key, _, max) in SUPPORTED_APIS {
            let req = Request {
                api_key: key,
                version: max,
                header: RequestHeader::default(),
                body: Bytes::new(),
            };
            assert!(
                !matches!(decode_body(&req), Err(RequestError::UnknownApiKey { .. })),
                "{key:?} is served but decode_body does not decode it"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_frames_never_panic_the_parser(frame in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Parsed::Request(req)) = parse_request(Bytes::from(frame)) {
                let _ = decode_body(&req);
            }
        }

        #[test]
        fn random_bodies_behind_valid_headers_never_panic_a_decoder(
            api in 0usize..SUPPORTED_APIS.len(),
            version_pick in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let (key, min, max) = SUPPORTED_APIS[api];
            let version = min + (version_pick % (max - min + 1) as u16) as i16;
            let mut frame = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(1)
                .encode(&mut frame, key.request_header_version(version))
                .unwrap();
            frame.extend_from_slice(&body);
            if let Ok(Parsed::Request(req)) = parse_request(frame.freeze()) {
                let _ = decode_body(&req);
            }
        }
    }
}
