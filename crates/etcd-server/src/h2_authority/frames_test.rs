//! The classifier over hand-built byte streams. The client side encodes with an indexing HPACK
//! encoder (as Go's does); what the classifier forwards is decoded by a fresh decoder standing
//! in for hyper's, which must see the client's header lists with bare authorities.

use bytes::BytesMut;
use loona_hpack::{Decoder, Encoder};

use super::super::block::{
    FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY, FrameHeader, MAX_FRAME_PAYLOAD,
    TYPE_CONTINUATION, TYPE_HEADERS,
};
use super::{AuthorityRewriteError, ClientFrames, MAX_HEADER_BLOCK, PREFACE};

const TYPE_DATA: u8 = 0x0;
const TYPE_SETTINGS: u8 = 0x4;

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

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

fn request(authority: &str, path: &str) -> Fields {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.26.0"),
        ("te", "trailers"),
    ]
    .iter()
    .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
    .collect()
}

fn with_authority(fields: &Fields, authority: &str) -> Fields {
    fields
        .iter()
        .map(|(name, value)| {
            if name == b":authority" {
                (name.clone(), authority.as_bytes().to_vec())
            } else {
                (name.clone(), value.clone())
            }
        })
        .collect()
}

fn encode(encoder: &mut Encoder<'_>, fields: &Fields) -> Vec<u8> {
    encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])))
}

/// One HEADERS frame carrying `fragment`, END_HEADERS set.
fn headers(stream: u32, end_stream: bool, fragment: &[u8]) -> Vec<u8> {
    let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
    frame(TYPE_HEADERS, flags, stream, fragment)
}

fn connection_start() -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(TYPE_SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
    bytes
}

/// Feeds `input` in chunks of `chunk` bytes, as reads from a socket would, and returns what
/// may go to the server, plus the bytes still held at the end.
fn run_chunked(
    frames: &mut ClientFrames,
    input: &[u8],
    chunk: usize,
) -> Result<(Vec<u8>, usize), AuthorityRewriteError> {
    let mut pending = BytesMut::new();
    let mut forwarded = Vec::new();
    for piece in input.chunks(chunk) {
        pending.extend_from_slice(piece);
        let ready = frames.scan(&mut pending)?;
        forwarded.extend_from_slice(&pending.split_to(ready));
    }
    Ok((forwarded, pending.len()))
}

fn run(input: &[u8]) -> Vec<u8> {
    let mut frames = ClientFrames::default();
    let (forwarded, held) = run_chunked(&mut frames, input, input.len().max(1)).unwrap();
    assert_eq!(held, 0, "nothing held back at the end of a whole stream");
    forwarded
}

/// Frames of the HTTP/2 part of `bytes` (after the preface), as the server would read them.
fn parse_frames(bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    assert!(bytes.starts_with(PREFACE));
    let mut rest = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let header = FrameHeader::parse(rest).expect("whole frame header");
        let payload = rest[9..9 + header.length].to_vec();
        rest = &rest[9 + header.length..];
        frames.push((header, payload));
    }
    frames
}

/// The header lists the server decodes from `bytes`, in order, with each block's stream and
/// END_STREAM flag; asserts each frame fits the server's maximum frame size.
fn server_view(bytes: &[u8]) -> Vec<(u32, bool, Fields)> {
    let mut decoder = Decoder::new();
    let mut blocks = Vec::new();
    let mut fragment = Vec::new();
    let mut first: Option<FrameHeader> = None;
    for (header, payload) in parse_frames(bytes) {
        assert!(header.length <= MAX_FRAME_PAYLOAD, "{header:?}");
        match header.kind {
            TYPE_HEADERS => {
                assert!(first.is_none(), "HEADERS inside a block");
                let mut start = 0;
                let mut end = payload.len();
                if header.flags & FLAG_PADDED != 0 {
                    start = 1;
                    end -= usize::from(payload[0]);
                }
                if header.flags & FLAG_PRIORITY != 0 {
                    start += 5;
                }
                fragment.extend_from_slice(&payload[start..end]);
                first = Some(header);
            }
            TYPE_CONTINUATION => {
                assert!(first.is_some(), "CONTINUATION outside a block");
                fragment.extend_from_slice(&payload);
            }
            _ => {
                assert!(first.is_none(), "frame inside a header block");
                continue;
            }
        }
        if header.flags & FLAG_END_HEADERS != 0 {
            let opened = first.take().expect("block opened");
            let stream = u32::from_be_bytes(opened.stream_id);
            let end_stream = opened.flags & FLAG_END_STREAM != 0;
            blocks.push((stream, end_stream, decoder.decode(&fragment).unwrap()));
            fragment.clear();
        }
    }
    assert!(first.is_none(), "unterminated header block");
    blocks
}

