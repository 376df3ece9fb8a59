//! The suite's harness: an in-process single member on 127.0.0.1 and a minimal HTTP/1.1
//! client (what curl or urllib3 put on the wire, nothing more), with base64 helpers.

use std::net::SocketAddr;
use std::time::Duration;

use consensus::{InitialClusterState, NodeConfig, RaftNode};
use etcd_server::ServerConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

pub use crate::common::{WITHIN, eventually};

// ---------------------------------------------------------------------------------------------
// An in-process member.

pub struct Member {
    _dir: tempfile::TempDir,
    node: RaftNode,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), etcd_server::ServeError>>,
}

impl Member {
    pub async fn start() -> Member {
        let dir = tempfile::tempdir().unwrap();
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let addr = client.local_addr().unwrap();
        let election_timeout = Duration::from_millis(300);
        let config = NodeConfig {
            name: "g0".to_owned(),
            data_dir: dir.path().join("g0"),
            peer_urls: vec![format!("http://{peer_addr}")],
            client_urls: vec![format!("http://{addr}")],
            initial_cluster: vec![("g0".to_owned(), vec![format!("http://{peer_addr}")])],
            initial_cluster_state: InitialClusterState::New,
            initial_cluster_token: "gateway-test".to_owned(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout,
            snapshot_count: 10_000,
            request_timeout: Duration::from_secs(3),
        };
        let node = RaftNode::start(config, peer).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server_config = ServerConfig {
            election_timeout,
            ..ServerConfig::default()
        };
        let server = tokio::spawn(etcd_server::serve(
            client,
            node.clone(),
            server_config,
            async move {
                let _ = stopped.await;
            },
        ));
        let member = Member {
            _dir: dir,
            node,
            addr,
            stop,
            server,
        };
        eventually("a leader", || async {
            member.node.status().leader.map(|_| ())
        })
        .await;
        // The member publishes its client URLs through the log after it starts; clients
        // (Patroni among them) discover endpoints from them.
        eventually("the member's client URLs listed", || async {
            let reply = post(member.addr, "/v3/cluster/member/list", &json!({})).await;
            let listed = reply.status == 200 && reply.json()["members"][0]["clientURLs"].is_array();
            listed.then_some(())
        })
        .await;
        // The first write after election may race the leader's first commit; wait for one.
        eventually("a first committed write", || async {
            let reply = post(member.addr, "/v3/kv/put", &json!({"key": b64("warmup")})).await;
            (reply.status == 200).then_some(())
        })
        .await;
        member
    }

    /// Stops the server (which must end cleanly: every watch and keepalive stream it served
    /// has ended) and the Raft member.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let served = tokio::time::timeout(WITHIN, self.server)
            .await
            .expect("server stops");
        assert!(matches!(served, Ok(Ok(()))), "server ended with {served:?}");
        self.node.shutdown().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client: what curl or urllib3 put on the wire, nothing more.

pub fn b64(text: impl AsRef<[u8]>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_ref();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unb64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "reply is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole reply.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let (read, _write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let (status, headers) = read_head(&mut reader).await;
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader).await {
            body.extend(chunk);
        }
    } else {
        let length = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map(|(_, value)| value.parse::<usize>().unwrap());
        match length {
            Some(length) => {
                body.resize(length, 0);
                reader.read_exact(&mut body).await.unwrap();
            }
            None => {
                reader.read_to_end(&mut body).await.unwrap();
            }
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    let text = body.to_string();
    tokio::time::timeout(
        WITHIN,
        request(
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            text.as_bytes(),
        ),
    )
    .await
    .expect("reply in time")
}

/// Posts `body` and expects 200, answering the JSON reply.
pub async fn call(addr: SocketAddr, path: &str, body: Value) -> Value {
    let reply = post(addr, path, &body).await;
    assert_eq!(
        reply.status,
        200,
        "{path} {body}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

pub async fn read_head(reader: &mut BufReader<OwnedReadHalf>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// One chunk of a chunked body; `None` at the last chunk or the end of the connection.
pub async fn read_chunk(reader: &mut BufReader<OwnedReadHalf>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap() == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim(), 16).unwrap();
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).await.unwrap();
    chunk.truncate(size);
    Some(chunk)
}

/// A streaming call: the request body stays open (chunked) until `finish_body`, replies are
/// read line by line as they arrive.
pub struct Stream {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    pub status: u16,
    pending: Vec<u8>,
}

impl Stream {
    pub async fn open(addr: SocketAddr, path: &str, first: &Value) -> Stream {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut writer) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await.unwrap();
        let mut stream = Stream {
            reader: BufReader::new(read),
            writer,
            status: 0,
            pending: Vec::new(),
        };
        stream.send(first).await;
        let (status, _) = tokio::time::timeout(WITHIN, read_head(&mut stream.reader))
            .await
            .expect("response head in time");
        stream.status = status;
        stream
    }

    pub async fn send(&mut self, message: &Value) {
        self.send_raw(message.to_string().as_bytes()).await;
    }

    pub async fn send_raw(&mut self, text: &[u8]) {
        let chunk = format!("{:x}\r\n", text.len());
        self.writer.write_all(chunk.as_bytes()).await.unwrap();
        self.writer.write_all(text).await.unwrap();
        self.writer.write_all(b"\r\n").await.unwrap();
    }

    /// Ends the request body (a half-close of the stream's request side).
    pub async fn finish_body(&mut self) {
        self.writer.write_all(b"0\r\n\r\n").await.unwrap();
    }

    /// The next reply line as JSON; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(WITHIN, async {
            loop {
                if let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=end).collect();
                    return Some(serde_json::from_slice(&line).unwrap());
                }
                let chunk = read_chunk(&mut self.reader).await?;
                self.pending.extend(chunk);
            }
        })
        .await
        .expect("a stream line in time")
    }
}

pub fn revision(reply: &Value) -> i64 {
    reply["header"]["revision"]
        .as_str()
        .expect("header.revision is a string")
        .parse()
        .unwrap()
}

pub fn assert_error(reply: &Reply, http: u16, code: i64, message: &str) {
    assert_eq!(
        reply.status,
        http,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert_eq!(body["error"], message, "{body}");
    assert_eq!(body["details"], json!([]), "{body}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
}
