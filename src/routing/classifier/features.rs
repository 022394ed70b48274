//! Hashed feature extraction for the task classifier.
//!
//! Owns the fixed, deterministic hash functions (an eight-bytes-per-step
//! word hash, a multiply-xorshift bucket mix and FNV-1a for checksums; never
//! `std`'s `RandomState`) and the featurisation that training and serving
//! share: word unigrams and bigrams, instruction-zone words (first and last
//! words of the user turn, first words of the system prompt), byte 4-grams
//! around non-Latin and code characters, and a handful of bucketed meta
//! features. The same pass fills the [`TextStats`] that the
//! deterministic rules and the complexity score read. Long texts are read
//! from a bounded head and tail window, so the cost per request is bounded
//! whatever the prompt length.

use super::signals::{TextStats, WordCtx};
use super::ClassifyInput;

/// Bumped whenever featurisation changes; stored in the weights file so a
/// model trained with other features is rejected instead of misbehaving.
pub const FEATURE_VERSION: u32 = 9;

/// Bytes read from the start of the last user turn.
pub const USER_HEAD: usize = 1536;
/// Bytes read from the end of the last user turn (when it is longer than head + tail).
pub const USER_TAIL: usize = 512;
/// Bytes read from the start of the system prompt.
pub const SYSTEM_HEAD: usize = 1024;
/// Bytes read from the end of the system prompt.
pub const SYSTEM_TAIL: usize = 512;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

// Namespace seeds: distinct per feature family and per text field, so the
// same word in the system prompt and in the user turn are different features.
const NS_USER_WORD: u64 = 0x9e37_79b9_7f4a_7c15;
const NS_USER_BIGRAM: u64 = 0xc2b2_ae3d_27d4_eb4f;
const NS_USER_CHAR: u64 = 0x1656_67b1_9e37_79f9;
const NS_SYS_WORD: u64 = 0xff51_afd7_ed55_8ccd;
const NS_SYS_BIGRAM: u64 = 0xc4ce_b9fe_1a85_ec53;
const NS_SYS_ZONE: u64 = 0x2545_f491_4f6c_dd1d;
const NS_META: u64 = 0x6a09_e667_f3bc_c909;
const NS_ZONE_HEAD: u64 = 0xbb67_ae85_84ca_a73b;
const NS_ZONE_HEAD_BI: u64 = 0x3c6e_f372_fe94_f82b;
const NS_ZONE_TAIL: u64 = 0xa54f_f53a_5f1d_36f1;
const NS_ZONE_TAIL_BI: u64 = 0x510e_527f_ade6_82d1;

/// FNV-1a 64-bit hash of a byte string.
#[inline]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

const HI_BITS: u64 = 0x8080_8080_8080_8080;

/// Normalises eight word bytes at once: ASCII case folded (`| 0x20`, which
/// leaves digits and `_` distinct from letters), every digit becomes `0`.
#[inline]
fn norm8(x: u64) -> u64 {
    let y = x | 0x2020_2020_2020_2020;
    // After the fold only digits have the high nibble 3.
    let t = (y & 0xf0f0_f0f0_f0f0_f0f0) ^ 0x3030_3030_3030_3030;
    // Exact per-byte zero test: the high bit of `m` is clear exactly for zero bytes of `t`.
    let m = ((t & 0x7f7f_7f7f_7f7f_7f7f).wrapping_add(0x7f7f_7f7f_7f7f_7f7f)) | t;
    let digit = ((!m & HI_BITS) >> 7).wrapping_mul(0xff);
    (y & !digit) | (0x3030_3030_3030_3030 & digit)
}

/// Little-endian load of up to 8 bytes of `s` starting at `at`: bytes past
/// `at + len` are zero. Reads 8 bytes directly when the slice allows it.
#[inline]
fn load_le(s: &[u8], at: usize, len: usize) -> u64 {
    if let Some(c) = s.get(at..at + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let x = u64::from_le_bytes(b);
        if len >= 8 {
            x
        } else {
            x & ((1u64 << (8 * len)) - 1)
        }
    } else {
        let mut x = 0u64;
        for (i, &b) in s[at..at + len.min(8)].iter().enumerate() {
            x |= u64::from(b) << (8 * i);
        }
        x
    }
}

