//! `format-spec.md` §17 prints the vectors the tests pin.
//!
//! The spec's vectors are copied by hand; this module reads §17 and collects,
//! in order, every value it prints: backquoted hex of at least 4 bytes (ids,
//! masks, gear entries), `seq(…)` inputs, `XX`×N ids, cut-point lists, bold
//! counts, snapshot names and dates, and every hex block (annotations after
//! two spaces dropped). That list must equal [`pinned::in_spec_order`], the
//! constants the format-vector tests compare the library with; a length stated
//! just above a hex block must match it, and the annotated first tree node
//! must spell the start of the pinned tree. The last test changes each of
//! those digits in turn and checks that the comparison notices.

use super::pinned::{self, Expect};
use std::ops::Range;

const SPEC: &str = include_str!("../../../format-spec.md");

/// One value §17 prints, and where its digits are in the section.
#[derive(Default)]
struct Item {
    value: String,
    at: Vec<Range<usize>>,
}

impl Item {
    /// A value whose digits are in one place.
    fn at(value: &str, at: Range<usize>) -> Item {
        Item {
            value: value.to_string(),
            at: std::iter::once(at).collect(),
        }
    }
}

/// §17 of the spec: from its heading to the rule that ends it.
fn section17(spec: &str) -> &str {
    let start = spec
        .find("\n## 17. Test vectors\n")
        .expect("format-spec.md has a section \"## 17. Test vectors\"");
    let end = spec[start..]
        .find("\n---\n")
        .map_or(spec.len(), |n| start + n);
    &spec[start..end]
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The lines of `text` with the byte offset each starts at (no line ends).
fn lines(text: &str) -> Vec<(usize, &str)> {
    let mut at = 0;
    text.split_inclusive('\n')
        .map(|l| {
            let start = at;
            at += l.len();
            (start, l.trim_end_matches('\n'))
        })
        .collect()
}

/// The number right before the last " bytes" in `line`, with its range.
fn stated_length(line: &str) -> Option<(usize, Range<usize>)> {
    let mut found = None;
    let mut from = 0;
    while let Some(n) = line[from..].find(" bytes") {
        let end = from + n;
        let start = line[..end]
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        if start < end {
            found = Some((line[start..end].parse().unwrap(), start..end));
        }
        from = end + 1;
    }
    found
}

/// A fenced block: its hex (one item, with a stated length checked), or its
/// cut-point list and `SHA-256:` lines (one item each).
fn block_items(
    body: &[(usize, &str)],
    stated: Option<(usize, Range<usize>)>,
    items: &mut Vec<Item>,
    errors: &mut Vec<String>,
) {
    let mut hex = Item::default();
    let mut list = Item::default();
    for &(at, line) in body {
        let data = line.find("  ").map_or(line, |i| &line[..i]);
        if is_hex(&data.replace(' ', "")) {
            hex.value.push_str(&data.replace(' ', ""));
            hex.at.push(at..at + data.len());
        } else if let Some(sha) = line.strip_prefix("SHA-256: ") {
            if !list.value.is_empty() {
                items.push(std::mem::take(&mut list));
            }
            let start = at + "SHA-256: ".len();
            items.push(Item::at(sha, start..start + sha.len()));
        } else {
            if !list.value.is_empty() {
                list.value.push(' ');
            }
            list.value.push_str(line.trim());
            list.at.push(at..at + line.len());
        }
    }
    if !list.value.is_empty() {
        items.push(list);
    }
    if !hex.value.is_empty() {
        if let Some((len, range)) = stated {
            if len * 2 != hex.value.len() {
                errors.push(format!(
                    "a block said to be {len} bytes holds {} bytes: {}…",
                    hex.value.len() / 2,
                    &hex.value[..16.min(hex.value.len())]
                ));
            }
            hex.at.push(range);
        }
        items.push(hex);
    }
}

/// Whether a backquoted span is a value to compare (not prose or code).
fn is_vector(span: &str) -> bool {
    let bare = span.replace("0x", "").replace(' ', "");
    let b = span.as_bytes();
    let date = b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
    (is_hex(&bare) && bare.len() >= 8)
        || span.starts_with("seq(")
        || (span.contains(',')
            && span
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',' || b == b' '))
        || span.starts_with("web_")
        || span.starts_with("db_")
        || date
}

