//! Token-aware chunking with the model's own tokenizer.
//!
//! A document is cut into sentences (after `.`, `!`, `?` followed by white space, and at blank
//! lines), and whole sentences are packed into chunks of at most `max_tokens` tokens (special
//! tokens not counted: the model adds its two). A sentence longer than that is cut at token
//! boundaries into windows. Consecutive chunks share up to `overlap_tokens` tokens: the trailing
//! sentences of a chunk that fit in the overlap start the next one (windows of a long sentence
//! step by `max_tokens - overlap_tokens`). Every chunk records its character offsets (Unicode
//! code points, as Python's `str` indexes) in the document: `text[start:end]`.

use tokenizers::Tokenizer;

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub text: String,
    /// Character (code point) offsets in the document.
    pub start_char: usize,
    pub end_char: usize,
    pub tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSize {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

/// A run of the document, in token indexes `[first, last)` and bytes `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: usize,
    last: usize,
    start: usize,
    end: usize,
}

/// Chunks `text`. An empty or all-white-space text gives no chunks.
pub fn chunk(tokenizer: &Tokenizer, text: &str, size: ChunkSize) -> Result<Vec<Chunk>, String> {
    let max = size.max_tokens.max(1);
    let overlap = size.overlap_tokens.min(max / 2);
    let encoding = tokenizer.encode(text, false).map_err(|e| format!("tokenizing: {e}"))?;
    let offsets: Vec<(usize, usize)> = encoding.get_offsets().to_vec();
    if offsets.is_empty() {
        return Ok(vec![]);
    }
    // Sentences as token ranges: a token belongs to the sentence its start byte falls in.
    let mut sentences: Vec<Span> = vec![];
    let bounds = sentence_starts(text);
    let mut b = 1;
    let mut first = 0;
    for (i, &(start, _)) in offsets.iter().enumerate() {
        while b < bounds.len() && start >= bounds[b] {
            if i > first {
                sentences.push(span(&offsets, first, i));
            }
            first = i;
            b += 1;
        }
    }
    sentences.push(span(&offsets, first, offsets.len()));

    // Long sentences become windows of `max` tokens stepping by `max - overlap`.
    let mut pieces: Vec<Span> = vec![];
    for s in sentences {
        if s.last - s.first <= max {
            pieces.push(s);
            continue;
        }
        let step = max - overlap;
        let mut at = s.first;
        loop {
            let end = (at + max).min(s.last);
            pieces.push(span(&offsets, at, end));
            if end == s.last {
                break;
            }
            at += step;
        }
    }

    // Pack whole pieces greedily; the next chunk starts with the trailing pieces of the last one
    // that fit in `overlap` tokens. Windows of one long sentence overlap each other already and
    // are never packed together.
    let tokens = |run: &[Span]| run[run.len() - 1].last - run[0].first;
    let disjoint = |a: &Span, b: &Span| a.last <= b.first;
    let mut spans: Vec<Span> = vec![];
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i + 1;
        while j < pieces.len() && disjoint(&pieces[j - 1], &pieces[j]) && tokens(&pieces[i..=j]) <= max {
            j += 1;
        }
        spans.push(merge(&pieces[i..j]));
        if j == pieces.len() {
            break;
        }
        let mut k = j;
        while k - 1 > i && disjoint(&pieces[k - 1], &pieces[j]) && tokens(&pieces[k - 1..j]) <= overlap {
            k -= 1;
        }
        i = k;
    }

    let char_at = CharIndex::new(text);
    Ok(spans
        .into_iter()
        .map(|s| Chunk {
            text: text[s.start..s.end].to_string(),
            start_char: char_at.of(s.start),
            end_char: char_at.of(s.end),
            tokens: s.last - s.first,
        })
        .collect())
}

fn span(offsets: &[(usize, usize)], first: usize, last: usize) -> Span {
    Span {
        first,
        last,
        start: offsets[first].0,
        end: offsets[last - 1].1,
    }
}

fn merge(run: &[Span]) -> Span {
    let (a, z) = (run[0], run[run.len() - 1]);
    Span {
        first: a.first,
        last: z.last,
        start: a.start,
        end: z.end.max(a.end),
    }
}