/// Hash of the word `text[start..end]` (a run of word bytes), eight bytes
/// per step; case- and digit-normalised (see [`norm8`]). `text` may extend
/// past the word: bytes beyond `end` are masked off, never hashed.
#[inline]
fn word_hash_in(text: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let mut h = FNV_OFFSET ^ (len as u64).wrapping_mul(FNV_PRIME);
    let mut at = start;
    while at < end {
        let x = load_le(text, at, end - at);
        // Zero padding bytes are folded to 0x20 like spaces; the length in
        // the seed keeps "ab" and "ab " apart.
        h = (h.rotate_left(5) ^ norm8(x)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        at += 8;
    }
    h ^ (h >> 29)
}

/// Hash of one word; see [`word_hash_in`]. Used for word features and keywords.
#[inline]
pub fn word_hash(w: &[u8]) -> u64 {
    word_hash_in(w, 0, w.len())
}

/// Cheap 64-bit finaliser (xorshift-multiply-xorshift).
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 32;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^ (x >> 32)
}

/// Maps a feature key to a bucket in `[0, 2^log2)` (top bits of the mix).
#[inline]
pub fn bucket(key: u64, log2: u32) -> u32 {
    (mix64(key) >> (64 - log2)) as u32
}

const C_WORD: u8 = 1;
const C_SPECIAL: u8 = 2;
const C_DIGIT: u8 = 4;
const C_ALPHA: u8 = 8;
/// Bytes that feed the byte statistics (digits, operators, code symbols, ...).
const C_STAT: u8 = 16;

const fn build_class() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 {
            c |= C_WORD;
        }
        if is_special_byte(b) {
            c |= C_SPECIAL;
        }
        if b.is_ascii_digit() {
            c |= C_DIGIT;
        }
        if b.is_ascii_alphabetic() {
            c |= C_ALPHA;
        }
        if b.is_ascii_digit()
            || b >= 0x80
            || matches!(
                b,
                b'+' | b'-'
                    | b'*'
                    | b'/'
                    | b'^'
                    | b'='
                    | b'{'
                    | b'}'
                    | b';'
                    | b'('
                    | b')'
                    | b'['
                    | b']'
                    | b'<'
                    | b'>'
                    | b'$'
                    | b'\n'
                    | b'?'
            )
        {
            c |= C_STAT;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const fn build_norm() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_digit() {
            b'0'
        } else if b.is_ascii_whitespace() {
            b' '
        } else {
            b.to_ascii_lowercase()
        };
        i += 1;
    }
    t
}

static BYTE_CLASS: [u8; 256] = build_class();
static BYTE_NORM: [u8; 256] = build_norm();

/// Bytes whose byte 4-grams are emitted: non-ASCII (other scripts, math
/// symbols) and code-like punctuation.
#[inline]
pub const fn is_special_byte(b: u8) -> bool {
    b >= 0x80
        || matches!(
            b,
            b'{' | b'}'
                | b'('
                | b')'
                | b'['
                | b']'
                | b';'
                | b'='
                | b'<'
                | b'>'
                | b'`'
                | b'$'
                | b'\\'
                | b'#'
                | b'_'
                | b'*'
                | b'/'
                | b'|'
                | b'&'
                | b'+'
                | b'^'
                | b'~'
                | b'@'
                | b'%'
        )
}

/// The (at most two) windows of `text` that are read: the whole text if it
/// is short, else its first `head` and last `tail` bytes.
#[inline]
pub fn windows(text: &[u8], head: usize, tail: usize) -> (&[u8], &[u8]) {
    if text.len() <= head + tail {
        (text, &[])
    } else {
        (&text[..head], &text[text.len() - tail..])
    }
}

/// Feature family; each family has its own input value so that long texts
/// do not drown the instruction: text features get `1/sqrt(n_text)`,
/// instruction-zone features `1/sqrt(n_zone)`, meta features 1.
pub const KIND_TEXT: usize = 0;
/// Words / bigrams of the instruction zones (first and last words of the
/// user turn, first words of the system prompt).
pub const KIND_ZONE: usize = 1;
/// Bucketed request statistics.
pub const KIND_META: usize = 2;
/// Number of feature families.
pub const KINDS: usize = 3;

/// Receives features: `bucket` is the weight row, `kind` the feature family
/// ([`KIND_TEXT`], [`KIND_ZONE`] or [`KIND_META`]).
pub trait FeatureSink {
    /// Called once per feature occurrence.
    fn feature(&mut self, bucket: u32, kind: usize);
}

impl<F: FnMut(u32, usize)> FeatureSink for F {
    #[inline]
    fn feature(&mut self, bucket: u32, kind: usize) {
        self(bucket, kind)
    }
}

