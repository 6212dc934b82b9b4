//! JSON output byte-identical to Flask-RESTful's `output_json`: Python's `json.dumps` with
//! default settings (`", "` and `": "` separators, `ensure_ascii=True`) plus a final `\n`.
//! Only flat objects of strings are needed; escaping follows CPython's `ESCAPE_ASCII`.

use std::fmt::Write;

/// `json.dumps({k1: v1, k2: v2, ...}) + "\n"`, keys in the given order.
pub fn object(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_string(&mut out, key);
        out.push_str(": ");
        push_string(&mut out, value);
    }
    out.push_str("}\n");
    out
}

/// A JSON string literal as `json.dumps` writes it with `ensure_ascii=True`: printable ASCII
/// as is, the two-character escapes CPython uses, everything else as lowercase `\uXXXX`
/// (UTF-16 surrogate pairs above U+FFFF).
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings below are the output of CPython 3.11 `json.dumps(...) + "\n"`.

    #[test]
    fn the_seed_bodies_match_flask() {
        assert_eq!(object(&[("1", "Tom")]), "{\"1\": \"Tom\"}\n");
        assert_eq!(object(&[("2", "Jerry")]), "{\"2\": \"Jerry\"}\n");
    }

    #[test]
    fn several_members_use_pythons_separators() {
        assert_eq!(
            object(&[("a", "1"), ("b", "2")]),
            "{\"a\": \"1\", \"b\": \"2\"}\n"
        );
        assert_eq!(object(&[]), "{}\n");
    }

    #[test]
    fn quotes_backslashes_and_controls_are_escaped_like_cpython() {
        // json.dumps({"k": "a\"b\\c\n\r\t\b\f\x00\x1f\x7f"})
        assert_eq!(
            object(&[("k", "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}")]),
            "{\"k\": \"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u001f\\u007f\"}\n"
        );
    }

    #[test]
    fn non_ascii_becomes_lowercase_utf16_escapes() {
        // json.dumps({"é": "日本 😀"})
        assert_eq!(
            object(&[("é", "日本 😀")]),
            "{\"\\u00e9\": \"\\u65e5\\u672c \\ud83d\\ude00\"}\n"
        );
    }

    #[test]
    fn the_output_is_valid_json_that_round_trips() {
        let tricky = "x\u{0}y\"z\\\u{2028}\u{10ffff}";
        let parsed: serde_json::Value = serde_json::from_str(&object(&[("id", tricky)])).unwrap();
        assert_eq!(parsed["id"], tricky);
    }
}
