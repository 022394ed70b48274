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

use super::signals::{keyword_table, KeywordTable, TextStats, WordCtx};
use super::ClassifyInput;

/// Bumped whenever featurisation changes; stored in the weights file so a
/// model trained with other features is rejected instead of misbehaving.
pub const FEATURE_VERSION: u32 = 12;

/// Bytes read from the start of the last user turn. The instruction sits
/// in the first or last few hundred bytes; 768 bytes in all (1,536 + 512
/// before feature version 10) keep the held-out scores and bound the cost.
pub const USER_HEAD: usize = 448;
/// Bytes read from the end of the last user turn (when it is longer than head + tail).
pub const USER_TAIL: usize = 320;
/// Bytes read from the start of the system prompt.
pub const SYSTEM_HEAD: usize = 1024;
/// Bytes read from the end of the system prompt.
pub const SYSTEM_TAIL: usize = 512;
/// Bytes read from the start of the context (the user turn before a short
/// follow-up; feature version 11).
pub const CONTEXT_HEAD: usize = 256;
/// Bytes read from the end of the context.
pub const CONTEXT_TAIL: usize = 128;

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
const NS_CTX_WORD: u64 = 0x9b05_688c_2b3e_6c1f;
const NS_CTX_BIGRAM: u64 = 0x1f83_d9ab_fb41_bd6b;
const NS_CTX_ZONE: u64 = 0x5be0_cd19_137e_2179;
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

/// Little-endian `u64` of an eight-byte slice.
#[inline]
fn le64(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(c);
    u64::from_le_bytes(b)
}

/// Little-endian `u64` of up to eight bytes, zero-padded (the rare word
/// that ends within eight bytes of the end of the text).
#[cold]
#[inline(never)]
fn le_bytes(c: &[u8]) -> u64 {
    c.iter()
        .take(8)
        .enumerate()
        .fold(0, |x, (i, &b)| x | u64::from(b) << (8 * i))
}

