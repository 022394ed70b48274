//! Cheap deterministic signals for the task classifier.
//!
//! Owns one bounded pass over the request text ([`TextStats::scan`]) that
//! collects keyword flags (via a fixed keyword hash table), line shapes
//! (code fences, code-looking lines, diffs, stack traces) and math notation,
//! and the precise rules ([`detect`]) that decide a task outright when they
//! are really sure. The same statistics feed the complexity score.

use std::sync::OnceLock;

#[cfg(test)]
use super::features::featurize;
use super::features::{word_hash, USER_HEAD, USER_TAIL};
use super::ClassifyInput;

/// Bytes at the start / end of the user turn that count as "instruction zone".
const HEAD_ZONE: usize = 400;
const TAIL_ZONE: usize = 300;
// The keyword zones lie inside the windows that featurisation reads.
const _: () = assert!(HEAD_ZONE <= USER_HEAD && TAIL_ZONE <= USER_TAIL);
/// Minimum user-turn length for the "summarize a long pasted text" rule.
const SUMMARY_MIN_LEN: usize = 500;

pub(crate) const K_TRANSLATE: u32 = 1;
pub(crate) const K_LANG: u32 = 1 << 1;
pub(crate) const K_SUMMARIZE: u32 = 1 << 2;
pub(crate) const K_CODEWORD: u32 = 1 << 3;
pub(crate) const K_ERRNAME: u32 = 1 << 4;
pub(crate) const K_PROVE: u32 = 1 << 5;
pub(crate) const K_CONSTRAINT: u32 = 1 << 6;
pub(crate) const K_STEP: u32 = 1 << 7;
pub(crate) const K_REASON: u32 = 1 << 8;
pub(crate) const K_HOW: u32 = 1 << 10;
pub(crate) const K_SAY: u32 = 1 << 11;
pub(crate) const K_SAYPREV: u32 = 1 << 12;
pub(crate) const K_THAT: u32 = 1 << 13;
pub(crate) const K_TL: u32 = 1 << 14;
pub(crate) const K_DR: u32 = 1 << 15;
/// Flag set for the bigram "prove that" or a leading "prove".
pub(crate) const K_PROVE_THAT: u32 = 1 << 16;
/// Flag set for "how do/would you/I say", "how to say", "the French for",
/// "the French word for".
pub(crate) const K_HOW_SAY: u32 = 1 << 17;
/// Programming language / framework names.
pub(crate) const K_PLANG: u32 = 1 << 18;
/// Code objects ("function", "regex", "bug", ...).
pub(crate) const K_CODEOBJ: u32 = 1 << 19;
/// Verbs that only ask for code work ("implement", "refactor", "debug").
pub(crate) const K_CODEVERB: u32 = 1 << 20;
/// "the" (for "the French for").
pub(crate) const K_THE: u32 = 1 << 21;
/// "word" (for "the French word for").
pub(crate) const K_WORDW: u32 = 1 << 22;
/// "for".
pub(crate) const K_FOR: u32 = 1 << 23;
// Pieces of "se dice" (es), "sagt man" (de), "dit-on" (fr).
pub(crate) const K_SE: u32 = 1 << 24;
pub(crate) const K_DICE: u32 = 1 << 25;
pub(crate) const K_SAGT: u32 = 1 << 26;
pub(crate) const K_MAN: u32 = 1 << 27;
pub(crate) const K_DIT: u32 = 1 << 28;
pub(crate) const K_ON: u32 = 1 << 29;
/// Politeness words that may precede a leading composition verb
/// ("please", "can you help me", ...), for the `compose_request` rule.
pub(crate) const K_LEAD_FILLER: u32 = 1 << 9;
/// Things one composes (essay, story, poem, letter, speech, ...).
pub(crate) const K_CREATIVE_OBJ: u32 = 1 << 30;
/// Composition verbs ("write", "compose", "draft", "pen"): both bits above
/// (bit 31 is taken by LaTeX commands), told apart by [`TextStats::lead_words`].
pub(crate) const K_COMPOSE: u32 = K_LEAD_FILLER | K_CREATIVE_OBJ;
/// Words between a leading composition verb and its object ("write a short
/// persuasive essay": the object is the fourth word after the verb).
const COMPOSE_OBJECT_WINDOW: u32 = 6;

