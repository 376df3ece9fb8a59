//! Cuts a streamed request body into its JSON messages.
//!
//! A streaming gateway call's body is a sequence of JSON objects, each one stream message
//! (etcd's gateway runs a JSON decoder over the body). Bytes arrive in arbitrary chunks; the
//! splitter keeps its scan state between chunks, so each byte is looked at once.

/// Why the body is not a sequence of JSON objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("malformed JSON: each stream message must be a JSON object, found {0:?}")]
    NotAnObject(char),
    #[error("malformed JSON: a stream message ends inside an object or string")]
    Truncated,
    #[error("malformed JSON: unbalanced '}}' or ']'")]
    Unbalanced,
    #[error("grpc: received message larger than max ({size} vs. {limit})")]
    TooLarge { size: usize, limit: usize },
}

/// Incremental scanner over the body: `push` bytes, then take complete messages with
/// `next_message` until it answers `None`.
#[derive(Debug)]
pub struct JsonSplitter {
    /// Bytes not yet returned as a message; the current message starts at index 0 once
    /// leading whitespace is skipped.
    buffer: Vec<u8>,
    /// How far `buffer` has been scanned.
    scanned: usize,
    /// Nesting depth of `{`/`[` at `scanned`; 0 outside a message.
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Largest message accepted, in bytes of JSON text.
    limit: usize,
}

impl JsonSplitter {
    pub fn new(limit: usize) -> JsonSplitter {
        JsonSplitter {
            buffer: Vec::new(),
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete message, if the bytes pushed so far hold one.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, SplitError> {
        if self.depth == 0 {
            let start = self
                .buffer
                .iter()
                .position(|byte| !byte.is_ascii_whitespace())
                .unwrap_or(self.buffer.len());
            self.buffer.drain(..start);
            self.scanned = 0;
            match self.buffer.first() {
                None => return Ok(None),
                Some(b'{') => {}
                Some(other) => return Err(SplitError::NotAnObject(char::from(*other))),
            }
        }
        while self.scanned < self.buffer.len() {
            let byte = self.buffer[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match (self.escaped, byte) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.checked_sub(1).ok_or(SplitError::Unbalanced)?;
                    if self.depth == 0 {
                        let rest = self.buffer.split_off(self.scanned);
                        let message = std::mem::replace(&mut self.buffer, rest);
                        self.scanned = 0;
                        return Ok(Some(message));
                    }
                }
                _ => {}
            }
        }
        if self.buffer.len() > self.limit {
            return Err(SplitError::TooLarge {
                size: self.buffer.len(),
                limit: self.limit,
            });
        }
        Ok(None)
    }

    /// At the end of the body: an error if a message was left incomplete.
    pub fn finish(&mut self) -> Result<(), SplitError> {
        match self.next_message()? {
            Some(_) => Ok(()),
            None if self.buffer.is_empty() => Ok(()),
            None => Err(SplitError::Truncated),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn all(splitter: &mut JsonSplitter) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(message) = splitter.next_message().unwrap() {
            out.push(String::from_utf8(message).unwrap());
        }
        out
    }

    #[test]
    fn messages_split_across_chunks_and_glued_together() {
        let text = br#" {"a":"}{\"x"} {"b":[1,{"c":2}]}
{"d":{}}"#;
        for chunk_size in 1..text.len() {
            let mut splitter = JsonSplitter::new(1024);
            let mut out = Vec::new();
            for chunk in text.chunks(chunk_size) {
                splitter.push(chunk);
                out.extend(all(&mut splitter));
            }
            splitter.finish().unwrap();
            assert_eq!(
                out,
                vec![r#"{"a":"}{\"x"}"#, r#"{"b":[1,{"c":2}]}"#, r#"{"d":{}}"#],
                "chunk size {chunk_size}"
            );
        }
    }

    #[test]
    fn non_objects_truncation_and_size_are_refused() {
        let mut splitter = JsonSplitter::new(1024);
        splitter.push(b"  [1]");
        assert_eq!(splitter.next_message(), Err(SplitError::NotAnObject('[')));

        let mut splitter = JsonSplitter::new(1024);
        splitter.push(br#"{"a":"#);
        assert_eq!(splitter.next_message(), Ok(None));
        assert_eq!(splitter.finish(), Err(SplitError::Truncated));

        let mut splitter = JsonSplitter::new(8);
        splitter.push(br#"{"key":"0123456789"#);
        assert!(matches!(
            splitter.next_message(),
            Err(SplitError::TooLarge { .. })
        ));

        let mut splitter = JsonSplitter::new(1024);
        splitter.push(b" \n ");
        assert_eq!(splitter.finish(), Ok(()));
    }
}
