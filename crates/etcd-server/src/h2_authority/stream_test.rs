//! The stream wrapper over in-memory pipes, and the whole server (hyper behind the wrapper)
//! driven by a raw HTTP/2 client that sends URL-form authorities the way etcdctl 3.4 does.

use std::sync::Arc;
use std::time::Duration;

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::AuthorityFixStream;
use super::block::{
    FLAG_END_HEADERS, FLAG_END_STREAM, FRAME_HEADER_LEN, FrameHeader, TYPE_CONTINUATION,
    TYPE_HEADERS,
};
use super::frames::PREFACE;
use crate::config::ServerConfig;
use crate::lease::TokioClock;
use crate::server::serve_backend;
use crate::testing::FakeNode;

const WITHIN: Duration = Duration::from_secs(10);
const TYPE_DATA: u8 = 0x0;
const TYPE_RST_STREAM: u8 = 0x3;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        length: payload.len(),
        kind,
        flags,
        stream_id: stream.to_be_bytes(),
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Reads everything the wrapper yields until end of file, in reads of `read_size` bytes.
async fn read_all<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut AuthorityFixStream<S>,
    read_size: usize,
) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        let read = tokio::time::timeout(WITHIN, stream.read(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        if read == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..read]);
    }
}

#[tokio::test]
async fn http1_bytes_reach_the_reader_unchanged_and_writes_go_through() {
    let (client, server) = tokio::io::duplex(64);
    let mut stream = AuthorityFixStream::new(server);
    let request =
        b"POST /v3/kv/range HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\n{}".repeat(10);
    let writer = {
        let request = request.clone();
        tokio::spawn(async move {
            let mut client = client;
            for piece in request.chunks(5) {
                client.write_all(piece).await.unwrap();
            }
            client.shutdown().await.unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.unwrap();
            reply
        })
    };
    assert_eq!(read_all(&mut stream, 3).await, request);
    stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(writer.await.unwrap(), b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(!stream.rewrote());
}

#[tokio::test]
async fn http2_bytes_arrive_rewritten_whatever_the_read_sizes() {
    let fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/etcdserverpb.Maintenance/Status"),
        (b":authority", b"http://127.0.0.1:2379"),
    ];
    let mut input = PREFACE.to_vec();
    input.extend(frame(TYPE_SETTINGS, 0, 0, &[]));
    let fragment = Encoder::new().encode(fields.iter().copied());
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &fragment));
    input.extend(frame(TYPE_DATA, FLAG_END_STREAM, 1, &[0; 5]));
    let mut outputs = Vec::new();
    for (write_size, read_size) in [(1, 1), (3, 100), (1000, 7), (1000, 64 * 1024)] {
        let (client, server) = tokio::io::duplex(16);
        let mut stream = AuthorityFixStream::new(server);
        let input = input.clone();
        let writer = tokio::spawn(async move {
            let mut client = client;
            for piece in input.chunks(write_size) {
                client.write_all(piece).await.unwrap();
            }
            client.shutdown().await.unwrap();
        });
        let output = read_all(&mut stream, read_size).await;
        writer.await.unwrap();
        assert!(stream.rewrote());
        outputs.push(output);
    }
    assert!(outputs.windows(2).all(|pair| pair[0] == pair[1]));
    let output = &outputs[0];
    let headers_at = PREFACE.len() + FRAME_HEADER_LEN;
    let header = FrameHeader::parse(&output[headers_at..]).unwrap();
    assert_eq!(header.kind, TYPE_HEADERS);
    let payload = &output[headers_at + FRAME_HEADER_LEN..][..header.length];
    let decoded = Decoder::new().decode(payload).unwrap();
    assert_eq!(
        decoded[3],
        (b":authority".to_vec(), b"127.0.0.1:2379".to_vec())
    );
    assert!(output.ends_with(&frame(TYPE_DATA, FLAG_END_STREAM, 1, &[0; 5])));
}

#[tokio::test]
async fn a_truncated_frame_reaches_the_reader_before_end_of_file() {
    let (client, server) = tokio::io::duplex(1024);
    let mut stream = AuthorityFixStream::new(server);
    let mut input = PREFACE.to_vec();
    input.extend(&frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &[0x82, 0x86])[..10]);
    let mut client = client;
    client.write_all(&input).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_all(&mut stream, 1024).await, input);
}

/// A minimal HTTP/2 client: one indexing HPACK encoder (as Go's), one decoder for replies.
struct RawClient {
    socket: TcpStream,
    encoder: Encoder<'static>,
    decoder: Decoder<'static>,
    received: Vec<u8>,
}

/// What the server answered on one stream.
#[derive(Debug, Default)]
struct Reply {
    header_blocks: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
    data: Vec<u8>,
    reset: Option<Vec<u8>>,
}

impl Reply {
    fn field(&self, block: usize, name: &str) -> Option<String> {
        self.header_blocks.get(block)?.iter().find_map(|(n, v)| {
            (n == name.as_bytes()).then(|| String::from_utf8_lossy(v).into_owned())
        })
    }
}

