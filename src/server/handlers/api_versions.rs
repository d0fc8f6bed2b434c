//! ApiVersions: the table of APIs and versions strom serves (KIP-35, KIP-511).

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{respond, CloseReason, Reply};
use crate::protocol::{frame, Request, SUPPORTED_APIS};

pub fn handle(req: &Request) -> Result<Reply, CloseReason> {
    // The body (client software name/version) is informational; decode it
    // anyway so malformed requests are refused like any other.
    let _: ApiVersionsRequest = req.decode()?;
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    respond(req, &ApiVersionsResponse::default().with_api_keys(api_keys))
}

/// The answer to an ApiVersions request newer than we know: a v0 body with
/// UNSUPPORTED_VERSION and the one entry the client needs to retry with.
///
/// ```text
/// size i32 | correlation_id i32 | error_code i16 = 35 | [api_keys] count i32 = 1
///          | api_key i16 = 18 | min_version i16 = 0 | max_version i16 = 4
/// ```
pub fn fallback(correlation_id: i32) -> Result<Reply, CloseReason> {
    let mut out = BytesMut::with_capacity(24);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&ResponseError::UnsupportedVersion.code().to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&4i16.to_be_bytes());
    Ok(Some(frame::finish_frame(out).into()))
}