const KEYWORDS: &[(&str, u32)] = &[
    // translation verbs
    ("translate", K_TRANSLATE),
    ("translated", K_TRANSLATE),
    ("translates", K_TRANSLATE),
    ("translating", K_TRANSLATE),
    ("translation", K_TRANSLATE),
    ("translations", K_TRANSLATE),
    ("translator", K_TRANSLATE),
    ("traduire", K_TRANSLATE),
    ("traduis", K_TRANSLATE),
    ("traduce", K_TRANSLATE),
    ("traducir", K_TRANSLATE),
    ("traduza", K_TRANSLATE),
    ("traduzir", K_TRANSLATE),
    ("tradurre", K_TRANSLATE),
    ("traduci", K_TRANSLATE),
    ("übersetze", K_TRANSLATE),
    ("übersetzen", K_TRANSLATE),
    ("übersetzung", K_TRANSLATE),
    ("vertaal", K_TRANSLATE),
    ("vertalen", K_TRANSLATE),
    ("tłumacz", K_TRANSLATE),
    ("przetłumacz", K_TRANSLATE),
    ("переведи", K_TRANSLATE),
    ("перевести", K_TRANSLATE),
    ("перевод", K_TRANSLATE),
    ("traducción", K_TRANSLATE),
    ("traduction", K_TRANSLATE),
    ("tradução", K_TRANSLATE),
    ("se", K_SE),
    ("dice", K_DICE),
    ("sagt", K_SAGT),
    ("man", K_MAN),
    ("dit", K_DIT),
    ("on", K_ON),
    // summary words
    ("summarize", K_SUMMARIZE),
    ("summarise", K_SUMMARIZE),
    ("summarized", K_SUMMARIZE),
    ("summarised", K_SUMMARIZE),
    ("summarizing", K_SUMMARIZE),
    ("summarising", K_SUMMARIZE),
    ("summarization", K_SUMMARIZE),
    ("summary", K_SUMMARIZE),
    ("summaries", K_SUMMARIZE),
    ("tldr", K_SUMMARIZE),
    ("recap", K_SUMMARIZE),
    ("synopsis", K_SUMMARIZE),
    ("condense", K_SUMMARIZE),
    ("takeaways", K_SUMMARIZE),
    ("tl", K_TL),
    ("dr", K_DR),
    // code words (block the translation rule: "translate this Python to Go")
    ("code", K_CODEWORD),
    ("function", K_CODEWORD),
    ("functions", K_CODEWORD),
    ("python", K_CODEWORD),
    ("javascript", K_CODEWORD),
    ("typescript", K_CODEWORD),
    ("java", K_CODEWORD),
    ("rust", K_CODEWORD),
    ("golang", K_CODEWORD),
    ("kotlin", K_CODEWORD),
    ("swift", K_CODEWORD),
    ("program", K_CODEWORD),
    ("script", K_CODEWORD),
    ("sql", K_CODEWORD),
    ("regex", K_CODEWORD),
    ("snippet", K_CODEWORD),
    ("class", K_CODEWORD),
    ("method", K_CODEWORD),
    ("json", K_CODEWORD),
    ("yaml", K_CODEWORD),
    ("html", K_CODEWORD),
    ("css", K_CODEWORD),
    ("api", K_CODEWORD),
    ("compiler", K_CODEWORD),
    ("latex", K_CODEWORD),
    ("markdown", K_CODEWORD),
    ("xml", K_CODEWORD),
    ("csv", K_CODEWORD),
    ("function", K_CODEOBJ),
    ("functions", K_CODEOBJ),
    ("code", K_CODEOBJ),
    ("script", K_CODEOBJ),
    ("program", K_CODEOBJ),
    ("snippet", K_CODEOBJ),
    ("class", K_CODEOBJ),
    ("method", K_CODEOBJ),
    ("module", K_CODEOBJ),
    ("library", K_CODEOBJ),
    ("query", K_CODEOBJ),
    ("loop", K_CODEOBJ),
    ("array", K_CODEOBJ),
    ("variable", K_CODEOBJ),
    ("bug", K_CODEOBJ),
    ("error", K_CODEOBJ),
    ("exception", K_CODEOBJ),
    ("regex", K_CODEOBJ),
    ("endpoint", K_CODEOBJ),
    ("api", K_CODEOBJ),
    ("implement", K_CODEVERB),
    ("refactor", K_CODEVERB),
    ("debug", K_CODEVERB),
    ("compile", K_CODEVERB),
    ("deploy", K_CODEVERB),
    ("python", K_PLANG),
    ("javascript", K_PLANG),
    ("typescript", K_PLANG),
    ("java", K_PLANG),
    ("rust", K_PLANG),
    ("golang", K_PLANG),
    ("kotlin", K_PLANG),
    ("ruby", K_PLANG),
    ("php", K_PLANG),
    ("sql", K_PLANG),
    ("mysql", K_PLANG),
    ("postgres", K_PLANG),
    ("postgresql", K_PLANG),
    ("sqlite", K_PLANG),
    ("bash", K_PLANG),
    ("powershell", K_PLANG),
    ("haskell", K_PLANG),
    ("scala", K_PLANG),
    ("perl", K_PLANG),
    ("lua", K_PLANG),
    ("html", K_PLANG),
    ("css", K_PLANG),
    ("react", K_PLANG),
    ("django", K_PLANG),
    ("flask", K_PLANG),
    ("pandas", K_PLANG),
    ("numpy", K_PLANG),
    ("matlab", K_PLANG),
    ("cpp", K_PLANG),
    ("csharp", K_PLANG),
    ("dart", K_PLANG),
    ("elixir", K_PLANG),
    ("clojure", K_PLANG),
    ("solidity", K_PLANG),
    ("terraform", K_PLANG),
    ("kubernetes", K_PLANG),
    ("dockerfile", K_PLANG),
    ("nodejs", K_PLANG),
    ("jquery", K_PLANG),
    ("the", K_THE),
    ("word", K_WORDW),
    ("for", K_FOR),
    // error names that only occur around code
    ("traceback", K_ERRNAME),
    ("typeerror", K_ERRNAME),
    ("valueerror", K_ERRNAME),
    ("keyerror", K_ERRNAME),
    ("indexerror", K_ERRNAME),
    ("attributeerror", K_ERRNAME),
    ("nameerror", K_ERRNAME),
    ("syntaxerror", K_ERRNAME),
    ("importerror", K_ERRNAME),
    ("modulenotfounderror", K_ERRNAME),
    ("zerodivisionerror", K_ERRNAME),
    ("runtimeerror", K_ERRNAME),
    ("referenceerror", K_ERRNAME),
    ("nullpointerexception", K_ERRNAME),
    ("illegalargumentexception", K_ERRNAME),
    ("classnotfoundexception", K_ERRNAME),
    ("segfault", K_ERRNAME),
    ("stacktrace", K_ERRNAME),
    ("panicked", K_ERRNAME),
    // compose_request: a leading composition verb and its object
    ("write", K_COMPOSE),
    ("compose", K_COMPOSE),
    ("draft", K_COMPOSE),
    ("pen", K_COMPOSE),
    ("essay", K_CREATIVE_OBJ),
    ("essays", K_CREATIVE_OBJ),
    ("story", K_CREATIVE_OBJ),
    ("stories", K_CREATIVE_OBJ),
    ("poem", K_CREATIVE_OBJ),
    ("poems", K_CREATIVE_OBJ),
    ("haiku", K_CREATIVE_OBJ),
    ("limerick", K_CREATIVE_OBJ),
    ("sonnet", K_CREATIVE_OBJ),
    ("song", K_CREATIVE_OBJ),
    ("songs", K_CREATIVE_OBJ),
    ("lyrics", K_CREATIVE_OBJ),
    ("letter", K_CREATIVE_OBJ),
    ("letters", K_CREATIVE_OBJ),
    ("speech", K_CREATIVE_OBJ),
    ("toast", K_CREATIVE_OBJ),
    ("eulogy", K_CREATIVE_OBJ),
    ("screenplay", K_CREATIVE_OBJ),
    ("blog", K_CREATIVE_OBJ),
    ("post", K_CREATIVE_OBJ),
    ("article", K_CREATIVE_OBJ),
    ("dialogue", K_CREATIVE_OBJ),
    ("monologue", K_CREATIVE_OBJ),
    ("slogan", K_CREATIVE_OBJ),
    ("slogans", K_CREATIVE_OBJ),
    ("tagline", K_CREATIVE_OBJ),
    ("jingle", K_CREATIVE_OBJ),
    ("tweet", K_CREATIVE_OBJ),
    ("review", K_CREATIVE_OBJ),
    ("fable", K_CREATIVE_OBJ),
    ("tale", K_CREATIVE_OBJ),
    ("narrative", K_CREATIVE_OBJ),
    ("ballad", K_CREATIVE_OBJ),
    ("rap", K_CREATIVE_OBJ),
    ("verse", K_CREATIVE_OBJ),
    ("novel", K_CREATIVE_OBJ),
    ("chapter", K_CREATIVE_OBJ),
    ("plan", K_CREATIVE_OBJ),
    ("proposal", K_CREATIVE_OBJ),
    ("email", K_CREATIVE_OBJ),
    ("emails", K_CREATIVE_OBJ),
    ("invitation", K_CREATIVE_OBJ),
    ("biography", K_CREATIVE_OBJ),
    ("obituary", K_CREATIVE_OBJ),
    ("diary", K_CREATIVE_OBJ),
    ("riddle", K_CREATIVE_OBJ),
    ("joke", K_CREATIVE_OBJ),
    ("jokes", K_CREATIVE_OBJ),
    ("caption", K_CREATIVE_OBJ),
    ("bio", K_CREATIVE_OBJ),
    ("pitch", K_CREATIVE_OBJ),
    ("newsletter", K_CREATIVE_OBJ),
    ("announcement", K_CREATIVE_OBJ),
    ("memo", K_CREATIVE_OBJ),
    ("ode", K_CREATIVE_OBJ),
    ("skit", K_CREATIVE_OBJ),
    ("report", K_CREATIVE_OBJ),
    ("please", K_LEAD_FILLER),
    ("kindly", K_LEAD_FILLER),
    ("can", K_LEAD_FILLER),
    ("could", K_LEAD_FILLER),
    ("would", K_LEAD_FILLER),
    ("will", K_LEAD_FILLER),
    ("you", K_LEAD_FILLER),
    ("help", K_LEAD_FILLER),
    ("me", K_LEAD_FILLER),
    ("now", K_LEAD_FILLER),
    ("pls", K_LEAD_FILLER),
    // proofs
    ("prove", K_PROVE | K_REASON),
    ("that", K_THAT),
    ("how", K_HOW),
    ("say", K_SAY),
    ("you", K_SAYPREV),
    ("to", K_SAYPREV),
    ("i", K_SAYPREV),
    ("we", K_SAYPREV),
    // constraints (complexity)
    ("must", K_CONSTRAINT),
    ("should", K_CONSTRAINT),
    ("exactly", K_CONSTRAINT),
    ("least", K_CONSTRAINT),
    ("without", K_CONSTRAINT),
    ("avoid", K_CONSTRAINT),
    ("ensure", K_CONSTRAINT),
    ("include", K_CONSTRAINT),
    ("exclude", K_CONSTRAINT),
    ("limit", K_CONSTRAINT),
    ("maximum", K_CONSTRAINT),
    ("minimum", K_CONSTRAINT),
    ("require", K_CONSTRAINT),
    ("required", K_CONSTRAINT),
    ("requirements", K_CONSTRAINT),
    ("constraint", K_CONSTRAINT),
    ("constraints", K_CONSTRAINT),
    ("never", K_CONSTRAINT),
    ("always", K_CONSTRAINT),
    ("each", K_CONSTRAINT),
    ("every", K_CONSTRAINT),
    ("format", K_CONSTRAINT),
    ("strictly", K_CONSTRAINT),
    ("only", K_CONSTRAINT),
    ("within", K_CONSTRAINT),
    ("budget", K_CONSTRAINT),
    ("deadline", K_CONSTRAINT),
    ("don", K_CONSTRAINT),
    ("not", K_CONSTRAINT),
    // multi-step markers (complexity)
    ("step", K_STEP),
    ("steps", K_STEP),
    ("first", K_STEP),
    ("firstly", K_STEP),
    ("then", K_STEP),
    ("next", K_STEP),
    ("finally", K_STEP),
    ("lastly", K_STEP),
    ("afterwards", K_STEP),
    ("second", K_STEP),
    ("secondly", K_STEP),
    ("third", K_STEP),
    ("plan", K_STEP),
    ("additionally", K_STEP),
    ("furthermore", K_STEP),
    ("compare", K_STEP),
    ("tradeoffs", K_STEP),
    ("pros", K_STEP),
    ("cons", K_STEP),
    ("analyze", K_STEP),
    ("analyse", K_STEP),
    ("evaluate", K_STEP),
    ("design", K_STEP),
    ("architecture", K_STEP),
    ("justify", K_STEP),
    // reasoning words (complexity)
    ("proof", K_REASON),
    ("derive", K_REASON),
    ("calculate", K_REASON),
    ("compute", K_REASON),
    ("solve", K_REASON),
    ("probability", K_REASON),
    ("equation", K_REASON),
    ("theorem", K_REASON),
    ("optimal", K_REASON),
    ("minimize", K_REASON),
    ("maximize", K_REASON),
    ("integral", K_REASON),
    ("derivative", K_REASON),
    ("expected", K_REASON),
    ("puzzle", K_REASON),
    ("logic", K_REASON),
    ("deduce", K_REASON),
    ("algorithm", K_REASON),
    ("why", K_REASON),
];