impl RawClient {
    async fn connect(address: std::net::SocketAddr) -> RawClient {
        let mut socket = TcpStream::connect(address).await.unwrap();
        socket.write_all(PREFACE).await.unwrap();
        socket
            .write_all(&frame(TYPE_SETTINGS, 0, 0, &[]))
            .await
            .unwrap();
        RawClient {
            socket,
            encoder: Encoder::new(),
            decoder: Decoder::new(),
            received: Vec::new(),
        }
    }

    /// Sends one unary gRPC call; the header block is split over a HEADERS and a
    /// CONTINUATION frame, as a client may.
    async fn call(&mut self, stream: u32, authority: &str, path: &str, message: &[u8]) -> Reply {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path.as_bytes()),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"user-agent", b"grpc-go/1.26.0"),
            (b"te", b"trailers"),
        ];
        let fragment = self.encoder.encode(fields);
        let (first, rest) = fragment.split_at(fragment.len() / 2);
        let mut bytes = frame(TYPE_HEADERS, 0, stream, first);
        bytes.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, stream, rest));
        let mut body = vec![0];
        body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        body.extend_from_slice(message);
        bytes.extend(frame(TYPE_DATA, FLAG_END_STREAM, stream, &body));
        self.socket.write_all(&bytes).await.unwrap();
        tokio::time::timeout(WITHIN, self.reply(stream))
            .await
            .expect("reply in time")
    }

    /// Reads frames until `stream` ends (END_STREAM or RST_STREAM), acknowledging SETTINGS.
    async fn reply(&mut self, stream: u32) -> Reply {
        let mut reply = Reply::default();
        let mut fragment = Vec::new();
        loop {
            let (header, payload) = self.next_frame().await;
            let on_stream = u32::from_be_bytes(header.stream_id) == stream;
            match header.kind {
                TYPE_SETTINGS if header.flags & FLAG_ACK == 0 => {
                    let ack = frame(TYPE_SETTINGS, FLAG_ACK, 0, &[]);
                    self.socket.write_all(&ack).await.unwrap();
                }
                TYPE_GOAWAY => panic!("GOAWAY: {payload:?}"),
                TYPE_RST_STREAM if on_stream => {
                    reply.reset = Some(payload);
                    return reply;
                }
                TYPE_HEADERS | TYPE_CONTINUATION => {
                    fragment.extend_from_slice(&payload);
                    if header.flags & FLAG_END_HEADERS != 0 {
                        let block = self.decoder.decode(&fragment).unwrap();
                        fragment.clear();
                        if on_stream {
                            reply.header_blocks.push(block);
                        }
                    }
                }
                TYPE_DATA if on_stream => reply.data.extend_from_slice(&payload),
                _ => {}
            }
            if on_stream && header.flags & FLAG_END_STREAM != 0 && header.kind != TYPE_SETTINGS {
                return reply;
            }
        }
    }

    async fn next_frame(&mut self) -> (FrameHeader, Vec<u8>) {
        loop {
            if let Some(header) = FrameHeader::parse(&self.received)
                && self.received.len() >= FRAME_HEADER_LEN + header.length
            {
                let payload = self.received[FRAME_HEADER_LEN..][..header.length].to_vec();
                self.received.drain(..FRAME_HEADER_LEN + header.length);
                return (header, payload);
            }
            let mut buf = [0; 4096];
            let read = self.socket.read(&mut buf).await.unwrap();
            assert!(read > 0, "connection closed");
            self.received.extend_from_slice(&buf[..read]);
        }
    }
}

#[tokio::test]
async fn the_server_answers_calls_whose_authority_is_a_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_backend(
        listener,
        FakeNode::leader(16),
        ServerConfig::default(),
        Arc::new(TokioClock),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut client = RawClient::connect(address).await;
    let url = format!("http://{address}");
    // Status, rewritten; then Range with the same (indexed) fields, re-encoded; then a bare
    // authority, re-encoded too.
    for (stream, authority, path, message) in [
        (1, url.as_str(), "/etcdserverpb.Maintenance/Status", &[][..]),
        (
            3,
            url.as_str(),
            "/etcdserverpb.KV/Range",
            &[0x0a, 1, b'a'][..],
        ),
        (
            5,
            &address.to_string(),
            "/etcdserverpb.Maintenance/Status",
            &[][..],
        ),
    ] {
        let reply = client.call(stream, authority, path, message).await;
        assert_eq!(reply.reset, None, "stream {stream} refused: {reply:?}");
        assert_eq!(
            reply.field(0, ":status").as_deref(),
            Some("200"),
            "{reply:?}"
        );
        assert_eq!(
            reply.field(1, "grpc-status").as_deref(),
            Some("0"),
            "{reply:?}"
        );
        assert!(reply.data.len() > 5, "a response message: {reply:?}");
    }
    drop(client);
    let _ = stop.send(());
    let served = tokio::time::timeout(WITHIN, server)
        .await
        .expect("server stops");
    assert!(matches!(served, Ok(Ok(()))), "{served:?}");
}
