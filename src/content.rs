//! Message content policy (the seed's `sanitizeContent`): strip `<`, `>` and every
//! `javascript:` (case-insensitive, repeated until none is left, so `javajavascript:script:`
//! cannot reassemble one), then cut to the configured length in characters, never
//! inside a code point. Stripping can be switched off for clients that escape on output;
//! the length cut always applies. Pure functions only.

/// Applies the content policy.
pub fn sanitize(content: &str, strip_html: bool, max_chars: usize) -> String {
    let mut s = if strip_html {
        let mut s: String = content.chars().filter(|c| *c != '<' && *c != '>').collect();
        while let Some(pos) = find_ascii_ci(&s, "javascript:") {
            s.replace_range(pos..pos + "javascript:".len(), "");
        }
        s
    } else {
        content.to_string()
    };
    if let Some((idx, _)) = s.char_indices().nth(max_chars) {
        s.truncate(idx);
    }
    s
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let h = haystack.as_bytes();
    let n = needle.as_bytes();
    // Matching ASCII bytes only, so a match always starts and ends on char boundaries.
    h.windows(n.len()).position(|w| w.eq_ignore_ascii_case(n))
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