/// Words at the start of a text that also emit zone features.
const ZONE_HEAD_WORDS: u32 = 24;
/// Words at the start of the system prompt that also emit user head-zone features.
const SYSTEM_SHARED_WORDS: u32 = 64;
/// Words at the end of the user turn that also emit zone features.
const ZONE_TAIL_WORDS: usize = 16;

/// Word-level state of one text (user turn or system prompt).
struct TextScan {
    log2: u32,
    ns_word: u64,
    ns_bigram: u64,
    ns_zone: u64,
    ns_zone_bi: u64,
    /// User turn (tail zone, byte statistics, byte 4-grams).
    user: bool,
    /// Length of the whole text (for the tail keyword zone).
    total: usize,
    prev_word: u64,
    have_prev: bool,
    n_words: u32,
    /// Ring of the last words' (unigram, bigram) keys for the tail zone.
    tail: [(u64, u64); ZONE_TAIL_WORDS],
    tail_len: usize,
    words: WordCtx,
}

impl TextScan {
    fn new(log2: u32, user: bool, total: usize) -> Self {
        let (ns_word, ns_bigram, ns_zone, ns_zone_bi) = if user {
            (NS_USER_WORD, NS_USER_BIGRAM, NS_ZONE_HEAD, NS_ZONE_HEAD_BI)
        } else {
            (NS_SYS_WORD, NS_SYS_BIGRAM, NS_SYS_ZONE, NS_SYS_ZONE ^ 1)
        };
        TextScan {
            log2,
            ns_word,
            ns_bigram,
            ns_zone,
            ns_zone_bi,
            user,
            total,
            prev_word: 0,
            have_prev: false,
            n_words: 0,
            tail: [(0, 0); ZONE_TAIL_WORDS],
            tail_len: 0,
            words: WordCtx::new(!user),
        }
    }

    /// One word with normalised hash `h` starting at byte `pos` of the text.
    #[inline]
    fn word(
        &mut self,
        h: u64,
        latex: Option<u64>,
        pos: usize,
        sink: &mut impl FeatureSink,
        st: &mut TextStats,
    ) {
        let log2 = self.log2;
        sink.feature(bucket(h ^ self.ns_word, log2), KIND_TEXT);
        let bigram = if self.have_prev {
            let key = (self.prev_word ^ self.ns_bigram)
                .wrapping_mul(FNV_PRIME)
                .rotate_left(29)
                ^ h;
            sink.feature(bucket(key, log2), KIND_TEXT);
            key
        } else {
            0
        };
        if self.n_words < ZONE_HEAD_WORDS {
            sink.feature(bucket(h ^ self.ns_zone, log2), KIND_ZONE);
            if bigram != 0 {
                sink.feature(bucket(bigram ^ self.ns_zone_bi, log2), KIND_ZONE);
            }
        }
        if !self.user && self.n_words < SYSTEM_SHARED_WORDS {
            // System-prompt words are instructions too: they also feed the
            // user head-zone namespace, so a task described in the system
            // prompt and one described at the start of the user turn share
            // weights.
            sink.feature(bucket(h ^ NS_ZONE_HEAD, log2), KIND_ZONE);
            if bigram != 0 {
                sink.feature(bucket(bigram ^ NS_ZONE_HEAD_BI, log2), KIND_ZONE);
            }
        }
        if self.user {
            let slot = self.tail_len % ZONE_TAIL_WORDS;
            self.tail[slot] = (h, bigram);
            self.tail_len += 1;
        }
        st.on_word(h, latex, pos, self.total, &mut self.words);
        self.n_words += 1;
        self.prev_word = h;
        self.have_prev = true;
    }

    /// Emits the zone features of the last words (call once, at the end).
    fn flush_tail(&mut self, sink: &mut impl FeatureSink) {
        let n = self.tail_len.min(ZONE_TAIL_WORDS);
        for i in 0..n {
            let (h, bi) = self.tail[(self.tail_len - n + i) % ZONE_TAIL_WORDS];
            sink.feature(bucket(h ^ NS_ZONE_TAIL, self.log2), KIND_ZONE);
            if bi != 0 {
                sink.feature(bucket(bi ^ NS_ZONE_TAIL_BI, self.log2), KIND_ZONE);
            }
        }
    }