#[test]
fn http1_requests_pass_through_untouched() {
    let request = b"GET /version HTTP/1.1\r\nHost: http://127.0.0.1:2379\r\n\r\n";
    let mut frames = ClientFrames::default();
    let (forwarded, held) = run_chunked(&mut frames, request, 1).unwrap();
    assert_eq!(forwarded, request);
    assert_eq!(held, 0);
    assert!(frames.is_passthrough());
    // "POST" shares only its first byte with the preface.
    let mut frames = ClientFrames::default();
    let mut pending = BytesMut::from(&b"P"[..]);
    assert_eq!(frames.scan(&mut pending).unwrap(), 0);
    pending.extend_from_slice(b"OST /v3/kv/range HTTP/1.1\r\n");
    assert_eq!(frames.scan(&mut pending).unwrap(), pending.len());
    assert!(frames.is_passthrough());
}

#[test]
fn the_preface_is_held_until_complete_then_forwarded() {
    let mut frames = ClientFrames::default();
    let mut pending = BytesMut::from(&PREFACE[..10]);
    assert_eq!(frames.scan(&mut pending).unwrap(), 0);
    pending.extend_from_slice(&PREFACE[10..]);
    assert_eq!(frames.scan(&mut pending).unwrap(), PREFACE.len());
    assert!(!frames.is_passthrough());
}

#[test]
fn blocks_with_a_bare_authority_and_other_frames_are_forwarded_byte_for_byte() {
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    let fields = request("127.0.0.1:2379", "/etcdserverpb.KV/Range");
    input.extend(headers(1, false, &encode(&mut encoder, &fields)));
    input.extend(frame(
        TYPE_DATA,
        FLAG_END_STREAM,
        1,
        &[0, 0, 0, 0, 2, 10, 0],
    ));
    // The second block refers to the first one's dynamic table entries.
    input.extend(headers(3, false, &encode(&mut encoder, &fields)));
    input.extend(frame(TYPE_DATA, FLAG_END_STREAM, 3, &[7; 40_000][..16_000]));
    for chunk in [1, 7, 100, input.len()] {
        let mut frames = ClientFrames::default();
        let (forwarded, held) = run_chunked(&mut frames, &input, chunk).unwrap();
        assert_eq!(forwarded, input, "chunk {chunk}");
        assert_eq!(held, 0);
        assert!(!frames.rewrote());
    }
    let view = server_view(&input);
    assert_eq!(view.len(), 2);
    assert!(view.iter().all(|(_, _, decoded)| *decoded == fields));
}

#[test]
fn a_url_authority_is_made_bare_and_the_rest_of_the_list_kept() {
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    let fields = request("http://127.0.0.1:23791", "/etcdserverpb.Maintenance/Status");
    input.extend(headers(1, false, &encode(&mut encoder, &fields)));
    input.extend(frame(TYPE_DATA, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]));
    let mut whole = None;
    for chunk in [1, 7, 100, input.len()] {
        let mut frames = ClientFrames::default();
        let (forwarded, held) = run_chunked(&mut frames, &input, chunk).unwrap();
        assert_eq!(held, 0);
        assert!(frames.rewrote());
        assert_eq!(
            server_view(&forwarded),
            vec![(1, false, with_authority(&fields, "127.0.0.1:23791"))]
        );
        let frames = parse_frames(&forwarded);
        assert_eq!(frames.last().unwrap().1, [0, 0, 0, 0, 0], "DATA kept");
        // However the bytes arrive, the same bytes leave.
        assert_eq!(*whole.get_or_insert_with(|| forwarded.clone()), forwarded);
    }
}

#[test]
fn the_authority_keeps_only_host_and_port_and_an_empty_one_is_left_out() {
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    let with_path = request("https://[::1]:2379/some/path?q", "/a");
    input.extend(headers(1, true, &encode(&mut encoder, &with_path)));
    let socket = request("unix:///run/etcd.sock", "/b");
    input.extend(headers(3, true, &encode(&mut encoder, &socket)));
    let view = server_view(&run(&input));
    assert_eq!(view[0].2, with_authority(&with_path, "[::1]:2379"));
    let without: Fields = socket
        .iter()
        .filter(|(name, _)| name != b":authority")
        .cloned()
        .collect();
    assert_eq!(view[1].2, without);
}