const LANGUAGES: &[&str] = &[
    "english",
    "french",
    "spanish",
    "german",
    "italian",
    "portuguese",
    "chinese",
    "mandarin",
    "cantonese",
    "japanese",
    "korean",
    "russian",
    "arabic",
    "hindi",
    "bengali",
    "urdu",
    "turkish",
    "dutch",
    "swedish",
    "norwegian",
    "danish",
    "finnish",
    "polish",
    "czech",
    "greek",
    "hebrew",
    "thai",
    "vietnamese",
    "indonesian",
    "malay",
    "tagalog",
    "filipino",
    "swahili",
    "yoruba",
    "igbo",
    "hausa",
    "zulu",
    "xhosa",
    "persian",
    "farsi",
    "ukrainian",
    "romanian",
    "hungarian",
    "catalan",
    "latin",
    "esperanto",
    "punjabi",
    "tamil",
    "telugu",
    "marathi",
    "gujarati",
    "kannada",
    "malayalam",
    "nepali",
    "sinhala",
    "burmese",
    "khmer",
    "amharic",
    "somali",
    "bulgarian",
    "serbian",
    "croatian",
    "slovak",
    "slovenian",
    "lithuanian",
    "latvian",
    "estonian",
    "icelandic",
    "irish",
    "welsh",
    "basque",
    "galician",
    "afrikaans",
    "pashto",
    "kurdish",
    "mongolian",
    "kazakh",
    "uzbek",
    "georgian",
    "armenian",
    "azerbaijani",
    "albanian",
    "macedonian",
    "bosnian",
    "maltese",
    "haitian",
    "creole",
    "français",
    "español",
    "deutsch",
    "inglés",
    "englisch",
    "inglês",
    "francês",
    "alemão",
    "espanhol",
    "inglese",
    "francese",
    "tedesco",
    "spagnolo",
    "anglais",
    "allemand",
    "espagnol",
    "italien",
    "französisch",
    "spanisch",
    "italienisch",
    "francés",
    "alemán",
    "portugués",
    "italiano",
    "chino",
    "japonés",
    "engels",
    "duits",
    "frans",
    "английский",
    "английского",
    "английском",
    "немецкий",
    "французский",
    "английски",
    "немецки",
];