    /// Words of one window starting at byte `base` of the text (hashed with
    /// [`word_hash`]).
    fn scan_words(&mut self, text: &[u8], base: usize, sink: &mut impl FeatureSink, st: &mut TextStats) {
        let n = text.len();
        let mut i = 0;
        // Bigrams never span the gap between head and tail windows.
        self.have_prev = false;
        while i < n {
            if BYTE_CLASS[text[i] as usize] & C_WORD == 0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && BYTE_CLASS[text[i] as usize] & C_WORD != 0 {
                i += 1;
            }
            let h = word_hash_in(text, start, i);
            let latex = if start > 0 && text[start - 1] == b'\\' {
                // LaTeX command: hash of the alphabetic prefix (`\int_0` is `int`).
                let alpha = text[start..i]
                    .iter()
                    .take_while(|b| b.is_ascii_alphabetic())
                    .count();
                Some(word_hash(&text[start..start + alpha]))
            } else {
                None
            };
            self.word(h, latex, base + start, sink, st);
        }
    }
}

/// Byte 4-grams of the normalised text ending at every special byte (code
/// punctuation, or the first byte of a non-ASCII character); plain prose
/// emits almost none.
/// Also counts the byte statistics of the window into `st`.
fn scan_bytes(text: &[u8], log2: u32, sink: &mut impl FeatureSink, st: &mut TextStats) {
    let mut prev = b' ';
    for (j, &b) in text.iter().enumerate() {
        let c = BYTE_CLASS[b as usize];
        if c & C_STAT != 0 {
            match b {
                b'0'..=b'9' => st.digits += 1,
                b'+' | b'-' | b'*' | b'/' | b'^' | b'=' => st.operators += 1,
                b'\n' => st.newlines += 1,
                b'?' => st.questions += 1,
                b'$' => st.math_delims = true,
                b'(' | b'[' => {
                    st.code_syms += 1;
                    if prev == b'\\' {
                        st.math_delims = true;
                    }
                }
                0x80..=0xff => {
                    st.nonascii += 1;
                    // U+2200..U+22FF mathematical operators (E2 88 xx .. E2 8B xx).
                    if prev == 0xe2 && (0x88..=0x8b).contains(&b) {
                        st.math_symbols += 1;
                    }
                }
                _ => st.code_syms += 1,
            }
        }
        // The 4-gram ending at every special byte that starts a character
        // (UTF-8 continuation bytes are skipped).
        if c & C_SPECIAL != 0 && j >= 3 && !(0x80..0xc0).contains(&b) {
            let w = u32::from_le_bytes([
                BYTE_NORM[text[j - 3] as usize],
                BYTE_NORM[text[j - 2] as usize],
                BYTE_NORM[text[j - 1] as usize],
                BYTE_NORM[b as usize],
            ]);
            sink.feature(bucket(u64::from(w) ^ NS_USER_CHAR, log2), KIND_TEXT);
        }
        prev = b;
    }
}

/// Bucketed meta feature `id` with value `v`.
#[inline]
fn meta(id: u64, v: u64, log2: u32, sink: &mut impl FeatureSink) {
    sink.feature(bucket(NS_META ^ (id << 16) ^ v, log2), KIND_META);
}

#[inline]
fn log2_bucket(n: usize) -> u64 {
    u64::from(usize::BITS - n.leading_zeros())
}

/// Fraction bucket: 0 for none, then <1%, <3%, <8%, <20%, >=20%.
#[inline]
fn frac_bucket(count: usize, total: usize) -> u64 {
    if count == 0 || total == 0 {
        return 0;
    }
    let per_mille = count * 1000 / total;
    match per_mille {
        0..=9 => 1,
        10..=29 => 2,
        30..=79 => 3,
        80..=199 => 4,
        _ => 5,
    }
}