#[test]
fn after_a_rewrite_later_blocks_are_re_encoded_so_the_server_decodes_them_right() {
    // Block 1 (rewritten) adds the client's fields to its dynamic table; blocks 2 and 3 refer
    // to those entries. Forwarded unchanged they would decode wrongly, or not at all, on the
    // server, which never saw the entries.
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    let first = request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    let second = request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    let third = request("127.0.0.1:2379", "/etcdserverpb.Maintenance/HashKV");
    input.extend(headers(1, false, &encode(&mut encoder, &first)));
    input.extend(frame(TYPE_DATA, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]));
    let second_block = encode(&mut encoder, &second);
    input.extend(headers(3, false, &second_block));
    input.extend(frame(TYPE_DATA, FLAG_END_STREAM, 3, &[0, 0, 0, 0, 0]));
    let third_block = encode(&mut encoder, &third);
    assert!(
        third_block.iter().any(|byte| *byte >= 0x80 + 62),
        "the third block refers to dynamic table entries"
    );
    input.extend(headers(5, true, &third_block));
    let forwarded = run(&input);
    let view = server_view(&forwarded);
    assert_eq!(
        view,
        vec![
            (1, false, with_authority(&first, "127.0.0.1:2379")),
            (3, false, with_authority(&second, "127.0.0.1:2379")),
            (5, true, third.clone()),
        ]
    );
    let blocks: Vec<Vec<u8>> = parse_frames(&forwarded)
        .into_iter()
        .filter(|(header, _)| header.kind == TYPE_HEADERS)
        .map(|(_, payload)| payload)
        .collect();
    assert_ne!(blocks[2], third_block, "the third block was re-encoded");
}

fn without_authority(fields: &Fields) -> Fields {
    fields
        .iter()
        .filter(|(name, _)| name != b":authority")
        .cloned()
        .collect()
}

#[test]
fn blocks_before_the_first_rewrite_keep_the_server_table_in_step() {
    // Blocks without an :authority (HTTP/2 allows leaving it out) are followed until one with
    // a URL-form authority comes.
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    let plain = without_authority(&request("127.0.0.1:2379", "/etcdserverpb.KV/Put"));
    let url = request("http://127.0.0.1:2379", "/etcdserverpb.KV/Put");
    let plain_block = encode(&mut encoder, &plain);
    input.extend(headers(1, true, &plain_block));
    input.extend(headers(3, true, &encode(&mut encoder, &plain)));
    input.extend(headers(5, true, &encode(&mut encoder, &url)));
    input.extend(headers(7, true, &encode(&mut encoder, &plain)));
    let forwarded = run(&input);
    let expected = vec![
        (1, true, plain.clone()),
        (3, true, plain.clone()),
        (5, true, with_authority(&url, "127.0.0.1:2379")),
        (7, true, plain.clone()),
    ];
    assert_eq!(server_view(&forwarded), expected);
    let first_frame = &parse_frames(&forwarded)[1];
    assert_eq!(first_frame.1, plain_block, "forwarded untouched");
}

#[test]
fn a_bare_authority_ends_inspection_of_the_connection() {
    // A gRPC client sends one :authority on every stream of a connection: once it is a bare
    // one, the connection's bytes go to the server without their header blocks being decoded.
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    input.extend(headers(
        1,
        true,
        &encode(&mut encoder, &request("h:1", "/a")),
    ));
    input.extend(headers(
        3,
        true,
        &encode(&mut encoder, &request("h:1", "/b")),
    ));
    let mut frames = ClientFrames::default();
    let (forwarded, held) = run_chunked(&mut frames, &input, input.len()).unwrap();
    assert_eq!((forwarded, held), (input, 0));
    assert!(frames.is_passthrough());
}

#[test]
fn continuation_frames_are_joined_and_the_block_forwarded_or_rewritten_whole() {
    for authority in ["127.0.0.1:2379", "http://127.0.0.1:2379"] {
        let mut encoder = Encoder::new();
        let fields = request(authority, "/etcdserverpb.Lease/LeaseGrant");
        let fragment = encode(&mut encoder, &fields);
        let (a, rest) = fragment.split_at(5);
        let (b, c) = rest.split_at(20);
        let mut input = connection_start();
        input.extend(frame(TYPE_HEADERS, FLAG_END_STREAM, 1, a));
        input.extend(frame(TYPE_CONTINUATION, 0, 1, b));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, c));
        input.extend(frame(TYPE_SETTINGS, 0, 0, &[]));
        for chunk in [1, 9, 10, input.len()] {
            let mut frames = ClientFrames::default();
            let (forwarded, held) = run_chunked(&mut frames, &input, chunk).unwrap();
            assert_eq!(held, 0);
            assert_eq!(
                server_view(&forwarded),
                vec![(1, true, with_authority(&fields, "127.0.0.1:2379"))]
            );
            assert_eq!(forwarded == input, !authority.contains("://"));
        }
    }
}