const LATEX_CMDS: &[&str] = &[
    "frac", "dfrac", "sqrt", "int", "iint", "oint", "sum", "prod", "lim", "binom", "cdot", "leq", "geq",
    "le", "ge", "neq", "times", "pi", "theta", "alpha", "beta", "gamma", "lambda", "mu", "sigma", "omega",
    "infty", "mathbb", "mathrm", "log", "ln", "sin", "cos", "tan", "partial", "nabla", "pmod", "equiv",
    "begin", "left", "right", "vec", "hat", "overline", "in", "subset", "cup", "cap", "forall", "exists",
    "mid", "div", "pm", "circ", "angle", "triangle",
];

const LATEX_BIT: u32 = 1 << 31;

const CODE_FENCE_LANGS: &[&str] = &[
    "python",
    "py",
    "rust",
    "rs",
    "js",
    "javascript",
    "ts",
    "typescript",
    "jsx",
    "tsx",
    "java",
    "c",
    "cpp",
    "c++",
    "cc",
    "h",
    "hpp",
    "cs",
    "csharp",
    "go",
    "golang",
    "bash",
    "sh",
    "shell",
    "zsh",
    "powershell",
    "ps1",
    "sql",
    "html",
    "css",
    "scss",
    "php",
    "ruby",
    "rb",
    "kotlin",
    "kt",
    "swift",
    "scala",
    "r",
    "lua",
    "perl",
    "haskell",
    "hs",
    "elixir",
    "ex",
    "erlang",
    "clojure",
    "dart",
    "julia",
    "matlab",
    "vb",
    "vba",
    "fortran",
    "asm",
    "solidity",
    "sol",
    "dockerfile",
    "makefile",
    "cmake",
    "toml",
    "jsonc",
    "graphql",
    "vue",
    "svelte",
    "zig",
    "nim",
    "ocaml",
    "fsharp",
];

/// Open-addressing hash table from keyword hash to flags (power-of-two size,
/// load factor below 1/4, so most lookups touch a single empty slot).
pub(crate) struct KeywordTable {
    slots: Vec<(u64, u32)>,
    mask: usize,
}

impl KeywordTable {
    fn insert(&mut self, h: u64, f: u32) {
        let mut i = (h >> 40) as usize & self.mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.0 == h {
                slot.1 |= f;
                return;
            }
            if slot.0 == 0 {
                *slot = (h, f);
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn get(&self, h: u64) -> u32 {
        let mut i = (h >> 40) as usize & self.mask;
        loop {
            let (k, f) = self.slots[i];
            if k == h {
                return f;
            }
            if k == 0 {
                return 0;
            }
            i = (i + 1) & self.mask;
        }
    }
}

pub(crate) fn keyword_table() -> &'static KeywordTable {
    static TABLE: OnceLock<KeywordTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let n = KEYWORDS.len() + LANGUAGES.len() + LATEX_CMDS.len();
        let size = (n * 4).next_power_of_two();
        let mut t = KeywordTable {
            slots: vec![(0, 0); size],
            mask: size - 1,
        };
        for &(w, f) in KEYWORDS {
            t.insert(word_hash(w.as_bytes()), f);
        }
        for w in LANGUAGES {
            t.insert(word_hash(w.as_bytes()), K_LANG);
        }
        for w in LATEX_CMDS {
            t.insert(word_hash(w.as_bytes()), LATEX_BIT);
        }
        t
    })
}