/// Emits every feature of `input` into `sink` and fills `stats` (keyword
/// flags, line shapes, byte statistics) in the same bounded pass; returns
/// how many features of each kind were emitted (indexed by `KIND_*`).
pub fn featurize(
    input: &ClassifyInput<'_>,
    log2: u32,
    sink: &mut impl FeatureSink,
    stats: &mut TextStats,
) -> [u32; KINDS] {
    let mut counts = [0u32; KINDS];
    let mut counting = |b: u32, kind: usize| {
        counts[kind] += 1;
        sink.feature(b, kind);
    };
    let user = input.last_user.as_bytes();
    let system = input.system.as_bytes();
    stats.user_len = user.len();
    stats.system_len = system.len();

    let (a, b) = windows(user, USER_HEAD, USER_TAIL);
    let mut us = TextScan::new(log2, true, user.len());
    us.scan_words(a, 0, &mut counting, stats);
    us.scan_words(b, user.len() - b.len(), &mut counting, stats);
    us.flush_tail(&mut counting);
    scan_bytes(a, log2, &mut counting, stats);
    scan_bytes(b, log2, &mut counting, stats);
    stats.scan_lines(a);
    stats.scan_lines(b);
    let scanned = a.len() + b.len();
    stats.scanned = scanned as u32;
    if !system.is_empty() {
        let (sa, sb) = windows(system, SYSTEM_HEAD, SYSTEM_TAIL);
        let mut ss = TextScan::new(log2, false, system.len());
        ss.scan_words(sa, 0, &mut counting, stats);
        ss.scan_words(sb, system.len() - sb.len(), &mut counting, stats);
    }

    // Meta features from the statistics of the user windows.
    let digits = stats.digits as usize;
    let nonascii = stats.nonascii as usize;
    let code = stats.code_syms as usize;
    let newlines = stats.newlines as usize;
    let questions = stats.questions as usize;
    meta(1, log2_bucket(user.len()), log2, &mut counting);
    meta(2, u64::from(!system.is_empty()), log2, &mut counting);
    meta(3, u64::from(input.has_tools), log2, &mut counting);
    meta(4, u64::from(input.json_schema), log2, &mut counting);
    meta(5, input.turns.min(6) as u64, log2, &mut counting);
    meta(6, log2_bucket(newlines).min(6), log2, &mut counting);
    meta(7, frac_bucket(digits, scanned), log2, &mut counting);
    meta(8, frac_bucket(nonascii, scanned), log2, &mut counting);
    meta(9, frac_bucket(code, scanned), log2, &mut counting);
    meta(10, log2_bucket(questions).min(3), log2, &mut counting);
    let ends_q = user.trim_ascii_end().last() == Some(&b'?');
    meta(11, u64::from(ends_q), log2, &mut counting);
    meta(12, log2_bucket(system.len()).min(14), log2, &mut counting);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(user: &str) -> ClassifyInput<'_> {
        ClassifyInput {
            system: "",
            last_user: user,
            has_tools: false,
            json_schema: false,
            turns: 1,
        }
    }

    #[test]
    fn hashing_is_pinned() {
        // These values must never change without bumping FEATURE_VERSION:
        // weights files depend on them.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(mix64(0), 0);
        assert_eq!(bucket(word_hash(b"translate") ^ NS_USER_WORD, 16), 53_116);
        // Case and digits are normalised; other bytes are not.
        assert_eq!(word_hash(b"Translate"), word_hash(b"translate"));
        assert_eq!(word_hash(b"abc2024xyz"), word_hash(b"ABC1999XYZ"));
        assert_ne!(word_hash(b"a_b"), word_hash(b"a b"));
        assert_ne!(word_hash(b"abc"), word_hash(b"abcd"));
        assert_ne!(word_hash(b"12345678a"), word_hash(b"12345678b"));
    }

    #[test]
    fn featurisation_is_deterministic_and_bounded() {
        let text = "Write a Python function that reverses a string. ".repeat(400);
        let mut a = Vec::new();
        let mut b = Vec::new();
        let na = featurize(
            &input(&text),
            16,
            &mut |x: u32, _k: usize| a.push(x),
            &mut TextStats::default(),
        );
        let nb = featurize(
            &input(&text),
            16,
            &mut |x: u32, _k: usize| b.push(x),
            &mut TextStats::default(),
        );
        assert_eq!(a, b);
        assert_eq!(na, nb);
        // Bounded by the head + tail windows, not by the text length.
        assert!(a.len() < 2 * (USER_HEAD + USER_TAIL));
        assert!(na[KIND_ZONE] > 0 && na[KIND_META] > 0);
        assert!(a.iter().all(|&x| x < (1 << 16)));
    }

    #[test]
    fn system_and_user_use_distinct_namespaces() {
        let mut u = Vec::new();
        let mut s = Vec::new();
        featurize(
            &input("hello"),
            16,
            &mut |x: u32, k: usize| {
                if k == KIND_TEXT {
                    u.push(x)
                }
            },
            &mut TextStats::default(),
        );
        let sys = ClassifyInput {
            system: "hello",
            last_user: "",
            has_tools: false,
            json_schema: false,
            turns: 1,
        };
        featurize(
            &sys,
            16,
            &mut |x: u32, k: usize| {
                if k == KIND_TEXT {
                    s.push(x)
                }
            },
            &mut TextStats::default(),
        );
        assert!(!u.is_empty() && !s.is_empty());
        assert!(s.iter().all(|x| !u.contains(x)));
    }
}