/// One step of the word hash over eight (normalised) bytes.
#[inline]
fn hash_step(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ norm8(x)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Hash of the word `text[start..end]` (a run of word bytes), eight bytes
/// per step; case- and digit-normalised (see [`norm8`]). `text` may extend
/// past the word: bytes beyond `end` are masked off, never hashed.
#[inline(always)]
fn word_hash_in(text: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    let mut h = FNV_OFFSET ^ (len as u64).wrapping_mul(FNV_PRIME);
    let mut at = start;
    while end - at > 8 {
        h = hash_step(h, le64(&text[at..at + 8]));
        at += 8;
    }
    if at < end {
        // The last 1..=8 bytes, zero-padded. Zero padding bytes are folded
        // to 0x20 like spaces; the length in the seed keeps "ab" and "ab "
        // apart.
        let rem = end - at;
        let x = match text.get(at..at + 8) {
            Some(c) => le64(c) & (u64::MAX >> (64 - 8 * rem)),
            None => le_bytes(&text[at..end]),
        };
        h = hash_step(h, x);
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

// Per-byte entry of the classification pass: packed increments of the byte
// statistics (8 bits per counter; a 64-byte block adds at most 64 to one)
// plus the class flags, which are gathered into per-block bit masks.
const E_DIGITS: u32 = 0;
const E_OPERATORS: u32 = 8;
const E_NEWLINES: u32 = 16;
const E_QUESTIONS: u32 = 24;
const E_NONASCII: u32 = 32;
const E_CODE_SYMS: u32 = 40;
/// Word byte (ASCII alphanumeric, `_`, any non-ASCII byte). The flags sit
/// in the top byte, whose sum over a block overflows out of the `u64`
/// without touching the counters.
const E_WORD: u32 = 63;
/// Special byte that starts a character: its byte 4-gram is emitted.
const E_SPECIAL: u32 = 62;

const fn build_entry() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut e = 0u64;
        if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 {
            e |= 1 << E_WORD;
        }
        // UTF-8 continuation bytes (0x80..0xc0) are skipped: the 4-gram is
        // taken at the first byte of a character.
        if is_special_byte(b) && !(b >= 0x80 && b < 0xc0) {
            e |= 1 << E_SPECIAL;
        }
        let counter = match b {
            b'0'..=b'9' => Some(E_DIGITS),
            b'+' | b'-' | b'*' | b'/' | b'^' | b'=' => Some(E_OPERATORS),
            b'\n' => Some(E_NEWLINES),
            b'?' => Some(E_QUESTIONS),
            0x80..=0xff => Some(E_NONASCII),
            b'{' | b'}' | b';' | b'(' | b')' | b'[' | b']' | b'<' | b'>' => Some(E_CODE_SYMS),
            _ => None,
        };
        if let Some(shift) = counter {
            e |= 1 << shift;
        }
        t[i] = e;
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

static BYTE_ENTRY: [u64; 256] = build_entry();
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

/// Receives features in batches: `buckets` are weight rows (one per feature
/// occurrence), all of the family `kind` ([`KIND_TEXT`], [`KIND_ZONE`] or
/// [`KIND_META`]).
pub trait FeatureSink {
    /// Called with a batch of feature occurrences of one kind.
    fn features(&mut self, buckets: &[u32], kind: usize);
}

impl<F: FnMut(u32, usize)> FeatureSink for F {
    #[inline]
    fn features(&mut self, buckets: &[u32], kind: usize) {
        for &b in buckets {
            self(b, kind)
        }
    }
}

/// Counts the features of each kind on their way to the sink.
struct Counting<'s, S> {
    sink: &'s mut S,
    counts: [u32; KINDS],
}

impl<S: FeatureSink> FeatureSink for Counting<'_, S> {
    #[inline]
    fn features(&mut self, buckets: &[u32], kind: usize) {
        if let Some(c) = self.counts.get_mut(kind) {
            *c += buckets.len() as u32;
        }
        self.sink.features(buckets, kind);
    }
}

/// Fixed-capacity bucket buffer that is handed to a sink in one call.
struct Buf<const N: usize> {
    b: [u32; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    #[inline]
    fn new() -> Self {
        Buf { b: [0; N], len: 0 }
    }

    /// Appends a bucket (dropped if full, which callers size never to be).
    #[inline]
    fn push(&mut self, bucket: u32) {
        if let Some(slot) = self.b.get_mut(self.len) {
            *slot = bucket;
            self.len += 1;
        }
    }

    #[inline]
    fn flush(&mut self, sink: &mut impl FeatureSink, kind: usize) {
        sink.features(&self.b[..self.len.min(N)], kind);
        self.len = 0;
    }
}

/// Words at the start of a text that also emit zone features.
const ZONE_HEAD_WORDS: u32 = 24;
/// Words at the start of the system prompt that also emit user head-zone features.
const SYSTEM_SHARED_WORDS: u32 = 64;
/// Words at the end of the user turn that also emit zone features.
const ZONE_TAIL_WORDS: usize = 16;

/// Words hashed per batch before their features are emitted.
const WORD_BATCH: usize = 64;

/// Key of the bigram (`prev`, `h`) in namespace `ns`.
#[inline]
fn bigram_key(prev: u64, h: u64, ns: u64) -> u64 {
    (prev ^ ns).wrapping_mul(FNV_PRIME).rotate_left(29) ^ h
}

/// Which text a [`TextScan`] reads: its features live in their own namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The last user turn (also feeds the rules and the complexity score).
    User,
    /// The system prompt.
    System,
    /// The user turn before a short follow-up (features only).
    Context,
}

/// Word-level state of one text (user turn or system prompt).
struct TextScan {
    log2: u32,
    ns_word: u64,
    ns_bigram: u64,
    ns_zone: u64,
    ns_zone_bi: u64,
    /// User turn (tail zone, byte statistics, byte 4-grams).
    role: Role,
    /// Length of the whole text (for the tail keyword zone).
    total: usize,
    /// Hash of the previous word of the current window.
    prev: Option<u64>,
    n_words: u32,
    /// Ring of the last words' (unigram, bigram) keys for the tail zone
    /// (bigram key 0: the word had no predecessor in its window).
    tail: [(u64, u64); ZONE_TAIL_WORDS],
    tail_len: usize,
    words: WordCtx,
    keywords: &'static KeywordTable,
}

impl TextScan {
    fn new(log2: u32, role: Role, total: usize) -> Self {
        let (ns_word, ns_bigram, ns_zone, ns_zone_bi) = match role {
            Role::User => (NS_USER_WORD, NS_USER_BIGRAM, NS_ZONE_HEAD, NS_ZONE_HEAD_BI),
            Role::System => (NS_SYS_WORD, NS_SYS_BIGRAM, NS_SYS_ZONE, NS_SYS_ZONE ^ 1),
            Role::Context => (NS_CTX_WORD, NS_CTX_BIGRAM, NS_CTX_ZONE, NS_CTX_ZONE ^ 1),
        };
        TextScan {
            log2,
            ns_word,
            ns_bigram,
            ns_zone,
            ns_zone_bi,
            role,
            total,
            prev: None,
            n_words: 0,
            tail: [(0, 0); ZONE_TAIL_WORDS],
            tail_len: 0,
            words: WordCtx::new(role != Role::User),
            keywords: keyword_table(),
        }
    }

    /// Features and keyword flags of a batch of consecutive words: `hs` are
    /// their hashes, `ps` their byte positions in the text. Each feature
    /// family is emitted by its own short loop (kept out of line so that
    /// the loops get the registers).
    #[inline(never)]
    fn emit(&mut self, hs: &[u64], ps: &[u32], sink: &mut impl FeatureSink, st: &mut TextStats) {
        let n = hs.len().min(WORD_BATCH);
        let log2 = self.log2;
        // Text unigrams.
        let mut buckets = [0u32; WORD_BATCH];
        for (b, &h) in buckets.iter_mut().zip(hs) {
            *b = bucket(h ^ self.ns_word, log2);
        }
        sink.features(&buckets[..n], KIND_TEXT);
        // Text bigrams; `bk[i]` is the bigram key of word i (0: none, the
        // first word of a window).
        let mut bk = [0u64; WORD_BATCH];
        let first = match self.prev {
            Some(p) if n > 0 => {
                bk[0] = bigram_key(p, hs[0], self.ns_bigram);
                0
            }
            _ => 1,
        };
        for (k, w) in bk[1..].iter_mut().zip(hs.windows(2)) {
            *k = bigram_key(w[0], w[1], self.ns_bigram);
        }
        for i in first..n {
            buckets[i] = bucket(bk[i], log2);
        }
        sink.features(&buckets[first.min(n)..n], KIND_TEXT);
        let prev = hs.last().copied().or(self.prev);
        let mut buf = Buf::<{ 2 * WORD_BATCH }>::new();
        // Head zone: the first words of the text.
        let head = (ZONE_HEAD_WORDS.saturating_sub(self.n_words) as usize).min(n);
        for (&h, &k) in hs[..head].iter().zip(&bk) {
            buf.push(bucket(h ^ self.ns_zone, log2));
            if k != 0 {
                buf.push(bucket(k ^ self.ns_zone_bi, log2));
            }
        }
        if self.role == Role::System {
            // System-prompt words are instructions too: they also feed the
            // user head-zone namespace, so a task described in the system
            // prompt and one described at the start of the user turn share
            // weights.
            let shared = (SYSTEM_SHARED_WORDS.saturating_sub(self.n_words) as usize).min(n);
            buf.flush(sink, KIND_ZONE);
            for (&h, &k) in hs[..shared].iter().zip(&bk) {
                buf.push(bucket(h ^ NS_ZONE_HEAD, log2));
                if k != 0 {
                    buf.push(bucket(k ^ NS_ZONE_HEAD_BI, log2));
                }
            }
        } else if self.role == Role::User {
            // Tail zone: only the last ZONE_TAIL_WORDS words can matter.
            let skip = n.saturating_sub(ZONE_TAIL_WORDS);
            self.tail_len += skip;
            for (&h, &k) in hs[skip..n].iter().zip(&bk[skip..]) {
                self.tail[self.tail_len % ZONE_TAIL_WORDS] = (h, k);
                self.tail_len += 1;
            }
        }
        buf.flush(sink, KIND_ZONE);
        // Keyword flags and complexity counters.
        for (&h, &p) in hs.iter().zip(ps) {
            st.on_word(h, p as usize, self.total, &mut self.words, self.keywords);
        }
        self.n_words += n as u32;
        self.prev = prev;
    }

    /// Emits the zone features of the last words (call once, at the end).
    fn flush_tail(&mut self, sink: &mut impl FeatureSink) {
        let n = self.tail_len.min(ZONE_TAIL_WORDS);
        let mut buf = Buf::<{ 2 * ZONE_TAIL_WORDS }>::new();
        for i in 0..n {
            let (h, bi) = self.tail[(self.tail_len - n + i) % ZONE_TAIL_WORDS];
            buf.push(bucket(h ^ NS_ZONE_TAIL, self.log2));
            if bi != 0 {
                buf.push(bucket(bi ^ NS_ZONE_TAIL_BI, self.log2));
            }
        }
        buf.flush(sink, KIND_ZONE);
    }

    /// Words of one window starting at byte `base` of the text (hashed with
    /// [`word_hash`]); `m` holds the window's word-byte mask. Words are
    /// hashed in batches of [`WORD_BATCH`], then [`TextScan::emit`]ted.
    fn scan_words(
        &mut self,
        text: &[u8],
        m: &Masks,
        base: usize,
        sink: &mut impl FeatureSink,
        st: &mut TextStats,
    ) {
        // Bigrams never span the gap between head and tail windows.
        self.prev = None;
        let mut words = WordIter::new(m);
        let mut hs = [0u64; WORD_BATCH];
        let mut ps = [0u32; WORD_BATCH];
        loop {
            let n = self.hash_batch(text, &mut words, base, &mut hs, &mut ps, st);
            if n == 0 {
                return;
            }
            self.emit(&hs[..n], &ps[..n], sink, st);
            if n < WORD_BATCH {
                return;
            }
        }
    }

    /// Hashes the next (up to [`WORD_BATCH`]) words of `words` into `hs`
    /// and their positions (offset by `base`) into `ps`; returns how many.
    #[inline(never)]
    fn hash_batch(
        &self,
        text: &[u8],
        words: &mut WordIter<'_>,
        base: usize,
        hs: &mut [u64; WORD_BATCH],
        ps: &mut [u32; WORD_BATCH],
        st: &mut TextStats,
    ) -> usize {
        // A local copy of the cursor stays in registers.
        let mut it = words.clone();
        let mut n = 0;
        while n < WORD_BATCH {
            let Some((start, end)) = it.next() else {
                break;
            };
            hs[n] = word_hash_in(text, start, end);
            ps[n] = (base + start) as u32;
            if start > 0 && text[start - 1] == b'\\' {
                // LaTeX command: hash of the alphabetic prefix (`\int_0` is `int`).
                let alpha = text[start..end]
                    .iter()
                    .take_while(|b| b.is_ascii_alphabetic())
                    .count();
                st.on_latex(word_hash(&text[start..start + alpha]), self.keywords);
            }
            n += 1;
        }
        *words = it;
        n
    }
}

/// Iterates the words of a window as `(start, end)` byte ranges, pairing
/// the set bits of [`Masks::starts`] and [`Masks::ends`] in order.
#[derive(Clone)]
struct WordIter<'m> {
    m: &'m Masks,
    /// Block and not yet visited bits of the start mask.
    sb: usize,
    s: u64,
    /// Block and not yet visited bits of the end mask.
    eb: usize,
    e: u64,
}

