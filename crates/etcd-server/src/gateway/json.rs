//! The gateway's JSON codec: requests decoded and responses encoded by the proto3 JSON mapping
//! that pbjson generates in `etcd_proto` (proto field names, 64-bit integers as strings, base64
//! bytes, enums by name, defaults omitted), and gRPC statuses rendered as etcd's gateway
//! renders them.
//!
//! The generated decoders accept proto names and lowerCamel names, int64 as a string or a
//! number, enums as a name or a number, standard or URL-safe base64, and skip unknown fields
//! (generated with `ignore_unknown_fields`, as etcd's gateway discards them). What they refuse
//! and etcd's gateway accepts is `null` for a field (meaning "default"); [`decode`] drops null
//! members first.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tonic::Code;

use crate::service::token_from_header;

/// The auth token of one gateway call: the `Authorization` header, with an optional `Bearer `
/// prefix stripped (as etcd's gateway does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub token: Option<String>,
}

impl Caller {
    pub fn from_headers(headers: &HeaderMap) -> Caller {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| token_from_header(value.trim()))
            .map(str::to_owned);
        Caller { token }
    }
}

/// Decodes one request message from JSON text. A failure is `InvalidArgument` with a message
/// naming the problem; the caller has changed nothing yet.
pub fn decode<T: DeserializeOwned>(text: &[u8]) -> Result<T, tonic::Status> {
    // An empty body is the empty message, as `{}`.
    if text.iter().all(u8::is_ascii_whitespace) {
        return decode_value(Value::Object(serde_json::Map::new()));
    }
    let value: Value = serde_json::from_slice(text)
        .map_err(|error| tonic::Status::invalid_argument(format!("malformed JSON: {error}")))?;
    decode_value(value)
}

fn decode_value<T: DeserializeOwned>(mut value: Value) -> Result<T, tonic::Status> {
    if !value.is_object() {
        return Err(tonic::Status::invalid_argument(
            "malformed request: the body must be a JSON object",
        ));
    }
    drop_nulls(&mut value);
    T::deserialize(&value)
        .map_err(|error| tonic::Status::invalid_argument(format!("malformed request: {error}")))
}

/// Removes every `null` member of every object: in proto3 JSON, null means the default value.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            members.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Encodes a message; the generated serializers cannot fail on these types, so a failure is
/// reported as an internal error rather than a panic.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, tonic::Status> {
    serde_json::to_vec(message)
        .map_err(|error| tonic::Status::internal(format!("encoding the response: {error}")))
}

/// One stream line: `{"result": <message>}` and a newline.
pub fn result_line<T: Serialize>(message: &T) -> Bytes {
    match serde_json::to_vec(&json!({ "result": message })) {
        Ok(mut line) => {
            line.push(b'\n');
            Bytes::from(line)
        }
        Err(error) => error_line(&tonic::Status::internal(format!(
            "encoding the response: {error}"
        ))),
    }
}

