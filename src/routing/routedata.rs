//! Readers for the per-prompt, per-model outcome data in
//! `../shared/routing-data` (see its README): the TRAIN parts that
//! `train-router` learns from and the TEST parts that `eval-routing`
//! replays. Nothing here is copied into the repository; only derived weights
//! and hashes of training prompts are.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::classifier::OwnedInput;

/// Strong (frontier-tier) and weak (economy-tier) models of the RouteLLM and
/// arena sets, as named in the files.
pub const STRONG: &str = "gpt-4-1106-preview";
pub const WEAK_ROUTELLM: &str = "mistralai/Mixtral-8x7B-Instruct-v0.1";
pub const WEAK_ARENA: &str = "Mixtral-8x7B-Instruct-v0.1";
pub const STRONG_ARENA_JUDGMENT: &str = "gpt-4-turbo";
pub const WEAK_ROUTERBENCH: &str = "mistralai/mixtral-8x7b-chat";

/// The default data directory, relative to the repository: `../shared/routing-data`.
pub fn default_dir() -> PathBuf {
    PathBuf::from("../shared/routing-data")
}

/// Whether `dir` looks like the routing data (its README and the RouteLLM folder).
pub fn present(dir: &Path) -> bool {
    dir.join("README.md").is_file() && dir.join("routellm").is_dir()
}

/// Minimal RFC 4180 CSV reader: quoted fields, doubled quotes, newlines in quotes.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            _ => field.push(c),
        }
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// A CSV file as header + rows, with a column lookup.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(path: &Path) -> Result<Table, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut rows = parse_csv(&text);
        if rows.is_empty() {
            return Err(format!("{}: empty CSV", path.display()));
        }
        let header = rows.remove(0);
        Ok(Table { header, rows })
    }

    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    pub fn get<'a>(&self, row: &'a [String], col: usize) -> &'a str {
        row.get(col).map_or("", String::as_str)
    }
}