impl<'m> WordIter<'m> {
    fn new(m: &'m Masks) -> Self {
        WordIter {
            m,
            sb: 0,
            s: if m.blocks > 0 { m.starts[0] } else { 0 },
            eb: 0,
            e: m.ends[0],
        }
    }
}

impl Iterator for WordIter<'_> {
    type Item = (usize, usize);

    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        while self.s == 0 {
            self.sb += 1;
            if self.sb >= self.m.blocks {
                return None;
            }
            self.s = self.m.starts[self.sb];
        }
        let start = self.sb * 64 + self.s.trailing_zeros() as usize;
        self.s &= self.s - 1;
        // Every start has its end at or before the extra block.
        while self.e == 0 {
            self.eb += 1;
            self.e = *self.m.ends.get(self.eb)?;
        }
        let end = self.eb * 64 + self.e.trailing_zeros() as usize;
        self.e &= self.e - 1;
        Some((start, end))
    }
}

/// Most 64-byte blocks of one window (a text of up to head + tail bytes is
/// read whole as one window).
const MAX_BLOCKS: usize = {
    let (user, system) = (USER_HEAD + USER_TAIL, SYSTEM_HEAD + SYSTEM_TAIL);
    (if user > system { user } else { system }).div_ceil(64)
};

/// Per-window bit masks (bit `i % 64` of block `i / 64` is byte `i`); bits
/// past the end of the window are clear.
struct Masks {
    /// First byte of every word (maximal run of word bytes).
    starts: [u64; MAX_BLOCKS],
    /// One past the last byte of every word (may be the window's length,
    /// hence the extra block).
    ends: [u64; MAX_BLOCKS + 1],
    /// Special bytes (see [`scan_special`]).
    special: [u64; MAX_BLOCKS],
    blocks: usize,
}