/// Byte offsets where sentences start: 0, then after `.`/`!`/`?` + white space, and after a
/// blank line.
fn sentence_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let ends_sentence =
            matches!(c, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace());
        let blank_line = c == b'\n' && bytes.get(i + 1) == Some(&b'\n');
        if ends_sentence || blank_line {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() {
                starts.push(j);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    starts
}

/// Byte offset -> character offset, for one text.
struct CharIndex {
    /// Byte offset of each character, plus the text's length.
    starts: Vec<usize>,
}

impl CharIndex {
    fn new(text: &str) -> Self {
        let mut starts: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        starts.push(text.len());
        CharIndex { starts }
    }

    fn of(&self, byte: usize) -> usize {
        self.starts.partition_point(|&b| b < byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer built in memory: one token per white-space-separated word (and per
    /// punctuation mark), so token counts are easy to reason about.
    fn tokenizer() -> Tokenizer {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        let model = WordLevel::builder()
            .unk_token("[UNK]".into())
            .vocab([("[UNK]".to_string(), 0)].into_iter().collect())
            .build()
            .expect("word level model");
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer
    }

    fn words(n: usize, tag: &str) -> String {
        (0..n).map(|i| format!("{tag}{i}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn short_text_is_one_chunk_with_its_offsets() {
        let text = "  Hello wörld. Bye now!  ";

        let chunks = chunk(
            &tokenizer(),
            text,
            ChunkSize {
                max_tokens: 50,
                overlap_tokens: 5,
            },
        )
        .unwrap();

        assert_eq!(chunks.len(), 1);
        let c = &chunks[0];
        assert_eq!(c.text, "Hello wörld. Bye now!");
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(chars[c.start_char..c.end_char].iter().collect::<String>(), c.text);
        assert_eq!(c.tokens, 6); // Hello wörld . Bye now !
    }

    #[test]
    fn sentences_are_packed_whole_and_overlap_by_whole_sentences() {
        // Four sentences of 9 tokens (8 words and a period).
        let text = format!(
            "{}. {}. {}. {}.",
            words(8, "a"),
            words(8, "b"),
            words(8, "c"),
            words(8, "d")
        );

        let chunks = chunk(
            &tokenizer(),
            &text,
            ChunkSize {
                max_tokens: 20,
                overlap_tokens: 9,
            },
        )
        .unwrap();

        let firsts: Vec<&str> = chunks.iter().map(|c| &c.text[..2]).collect();
        assert_eq!(firsts, ["a0", "b0", "c0"], "{chunks:#?}");
        assert!(chunks.iter().all(|c| c.tokens <= 20 && c.text.ends_with('.')));
        assert!(chunks[0].text.ends_with("b7."), "two sentences fit in 20 tokens");
        assert_eq!(
            chunks[1].start_char,
            chunks[0].text.find("b0").unwrap(),
            "the overlap is a whole sentence"
        );
    }

    #[test]
    fn a_long_sentence_is_cut_into_overlapping_windows() {
        let text = words(100, "w");

        let chunks = chunk(
            &tokenizer(),
            &text,
            ChunkSize {
                max_tokens: 30,
                overlap_tokens: 10,
            },
        )
        .unwrap();

        assert!(chunks.iter().all(|c| c.tokens <= 30));
        assert_eq!(chunks[0].text, words(30, "w"));
        assert!(chunks[1].text.starts_with("w20 "), "{}", chunks[1].text);
        assert!(chunks.last().unwrap().text.ends_with("w99"));
        for c in &chunks {
            let chars: Vec<char> = text.chars().collect();
            assert_eq!(chars[c.start_char..c.end_char].iter().collect::<String>(), c.text);
        }
    }

    #[test]
    fn empty_text_has_no_chunks() {
        assert!(chunk(
            &tokenizer(),
            "   ",
            ChunkSize {
                max_tokens: 10,
                overlap_tokens: 0
            }
        )
        .unwrap()
        .is_empty());
    }
}
