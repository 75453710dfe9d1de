//! The upstream's answer as the jail gets it when the door scrubs it: the
//! head rewritten for a decoded body, and the body unframed (chunked, or a
//! length) and inflated (gzip, deflate), a step at a time.

use crate::inject::Withheld;

/// Compressed bytes inflated at a time (deflate inflates at most about
/// 1,000 to 1: a step's output is at most about 1 MiB).
const INFLATE_STEP: usize = 1024;

/// The answer's head as the client gets it (framing and coding headers
/// rewritten for the decoded body), and the body's decoder.
pub(crate) fn answer_head(head: &[u8]) -> Result<(Vec<u8>, BodyDecoder), Withheld> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(Withheld::BadHead),
    }
    let code = response.code.unwrap_or(0);
    // Another answer could follow an interim one, unchecked.
    if code < 200 {
        return Err(Withheld::Unscrubbable("an interim 1xx answer"));
    }
    let mut chunked = false;
    let mut coding = Coding::Identity;
    let mut coded = false;
    let mut length = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(Withheld::Unscrubbable("a Transfer-Encoding other than chunked"));
            }
            chunked = true;
        }
        if h.name.eq_ignore_ascii_case("content-encoding") {
            // One coding, named once: a second header could say the body
            // is plain while it is not (and the client may decode it).
            if coded {
                return Err(Withheld::Unscrubbable("more than one Content-Encoding"));
            }
            coded = true;
            coding = match h.value.to_ascii_lowercase().trim_ascii() {
                b"identity" => Coding::Identity,
                b"gzip" | b"x-gzip" => Coding::Gzip(flate2::write::GzDecoder::new(Vec::new())),
                b"deflate" => Coding::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
                _ => return Err(Withheld::Unscrubbable("a Content-Encoding other than gzip or deflate")),
            };
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if n.is_none() || (length.is_some() && length != n) {
                return Err(Withheld::BadHead);
            }
            length = n;
        }
    }
    let rewritten = chunked || !matches!(coding, Coding::Identity);
    let mut out = format!(
        "HTTP/1.{} {code} {}\r\n",
        response.version.unwrap_or(1),
        response.reason.unwrap_or("")
    )
    .into_bytes();
    for h in response.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let framing = [
            "transfer-encoding",
            "content-encoding",
            "content-length",
            "connection",
            "keep-alive",
            "trailer",
        ]
        .contains(&name.as_str());
        if framing && (rewritten || name != "content-length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // One answer per connection: a rewritten body ends when it closes.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    let no_body = code == 204 || code == 304;
    let framing = if no_body {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Dechunk::default())
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok((out, BodyDecoder { framing, coding }))
}

/// How the upstream delimits the body, and how it is coded.
pub(crate) struct BodyDecoder {
    framing: Framing,
    coding: Coding,
}

enum Framing {
    Close,
    /// Bytes still to come.
    Length(u64),
    Chunked(Dechunk),
}

enum Coding {
    Identity,
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
}

impl BodyDecoder {
    /// The body's bytes in `piece`, unframed (what follows the body's end
    /// is dropped).
    pub(crate) fn unframe(&mut self, piece: &[u8]) -> Result<Vec<u8>, Withheld> {
        Ok(match &mut self.framing {
            Framing::Close => piece.to_vec(),
            Framing::Length(left) => {
                let take = piece.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                piece[..take].to_vec()
            }
            Framing::Chunked(dechunk) => dechunk.push(piece)?,
        })
    }

    pub(crate) fn compressed(&self) -> bool {
        !matches!(self.coding, Coding::Identity)
    }

    /// How much of the unframed body [`Self::inflate`] takes at a time.
    pub(crate) fn step(&self) -> usize {
        if self.compressed() {
            INFLATE_STEP
        } else {
            usize::MAX
        }
    }

    /// The plain bytes of some of the unframed body.
    pub(crate) fn inflate(&mut self, framed: &[u8]) -> Result<Vec<u8>, Withheld> {
        use std::io::Write;
        Ok(match &mut self.coding {
            Coding::Identity => framed.to_vec(),
            Coding::Gzip(d) => {
                d.write_all(framed).map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
            Coding::Deflate(d) => {
                d.write_all(framed).map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
        })
    }

    pub(crate) fn done(&self) -> bool {
        match &self.framing {
            Framing::Close => false,
            Framing::Length(left) => *left == 0,
            Framing::Chunked(d) => d.done(),
        }
    }

    /// The upstream closed: an error unless the framing allows it.
    pub(crate) fn end(&self) -> Result<(), Withheld> {
        match &self.framing {
            Framing::Chunked(d) if !d.done() => Err(Withheld::BadChunk),
            _ => Ok(()),
        }
    }

    /// What the decompressor still holds.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, Withheld> {
        Ok(match &mut self.coding {
            Coding::Identity => Vec::new(),
            Coding::Gzip(d) => {
                d.try_finish().map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
            Coding::Deflate(d) => {
                d.try_finish().map_err(Withheld::BadCoding)?;
                std::mem::take(d.get_mut())
            }
        })
    }
}

/// A `Transfer-Encoding: chunked` body, unchunked as it comes. Trailers
/// are read and dropped.
#[derive(Default)]
struct Dechunk {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunk-size line or a trailer may be no longer.
const MAX_CHUNK_LINE: usize = 4096;

impl Dechunk {
    fn push(&mut self, mut input: &[u8]) -> Result<Vec<u8>, Withheld> {
        let mut out = Vec::new();
        while !input.is_empty() && self.state != ChunkState::Done {
            match self.state {
                ChunkState::Data(left) => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.state = if left == take as u64 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take as u64)
                    };
                }
                _ => {
                    let Some(at) = input.iter().position(|b| *b == b'\n') else {
                        self.line.extend_from_slice(input);
                        if self.line.len() > MAX_CHUNK_LINE {
                            return Err(Withheld::BadChunk);
                        }
                        break;
                    };
                    self.line.extend_from_slice(&input[..at]);
                    input = &input[at + 1..];
                    if self.line.len() > MAX_CHUNK_LINE {
                        return Err(Withheld::BadChunk);
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = match self.state {
                        ChunkState::Size => {
                            let size = line.split(|b| *b == b';').next().unwrap_or_default();
                            let size = std::str::from_utf8(size)
                                .ok()
                                .map(str::trim)
                                .filter(|s| !s.is_empty() && s.len() <= 15)
                                .and_then(|s| u64::from_str_radix(s, 16).ok())
                                .ok_or(Withheld::BadChunk)?;
                            if size == 0 {
                                ChunkState::Trailers
                            } else {
                                ChunkState::Data(size)
                            }
                        }
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => return Err(Withheld::BadChunk),
                        ChunkState::Trailers if line.is_empty() => ChunkState::Done,
                        ChunkState::Trailers => ChunkState::Trailers,
                        ChunkState::Data(_) | ChunkState::Done => return Err(Withheld::BadChunk),
                    };
                }
            }
        }
        Ok(out)
    }

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_answer_is_inflated_a_little_at_a_time() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 8 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        let (_, mut body) = answer_head(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n").unwrap();
        let framed = body.unframe(&bomb).unwrap();
        let mut total = 0;
        for step in framed.chunks(body.step()) {
            let plain = body.inflate(step).unwrap();
            assert!(plain.len() <= 1100 * 1024, "one step inflated {} bytes", plain.len());
            total += plain.len();
        }
        total += body.finish().unwrap().len();
        assert_eq!(total, 8 << 20);
    }
}