/// Statistics of one request, gathered in a single bounded pass.
#[derive(Debug, Default, Clone)]
pub struct TextStats {
    /// Byte length of the last user turn (whole, not just the scanned part).
    pub user_len: usize,
    /// Byte length of the system prompt.
    pub system_len: usize,
    /// Politeness words at the very start of the user turn (see [`K_LEAD_FILLER`]).
    pub lead_fillers: u32,
    /// 1 + word index of a composition verb that starts the user turn (after
    /// politeness words only); 0 when there is none.
    pub compose_at: u32,
    /// A leading composition verb followed within [`COMPOSE_OBJECT_WINDOW`]
    /// words by something one composes ("write a persuasive essay").
    pub compose_request: bool,
    /// Keyword flags seen in the first [`HEAD_ZONE`] bytes of the user turn.
    pub head_flags: u32,
    /// Keyword flags seen in the last [`TAIL_ZONE`] bytes of the user turn.
    pub tail_flags: u32,
    /// Keyword flags seen anywhere in the scanned user text.
    pub any_flags: u32,
    /// Keyword flags seen in the head of the system prompt.
    pub sys_flags: u32,
    /// Constraint words ("must", "exactly", "without", ...).
    pub constraints: u32,
    /// Multi-step markers ("first", "then", "step", ...).
    pub steps: u32,
    /// Reasoning words ("prove", "calculate", "why", ...).
    pub reasoning: u32,
    /// Non-empty lines in the scanned user text.
    pub lines: u32,
    /// Bulleted or numbered list lines.
    pub list_lines: u32,
    /// Lines that look like source code.
    pub code_lines: u32,
    /// Code-looking lines inside ``` fences.
    pub fenced_code_lines: u32,
    /// Number of ``` fence lines.
    pub fences: u32,
    /// A fence opened with a programming-language tag.
    pub fence_code_lang: bool,
    /// Unified-diff markers (`diff --git`, `@@ -a,b +c,d @@`).
    pub diff_markers: u32,
    /// Stack-trace frame lines (`at f(file:line)`, `File "x", line n`).
    pub stack_lines: u32,
    /// LaTeX math commands (`\frac`, `\int`, ...).
    pub latex_cmds: u32,
    /// Unicode mathematical operators (U+2200..U+22FF).
    pub math_symbols: u32,
    /// `$`, `\(` or `\[` present.
    pub math_delims: bool,
    /// ASCII digits in the scanned user text.
    pub digits: u32,
    /// Arithmetic operators `+ - * / ^ =` in the scanned user text.
    pub operators: u32,
    /// Bytes scanned.
    pub scanned: u32,
    /// Non-ASCII bytes in the scanned user text.
    pub nonascii: u32,
    /// Code punctuation `{}();[]=<>` in the scanned user text.
    pub code_syms: u32,
    /// Newlines in the scanned user text.
    pub newlines: u32,
    /// Question marks in the scanned user text.
    pub questions: u32,
    /// Python function signatures (`def name(...):`, `def name(...) -> T:`).
    pub py_defs: u32,
    /// Docstring delimiters (a line starting with `"""` or `'''`) and
    /// doctest lines (`>>> `).
    pub docstrings: u32,
}

/// Position of the first `\n` in `s`, eight bytes at a time.
#[inline]
fn find_newline(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ NL;
        // Lowest set high bit marks the first zero byte, i.e. the first newline.
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| base + p)
}

/// Lines of a byte string (split on `\n`), found with [`find_newline`].
struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find_newline(rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// `line` starts with `p` (byte loop: the prefixes are short and almost
/// every comparison fails on the first or second byte, so this beats a
/// `memcmp` call).
#[inline]
fn starts(line: &[u8], p: &[u8]) -> bool {
    line.len() >= p.len() && line.iter().zip(p).all(|(a, b)| a == b)
}

/// Line-start prefixes of [`is_code_line`], grouped by their first byte.
fn code_prefixes(first: u8) -> &'static [&'static [u8]] {
    match first {
        b'd' => &[b"def "],
        b'c' => &[b"class ", b"const ", b"console.", b"cargo "],
        b'i' => &[b"import ", b"impl ", b"if (", b"int main"],
        b'#' => &[b"#include", b"#!/"],
        b'f' => &[b"fn ", b"for (", b"func "],
        b'p' => &[
            b"pub fn",
            b"pub struct",
            b"public ",
            b"private ",
            b"protected ",
            b"print(",
            b"package ",
            b"pip install",
        ],
        b'l' => &[b"let "],
        b'v' => &[b"var "],
        b'r' => &[b"return ", b"return;"],
        b's' => &[b"static ", b"self.", b"std::"],
        b'w' => &[b"while ("],
        b'}' => &[b"} else"],
        b'S' => &[b"SELECT ", b"System.out"],
        b'@' => &[b"@app."],
        b'a' => &[b"async "],
        b'e' => &[b"elif ", b"else:", b"except ", b"except:"],
        b't' => &[b"try:"],
        b'<' => &[b"<?php", b"<div"],
        b'$' => &[b"$ "],
        b'n' => &[b"npm "],
        b'/' => &[b"//", b"/*"],
        _ => &[],
    }
}

fn is_code_line(t: &[u8]) -> bool {
    let Some(&first) = t.first() else {
        return false;
    };
    if code_prefixes(first).iter().any(|p| starts(t, p)) {
        return true;
    }
    if starts(t, b"from ") && t.windows(8).any(|w| w == b" import ") {
        return true;
    }
    match t.last() {
        Some(b';') | Some(b'{') => true,
        Some(b'}') => t.len() <= 3 || t.contains(&b'{') || first == b'}',
        Some(b':') => t.ends_with(b"):") && (starts(t, b"if ") || starts(t, b"for ")),
        _ => false,
    }
}

/// A Python function signature line: `def name(` ... `:` (optionally `async`).
fn is_py_signature(t: &[u8]) -> bool {
    let t = if starts(t, b"async ") { &t[6..] } else { t };
    starts(t, b"def ") && t.ends_with(b":") && t.contains(&b'(') && t.contains(&b')')
}