/// The values of one prose line: backquoted vectors, `XX`×N ids and **N** counts.
fn line_items(at: usize, line: &str, items: &mut Vec<Item>) {
    let mut found: Vec<Item> = Vec::new();
    let mut rest = 0;
    while let Some(open) = line[rest..].find('`') {
        let start = rest + open + 1;
        let Some(len) = line[start..].find('`') else {
            break;
        };
        let span = &line[start..start + len];
        rest = start + len + 1;
        let after = line[rest..].trim_start();
        if span.len() == 2 && is_hex(span) && after.starts_with('×') {
            let count = after['×'.len_utf8()..].trim_start();
            let digits = count.len() - count.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let count_at = line.len() - count.len();
            found.push(Item {
                value: format!("{span}×{}", &count[..digits]),
                at: vec![
                    at + start..at + start + 2,
                    at + count_at..at + count_at + digits,
                ],
            });
        } else if is_vector(span) {
            found.push(Item::at(span, at + start..at + start + len));
        }
    }
    let mut rest = 0;
    while let Some(open) = line[rest..].find("**") {
        let start = rest + open + 2;
        let Some(len) = line[start..].find("**") else {
            break;
        };
        let inner = &line[start..start + len];
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            found.push(Item::at(inner, at + start..at + start + len));
        }
        rest = start + len + 2;
    }
    found.sort_by_key(|i| i.at[0].start);
    items.extend(found);
}

/// Everything §17 prints, in order, plus the rows of the annotated tree node.
struct Parsed {
    items: Vec<Item>,
    annotated: Vec<(usize, String)>,
    errors: Vec<String>,
}

fn parse(section: &str) -> Parsed {
    let all = lines(section);
    let mut p = Parsed {
        items: Vec::new(),
        annotated: Vec::new(),
        errors: Vec::new(),
    };
    let mut i = 0;
    let mut in_annotation = false;
    while i < all.len() {
        let (at, line) = all[i];
        if line.starts_with("```") {
            let end = (i + 1..all.len())
                .find(|&j| all[j].1.starts_with("```"))
                .expect("every fenced block in §17 is closed");
            let stated = (i.saturating_sub(2)..i)
                .rev()
                .take_while(|&j| !all[j].1.trim().is_empty() && !all[j].1.starts_with("```"))
                .find_map(|j| {
                    stated_length(all[j].1).map(|(n, r)| (n, all[j].0 + r.start..all[j].0 + r.end))
                });
            block_items(&all[i + 1..end], stated, &mut p.items, &mut p.errors);
            i = end + 1;
            continue;
        }
        if line.starts_with("| bytes | meaning |") {
            in_annotation = true;
        } else if in_annotation && line.starts_with('|') {
            let cell = line[1..].split('|').next().unwrap_or("");
            p.annotated.push((at + 1, cell.to_string()));
        } else {
            in_annotation = false;
            line_items(at, line, &mut p.items);
        }
        i += 1;
    }
    p
}

