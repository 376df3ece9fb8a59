//! The client→server byte stream of one connection, classified as it arrives: an HTTP/1.x
//! connection is passed through; an HTTP/2 connection is followed frame by frame and its
//! header blocks are HPACK-decoded, and rewritten only when needed (see the module docs of
//! [`super`]).
//!
//! Pure core: it sees a buffer and says how much of it may go to the server; it does no I/O.

use std::borrow::Cow;
use std::ops::Range;

use bytes::BytesMut;
use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;

use super::block::{self, Block, FRAME_HEADER_LEN, FrameHeader, Located, TYPE_HEADERS};

/// What every HTTP/2 client sends first (RFC 9113 §3.4); no HTTP/1.x request starts with it.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most bytes one header block may span before the connection stops being inspected. The
/// server refuses header lists over 16 KiB decoded (hyper's default), so real blocks are far
/// smaller; the bound only caps what a connection can make this layer buffer.
pub(super) const MAX_HEADER_BLOCK: usize = 128 * 1024;

/// The HPACK dynamic table size the server allows the client's encoder: hyper's server
/// advertises no SETTINGS_HEADER_TABLE_SIZE, so it is the protocol's initial 4,096 bytes, and
/// the server refuses a client's table size update above it.
pub(super) const SERVER_HEADER_TABLE_SIZE: usize = 4_096;

/// Why a connection whose header blocks were already rewritten cannot go on. Before the first
/// rewrite the same conditions just end the inspection: the bytes go to the server unchanged,
/// and it judges them.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityRewriteError {
    #[error("malformed HTTP/2 header block after a rewritten one")]
    MalformedBlock,
    #[error("HTTP/2 header block over {MAX_HEADER_BLOCK} bytes after a rewritten one")]
    BlockTooLarge,
    #[error("decoding an HTTP/2 header block after a rewritten one: {0}")]
    Hpack(DecoderError),
}

/// How far a connection's stream has been classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not yet 24 bytes, all matching the HTTP/2 preface so far.
    Preface,
    /// HTTP/2 frames, followed one by one.
    Frames,
    /// HTTP/1.x, or an HTTP/2 stream this layer stopped following: every byte goes as it is.
    Passthrough,
}

/// The classifier of one connection's client→server bytes.
pub(super) struct ClientFrames {
    stage: Stage,
    /// Mirrors the client's HPACK encoder: every header block is decoded, in order, so its
    /// dynamic table is the one the client's encoder refers to.
    decoder: Decoder<'static>,
    /// Set by the first rewritten block. That block's literals were re-encoded without
    /// indexing, so the server's dynamic table no longer matches the client's encoder, and
    /// every later block must be re-encoded too.
    reencode_all: bool,
    /// Payload bytes of the current frame (not a header block) still to come.
    payload_left: usize,
    /// Reused between blocks: fragment ranges, joined fragments, decoded fields, new frames.
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    fragments: Vec<Range<usize>>,
    joined: Vec<u8>,
    fields: Fields,
    fragment: Vec<u8>,
    frames: Vec<u8>,
}

/// Decoded header fields, name and value bytes packed in one buffer.
#[derive(Default)]
struct Fields {
    bytes: Vec<u8>,
    /// Per field: where its name ends and its value starts, and where its value ends.
    bounds: Vec<(usize, usize)>,
}

impl Fields {
    fn clear(&mut self) {
        self.bytes.clear();
        self.bounds.clear();
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.bounds.push((name_end, self.bytes.len()));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.bounds.iter().map(move |&(name_end, value_end)| {
            let field = (
                &self.bytes[start..name_end],
                &self.bytes[name_end..value_end],
            );
            start = value_end;
            field
        })
    }
}

impl Default for ClientFrames {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(SERVER_HEADER_TABLE_SIZE);
        ClientFrames {
            stage: Stage::Preface,
            decoder,
            reencode_all: false,
            payload_left: 0,
            scratch: Scratch::default(),
        }
    }
}

impl ClientFrames {
    /// True once the connection is known to be HTTP/1.x, or no longer followed: every later
    /// byte may go to the server as it arrives.
    pub fn is_passthrough(&self) -> bool {
        self.stage == Stage::Passthrough
    }

    /// True once some header block of this connection was rewritten.
    pub fn rewrote(&self) -> bool {
        self.reencode_all
    }