impl Masks {
    /// Classifies every byte of `text` (at most `64 * MAX_BLOCKS` bytes)
    /// with one table load per byte and no branches: word starts and ends,
    /// special bytes, plus (when `STATS`) the byte statistics.
    #[inline]
    fn build<const STATS: bool>(text: &[u8], st: &mut TextStats) -> Masks {
        debug_assert!(text.len() <= 64 * MAX_BLOCKS);
        let blocks = text.len().div_ceil(64).min(MAX_BLOCKS);
        let mut m = Masks {
            starts: [0; MAX_BLOCKS],
            ends: [0; MAX_BLOCKS + 1],
            special: [0; MAX_BLOCKS],
            blocks,
        };
        let mut acc = [0u32; 6];
        // 1 if the last byte of the previous block is a word byte.
        let mut carry = 0u64;
        for (blk, chunk) in text.chunks(64).take(blocks).enumerate() {
            // Class byte of every byte (bit 7: word, bit 6: special) and
            // the packed statistics counters of the block.
            let mut cls = [0u8; 64];
            let mut sum = 0u64;
            for (c, &b) in cls.iter_mut().zip(chunk) {
                let e = BYTE_ENTRY[b as usize];
                sum = sum.wrapping_add(e);
                *c = (e >> 56) as u8;
            }
            let (mut w, mut sp) = (0u64, 0u64);
            for (j, c8) in cls.chunks_exact(8).enumerate() {
                let mut v = [0u8; 8];
                v.copy_from_slice(c8);
                let v = u64::from_le_bytes(v);
                w |= gather_high_bits(v) << (8 * j);
                sp |= gather_high_bits(v << 1) << (8 * j);
            }
            // Bit i of `before`: byte i - 1 is a word byte.
            let before = (w << 1) | carry;
            m.starts[blk] = w & !before;
            m.ends[blk] = !w & before;
            m.special[blk] = sp;
            carry = w >> 63;
            if STATS {
                for (k, a) in acc.iter_mut().enumerate() {
                    *a += ((sum >> (8 * k)) & 0xff) as u32;
                }
            }
        }
        // A word that runs to the end of a window of whole blocks.
        m.ends[blocks] |= carry;
        if STATS {
            st.digits += acc[0];
            st.operators += acc[1];
            st.newlines += acc[2];
            st.questions += acc[3];
            st.nonascii += acc[4];
            st.code_syms += acc[5];
        }
        m
    }
}