/// Normalised text for leakage checks: lowercase, whitespace runs collapsed, trimmed.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for w in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in w.chars() {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// 64-bit FNV-1a of the normalised text, the entry of the training-prompt hash list.
pub fn prompt_hash(text: &str) -> u64 {
    normalize(text).bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn bool_cell(s: &str) -> Option<f64> {
    match s.trim() {
        "True" | "true" | "1" | "1.0" => Some(1.0),
        "False" | "false" | "0" | "0.0" => Some(0.0),
        other => other.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// The user turn of a RouterBench `prompt` cell. The cell is a Python list
/// literal of the conversation's user turns (`['Please answer ...\n\nIan ...']`,
/// with `\n`, `\'` and `\xNN` escapes): the last turn, unescaped, is the
/// text the models answered and the text a gateway would see. A cell that
/// is not such a literal is taken as it is.
pub fn routerbench_prompt(cell: &str) -> String {
    parse_py_str_list(cell)
        .and_then(|mut v| v.pop())
        .unwrap_or_else(|| cell.to_string())
}

/// Parses a Python list of string literals (`['a', "b"]`); `None` when the
/// text is anything else.
fn parse_py_str_list(text: &str) -> Option<Vec<String>> {
    let mut it = text.trim().chars().peekable();
    if it.next()? != '[' {
        return None;
    }
    let mut out = Vec::new();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        match it.next()? {
            ']' if out.is_empty() => break,
            q @ ('\'' | '"') => {
                let mut s = String::new();
                loop {
                    match it.next()? {
                        c if c == q => break,
                        '\\' => match it.next()? {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'x' => {
                                let h: String = [it.next()?, it.next()?].iter().collect();
                                s.push(char::from(u8::from_str_radix(&h, 16).ok()?));
                            }
                            'u' => {
                                let h: String = (0..4).map(|_| it.next()).collect::<Option<String>>()?;
                                s.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                            }
                            c @ ('\\' | '\'' | '"') => s.push(c),
                            '\n' => {}
                            c => {
                                s.push('\\');
                                s.push(c);
                            }
                        },
                        c => s.push(c),
                    }
                }
                out.push(s);
            }
            _ => return None,
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        match it.next()? {
            ',' => continue,
            ']' => break,
            _ => return None,
        }
    }
    it.all(char::is_whitespace).then_some(out)
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

fn user_input(text: &str) -> OwnedInput {
    OwnedInput {
        last_user: text.to_string(),
        turns: 1,
        ..OwnedInput::default()
    }
}

fn contaminated(path: &Path) -> Result<HashSet<String>, String> {
    if !path.is_file() {
        return Ok(HashSet::new());
    }
    Ok(read_jsonl(path)?
        .iter()
        .filter_map(|v| v.get("eval_prompt").and_then(Value::as_str).map(normalize))
        .collect())
}

// ---------------------------------------------------------------------------
// Training data
// ---------------------------------------------------------------------------

/// One training prompt: P(an economy-tier answer is as good as the frontier one).
#[derive(Debug, Clone)]
pub struct TrainExample {
    pub input: OwnedInput,
    /// Soft label in [0, 1].
    pub label: f32,
    /// How easy the prompt is for every model the source scored, in [0, 1]:
    /// the mean correctness of all its models (MMLU: GPT-4 and Mixtral;
    /// RouterBench: all 11) or their mean win probability against the
    /// reference (AlpacaEval: all 56 generators, cheating and duplicate
    /// entries dropped). A per-prompt difficulty signal across tiers
    /// (`train-router --target ease`).
    pub ease: f32,
    /// The cheap tier's own outcome, in [0, 1]: Mixtral correct (MMLU), the
    /// mean correctness of the economy-tier models (RouterBench), their mean
    /// win probability against the reference (AlpacaEval, the label itself).
    /// `train-router --target weak`.
    pub weak: f32,
    pub source: &'static str,
    /// The part of the source the prompt comes from: the MMLU subject, the
    /// RouterBench set, the AlpacaEval subset (helpful_base, koala, oasst,
    /// selfinstruct, vicuna); `train-router --holdout parts:SOURCE` leaves
    /// one part out at a time.
    pub part: String,
}

/// RouteLLM MMLU: label 1 when Mixtral is correct or GPT-4 is wrong.
pub fn load_mmlu(dir: &Path) -> Result<Vec<TrainExample>, String> {
    let base = dir.join("routellm/mmlu");
    let skip = contaminated(&base.join("contaminated_prompts.jsonl"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(base.join("responses"))
        .map_err(|e| format!("{}: {e}", base.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let t = Table::read(&f)?;
        let (Some(p), Some(w), Some(s)) = (t.col("prompt"), t.col(WEAK_ROUTELLM), t.col(STRONG)) else {
            return Err(format!("{}: missing columns", f.display()));
        };
        let subject = f
            .file_stem()
            .and_then(|n| n.to_str())
            .map_or("", |n| n.strip_prefix("mmlu_").unwrap_or(n))
            .to_string();
        for r in &t.rows {
            let prompt = t.get(r, p);
            if skip.contains(&normalize(prompt)) {
                continue;
            }
            let (Some(wq), Some(sq)) = (bool_cell(t.get(r, w)), bool_cell(t.get(r, s))) else {
                continue;
            };
            out.push(TrainExample {
                input: user_input(prompt),
                label: if wq >= sq { 1.0 } else { 0.0 },
                ease: ((wq + sq) / 2.0) as f32,
                weak: wq as f32,
                source: "mmlu",
                part: subject.clone(),
            });
        }
    }
    Ok(out)
}

/// RouteLLM MMLU outcomes: (prompt, GPT-4 correct, Mixtral correct).
pub fn load_mmlu_outcomes(dir: &Path) -> Result<Vec<(String, f64, f64)>, String> {
    let base = dir.join("routellm/mmlu");
    let mut files: Vec<PathBuf> = std::fs::read_dir(base.join("responses"))
        .map_err(|e| format!("{}: {e}", base.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let t = Table::read(&f)?;
        let (Some(p), Some(w), Some(s)) = (t.col("prompt"), t.col(WEAK_ROUTELLM), t.col(STRONG)) else {
            continue;
        };
        for r in &t.rows {
            if let (Some(sq), Some(wq)) = (bool_cell(t.get(r, s)), bool_cell(t.get(r, w))) {
                out.push((t.get(r, p).to_string(), sq, wq));
            }
        }
    }
    Ok(out)
}

/// RouterBench train splits (ARC-Challenge, MBPP, Winogrande): the economy
/// tier is every model costing under a fifth of the dearest per prompt; the
/// label is the share of them at least as good as the dearest.
pub fn load_routerbench_train(dir: &Path) -> Result<Vec<TrainExample>, String> {
    let mut out = Vec::new();
    for name in ["arc_challenge", "mbpp", "winograde"] {
        let f = dir.join(format!("routerbench_subset_via_routerdc/{name}_train.csv"));
        let t = Table::read(&f)?;
        let Some(p) = t.col("prompt") else {
            return Err(format!("{}: no prompt column", f.display()));
        };
        let tiers = routerbench_tiers(&t);
        let Some(strong) = tiers.strong else {
            continue;
        };
        for r in &t.rows {
            let Some(sq) = bool_cell(t.get(r, strong)) else {
                continue;
            };
            let cheap: Vec<f64> = tiers
                .cheap
                .iter()
                .filter_map(|&c| bool_cell(t.get(r, c)))
                .collect();
            if cheap.is_empty() {
                continue;
            }
            let ok = cheap.iter().filter(|q| **q >= sq).count() as f32 / cheap.len() as f32;
            let all: Vec<f64> = tiers.all.iter().filter_map(|&c| bool_cell(t.get(r, c))).collect();
            let ease = all.iter().sum::<f64>() / all.len().max(1) as f64;
            let weak = cheap.iter().sum::<f64>() / cheap.len() as f64;
            out.push(TrainExample {
                input: user_input(&routerbench_prompt(t.get(r, p))),
                label: ok,
                ease: ease as f32,
                weak: weak as f32,
                source: "routerbench",
                part: name.to_string(),
            });
        }
    }
    Ok(out)
}

/// Quality columns of a RouterBench table split by price tier.
pub struct RbTiers {
    /// Column of the dearest model (by mean cost per prompt).
    pub strong: Option<usize>,
    /// Columns of models under a fifth of its cost.
    pub cheap: Vec<usize>,
    /// Every model's quality column.
    pub all: Vec<usize>,
}

pub fn routerbench_tiers(t: &Table) -> RbTiers {
    let mut models: Vec<(usize, f64)> = Vec::new();
    for (i, h) in t.header.iter().enumerate() {
        if let Some(m) = h.strip_suffix("|total_cost") {
            let Some(q) = t.col(m) else { continue };
            let costs: Vec<f64> = t
                .rows
                .iter()
                .filter_map(|r| {
                    r.get(i)
                        .and_then(|c| c.parse::<f64>().ok())
                        .filter(|c| c.is_finite())
                })
                .collect();
            if !costs.is_empty() {
                models.push((q, costs.iter().sum::<f64>() / costs.len() as f64));
            }
        }
    }
    let top = models.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
    RbTiers {
        all: models.iter().map(|m| m.0).collect(),
        strong: top.map(|t| t.0),
        cheap: top
            .map(|(_, c)| models.iter().filter(|m| m.1 < c / 5.0).map(|m| m.0).collect())
            .unwrap_or_default(),
    }
}

/// AlpacaEval 2: per instruction, the mean probability that a cheaper
/// model's answer beats GPT-4-Turbo's, over the generators whose overall
/// win rate against it is between 5% and 35% (the economy/quality tiers of
/// their time; cheating and duplicate entries dropped).
pub fn load_alpaca(dir: &Path) -> Result<Vec<TrainExample>, String> {
    let base = dir.join("alpaca_eval2");
    let instr: HashMap<String, (String, String)> = read_jsonl(&base.join("derived_instructions.jsonl"))?
        .iter()
        .filter_map(|v| {
            Some((
                v.get("instruction_sha1")?.as_str()?.to_string(),
                (
                    v.get("instruction")?.as_str()?.to_string(),
                    v.get("dataset").and_then(Value::as_str).unwrap_or("").to_string(),
                ),
            ))
        })
        .collect();
    let t = Table::read(&base.join("derived_per_prompt_preferences.csv"))?;
    let (Some(sha), Some(rd), Some(wp)) =
        (t.col("instruction_sha1"), t.col("results_dir"), t.col("win_prob"))
    else {
        return Err("alpaca_eval2: missing columns".into());
    };
    let dropped = |d: &str| d == "NullModel" || d == "gpt4_gamed" || d.contains('/');
    let mut per_gen: HashMap<&str, (f64, usize)> = HashMap::new();
    for r in &t.rows {
        let d = t.get(r, rd);
        if dropped(d) {
            continue;
        }
        if let Ok(w) = t.get(r, wp).parse::<f64>() {
            let e = per_gen.entry(d).or_default();
            e.0 += w;
            e.1 += 1;
        }
    }
    let cheap: HashSet<&str> = per_gen
        .iter()
        .filter(|(_, (s, n))| {
            let m = s / *n as f64;
            (0.05..=0.35).contains(&m)
        })
        .map(|(g, _)| *g)
        .collect();
    let mut per_prompt: HashMap<&str, (f64, usize)> = HashMap::new();
    // Every generator's (cheating and duplicate entries dropped): the ease label.
    let mut per_prompt_all: HashMap<&str, (f64, usize)> = HashMap::new();
    for r in &t.rows {
        let d = t.get(r, rd);
        if dropped(d) {
            continue;
        }
        let Ok(w) = t.get(r, wp).parse::<f64>() else {
            continue;
        };
        let e = per_prompt_all.entry(t.get(r, sha)).or_default();
        e.0 += w;
        e.1 += 1;
        if cheap.contains(d) {
            let e = per_prompt.entry(t.get(r, sha)).or_default();
            e.0 += w;
            e.1 += 1;
        }
    }
    let mut keys: Vec<&&str> = per_prompt.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let (s, n) = per_prompt[*k];
        let Some((text, subset)) = instr.get(*k) else {
            continue;
        };
        let (sa, na) = per_prompt_all.get(*k).copied().unwrap_or((s, n));
        let label = (s / n as f64) as f32;
        out.push(TrainExample {
            input: user_input(text),
            label,
            ease: (sa / na.max(1) as f64) as f32,
            weak: label,
            source: "alpaca_eval",
            part: subset.clone(),
        });
    }
    Ok(out)
}

/// Every training source.
pub fn load_train(dir: &Path) -> Result<Vec<TrainExample>, String> {
    let mut v = load_mmlu(dir)?;
    v.extend(load_routerbench_train(dir)?);
    v.extend(load_alpaca(dir)?);
    Ok(v)
}

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/// One test prompt with the two tiers' outcomes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub input: OwnedInput,
    pub strong_q: f64,
    pub weak_q: f64,
    /// Answer texts (for token counts); may be empty when the data has none.
    pub strong_answer: String,
    pub weak_answer: String,
}

/// A test set: its items and what quality means.
#[derive(Debug, Clone)]
pub struct TestSet {
    pub name: String,
    pub quality: &'static str,
    pub items: Vec<Outcome>,
}

/// Every prompt text of the test sets (for the leakage check), normalised.
pub fn test_prompt_texts(dir: &Path) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    for s in load_tests(dir)? {
        for o in s.items {
            v.push(o.input.last_user);
        }
    }
    // Dropped contaminated MT-Bench questions still count as test prompts.
    for q in read_jsonl(&dir.join("routellm/mt_bench/question.jsonl"))? {
        if let Some(t) = q.get("turns").and_then(Value::as_array) {
            v.extend(t.iter().filter_map(Value::as_str).map(String::from));
        }
    }
    Ok(v)
}

fn score(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
}

/// The last assistant answer inside an MT-Bench judge prompt.
fn mt_answer(user_prompt: &str) -> &str {
    let start = user_prompt.rfind("### Assistant A:\n").map_or(0, |i| i + 17);
    let rest = &user_prompt[start..];
    let end = rest.find("<|The End of Assistant A").unwrap_or(rest.len());
    rest[..end].trim()
}

/// RouteLLM MT-Bench: one item per question (routed on its first turn),
/// quality = mean GPT-4 judge score (1-10) of both turns.
pub fn load_mt_bench(dir: &Path) -> Result<TestSet, String> {
    let base = dir.join("routellm/mt_bench");
    let skip = contaminated(&base.join("contaminated_prompts.jsonl"))?;
    let questions = read_jsonl(&base.join("question.jsonl"))?;
    let judgements = read_jsonl(&base.join("judgements.jsonl"))?;
    // (qid, model) -> (sum score, n, answers)
    let mut per: HashMap<(i64, String), (f64, usize, String)> = HashMap::new();
    for j in &judgements {
        let (Some(q), Some(m), Some(s)) = (
            j.get("question_id").and_then(Value::as_i64),
            j.get("model").and_then(Value::as_str),
            j.get("score").and_then(score),
        ) else {
            continue;
        };
        let e = per.entry((q, m.to_string())).or_default();
        e.0 += s;
        e.1 += 1;
        let ans = mt_answer(j.get("user_prompt").and_then(Value::as_str).unwrap_or(""));
        if !e.2.is_empty() {
            e.2.push('\n');
        }
        e.2.push_str(ans);
    }
    let mut items = Vec::new();
    for q in &questions {
        let (Some(id), Some(first)) = (
            q.get("question_id").and_then(Value::as_i64),
            q.get("turns").and_then(|t| t.get(0)).and_then(Value::as_str),
        ) else {
            continue;
        };
        if skip.contains(&normalize(first)) {
            continue;
        }
        let (Some(s), Some(w)) = (
            per.get(&(id, STRONG.to_string())),
            per.get(&(id, WEAK_ROUTELLM.to_string())),
        ) else {
            continue;
        };
        if s.1 != 2 || w.1 != 2 {
            continue;
        }
        items.push(Outcome {
            input: user_input(first),
            strong_q: s.0 / 2.0,
            weak_q: w.0 / 2.0,
            strong_answer: s.2.clone(),
            weak_answer: w.2.clone(),
        });
    }
    Ok(TestSet {
        name: "mt_bench".into(),
        quality: "GPT-4 judge score 1-10 (mean of both turns)",
        items,
    })
}

/// RouteLLM GSM8K: correct or not.
pub fn load_gsm8k(dir: &Path) -> Result<TestSet, String> {
    let base = dir.join("routellm/gsm8k");
    let skip = contaminated(&base.join("contaminated_prompts.jsonl"))?;
    let t = Table::read(&base.join("gsm8k_responses.csv"))?;
    let sr = format!("{STRONG}_response");
    let wr = format!("{WEAK_ROUTELLM}_response");
    let (Some(p), Some(s), Some(w), Some(sa), Some(wa)) = (
        t.col("prompt"),
        t.col(STRONG),
        t.col(WEAK_ROUTELLM),
        t.col(&sr),
        t.col(&wr),
    ) else {
        return Err("gsm8k: missing columns".into());
    };
    let mut items = Vec::new();
    for r in &t.rows {
        let prompt = t.get(r, p);
        if skip.contains(&normalize(prompt)) {
            continue;
        }
        let (Some(sq), Some(wq)) = (bool_cell(t.get(r, s)), bool_cell(t.get(r, w))) else {
            continue;
        };
        items.push(Outcome {
            input: user_input(prompt),
            strong_q: sq,
            weak_q: wq,
            strong_answer: t.get(r, sa).to_string(),
            weak_answer: t.get(r, wa).to_string(),
        });
    }
    Ok(TestSet {
        name: "gsm8k".into(),
        quality: "correct (0/1)",
        items,
    })
}

/// arena-bench v1: GPT-4 reference-guided judge score 1-10; prompts with a
/// missing score for either model are dropped.
pub fn load_arena(dir: &Path) -> Result<TestSet, String> {
    let base = dir.join("arena_bench_v1");
    let scores = |m: &str| -> Result<HashMap<String, f64>, String> {
        Ok(read_jsonl(&base.join(format!("model_judgment/{m}.jsonl")))?
            .iter()
            .filter_map(|j| {
                Some((
                    j.get("question_id")?.as_str()?.to_string(),
                    j.get("score").and_then(score)?,
                ))
            })
            .collect())
    };
    let answers = |m: &str| -> Result<HashMap<String, String>, String> {
        Ok(read_jsonl(&base.join(format!("model_answer/{m}.jsonl")))?
            .iter()
            .filter_map(|a| {
                let turns = a.get("choices")?.get(0)?.get("turns")?.as_array()?;
                let text: Vec<&str> = turns.iter().filter_map(Value::as_str).collect();
                Some((a.get("question_id")?.as_str()?.to_string(), text.join("\n")))
            })
            .collect())
    };
    let (ss, ws) = (scores(STRONG_ARENA_JUDGMENT)?, scores(WEAK_ARENA)?);
    let (sa, wa) = (answers(STRONG)?, answers(WEAK_ARENA)?);
    let mut items = Vec::new();
    for q in read_jsonl(&base.join("question.jsonl"))? {
        let (Some(id), Some(turns)) = (
            q.get("question_id").and_then(Value::as_str),
            q.get("turns").and_then(Value::as_array),
        ) else {
            continue;
        };
        let (Some(s), Some(w)) = (ss.get(id), ws.get(id)) else {
            continue;
        };
        let Some(text) = turns.first().and_then(Value::as_str) else {
            continue;
        };
        items.push(Outcome {
            input: user_input(text),
            strong_q: *s,
            weak_q: *w,
            strong_answer: sa.get(id).cloned().unwrap_or_default(),
            weak_answer: wa.get(id).cloned().unwrap_or_default(),
        });
    }
    Ok(TestSet {
        name: "arena_bench".into(),
        quality: "GPT-4 reference-guided judge score 1-10",
        items,
    })
}

/// RouterBench test splits: GPT-4-1106 vs Mixtral-8x7B, 0/1.
pub fn load_routerbench_test(dir: &Path, name: &str) -> Result<TestSet, String> {
    let f = dir.join(format!("routerbench_subset_via_routerdc/{name}_test.csv"));
    let t = Table::read(&f)?;
    let sr = format!("{STRONG}|model_response");
    let wr = format!("{WEAK_ROUTERBENCH}|model_response");
    let (Some(p), Some(s), Some(w)) = (t.col("prompt"), t.col(STRONG), t.col(WEAK_ROUTERBENCH)) else {
        return Err(format!("{}: missing columns", f.display()));
    };
    let (sa, wa) = (t.col(&sr), t.col(&wr));
    let mut items = Vec::new();
    for r in &t.rows {
        let (Some(sq), Some(wq)) = (bool_cell(t.get(r, s)), bool_cell(t.get(r, w))) else {
            continue;
        };
        items.push(Outcome {
            input: user_input(&routerbench_prompt(t.get(r, p))),
            strong_q: sq,
            weak_q: wq,
            strong_answer: sa.map(|c| t.get(r, c).to_string()).unwrap_or_default(),
            weak_answer: wa.map(|c| t.get(r, c).to_string()).unwrap_or_default(),
        });
    }
    Ok(TestSet {
        name: format!("routerbench_{name}"),
        quality: "correct (0/1)",
        items,
    })
}

/// Every test set, in report order.
pub fn load_tests(dir: &Path) -> Result<Vec<TestSet>, String> {
    let mut v = vec![load_mt_bench(dir)?, load_gsm8k(dir)?, load_arena(dir)?];
    for n in ["arc_challenge", "mbpp", "winograde"] {
        v.push(load_routerbench_test(dir, n)?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_newlines() {
        let rows = parse_csv("a,b\n\"x, \"\"y\"\"\nz\",2\r\n3,\n");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], vec!["x, \"y\"\nz".to_string(), "2".to_string()]);
        assert_eq!(rows[2], vec!["3".to_string(), String::new()]);
    }

    #[test]
    fn normalised_hash_ignores_case_and_spacing() {
        assert_eq!(prompt_hash("Hello  World\n"), prompt_hash("hello world"));
        assert_ne!(prompt_hash("hello world"), prompt_hash("hello worlds"));
    }

    #[test]
    fn routerbench_prompt_cells_are_python_lists() {
        assert_eq!(
            routerbench_prompt(r#"['Pick one.\nA) Ian\nB) Dennis\'s\nAnswer:']"#),
            "Pick one.\nA) Ian\nB) Dennis's\nAnswer:"
        );
        // The last of several turns; double quotes; \\, \x and \u escapes.
        assert_eq!(
            routerbench_prompt(r#"['first', "it's \\ \xe9 \u00e9"]"#),
            "it's \\ é é"
        );
        // Anything else is taken as it is.
        for raw in ["Write a function.", "['unterminated", "['a'] tail", "[1, 2]", ""] {
            assert_eq!(routerbench_prompt(raw), raw);
        }
    }

    #[test]
    fn mt_answer_is_the_last_turn() {
        let p = "### User:\nq1\n\n### Assistant A:\na1\n\n### User:\nq2\n\n### Assistant A:\na2\n\n<|The End of Assistant A's Conversation with User|>";
        assert_eq!(mt_answer(p), "a2");
    }
}