#[test]
fn padding_and_priority_are_parsed_and_priority_survives_a_rewrite() {
    for authority in ["127.0.0.1:2379", "http://127.0.0.1:2379"] {
        let mut encoder = Encoder::new();
        let fields = request(authority, "/etcdserverpb.KV/Range");
        let mut payload = vec![3];
        let priority = [0x80, 0, 0, 0, 16];
        payload.extend_from_slice(&priority);
        payload.extend(encode(&mut encoder, &fields));
        payload.extend_from_slice(&[0, 0, 0]);
        let mut input = connection_start();
        let flags = FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY;
        input.extend(frame(TYPE_HEADERS, flags, 1, &payload));
        let forwarded = run(&input);
        assert_eq!(
            server_view(&forwarded),
            vec![(1, false, with_authority(&fields, "127.0.0.1:2379"))]
        );
        let (header, payload) = parse_frames(&forwarded).pop().unwrap();
        if authority.contains("://") {
            assert_eq!(
                header.flags,
                FLAG_END_HEADERS | FLAG_PRIORITY,
                "padding dropped"
            );
            assert_eq!(payload[..5], priority);
        } else {
            assert_eq!(forwarded, input);
        }
    }
}

#[test]
fn a_rewritten_block_over_one_frame_is_cut_into_continuation_frames() {
    let mut encoder = Encoder::new();
    let mut fields = request("http://127.0.0.1:2379", "/etcdserverpb.KV/Put");
    fields.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let mut input = connection_start();
    let fragment = encode(&mut encoder, &fields);
    let (a, b) = fragment.split_at(MAX_FRAME_PAYLOAD);
    let (b, c) = b.split_at(MAX_FRAME_PAYLOAD);
    input.extend(frame(TYPE_HEADERS, FLAG_END_STREAM | FLAG_PRIORITY, 1, &{
        let mut payload = vec![0, 0, 0, 0, 1];
        payload.extend_from_slice(&a[..MAX_FRAME_PAYLOAD - 5]);
        payload
    }));
    let mut middle = a[MAX_FRAME_PAYLOAD - 5..].to_vec();
    middle.extend_from_slice(&b[..MAX_FRAME_PAYLOAD - 5]);
    let mut last = b[MAX_FRAME_PAYLOAD - 5..].to_vec();
    last.extend_from_slice(c);
    input.extend(frame(TYPE_CONTINUATION, 0, 1, &middle));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &last));
    let forwarded = run(&input);
    assert_eq!(
        server_view(&forwarded),
        vec![(1, true, with_authority(&fields, "127.0.0.1:2379"))]
    );
    let kinds: Vec<(u8, u8)> = parse_frames(&forwarded)
        .iter()
        .map(|(header, _)| (header.kind, header.flags))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (TYPE_SETTINGS, 0),
            (TYPE_HEADERS, FLAG_END_STREAM | FLAG_PRIORITY),
            (TYPE_CONTINUATION, 0),
            (TYPE_CONTINUATION, FLAG_END_HEADERS),
        ]
    );
}

#[test]
fn table_size_updates_are_followed_and_one_over_the_server_limit_ends_inspection() {
    let mut encoder = Encoder::new();
    let fields = request("127.0.0.1:2379", "/a");
    let url = request("http://127.0.0.1:2379", "/a");
    let first = without_authority(&fields);
    let mut input = connection_start();
    input.extend(headers(1, true, &encode(&mut encoder, &first)));
    // A size update to 0 empties the table; the client's encoder starts afresh with literals.
    let mut fresh = Encoder::new();
    let mut block = vec![0x20];
    block.extend(encode(&mut fresh, &url));
    input.extend(headers(3, true, &block));
    let forwarded = run(&input);
    assert_eq!(
        server_view(&forwarded),
        vec![(1, true, first), (3, true, fields.clone())]
    );

    // 8,192 > 4,096: the server would refuse it, so it gets the block unchanged.
    let mut input = connection_start();
    let mut block = vec![0x3f, 0xe1, 0x3f];
    block.extend(encode(&mut Encoder::new(), &url));
    input.extend(headers(1, true, &block));
    let mut frames = ClientFrames::default();
    let (forwarded, _) = run_chunked(&mut frames, &input, input.len()).unwrap();
    assert_eq!(forwarded, input);
    assert!(frames.is_passthrough());
}