/// The high bit of each of the eight bytes of `v`, as an 8-bit mask (bit
/// `i` from byte `i`).
#[inline]
fn gather_high_bits(v: u64) -> u64 {
    // Byte i's bit lands on bit 56 + i; the partial products never overlap.
    (((v >> 7) & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Byte 4-grams of the normalised text ending at every special byte (code
/// punctuation, or the first byte of a non-ASCII character); plain prose
/// emits almost none. Also records the math notation found at those bytes
/// (`$`, `\(`, `\[`, U+2200..U+22FF operators) into `st`.
fn scan_special(text: &[u8], m: &Masks, log2: u32, sink: &mut impl FeatureSink, st: &mut TextStats) {
    let mut buf = Buf::<64>::new();
    for (blk, &bits) in m.special[..m.blocks].iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let j = blk * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let b = text[j];
            match b {
                b'$' => st.math_delims = true,
                b'(' | b'[' if j > 0 && text[j - 1] == b'\\' => st.math_delims = true,
                // E2 88 xx .. E2 8B xx: mathematical operators.
                0xe2 if text.get(j + 1).is_some_and(|c| (0x88..=0x8b).contains(c)) => st.math_symbols += 1,
                _ => {}
            }
            if j >= 3 {
                let w = u32::from_le_bytes([
                    BYTE_NORM[text[j - 3] as usize],
                    BYTE_NORM[text[j - 2] as usize],
                    BYTE_NORM[text[j - 1] as usize],
                    BYTE_NORM[b as usize],
                ]);
                buf.push(bucket(u64::from(w) ^ NS_USER_CHAR, log2));
            }
        }
        buf.flush(sink, KIND_TEXT);
    }
}

/// Bucket of meta feature `id` with value `v`.
#[inline]
fn meta(id: u64, v: u64, log2: u32) -> u32 {
    bucket(NS_META ^ (id << 16) ^ v, log2)
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
    let mut counting = Counting {
        sink,
        counts: [0; KINDS],
    };
    let user = input.last_user.as_bytes();
    let system = input.system.as_bytes();
    stats.user_len = user.len();
    stats.system_len = system.len();

    let (a, b) = windows(user, USER_HEAD, USER_TAIL);
    let ma = Masks::build::<true>(a, stats);
    let mb = Masks::build::<true>(b, stats);
    let mut us = TextScan::new(log2, Role::User, user.len());
    us.scan_words(a, &ma, 0, &mut counting, stats);
    us.scan_words(b, &mb, user.len() - b.len(), &mut counting, stats);
    us.flush_tail(&mut counting);
    scan_special(a, &ma, log2, &mut counting, stats);
    scan_special(b, &mb, log2, &mut counting, stats);
    stats.scan_lines(a);
    stats.scan_lines(b);
    let scanned = a.len() + b.len();
    stats.scanned = scanned as u32;
    if !system.is_empty() {
        let (sa, sb) = windows(system, SYSTEM_HEAD, SYSTEM_TAIL);
        let mut ss = TextScan::new(log2, Role::System, system.len());
        let ma = Masks::build::<false>(sa, stats);
        ss.scan_words(sa, &ma, 0, &mut counting, stats);
        let mb = Masks::build::<false>(sb, stats);
        ss.scan_words(sb, &mb, system.len() - sb.len(), &mut counting, stats);
    }

    let context = input.context.as_bytes();
    if !context.is_empty() {
        // Features only: the rules and the complexity score read the last
        // turn alone, so the context's keyword flags go to a scratch copy.
        let mut scratch = TextStats::default();
        let (ca, cb) = windows(context, CONTEXT_HEAD, CONTEXT_TAIL);
        let mut cs = TextScan::new(log2, Role::Context, context.len());
        let ma = Masks::build::<false>(ca, &mut scratch);
        cs.scan_words(ca, &ma, 0, &mut counting, &mut scratch);
        let mb = Masks::build::<false>(cb, &mut scratch);
        cs.scan_words(cb, &mb, context.len() - cb.len(), &mut counting, &mut scratch);
    }

    // Meta features from the statistics of the user windows.
    let digits = stats.digits as usize;
    let nonascii = stats.nonascii as usize;
    let code = stats.code_syms as usize;
    let newlines = stats.newlines as usize;
    let questions = stats.questions as usize;
    let ends_q = user.trim_ascii_end().last() == Some(&b'?');
    let metas = [
        meta(1, log2_bucket(user.len()), log2),
        meta(2, u64::from(!system.is_empty()), log2),
        meta(3, u64::from(input.has_tools), log2),
        meta(4, u64::from(input.json_schema), log2),
        meta(5, input.turns.min(6) as u64, log2),
        meta(6, log2_bucket(newlines).min(6), log2),
        meta(7, frac_bucket(digits, scanned), log2),
        meta(8, frac_bucket(nonascii, scanned), log2),
        meta(9, frac_bucket(code, scanned), log2),
        meta(10, log2_bucket(questions).min(3), log2),
        meta(11, u64::from(ends_q), log2),
        meta(12, log2_bucket(system.len()).min(14), log2),
        meta(13, u64::from(!context.is_empty()), log2),
    ];
    counting.features(&metas, KIND_META);
    counting.counts
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
            context: "",
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
            context: "",
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

    #[test]
    fn context_adds_its_own_features_and_leaves_the_rules_alone() {
        let collect = |i: &ClassifyInput<'_>| {
            let mut out = Vec::new();
            let mut st = TextStats::default();
            featurize(i, 16, &mut |x: u32, k: usize| out.push((x, k)), &mut st);
            (out, st.any_flags, st.head_flags, st.constraints, st.user_len)
        };
        let plain = input("and in German?");
        let with = ClassifyInput {
            context: "Translate 'good morning' into French, step by step, and you must be exact.",
            turns: 3,
            ..plain
        };
        let (a, fa, ha, ca, la) = collect(&ClassifyInput { turns: 3, ..plain });
        let (b, fb, hb, cb, lb) = collect(&with);
        // The last turn's features are all still there, plus context words
        // in namespaces of their own (none shared with the user turn's).
        let user_text: Vec<u32> = a.iter().filter(|f| f.1 == KIND_TEXT).map(|f| f.0).collect();
        let extra: Vec<(u32, usize)> = b.iter().filter(|f| !a.contains(f)).copied().collect();
        assert!(a.iter().all(|f| b.contains(f) || f.1 == KIND_META));
        assert!(
            extra.iter().filter(|f| f.1 == KIND_TEXT).count() >= 10,
            "{extra:?}"
        );
        assert!(extra.iter().all(|f| !user_text.contains(&f.0)));
        // Rules and complexity read the last turn only.
        assert_eq!((fa, ha, ca, la), (fb, hb, cb, lb));
    }
}
