//! Message content policy (the seed's `sanitizeContent`): strip `<`, `>` and every
//! `javascript:` (case-insensitive, including ones that stripping assembles, so
//! `javajavascript:script:` leaves none), then cut to the configured length in
//! characters, never inside a code point. Stripping can be switched off for clients that escape on output;
//! the length cut always applies. Pure functions only.

/// Applies the content policy in one linear pass: characters are appended to the output
/// and a `javascript:` that appears at its end (however it was assembled) is dropped at
/// once, so no occurrence can survive and hostile input cannot make it quadratic.
pub fn sanitize(content: &str, strip_html: bool, max_chars: usize) -> String {
    const NEEDLE: &[u8] = b"javascript:";
    let mut s = if strip_html {
        let mut out = String::with_capacity(content.len());
        for c in content.chars() {
            if c == '<' || c == '>' {
                continue;
            }
            out.push(c);
            let tail = out.len().saturating_sub(NEEDLE.len());
            // The needle is ASCII, so a match starts on a char boundary.
            if c == ':' && out.as_bytes()[tail..].eq_ignore_ascii_case(NEEDLE) {
                out.truncate(tail);
            }
        }
        out
    } else {
        content.to_string()
    };
    if let Some((idx, _)) = s.char_indices().nth(max_chars) {
        s.truncate(idx);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_like_the_seed() {
        assert_eq!(sanitize("hi <b>A</b>", true, 4000), "hi bA/b");
        assert_eq!(sanitize("JavaScript:alert(1)", true, 4000), "alert(1)");
        assert_eq!(sanitize("javajavascript:script:x", true, 4000), "x");
        assert_eq!(sanitize("<>", false, 4000), "<>");
        assert_eq!(sanitize("java<script:x", true, 4000), "x");
        assert_eq!(sanitize("é javascript: é", true, 4000), "é  é");
        assert_eq!(sanitize("javascript", true, 4000), "javascript");
    }

    #[test]
    fn cuts_on_char_boundaries() {
        let s = "é".repeat(10);
        assert_eq!(sanitize(&s, true, 4), "éééé");
        assert_eq!(sanitize("😀😀😀", true, 2), "😀😀");
        assert_eq!(sanitize("abc", true, 3), "abc");
        assert_eq!(sanitize("abcd", false, 3), "abc");
    }
}