fn is_list_line(t: &[u8]) -> bool {
    match t {
        [b'-' | b'*' | b'+' | b'\xe2', b' ' | b'\x80', ..] => true,
        [d, b'.' | b')', b' ', ..] if d.is_ascii_digit() => true,
        [d, e, b'.' | b')', b' ', ..] if d.is_ascii_digit() && e.is_ascii_digit() => true,
        _ => false,
    }
}

impl TextStats {
    /// Line-shape statistics of one window of the user turn.
    pub(crate) fn scan_lines(&mut self, text: &[u8]) {
        let mut in_fence = false;
        for raw in (Lines { rest: Some(text) }) {
            let t = raw.trim_ascii();
            if t.is_empty() {
                continue;
            }
            self.lines += 1;
            if starts(t, b"```") {
                self.fences += 1;
                if !in_fence {
                    let tag = t[3..].trim_ascii();
                    let end = tag
                        .iter()
                        .position(|&b| b.is_ascii_whitespace() || b == b'{')
                        .unwrap_or(tag.len());
                    let tag = &tag[..end];
                    if !tag.is_empty()
                        && CODE_FENCE_LANGS
                            .iter()
                            .any(|l| l.as_bytes().eq_ignore_ascii_case(tag))
                    {
                        self.fence_code_lang = true;
                    }
                }
                in_fence = !in_fence;
                continue;
            }
            if is_code_line(t) {
                self.code_lines += 1;
                if in_fence {
                    self.fenced_code_lines += 1;
                }
            }
            if is_list_line(t) {
                self.list_lines += 1;
            }
            if is_py_signature(t) {
                self.py_defs += 1;
            }
            if starts(t, b"\"\"\"") || starts(t, b"'''") || starts(t, b">>> ") {
                self.docstrings += 1;
            }
            if starts(t, b"diff --git ")
                || (starts(t, b"@@ -") && t[4..].windows(3).any(|w| w == b" @@"))
                || starts(t, b"+++ b/")
            {
                self.diff_markers += 1;
            }
            if (starts(t, b"at ") && t.contains(&b'(') && t.contains(&b':'))
                || (starts(t, b"File \"") && t.windows(7).any(|w| w == b", line "))
            {
                self.stack_lines += 1;
            }
        }
    }

    /// Records a LaTeX command candidate: `h` is the hash of the alphabetic
    /// prefix of a word that directly follows a backslash.
    #[inline]
    pub(crate) fn on_latex(&mut self, h: u64, table: &KeywordTable) {
        if table.get(h) & LATEX_BIT != 0 {
            self.latex_cmds += 1;
        }
    }

    /// Records one word of the user turn (`ctx.system == false`) or of the
    /// system prompt: keyword flags per zone and complexity counters.
    /// `h` is the hash of the normalised word, `pos` its byte offset.
    #[inline(always)]
    pub(crate) fn on_word(
        &mut self,
        h: u64,
        pos: usize,
        total: usize,
        ctx: &mut WordCtx,
        table: &KeywordTable,
    ) {
        let mut f = table.get(h) & !LATEX_BIT;
        if f == 0 {
            // Fast path: an ordinary word (composite flags need a flag on
            // the word itself, and there is nothing to record).
            ctx.prev3 = ctx.prev2;
            ctx.prev2 = ctx.prev1;
            ctx.prev1 = 0;
            ctx.index += 1;
            return;
        }
        // Composite flags (only words that end one look at their context).
        const ENDS_COMPOSITE: u32 = K_THAT | K_PROVE | K_DR | K_SAY | K_DICE | K_MAN | K_ON | K_FOR;
        if f & ENDS_COMPOSITE != 0 {
            f = composite(f, ctx);
        }
        self.constraints += u32::from(f & K_CONSTRAINT != 0);
        self.steps += u32::from(f & K_STEP != 0);
        self.reasoning += u32::from(f & K_REASON != 0);
        if ctx.system {
            if pos < HEAD_ZONE {
                self.sys_flags |= f;
            }
        } else {
            self.any_flags |= f;
            if pos < HEAD_ZONE {
                self.head_flags |= f;
            }
            if ctx.index < self.compose_at + COMPOSE_OBJECT_WINDOW {
                self.lead_words(f, ctx.index);
            }
            if pos + TAIL_ZONE >= total {
                self.tail_flags |= f;
            }
        }
        ctx.prev3 = ctx.prev2;
        ctx.prev2 = ctx.prev1;
        ctx.prev1 = f;
        ctx.index += 1;
    }

    /// The `compose_request` state for a keyword at word `index` of the
    /// user turn (only called for the first few words).
    #[inline]
    fn lead_words(&mut self, f: u32, index: u32) {
        let kind = f & K_COMPOSE;
        if kind == K_LEAD_FILLER && index == self.lead_fillers {
            self.lead_fillers += 1;
        } else if kind == K_COMPOSE && index == self.lead_fillers && self.compose_at == 0 {
            self.compose_at = index + 1;
        } else if kind == K_CREATIVE_OBJ && self.compose_at != 0 {
            self.compose_request = true;
        }
    }

    /// Scans the bounded head/tail windows of the user turn and the head of
    /// the system prompt (the same pass as featurisation, without a model).
    #[cfg(test)]
    pub fn scan(input: &ClassifyInput<'_>) -> TextStats {
        let mut s = TextStats::default();
        featurize(input, 8, &mut |_b: u32, _k: usize| {}, &mut s);
        s
    }
}

