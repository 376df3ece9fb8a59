//! One HTTP/2 header block as a client sends it (a HEADERS frame, then CONTINUATION frames
//! until END_HEADERS): where it ends, where its HPACK fragments are, and how to write a
//! replacement block that never touches the server's HPACK dynamic table.
//!
//! Pure: bytes in, bytes out; no I/O, no HPACK state.

use std::ops::Range;

/// Every frame starts with 9 bytes: 24-bit payload length, type, flags, 31-bit stream id.
pub(super) const FRAME_HEADER_LEN: usize = 9;
pub(super) const TYPE_HEADERS: u8 = 0x1;
pub(super) const TYPE_CONTINUATION: u8 = 0x9;
pub(super) const FLAG_END_STREAM: u8 = 0x1;
pub(super) const FLAG_END_HEADERS: u8 = 0x4;
pub(super) const FLAG_PADDED: u8 = 0x8;
pub(super) const FLAG_PRIORITY: u8 = 0x20;
/// A HEADERS frame with PRIORITY carries a 4-byte stream dependency and a 1-byte weight
/// before its fragment.
pub(super) const PRIORITY_LEN: usize = 5;
/// The largest frame payload the server accepts: SETTINGS_MAX_FRAME_SIZE's initial value,
/// which hyper's server does not raise. Replacement blocks are cut into frames of this size.
pub(super) const MAX_FRAME_PAYLOAD: usize = 16_384;

/// The 9-byte header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHeader {
    /// Payload bytes that follow the header.
    pub length: usize,
    pub kind: u8,
    pub flags: u8,
    /// As on the wire (big-endian, reserved bit included), so a rewrite copies it verbatim.
    pub stream_id: [u8; 4],
}

impl FrameHeader {
    /// The frame header at the front of `bytes`, or `None` while fewer than 9 bytes are there.
    pub fn parse(bytes: &[u8]) -> Option<FrameHeader> {
        let header: &[u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *header;
        Some(FrameHeader {
            length: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
            kind,
            flags,
            stream_id: [s0, s1, s2, s3],
        })
    }

    /// Appends the 9 header bytes to `out`. `length` must fit in 24 bits.
    pub fn write(&self, out: &mut Vec<u8>) {
        let length = self.length.to_be_bytes();
        out.extend_from_slice(&length[length.len() - 3..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream_id);
    }

    fn same_stream(&self, other: &FrameHeader) -> bool {
        self.stream_id[0] & 0x7f == other.stream_id[0] & 0x7f
            && self.stream_id[1..] == other.stream_id[1..]
    }
}

/// A complete header block at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Block {
    /// Bytes of all its frames, frame headers included.
    pub len: usize,
    /// The HEADERS frame's header (END_STREAM lives in its flags).
    pub headers: FrameHeader,
    /// The HEADERS frame's stream dependency and weight, when its PRIORITY flag is set.
    pub priority: Option<[u8; PRIORITY_LEN]>,
}

/// How much of a header block a buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Located {
    /// More bytes are needed to reach the frame carrying END_HEADERS.
    Incomplete,
    /// The whole block; its fragments were stored in the caller's list.
    Complete(Block),
    /// The block's frames declare more than the given limit of bytes.
    TooLarge,
    /// Not a valid block (padding longer than the payload, a frame other than CONTINUATION of
    /// the same stream before END_HEADERS): the server refuses it with a protocol error itself.
    Malformed,
}

