//! A minimal HTTP/1.1 client for the members' REST API (one request per connection), enough
//! for JSON requests with optional basic auth, over http or https ([`ClientTls`]): what peers
//! ask each other during the leader race, what `pgwarden ctl` and `pgwarden demo` ask the
//! members.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tls::ClientTls;

/// A member's answer: status code and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Where a member's REST API is: the scheme and `host:port` of its `api_url`
/// (`http(s)://host:port/patroni`) or of a bare `host:port` (http).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    address: String,
}

fn target(api_url: &str) -> Option<Target> {
    let (https, rest) = match api_url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some(_) => return None,
        None => (false, api_url),
    };
    Some(Target {
        https,
        address: rest.split('/').next()?.to_owned(),
    })
}

/// The path of an `api_url` (`/patroni`), or `default` when it has none.
pub fn url_path<'a>(api_url: &'a str, default: &'a str) -> &'a str {
    let rest = api_url.split_once("://").map_or(api_url, |(_, rest)| rest);
    rest.find('/').map_or(default, |slash| &rest[slash..])
}

/// The one REST client of pgwarden (the leader race, `pgwarden ctl`, `pgwarden demo`):
/// `http://` members always, `https://` members with the [`ClientTls`] it was made with.
#[derive(Debug, Clone, Default)]
pub struct RestClient {
    /// `None`: an `https://` member is refused (no CA to verify it against was configured).
    tls: Option<ClientTls>,
}

impl RestClient {
    pub fn new(tls: Option<ClientTls>) -> RestClient {
        RestClient { tls }
    }

    /// `GET path` on the member at `api_url` (or `host:port`) → the JSON body, or `None` on
    /// any failure or after `timeout`.
    pub async fn get_json(&self, api_url: &str, path: &str, timeout: Duration) -> Option<Value> {
        let reply = self
            .request(api_url, "GET", path, None, None, timeout)
            .await
            .ok()?;
        serde_json::from_str(&reply.body).ok()
    }

    /// Sends `method path` with an optional JSON body to the member whose `api_url` is given.
    pub async fn request(
        &self,
        api_url: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        credentials: Option<&(String, String)>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let Target { https, address } = target(api_url).ok_or_else(|| {
            format!("unsupported REST API address {api_url} (http:// or https://)")
        })?;
        let tls = match (https, &self.tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls),
            (true, None) => {
                return Err(format!(
                    "{api_url} is https, but no CA to verify it against is configured \
                     (ctl.cacert or restapi.cafile, or ctl.insecure: true)"
                ));
            }
        };
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
        let message = format!("{head}{body_text}");
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&address)
                .await
                .map_err(|error| format!("connect to {address}: {error}"))?;
            let response = match tls {
                None => send(stream, &message, &address).await?,
                Some(tls) => {
                    let host = address
                        .rsplit_once(':')
                        .map_or(address.as_str(), |(host, _)| host)
                        .trim_matches(['[', ']']);
                    let stream = tls
                        .connect(host, stream)
                        .await
                        .map_err(|error| format!("TLS handshake with {address}: {error}"))?;
                    send(stream, &message, &address).await?
                }
            };
            parse(&response).ok_or_else(|| format!("malformed HTTP response from {address}"))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{address} did not answer within {timeout:?}"))?
    }
}

/// Writes `message` and reads the whole response (the server closes: `Connection: close`).
async fn send<S>(mut stream: S, message: &str, address: &str) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(message.as_bytes())
        .await
        .map_err(|error| format!("send to {address}: {error}"))?;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response).await;
    match read {
        Ok(_) => Ok(response),
        // A TLS server that closes without close_notify after a complete answer.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
            Ok(response)
        }
        Err(error) => Err(format!("read from {address}: {error}")),
    }
}

/// [`RestClient::get_json`] of a plain-http client.
pub async fn get_json(api_url: &str, path: &str, timeout: Duration) -> Option<Value> {
    RestClient::default().get_json(api_url, path, timeout).await
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
    fn target_of_an_api_url() {
        let target_of = |url| target(url).map(|target| (target.https, target.address));
        assert_eq!(
            target_of("http://127.0.0.1:8008/patroni"),
            Some((false, "127.0.0.1:8008".to_owned()))
        );
        assert_eq!(
            target_of("https://h:8008/patroni"),
            Some((true, "h:8008".to_owned()))
        );
        assert_eq!(target_of("ftp://h/patroni"), None);
        assert_eq!(
            target_of("127.0.0.1:8008"),
            Some((false, "127.0.0.1:8008".to_owned()))
        );
        assert_eq!(url_path("https://h:1/patroni", "/x"), "/patroni");
        assert_eq!(url_path("h:1", "/x"), "/x");
    }
}
