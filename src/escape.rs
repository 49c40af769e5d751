//! Byte-string codecs shared by configuration, register strings and the
//! kernel's entry files.
//!
//! Configuration writes magic as literal text with `\xHH` escapes (the
//! notation of `binfmt.d` and `qemu-binfmt-conf.sh`); the kernel prints it as
//! plain hex; register strings get every byte as `\xHH` so that no byte can
//! be mistaken for the field separator.

use std::fmt::Write as _;

/// Why an escaped string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscapeError {
    /// Byte offset of the offending backslash.
    pub at: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for EscapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at character {}", self.reason, self.at + 1)
    }
}

impl std::error::Error for EscapeError {}

/// Decode literal text with `\xHH` escapes (and `\\` for a backslash).
pub fn decode(text: &str) -> Result<Vec<u8>, EscapeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') | Some(b'X') => {
                let hex = bytes.get(i + 2..i + 4).ok_or(EscapeError {
                    at: i,
                    reason: "\\x needs two hex digits",
                })?;
                let value = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(EscapeError {
                        at: i,
                        reason: "\\x needs two hex digits",
                    })?;
                out.push(value);
                i += 4;
            }
            _ => {
                return Err(EscapeError {
                    at: i,
                    reason: "unknown escape (only \\xHH and \\\\ are allowed)",
                })
            }
        }
    }
    Ok(out)
}

/// Every byte as `\xHH`: safe inside a register string whatever the bytes.
pub fn escape_all(bytes: &[u8]) -> String {
    // By hand rather than `write!`: a cold `qus register` escapes 1.3 KiB
    // of magic and mask, and the formatter took longer than the kernel.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 4);
    for &b in bytes {
        s.push_str("\\x");
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

/// Printable ASCII as is, everything else (and `\`) as `\xHH`: how qus shows
/// magic to people.
pub fn escape_readable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' || b == b' ' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Plain lowercase hex, as the kernel prints magic and mask.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parse plain hex (either case); `None` when it is not an even run of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Text from the system (a file name, an entry name, an interpreter
/// path) as it may be shown to people: control characters (a newline that
/// would forge a line, an ESC that would rewrite the terminal) and
/// bidirectional overrides (that make it read differently from what it
/// holds) escaped as `\xHH`; anything else as it is.
pub fn clean(text: &str) -> String {
    let suspect = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if text.chars().any(suspect) {
        escape_readable(text.as_bytes())
    } else {
        text.to_string()
    }
}

/// A path shown through [`clean`]: use where `path.display()` would print
/// a name that comes from the system.
pub struct Shown<'a>(pub &'a std::path::Path);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&clean(&self.0.display().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_literal_text_and_escapes() {
        assert_eq!(decode("MZ").unwrap(), b"MZ");
        assert_eq!(decode("\\x7fELF\\x02").unwrap(), b"\x7fELF\x02");
        assert_eq!(decode("a\\\\b").unwrap(), b"a\\b");
        assert_eq!(decode("\\XfF").unwrap(), b"\xff");
    }

    #[test]
    fn rejects_bad_escapes_with_position() {
        assert_eq!(decode("ab\\x4").unwrap_err().at, 2);
        assert_eq!(decode("\\xzz").unwrap_err().at, 0);
        assert_eq!(decode("\\n").unwrap_err().at, 0);
        assert!(decode("\\").is_err());
    }

    #[test]
    fn hex_round_trips() {
        let bytes = b"\x00\x7fELF\xff";
        assert_eq!(from_hex(&to_hex(bytes)).unwrap(), bytes);
        assert_eq!(decode(&escape_all(bytes)).unwrap(), bytes);
        assert_eq!(
            decode(&escape_readable(b"\x7fE\\L F")).unwrap(),
            b"\x7fE\\L F"
        );
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
    }
}