/// The annotated first node spells the start of the pinned tree postcard:
/// its byte cells, in order (`a…b` (N) standing for N bytes from `a` to `b`),
/// then the second node's name.
fn check_annotated_node(rows: &[(usize, String)], errors: &mut Vec<String>) {
    let tree = pinned::TREE_POSTCARD;
    let mut pos = 0;
    for (_, cell) in rows.iter().filter(|(_, c)| !c.starts_with("---")) {
        let mut rest = cell.as_str();
        while let Some(open) = rest.find('`') {
            let Some(len) = rest[open + 1..].find('`') else {
                break;
            };
            let span = &rest[open + 1..open + 1 + len];
            rest = &rest[open + 2 + len..];
            let ok = if let Some((head, tail)) = span.split_once('…') {
                let n: usize = rest
                    .trim_start()
                    .strip_prefix('(')
                    .and_then(|r| r.split(')').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let bytes = tree.get(pos..pos + 2 * n).unwrap_or("");
                pos += 2 * n;
                n > 0 && bytes.starts_with(head) && bytes.ends_with(tail)
            } else {
                let hex = span.replace(' ', "");
                let ok = tree[pos..].starts_with(&hex);
                pos += hex.len();
                ok
            };
            if !ok {
                errors.push(format!(
                    "the annotated tree node's `{span}` is not the tree's bytes at offset {}",
                    pos / 2
                ));
                return;
            }
        }
    }
    let next = format!("07{}", hex::encode("big.sql"));
    if !tree[pos..].starts_with(&next) {
        errors.push(format!(
            "the annotated tree node ends at byte {}, not where the next node starts",
            pos / 2
        ));
    }
}

/// Inputs §17 names in prose, each with the pinned value it must spell.
fn check_inputs(section: &str, errors: &mut Vec<String>) {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let expected = [
        format!("| time T | {} = ", pinned::TIME),
        format!(
            "`{}\\n`",
            text(&pinned::PLAINTEXT[..pinned::PLAINTEXT.len() - 1])
        ),
        format!("the {} ASCII bytes", pinned::PLAINTEXT.len()),
        format!("`{}`", text(pinned::CHUNKER_INPUT_SEED)),
        format!("first {} bytes of the BLAKE3", pinned::CHUNKER_INPUT_LEN),
        format!("passphrase \"{}\"", text(pinned::PASSWORD)),
        format!("label \"{}\"", pinned::KEY_LABEL),
        format!("label \"{}\"", pinned::MACHINE_KEY_LABEL),
        format!(
            "`sopvault-secret-v1:{}`",
            hex::encode(std::array::from_fn::<u8, 32, _>(
                |i| pinned::MACHINE_SECRET_START + i as u8
            ))
        ),
        format!("UTC is {})", pinned::SNAPSHOT_DATE_UTC),
        format!(
            "**all** cut points ({})",
            pinned::CUTS_DEFAULT.split(", ").count()
        ),
    ];
    for e in expected {
        if !section.contains(&e) {
            errors.push(format!("§17 does not say {e:?}"));
        }
    }
}

/// Every difference between what §17 prints and the pinned vectors.
fn differences(spec: &str) -> Vec<String> {
    let section = section17(spec);
    let mut p = parse(section);
    let expected = pinned::in_spec_order();
    for (n, (label, want)) in expected.iter().enumerate() {
        let Some(got) = p.items.get(n) else {
            p.errors
                .push(format!("§17 ends before vector #{n}, {label}"));
            break;
        };
        let ok = match want {
            Expect::Is(v) => got.value == *v,
            Expect::PartOf(whole) => {
                let hex = got.value.replace(' ', "");
                is_hex(&hex) && whole.contains(&hex)
            }
        };
        if !ok {
            let want = match want {
                Expect::Is(v) => v.clone(),
                Expect::PartOf(_) => "bytes of the pinned vector".into(),
            };
            let first = got
                .value
                .bytes()
                .zip(want.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            p.errors.push(format!(
                "vector #{n}, {label} (they differ from character {first}): §17 prints {:?}, \
                 the tests pin {want:?}",
                got.value
            ));
        }
    }
    for extra in p.items.iter().skip(expected.len()) {
        p.errors
            .push(format!("§17 prints {:?}, which no test pins", extra.value));
    }
    check_annotated_node(&p.annotated, &mut p.errors);
    check_inputs(section, &mut p.errors);
    p.errors
}

#[test]
fn format_spec_section_17_prints_the_pinned_vectors() {
    let errors = differences(SPEC);
    assert!(
        errors.is_empty(),
        "format-spec.md §17 differs from tests/it/format_vectors/pinned.rs:\n{}",
        errors.join("\n")
    );
}

/// Changing any one digit of a vector in §17 (or of a stated block length,
/// an `XX`×N id or the annotated node) makes the check fail.
#[test]
fn a_single_changed_digit_in_section_17_is_caught() {
    assert!(differences(SPEC).is_empty(), "§17 differs unchanged");
    let start = SPEC.find("\n## 17. Test vectors\n").unwrap();
    let section = section17(SPEC);
    let p = parse(section);
    let mut ranges: Vec<Range<usize>> = p.items.iter().flat_map(|i| i.at.clone()).collect();
    ranges.extend(p.annotated.iter().map(|(at, cell)| *at..*at + cell.len()));
    let mut tried = 0;
    for r in ranges {
        for pos in r.filter(|&p| section.as_bytes()[p].is_ascii_hexdigit()) {
            let old = section.as_bytes()[pos];
            let new = if old == b'0' { '1' } else { '0' };
            let mut changed = SPEC.to_string();
            changed.replace_range(start + pos..start + pos + 1, &new.to_string());
            assert!(
                !differences(&changed).is_empty(),
                "changing {:?} to {new:?} at byte {pos} of §17 went unnoticed",
                old as char
            );
            tried += 1;
        }
    }
    assert!(tried > 5000, "only {tried} digits tried");
}
