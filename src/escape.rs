//! Printing names that are bytes: file names and symlink targets are raw
//! bytes on Unix and in a snapshot, but text output and JSON are text.
//!
//! [`escape`] is what every text output uses: valid UTF-8 is printed as is,
//! except that a backslash becomes `\\`, and every byte of a control
//! character (C0, DEL and C1) and every byte that is not part of valid UTF-8
//! becomes `\xNN` (two lowercase hex digits). The result is one line that a terminal
//! shows safely, and [`unescape`] turns it back into the exact bytes, so a
//! name printed by `ls` can be given back to `cat` or `restore --include`.
//! JSON output carries the escaped form too, plus the exact bytes in base64
//! wherever the escaped form differs from the name (README, "JSON output").

/// The printable, reversible form of `bytes`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether [`escape`] prints `bytes` unchanged.
pub fn is_plain(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(|c| c == '\\' || c.is_control()))
}

/// The bytes an escaped name stands for: `\\` is a backslash and `\xNN` a
/// byte; any other backslash is kept as it is (so a plain Windows-style
/// name typed by hand still works).
pub fn unescape(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            if text.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
                continue;
            }
            if text.get(i + 1) == Some(&b'x') {
                if let (Some(h), Some(l)) = (
                    text.get(i + 2).and_then(|b| hex(*b)),
                    text.get(i + 3).and_then(|b| hex(*b)),
                ) {
                    out.push(h << 4 | l);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue20_10_names_escape_and_come_back() {
        let cases: [&[u8]; 8] = [
            "c1-\u{85}".as_bytes(),
            b"plain.txt",
            b"caf\xc3\xa9",
            b"new\nline",
            b"latin1-\xe9t\xe9",
            b"back\\slash",
            b"\x7fdel\x01",
            b"tab\there",
        ];
        for name in cases {
            let e = escape(name);
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert_eq!(unescape(e.as_bytes()), name, "{e:?}");
            assert_eq!(is_plain(name), e.as_bytes() == name, "{e:?}");
        }
        assert_eq!(escape(b"new\nline"), "new\\x0aline");
        assert_eq!(escape(b"latin1-\xe9t\xe9"), "latin1-\\xe9t\\xe9");
        assert_eq!(escape(b"caf\xc3\xa9"), "café");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        // A lone backslash that escapes nothing stays.
        assert_eq!(unescape(b"a\\b\\x4"), b"a\\b\\x4");
    }
}
