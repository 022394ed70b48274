//! `GET /v1/models` in OpenAI's list format.

use serde::Serialize;

/// One entry of the model list.
#[derive(Debug, Clone, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
}

/// The list envelope.
#[derive(Debug, Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: &'a [ModelObject],
}

/// Anthropic's model object (`GET /v1/models/{id}` for Anthropic clients,
/// <https://docs.anthropic.com/en/api/models>).
pub fn anthropic_object(o: &ModelObject) -> serde_json::Value {
    let created_at = chrono::DateTime::from_timestamp(o.created as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    serde_json::json!({
        "type": "model",
        "id": o.id,
        "display_name": o.id,
        "created_at": created_at,
    })
}

/// Paging of Anthropic's `GET /v1/models` (`limit` 1..=1000, default 20;
/// `after_id` / `before_id`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct AnthropicPage {
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub after_id: Option<String>,
    #[serde(default)]
    pub before_id: Option<String>,
}

/// Anthropic's list envelope: `{"data", "has_more", "first_id", "last_id"}`.
/// An unknown cursor id gives an empty page.
pub fn anthropic_list(objects: &[ModelObject], page: &AnthropicPage) -> serde_json::Value {
    let limit = page.limit.unwrap_or(20).clamp(1, 1000);
    let pos = |id: &str| objects.iter().position(|o| o.id == id);
    let (start, end) = match (&page.after_id, &page.before_id) {
        (Some(a), _) => {
            let s = pos(a).map_or(objects.len(), |i| i + 1);
            (s, (s + limit).min(objects.len()))
        }
        (None, Some(b)) => {
            let e = pos(b).unwrap_or(0);
            (e.saturating_sub(limit), e)
        }
        (None, None) => (0, limit.min(objects.len())),
    };
    let slice = &objects[start..end];
    let has_more = if page.before_id.is_some() && page.after_id.is_none() {
        start > 0
    } else {
        end < objects.len()
    };
    serde_json::json!({
        "data": slice.iter().map(anthropic_object).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": slice.first().map(|o| o.id.as_str()),
        "last_id": slice.last().map(|o| o.id.as_str()),
    })
}

/// Whether a request comes from an Anthropic client (`anthropic-version`
/// or `x-api-key` header), which expects Anthropic's shapes.
pub fn is_anthropic_style(h: &http::HeaderMap) -> bool {
    h.contains_key("anthropic-version") || h.contains_key("x-api-key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objs(n: usize) -> Vec<ModelObject> {
        (0..n)
            .map(|i| ModelObject {
                id: format!("m{i}"),
                object: "model",
                created: 1_767_225_600,
                owned_by: "p".into(),
            })
            .collect()
    }

    #[test]
    fn anthropic_pages_walk_the_whole_list() {
        let all = objs(45);
        let mut seen = Vec::new();
        let mut page = AnthropicPage::default();
        loop {
            let v = anthropic_list(&all, &page);
            for d in v["data"].as_array().unwrap() {
                assert_eq!(d["type"], "model");
                assert_eq!(d["created_at"], "2026-01-01T00:00:00Z");
                seen.push(d["id"].as_str().unwrap().to_string());
            }
            if v["has_more"] != true {
                break;
            }
            page.after_id = v["last_id"].as_str().map(String::from);
        }
        assert_eq!(seen, all.iter().map(|o| o.id.clone()).collect::<Vec<_>>());
        let v = anthropic_list(
            &all,
            &AnthropicPage {
                limit: Some(5),
                before_id: Some("m7".into()),
                after_id: None,
            },
        );
        assert_eq!(v["first_id"], "m2");
        assert_eq!(v["last_id"], "m6");
        assert_eq!(v["has_more"], true);
        let v = anthropic_list(&[], &AnthropicPage::default());
        assert_eq!(v["data"].as_array().unwrap().len(), 0);
        assert_eq!(v["first_id"], serde_json::Value::Null);
    }
}