/// Adds the composite flags that the word with flags `f` completes, given
/// the flags of the previous words in `ctx`.
fn composite(mut f: u32, ctx: &WordCtx) -> u32 {
    if f & K_THAT != 0 && ctx.prev1 & K_PROVE != 0 {
        f |= K_PROVE_THAT;
    }
    if f & K_PROVE != 0 && ctx.index == 0 && !ctx.system {
        f |= K_PROVE_THAT;
    }
    if f & K_DR != 0 && ctx.prev1 & K_TL != 0 {
        f |= K_SUMMARIZE;
    }
    if f & K_SAY != 0 && ctx.prev1 & K_SAYPREV != 0 && (ctx.prev2 & K_HOW != 0 || ctx.prev3 & K_HOW != 0) {
        f |= K_HOW_SAY;
    }
    if (f & K_DICE != 0 && ctx.prev1 & K_SE != 0)
        || (f & K_MAN != 0 && ctx.prev1 & K_SAGT != 0)
        || (f & K_ON != 0 && ctx.prev1 & K_DIT != 0)
    {
        f |= K_HOW_SAY;
    }
    if f & K_FOR != 0
        && ((ctx.prev1 & K_LANG != 0 && ctx.prev2 & K_THE != 0)
            || (ctx.prev1 & K_WORDW != 0 && ctx.prev2 & K_LANG != 0 && ctx.prev3 & K_THE != 0))
    {
        f |= K_HOW_SAY;
    }
    f
}

/// Per-text state of the word-level keyword scan.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WordCtx {
    prev1: u32,
    prev2: u32,
    prev3: u32,
    index: u32,
    system: bool,
}

impl WordCtx {
    /// Fresh state for the user turn (`system == false`) or the system prompt.
    pub(crate) fn new(system: bool) -> WordCtx {
        WordCtx {
            system,
            ..WordCtx::default()
        }
    }
}

/// Task that a deterministic rule can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleTask {
    /// `code_generation`.
    Code,
    /// `summarization`.
    Summarization,
    /// `complex_reasoning`.
    Reasoning,
    /// `extraction`.
    Extraction,
    /// `translation`.
    Translation,
    /// `creative_writing`.
    Creative,
}

impl RuleTask {
    /// All rule tasks, in a fixed order (index = position).
    pub const ALL: [RuleTask; 6] = [
        RuleTask::Code,
        RuleTask::Summarization,
        RuleTask::Reasoning,
        RuleTask::Extraction,
        RuleTask::Translation,
        RuleTask::Creative,
    ];

    /// Task name in the default task list.
    pub fn name(self) -> &'static str {
        match self {
            RuleTask::Code => "code_generation",
            RuleTask::Summarization => "summarization",
            RuleTask::Reasoning => "complex_reasoning",
            RuleTask::Extraction => "extraction",
            RuleTask::Translation => "translation",
            RuleTask::Creative => "creative_writing",
        }
    }

    /// Position in [`RuleTask::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Applies the deterministic rules in priority order; returns the task and