/// Finds the header block whose HEADERS frame starts `bytes`, and fills `fragments` with the
/// ranges of `bytes` holding its HPACK fragments, in order. `limit` bounds how many bytes the
/// block may span, so a client cannot make the caller buffer without end.
pub(super) fn locate(bytes: &[u8], limit: usize, fragments: &mut Vec<Range<usize>>) -> Located {
    fragments.clear();
    let Some(headers) = FrameHeader::parse(bytes) else {
        return Located::Incomplete;
    };
    let mut frame = headers;
    let mut start = 0;
    let mut priority = None;
    loop {
        let payload_start = start + FRAME_HEADER_LEN;
        let end = payload_start + frame.length;
        if end > limit {
            return Located::TooLarge;
        }
        let Some(payload) = bytes.get(payload_start..end) else {
            return Located::Incomplete;
        };
        if start == 0 {
            let Some((fragment, dependency)) = headers_fragment(&frame, payload) else {
                return Located::Malformed;
            };
            priority = dependency;
            fragments.push(payload_start + fragment.start..payload_start + fragment.end);
        } else {
            fragments.push(payload_start..end);
        }
        if frame.flags & FLAG_END_HEADERS != 0 {
            return Located::Complete(Block {
                len: end,
                headers,
                priority,
            });
        }
        start = end;
        let Some(next) = FrameHeader::parse(&bytes[start..]) else {
            return Located::Incomplete;
        };
        if next.kind != TYPE_CONTINUATION || !next.same_stream(&headers) {
            return Located::Malformed;
        }
        frame = next;
    }
}

/// The fragment's range within a HEADERS frame's payload (after the pad length and priority
/// fields, before the padding), and its priority fields; `None` when the padding does not fit.
fn headers_fragment(
    frame: &FrameHeader,
    payload: &[u8],
) -> Option<(Range<usize>, Option<[u8; PRIORITY_LEN]>)> {
    let mut start = 0;
    let mut padding = 0;
    if frame.flags & FLAG_PADDED != 0 {
        padding = usize::from(*payload.first()?);
        start = 1;
    }
    let mut priority = None;
    if frame.flags & FLAG_PRIORITY != 0 {
        priority = Some(payload.get(start..start + PRIORITY_LEN)?.try_into().ok()?);
        start += PRIORITY_LEN;
    }
    let end = payload.len().checked_sub(padding)?;
    (start <= end).then_some((start..end, priority))
}

/// Appends one header field to an HPACK fragment as a "literal header field without indexing
/// — new name" (RFC 7541 §6.2.2): the decoder adds nothing to its dynamic table, so the
/// server's table stays as the blocks forwarded unchanged left it. Strings are not Huffman-coded.
pub(super) fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    encode_string(name, out);
    encode_string(value, out);
}

fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    // The high bit of the length's first byte is the Huffman flag, left clear.
    encode_integer(bytes.len(), 7, out);
    out.extend_from_slice(bytes);
}

/// HPACK's integer representation (RFC 7541 §5.1) with an `prefix_bits`-bit prefix, the
/// first byte's higher bits zero.
fn encode_integer(mut value: usize, prefix_bits: u32, out: &mut Vec<u8>) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(value as u8);
        return;
    }
    out.push(prefix_max as u8);
    value -= prefix_max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the frames of a replacement for `block`, carrying `fragment`: a HEADERS frame
/// (same stream, END_STREAM as the original, PRIORITY fields kept, padding dropped) and as
/// many CONTINUATION frames as needed, each payload at most [`MAX_FRAME_PAYLOAD`] bytes,
/// END_HEADERS on the last.
pub(super) fn write_frames(block: &Block, fragment: &[u8], out: &mut Vec<u8>) {
    let mut first_room = MAX_FRAME_PAYLOAD;
    let mut flags = block.headers.flags & FLAG_END_STREAM;
    if block.priority.is_some() {
        first_room -= PRIORITY_LEN;
        flags |= FLAG_PRIORITY;
    }
    let (first, mut rest) = fragment.split_at(fragment.len().min(first_room));
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    FrameHeader {
        length: first.len() + block.priority.map_or(0, |_| PRIORITY_LEN),
        kind: TYPE_HEADERS,
        flags,
        stream_id: block.headers.stream_id,
    }
    .write(out);
    if let Some(priority) = &block.priority {
        out.extend_from_slice(priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
        rest = after;
        FrameHeader {
            length: chunk.len(),
            kind: TYPE_CONTINUATION,
            flags: if rest.is_empty() { FLAG_END_HEADERS } else { 0 },
            stream_id: block.headers.stream_id,
        }
        .write(out);
        out.extend_from_slice(chunk);
    }
}