#[test]
fn malformed_blocks_before_any_rewrite_go_to_the_server_unchanged() {
    let fragment = encode(&mut Encoder::new(), &request("http://h:1", "/a"));
    let mut padded_too_much = vec![200];
    padded_too_much.extend_from_slice(&fragment);
    let mut interleaved = connection_start();
    interleaved.extend(frame(TYPE_HEADERS, 0, 1, &fragment[..4]));
    interleaved.extend(frame(TYPE_DATA, 0, 1, b"x"));
    interleaved.extend(frame(
        TYPE_CONTINUATION,
        FLAG_END_HEADERS,
        1,
        &fragment[4..],
    ));
    let mut other_stream = connection_start();
    other_stream.extend(frame(TYPE_HEADERS, 0, 1, &fragment[..4]));
    other_stream.extend(frame(
        TYPE_CONTINUATION,
        FLAG_END_HEADERS,
        3,
        &fragment[4..],
    ));
    let mut bad_padding = connection_start();
    bad_padding.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS | FLAG_PADDED,
        1,
        &padded_too_much,
    ));
    let mut bad_hpack = connection_start();
    bad_hpack.extend(headers(
        1,
        true,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    bad_hpack.extend(headers(3, true, &fragment));
    for input in [interleaved, other_stream, bad_padding, bad_hpack] {
        let mut frames = ClientFrames::default();
        let (forwarded, held) = run_chunked(&mut frames, &input, 3).unwrap();
        assert_eq!(forwarded, input);
        assert_eq!(held, 0);
        assert!(frames.is_passthrough());
    }
}

#[test]
fn a_block_over_the_buffer_limit_ends_inspection_without_waiting_for_its_bytes() {
    let mut input = connection_start();
    let mut frames = ClientFrames::default();
    let continuations = MAX_HEADER_BLOCK / MAX_FRAME_PAYLOAD;
    input.extend(frame(TYPE_HEADERS, 0, 1, &[0; MAX_FRAME_PAYLOAD]));
    for _ in 0..continuations - 2 {
        input.extend(frame(TYPE_CONTINUATION, 0, 1, &[0; MAX_FRAME_PAYLOAD]));
    }
    // Only this last frame's header is there, and it already crosses the limit.
    input.extend(
        &frame(
            TYPE_CONTINUATION,
            FLAG_END_HEADERS,
            1,
            &[0; MAX_FRAME_PAYLOAD],
        )[..9],
    );
    let mut pending = BytesMut::from(&input[..]);
    assert_eq!(frames.scan(&mut pending).unwrap(), input.len());
    assert!(frames.is_passthrough());
}

#[test]
fn a_malformed_block_after_a_rewrite_fails_the_connection() {
    let mut encoder = Encoder::new();
    let mut input = connection_start();
    input.extend(headers(
        1,
        true,
        &encode(&mut encoder, &request("http://h:1", "/a")),
    ));
    input.extend(frame(TYPE_HEADERS, 0, 3, &[0x82]));
    input.extend(frame(TYPE_DATA, 0, 3, b"x"));
    let mut frames = ClientFrames::default();
    let mut pending = BytesMut::from(&input[..]);
    assert!(matches!(
        frames.scan(&mut pending),
        Err(AuthorityRewriteError::MalformedBlock)
    ));

    let mut input = connection_start();
    input.extend(headers(
        1,
        true,
        &encode(&mut Encoder::new(), &request("http://h:1", "/a")),
    ));
    input.extend(headers(
        3,
        true,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ));
    let mut frames = ClientFrames::default();
    let mut pending = BytesMut::from(&input[..]);
    assert!(matches!(
        frames.scan(&mut pending),
        Err(AuthorityRewriteError::Hpack(_))
    ));
}

#[test]
fn an_incomplete_block_is_held_and_what_precedes_it_released() {
    let fragment = encode(&mut Encoder::new(), &request("http://h:1", "/a"));
    let mut input = connection_start();
    let before = input.len();
    input.extend(headers(1, true, &fragment));
    let mut frames = ClientFrames::default();
    let mut pending = BytesMut::from(&input[..input.len() - 1]);
    assert_eq!(frames.scan(&mut pending).unwrap(), before);
    // An incomplete frame header is held as well.
    let mut frames = ClientFrames::default();
    let mut pending = BytesMut::from(&input[..before + 4]);
    assert_eq!(frames.scan(&mut pending).unwrap(), before);
}