/// the name of the signal that fired. Rules only fire when really sure.
pub fn detect(input: &ClassifyInput<'_>, s: &TextStats) -> Option<(RuleTask, &'static str)> {
    if input.json_schema {
        return Some((RuleTask::Extraction, "json_schema"));
    }
    if s.diff_markers >= 1 && s.lines >= 3 {
        return Some((RuleTask::Code, "diff"));
    }
    if s.stack_lines >= 2 || s.any_flags & K_ERRNAME != 0 {
        return Some((RuleTask::Code, "stack_trace"));
    }
    if s.fences >= 1 && (s.fence_code_lang || s.fenced_code_lines >= 2) {
        return Some((RuleTask::Code, "code_fence"));
    }
    if s.code_lines >= 8 || (s.code_lines >= 3 && s.code_lines * 10 >= s.lines * 4) {
        return Some((RuleTask::Code, "code_block"));
    }
    if s.py_defs >= 1 && s.docstrings >= 1 {
        return Some((RuleTask::Code, "function_stub"));
    }
    let h = s.head_flags;
    if h & K_PLANG != 0 && h & (K_CODEOBJ | K_CODEVERB) != 0 {
        return Some((RuleTask::Code, "code_request"));
    }
    let translate_zone =
        |f: u32| (f & K_TRANSLATE != 0 || f & K_HOW_SAY != 0) && f & K_LANG != 0 && f & K_CODEWORD == 0;
    if translate_zone(s.head_flags) || translate_zone(s.tail_flags) || translate_zone(s.sys_flags) {
        return Some((RuleTask::Translation, "translate_language"));
    }
    let summary_zone = |f: u32| f & K_SUMMARIZE != 0 && f & K_CODEWORD == 0;
    if s.user_len >= SUMMARY_MIN_LEN
        && (summary_zone(s.head_flags) || summary_zone(s.tail_flags) || summary_zone(s.sys_flags))
    {
        return Some((RuleTask::Summarization, "summarize_long_text"));
    }
    let latex_word = s.any_flags & K_CODEWORD != 0 && s.latex_cmds > 0;
    if !latex_word && ((s.latex_cmds >= 1 && s.math_delims) || s.latex_cmds >= 2 || s.math_symbols >= 2) {
        return Some((RuleTask::Reasoning, "math_notation"));
    }
    if s.head_flags & K_PROVE_THAT != 0 && s.any_flags & K_CODEWORD == 0 {
        return Some((RuleTask::Reasoning, "proof_request"));
    }
    let not_creative = K_CODEWORD | K_PLANG | K_CODEOBJ;
    if s.compose_request && s.any_flags & not_creative == 0 && s.head_flags & (K_SUMMARIZE | K_TRANSLATE) == 0
    {
        return Some((RuleTask::Creative, "compose_request"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> ClassifyInput<'_> {
        ClassifyInput {
            system: "",
            last_user: text,
            has_tools: false,
            json_schema: false,
            turns: 1,
            context: "",
        }
    }

    fn fire(text: &str) -> Option<(RuleTask, &'static str)> {
        let i = user(text);
        detect(&i, &TextStats::scan(&i))
    }

    #[test]
    fn line_splitting_matches_std() {
        for text in [
            "",
            "one",
            "a\nb",
            "\n\n",
            "0123456789abcdef\n0123456789\nxyz",
            "exactly8\n",
            "ünïcödé text longer than eight bytes\nand more",
        ] {
            let ours: Vec<&[u8]> = (Lines {
                rest: Some(text.as_bytes()),
            })
            .collect();
            let std: Vec<&[u8]> = text.as_bytes().split(|&b| b == b'\n').collect();
            assert_eq!(ours, std, "{text:?}");
        }
    }

    #[test]
    fn json_schema_rule() {
        let i = ClassifyInput {
            json_schema: true,
            ..user("Get the names.")
        };
        assert_eq!(
            detect(&i, &TextStats::scan(&i)),
            Some((RuleTask::Extraction, "json_schema"))
        );
    }

    #[test]
    fn code_rules() {
        let fence = "Why does this fail?\n```python\nx = [1, 2]\nprint(x[3])\n```";
        assert_eq!(fire(fence), Some((RuleTask::Code, "code_fence")));
        let trace = "I get this:\nTraceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n    main()\n  File \"a.py\", line 2, in main\nIndexError: list index out of range";
        assert_eq!(fire(trace), Some((RuleTask::Code, "stack_trace")));
        let diff = "Review this patch\ndiff --git a/x.rs b/x.rs\n--- a/x.rs\n+++ b/x.rs\n@@ -1,3 +1,3 @@\n-let a = 1;\n+let a = 2;";
        assert_eq!(fire(diff), Some((RuleTask::Code, "diff")));
        let block = "def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n\nimport os\nprint(add(1, 2))";
        assert_eq!(fire(block), Some((RuleTask::Code, "code_block")));
        assert_eq!(
            fire("Can you show me Python code that merges two dictionaries?"),
            Some((RuleTask::Code, "code_request"))
        );
        assert_eq!(
            fire("Implement binary search in Java."),
            Some((RuleTask::Code, "code_request"))
        );
        // A signature with a docstring and no body (a stub to complete).
        let stub = "def clamp(x: float, lo: float, hi: float) -> float:\n    \"\"\"Limit x to the range [lo, hi].\n    >>> clamp(5, 0, 3)\n    3\n    \"\"\"\n";
        assert_eq!(fire(stub), Some((RuleTask::Code, "function_stub")));
        assert_eq!(
            fire("Complete this:\n\ndef first_word(s):\n    '''Return the first word of s.'''"),
            Some((RuleTask::Code, "function_stub"))
        );
        // Prose that mentions "def" or quotes is not a stub.
        assert_eq!(
            fire("def leppard: who was the drummer?\n\"\"\"great band\"\"\""),
            None
        );
        assert_eq!(fire("Write a script for a wedding video."), None);
        // A fence around plain prose is not code.
        let prose = "Summarize:\n```\nThe meeting went well and everyone agreed.\n```";
        assert_ne!(fire(prose).map(|r| r.0), Some(RuleTask::Code));
    }

    #[test]
    fn translation_rule() {
        assert_eq!(
            fire("Translate to French: where is the train station?"),
            Some((RuleTask::Translation, "translate_language"))
        );
        assert_eq!(
            fire("How do you say 'good morning' in Japanese?"),
            Some((RuleTask::Translation, "translate_language"))
        );
        assert_eq!(
            fire("What's the Korean word for 'friend'?"),
            Some((RuleTask::Translation, "translate_language"))
        );
        assert_eq!(fire("Can you recommend a Spanish for beginners book?"), None);
        // Code translation is not natural-language translation.
        assert_ne!(
            fire("Translate this Python function to Rust please").map(|r| r.0),
            Some(RuleTask::Translation)
        );
        // "translate" without a language is left to the model.
        assert_eq!(fire("How does this translate into revenue growth?"), None);
    }

    #[test]
    fn summarization_rule() {
        let body = "The city council met on Tuesday to discuss the new budget. ".repeat(12);
        let text = format!("Summarize this article in three bullet points:\n\n{body}");
        assert_eq!(
            fire(&text),
            Some((RuleTask::Summarization, "summarize_long_text"))
        );
        let tail = format!("{body}\n\nTL;DR?");
        assert_eq!(
            fire(&tail),
            Some((RuleTask::Summarization, "summarize_long_text"))
        );
        // Short texts asking for a summary are left to the model.
        assert_eq!(fire("Can you summarize the plot of Hamlet?"), None);
    }

    #[test]
    fn math_rules() {
        assert_eq!(
            fire("Evaluate $\\int_0^1 x^2 \\, dx$ and explain."),
            Some((RuleTask::Reasoning, "math_notation"))
        );
        assert_eq!(
            fire("Prove that there are infinitely many primes."),
            Some((RuleTask::Reasoning, "proof_request"))
        );
        assert_eq!(fire("What is the capital of France?"), None);
    }

    #[test]
    fn compose_rule() {
        let yes = Some((RuleTask::Creative, "compose_request"));
        assert_eq!(fire("Write a poem about the sea."), yes);
        assert_eq!(
            fire("Write a persuasive essay about school uniforms. What are the arguments? How would you end it?"),
            yes
        );
        assert_eq!(
            fire("Can you help me write a resignation letter to my manager?"),
            yes
        );
        assert_eq!(
            fire("Please draft an email inviting the team to the offsite."),
            yes
        );
        assert_eq!(fire("write me a short funny bedtime story"), yes);
        // Advice about writing, not a composition.
        assert_eq!(fire("How do I write a good cover letter?"), None);
        assert_eq!(fire("I want to write a novel. Any tips?"), None);
        // The object must follow the verb closely.
        assert_eq!(
            fire("Write down the steps you would take before you send a letter."),
            None
        );
        // Code, summaries and translations are not compositions.
        assert_ne!(fire("Write a Python script that posts a tweet."), yes);
        assert_eq!(fire("Write a function that validates an email address."), None);
        assert_eq!(fire("Write a summary of this article for the newsletter."), None);
        assert_ne!(fire("Write a translation of this letter into French."), yes);
        // Only the user turn's first words count.
        assert_eq!(fire("My sister said: write a poem. I did not."), None);
    }
}