    /// Classifies `buf`, which holds the connection's bytes not yet handed to the server,
    /// rewriting header blocks in it where needed, and returns how many bytes at its front may
    /// now go to the server. The rest (an incomplete frame header or header block) must stay
    /// until more bytes arrive; the next call sees them again at the front.
    pub fn scan(&mut self, buf: &mut BytesMut) -> Result<usize, AuthorityRewriteError> {
        let mut position = 0;
        loop {
            match self.stage {
                Stage::Passthrough => return Ok(buf.len()),
                Stage::Preface => {
                    let seen = buf.len().min(PREFACE.len());
                    if buf[..seen] != PREFACE[..seen] {
                        self.stage = Stage::Passthrough;
                    } else if seen < PREFACE.len() {
                        return Ok(0);
                    } else {
                        position = PREFACE.len();
                        self.stage = Stage::Frames;
                    }
                }
                Stage::Frames => {
                    let available = buf.len() - position;
                    if self.payload_left > 0 {
                        let step = self.payload_left.min(available);
                        position += step;
                        self.payload_left -= step;
                        if self.payload_left > 0 {
                            return Ok(position);
                        }
                    }
                    let Some(header) = FrameHeader::parse(&buf[position..]) else {
                        return Ok(position);
                    };
                    if header.kind != TYPE_HEADERS {
                        // DATA, SETTINGS, WINDOW_UPDATE, ... and a stray CONTINUATION (which
                        // the server refuses) go through untouched.
                        position += FRAME_HEADER_LEN;
                        self.payload_left = header.length;
                        continue;
                    }
                    let located = block::locate(
                        &buf[position..],
                        MAX_HEADER_BLOCK,
                        &mut self.scratch.fragments,
                    );
                    match located {
                        Located::Incomplete => return Ok(position),
                        Located::TooLarge => {
                            self.stop_following(AuthorityRewriteError::BlockTooLarge)?
                        }
                        Located::Malformed => {
                            self.stop_following(AuthorityRewriteError::MalformedBlock)?
                        }
                        Located::Complete(found) => {
                            position = self.forward_block(buf, position, &found)?;
                        }
                    }
                }
            }
        }
    }

    /// Decodes the complete block at `buf[position..]` and leaves it unchanged or rewritten;
    /// returns the position after it.
    fn forward_block(
        &mut self,
        buf: &mut BytesMut,
        position: usize,
        found: &Block,
    ) -> Result<usize, AuthorityRewriteError> {
        let bytes = &buf[position..position + found.len];
        let scratch = &mut self.scratch;
        let fragment: &[u8] = match scratch.fragments.as_slice() {
            [only] => &bytes[only.clone()],
            several => {
                scratch.joined.clear();
                for range in several {
                    scratch.joined.extend_from_slice(&bytes[range.clone()]);
                }
                &scratch.joined
            }
        };
        let reencode_all = self.reencode_all;
        let mut url_authority = false;
        let mut plain_authority = false;
        // Fields are kept only while a rewrite is possible: until a well-formed :authority
        // is seen (pseudo-headers come first), or throughout once every block is re-encoded.
        let mut keeping = true;
        scratch.fields.clear();
        let fields = &mut scratch.fields;
        let decoded = self
            .decoder
            .decode_with_cb(fragment, |name: Cow<[u8]>, value: Cow<[u8]>| {
                if keeping {
                    fields.push(&name, &value);
                }
                if *name == *b":authority" {
                    if is_url(&value) {
                        url_authority = true;
                    } else {
                        plain_authority = true;
                        if !reencode_all {
                            keeping = false;
                        }
                    }
                }
            });
        if let Err(error) = decoded {
            self.stop_following(AuthorityRewriteError::Hpack(error))?;
            return Ok(position);
        }
        if !url_authority && !reencode_all {
            if plain_authority {
                // gRPC clients send one :authority on every stream of a connection: this one
                // needs no rewrite, so no later block will. Decoding them all cost a few
                // percent of the member's CPU under load.
                self.stage = Stage::Passthrough;
            }
            return Ok(position + found.len);
        }
        let scratch = &mut self.scratch;
        scratch.fragment.clear();
        for (name, value) in scratch.fields.iter() {
            if name == b":authority" && is_url(value) {
                let authority = authority_of(value);
                // An empty authority is malformed too; the field is optional, so leave it out.
                if !authority.is_empty() {
                    block::encode_literal(name, authority, &mut scratch.fragment);
                }
            } else {
                block::encode_literal(name, value, &mut scratch.fragment);
            }
        }
        scratch.frames.clear();
        block::write_frames(found, &scratch.fragment, &mut scratch.frames);
        if !self.reencode_all {
            tracing::debug!(
                "rewriting a URL-form HTTP/2 :authority; re-encoding this connection's header blocks from now on"
            );
            self.reencode_all = true;
        }
        let after = buf.split_off(position + found.len);
        buf.truncate(position);
        buf.extend_from_slice(&scratch.frames);
        buf.unsplit(after);
        Ok(position + scratch.frames.len())
    }

    /// Stops following the connection's frames after a block this layer cannot handle: from
    /// here on the server gets the bytes unchanged and judges them itself. Once a block was
    /// rewritten, the server's HPACK state depends on this layer, so the connection fails.
    fn stop_following(&mut self, why: AuthorityRewriteError) -> Result<(), AuthorityRewriteError> {
        if self.reencode_all {
            return Err(why);
        }
        tracing::debug!(reason = %why, "no longer inspecting an HTTP/2 connection's header blocks");
        self.stage = Stage::Passthrough;
        Ok(())
    }
}

/// True for an `:authority` written as a URL (`http://127.0.0.1:2379`), as etcdctl 3.4 sends
/// it for URL-form endpoints; a real authority never contains "://".
fn is_url(authority: &[u8]) -> bool {
    authority.windows(3).any(|window| window == b"://")
}

/// The authority part of a URL: after the scheme's "://", up to a path, query or fragment.
fn authority_of(url: &[u8]) -> &[u8] {
    let after_scheme = url
        .windows(3)
        .position(|window| window == b"://")
        .map_or(url, |at| &url[at + 3..]);
    let end = after_scheme
        .iter()
        .position(|byte| matches!(byte, b'/' | b'?' | b'#'))
        .unwrap_or(after_scheme.len());
    &after_scheme[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
#[path = "frames_test.rs"]
mod tests;
