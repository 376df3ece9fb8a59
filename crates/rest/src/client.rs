//! A minimal HTTP/1.1 client for the members' REST API (one request per connection), enough
//! for JSON requests with optional basic auth: what peers ask each other during the leader
//! race, what `pgwarden ctl` and `pgwarden demo` ask the members.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A member's answer: status code and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// The `host:port` of a member's `api_url` (`http://host:port/patroni`) or of a bare
/// `host:port`; `None` for another scheme.
fn authority(api_url: &str) -> Option<String> {
    let rest = match api_url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return None,
        None => api_url,
    };
    Some(rest.split('/').next()?.to_owned())
}

/// `GET path` on the member at `api_url` (or `host:port`) → the JSON body, or `None` on any
/// failure or after `timeout`.
pub async fn get_json(api_url: &str, path: &str, timeout: Duration) -> Option<Value> {
    let reply = request(api_url, "GET", path, None, None, timeout)
        .await
        .ok()?;
    serde_json::from_str(&reply.body).ok()
}

/// Sends `method path` with an optional JSON body to the member whose `api_url` is given.
pub async fn request(
    api_url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    credentials: Option<&(String, String)>,
    timeout: Duration,
) -> Result<Reply, String> {
    let address = authority(api_url)
        .ok_or_else(|| format!("unsupported REST API address {api_url} (http:// only)"))?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|error| format!("connect to {address}: {error}"))?;
        let body_text = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body_text.len()
        );
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some((user, password)) = credentials {
            head.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64(format!("{user}:{password}").as_bytes())
            ));
        }
        head.push_str("\r\n");
        stream
            .write_all(format!("{head}{body_text}").as_bytes())
            .await
            .map_err(|error| format!("send to {address}: {error}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|error| format!("read from {address}: {error}"))?;
        parse(&response).ok_or_else(|| format!("malformed HTTP response from {address}"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{address} did not answer within {timeout:?}"))?
}

fn parse(response: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some(Reply { status, body })
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"admin:secret"), "YWRtaW46c2VjcmV0");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn parses_plain_and_chunked_replies() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((plain.status, plain.body.as_str()), (200, "ok"));
        let chunked =
            parse(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!((chunked.status, chunked.body.as_str()), (503, "abc"));
    }

    #[test]
    fn authority_of_an_api_url() {
        assert_eq!(
            authority("http://127.0.0.1:8008/patroni").as_deref(),
            Some("127.0.0.1:8008")
        );
        assert_eq!(authority("https://h/patroni"), None);
        assert_eq!(
            authority("127.0.0.1:8008").as_deref(),
            Some("127.0.0.1:8008")
        );
    }
}
