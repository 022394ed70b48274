//! Complexity score in `[0, 1]` for a request.
//!
//! Owns the hand-set combination of length, constraint words, multi-step
//! markers, list structure, math density and code density (all taken from
//! [`TextStats`]) into one number. 0 is a one-line greeting; values above
//! roughly 0.6 are long, multi-constraint, multi-step requests.

use super::signals::TextStats;
use super::ClassifyInput;

#[inline]
fn sat(x: f32) -> f32 {
    x.clamp(0.0, 1.0)
}

/// Complexity of the request described by `input` and its statistics `s`.
pub fn score(input: &ClassifyInput<'_>, s: &TextStats) -> f32 {
    // Length: logarithmic, saturating around 8 KB.
    let len = s.user_len as f32 + 0.5 * s.system_len as f32;
    let length = sat((1.0 + len / 40.0).ln() / (1.0 + 8000.0 / 40.0f32).ln());
    // Explicit constraints.
    let constraints = sat(s.constraints as f32 / 10.0);
    // Multi-step structure: markers plus list items.
    let steps = sat((s.steps as f32 + 0.5 * s.list_lines as f32) / 8.0);
    // Math: reasoning words, notation, numeric/operator density.
    let scanned = s.scanned.max(1) as f32;
    let numeric = (s.digits + s.operators) as f32 / scanned;
    let math = sat((s.reasoning as f32 + 2.0 * (s.latex_cmds + s.math_symbols) as f32) / 6.0 + numeric * 4.0);
    // Code density.
    let code = sat(s.code_lines as f32 / 12.0 + s.fences as f32 / 4.0);
    let mut extra = 0.0;
    if input.has_tools {
        extra += 0.4;
    }
    if input.json_schema {
        extra += 0.3;
    }
    if input.turns > 2 {
        extra += 0.3;
    }
    sat(0.30 * length + 0.20 * constraints + 0.20 * steps + 0.15 * math + 0.10 * code + 0.05 * sat(extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(text: &str) -> f32 {
        let i = ClassifyInput {
            system: "",
            last_user: text,
            has_tools: false,
            json_schema: false,
            turns: 1,
            context: "",
        };
        score(&i, &TextStats::scan(&i))
    }

    #[test]
    fn greeting_is_simple() {
        assert!(cx("hi there!") < 0.2, "{}", cx("hi there!"));
        assert!(cx("What's the capital of France?") < 0.2);
    }

    #[test]
    fn long_multi_step_request_is_complex() {
        let text = "I need a plan for migrating our billing system. First, analyze the current \
            architecture and list every service that touches invoices. Then design the new \
            schema; it must support multiple currencies, must not lose historical data, and \
            should keep each migration step reversible. Next, compare three rollout strategies \
            with pros and cons, and estimate the cost of each within a budget of $40,000. \
            Finally, write a step-by-step runbook. Constraints:\n\
            - downtime must be at most 5 minutes\n\
            - never run migrations during business hours\n\
            - every change requires a rollback script\n\
            - include monitoring for each phase\n\
            1. Explain why the ordering of steps is optimal.\n\
            2. Calculate the expected total duration if each of the 12 steps takes 15-40 minutes.\n\
            3. Justify the choice of database with exactly three arguments.\n";
        let c = cx(text);
        assert!(c > 0.6, "{c}");
    }

    #[test]
    fn ordering_and_range() {
        let a = cx("hello");
        let b = cx("Write a short poem about autumn leaves.");
        let c = cx(&"Explain step by step how to solve this and justify each step. ".repeat(20));
        assert!(a <= b && b < c, "{a} {b} {c}");
        for v in [a, b, c] {
            assert!((0.0..=1.0).contains(&v));
        }
    }
}