/// One stream line ending the stream with an error, in the shape of both gateway generations:
/// `grpc_code`, `http_code`, `message`, `http_status` (etcd 3.4/3.5) and `code`, `details`
/// (etcd 3.6), so clients reading either find what they look for.
pub fn error_line(status: &tonic::Status) -> Bytes {
    let http = http_status(status.code());
    let code = status.code() as i32;
    let body = json!({
        "error": {
            "grpc_code": code,
            "code": code,
            "http_code": http.as_u16(),
            "message": status.message(),
            "http_status": http.canonical_reason().unwrap_or_default(),
            "details": [],
        }
    });
    let mut line = body.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

/// The HTTP status grpc-gateway gives a gRPC code (etcd-api.md §3.4).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A unary error reply: `{"error": msg, "code": n, "message": msg, "details": []}`, the union
/// of what etcd 3.4, 3.5 and 3.6 gateways send, with the HTTP status of the gRPC code.
pub fn error_response(status: &tonic::Status) -> Response {
    error_response_with(http_status(status.code()), status)
}

/// An error reply with an explicit HTTP status (405, 404, 413), the body shaped as
/// [`error_response`]'s.
pub fn error_response_with(http: StatusCode, status: &tonic::Status) -> Response {
    let body = json!({
        "error": status.message(),
        "code": status.code() as i32,
        "message": status.message(),
        "details": [],
    });
    json_response(http, body.to_string().into_bytes())
}

/// A JSON reply with `status` and `body`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    use etcd_proto::etcdserverpb::request_op::Request;
    use etcd_proto::etcdserverpb::{LeaseGrantRequest, RangeRequest, RangeResponse, TxnRequest};

    use super::*;

    #[test]
    fn proto_and_camel_names_and_numbers_or_strings_decode_alike() {
        let snake: RangeRequest =
            decode(br#"{"key":"YQ==","range_end":"Yg==","revision":"7","limit":3}"#).unwrap();
        let camel: RangeRequest =
            decode(br#"{"key":"YQ==","rangeEnd":"Yg==","revision":7,"limit":"3"}"#).unwrap();
        assert_eq!(snake, camel);
        assert_eq!(snake.key.as_ref(), b"a");
        assert_eq!(snake.range_end.as_ref(), b"b");
        assert_eq!(snake.revision, 7);
        assert_eq!(snake.limit, 3);
    }

    #[test]
    fn enums_by_name_or_number_and_oneofs_by_member_name() {
        let txn: TxnRequest = decode(
            br#"{"compare":[{"key":"YQ==","target":"CREATE","result":0,"create_revision":"0"}],
                 "success":[{"requestPut":{"key":"YQ==","value":"Yg=="}}],
                 "failure":[{"request_txn":{"compare":[{"key":"YQ==","target":3,"value":"Yg=="}]}}]}"#,
        )
        .unwrap();
        let compare = &txn.compare[0];
        assert_eq!(compare.target, CompareTarget::Create as i32);
        assert_eq!(compare.result, CompareResult::Equal as i32);
        assert_eq!(compare.target_union, Some(TargetUnion::CreateRevision(0)));
        assert!(matches!(
            txn.success[0].request,
            Some(Request::RequestPut(_))
        ));
        let Some(Request::RequestTxn(nested)) = &txn.failure[0].request else {
            panic!("nested txn expected");
        };
        assert_eq!(nested.compare[0].target, CompareTarget::Value as i32);
    }

    #[test]
    fn url_safe_base64_nulls_and_empty_bodies() {
        let request: RangeRequest = decode(br#"{"key":"-_8=","range_end":null}"#).unwrap();
        assert_eq!(request.key.as_ref(), &[0xfb, 0xff]);
        let empty: RangeRequest = decode(b"").unwrap();
        assert_eq!(empty, RangeRequest::default());
        let grant: LeaseGrantRequest = decode(br#"{"TTL":"30"}"#).unwrap();
        assert_eq!(grant.ttl, 30);
    }

    #[test]
    fn unknown_fields_are_dropped_where_they_are_unknown() {
        // `value` is unknown in a RangeRequest but valid in the PutRequest next to it.
        let txn: TxnRequest = decode(
            br#"{"compare":[],"extra":{"a":1},
                 "success":[{"request_range":{"key":"YQ==","value":"eA=="}},
                            {"request_put":{"key":"YQ==","value":"Yg==","future_field":true}}]}"#,
        )
        .unwrap();
        let Some(Request::RequestPut(put)) = &txn.success[1].request else {
            panic!("put expected");
        };
        assert_eq!(put.value.as_ref(), b"b");
        let Some(Request::RequestRange(range)) = &txn.success[0].request else {
            panic!("range expected");
        };
        assert_eq!(range.key.as_ref(), b"a");
    }

    #[test]
    fn malformed_input_is_invalid_argument() {
        for body in [
            &b"{"[..],
            b"[]",
            b"42",
            br#"{"key":12}"#,
            br#"{"limit":"x"}"#,
        ] {
            let refused = decode::<RangeRequest>(body).unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{body:?}");
        }
    }

    #[test]
    fn output_uses_proto_names_strings_for_int64_and_omits_defaults() {
        let response = RangeResponse {
            header: Some(etcd_proto::etcdserverpb::ResponseHeader {
                revision: 5,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = String::from_utf8(encode(&response).unwrap()).unwrap();
        assert_eq!(text, r#"{"header":{"revision":"5"}}"#);
    }

    #[test]
    fn stream_error_line_carries_both_generations_of_keys() {
        let line = error_line(&tonic::Status::out_of_range("gone"));
        let value: Value = serde_json::from_slice(&line).unwrap();
        let error = &value["error"];
        assert_eq!(error["grpc_code"], 11);
        assert_eq!(error["code"], 11);
        assert_eq!(error["http_code"], 400);
        assert_eq!(error["http_status"], "Bad Request");
        assert_eq!(error["message"], "gone");
        assert!(line.ends_with(b"\n"));
    }

    #[test]
    fn bearer_prefix_is_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc.1".parse().unwrap());
        assert_eq!(
            Caller::from_headers(&headers).token.as_deref(),
            Some("abc.1")
        );
        headers.insert(header::AUTHORIZATION, "abc.2".parse().unwrap());
        assert_eq!(
            Caller::from_headers(&headers).token.as_deref(),
            Some("abc.2")
        );
        assert_eq!(Caller::from_headers(&HeaderMap::new()).token, None);
    }
}
