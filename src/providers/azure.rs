//! Azure OpenAI: same wire format as OpenAI, different URLs and auth header.
//!
//! Azure addresses a *deployment* (a name the customer chose for a model)
//! rather than a model, and versions the API with a mandatory `api-version`
//! query parameter
//! (<https://learn.microsoft.com/en-us/azure/ai-services/openai/reference>):
//!
//! ```text
//! POST https://RES.openai.azure.com/openai/deployments/DEPLOYMENT/chat/completions?api-version=2024-10-21
//! ```
//!
//! Authentication is the `api-key: <key>` header, not
//! `Authorization: Bearer` (Azure reserves Bearer for Microsoft Entra ID
//! access tokens; sending the resource key as a Bearer token fails with 401).
//! The request `model` field is ignored by Azure (the deployment decides),
//! so bodies and responses pass through unchanged; only the URL and header
//! differ from the plain OpenAI backend.

/// Chat-completions URL for `deployment` on the resource at `base`
/// (`https://RES.openai.azure.com`, trailing slashes ignored).
pub fn chat_url(base: &str, deployment: &str, api_version: &str) -> String {
    deployment_url(base, deployment, "chat/completions", api_version)
}

/// Embeddings URL for `deployment` on the resource at `base`.
pub fn embeddings_url(base: &str, deployment: &str, api_version: &str) -> String {
    deployment_url(base, deployment, "embeddings", api_version)
}

fn deployment_url(base: &str, deployment: &str, op: &str, api_version: &str) -> String {
    format!(
        "{}/openai/deployments/{}/{op}?api-version={}",
        base.trim_end_matches('/'),
        encode(deployment),
        encode(api_version)
    )
}

/// Percent-encodes everything outside RFC 3986's unreserved set, so a
/// deployment name can never add path segments or query parameters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            chat_url("https://res.openai.azure.com/", "gpt-4o-prod", "2024-10-21"),
            "https://res.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            embeddings_url("https://res.openai.azure.com", "emb.small", "2024-10-21"),
            "https://res.openai.azure.com/openai/deployments/emb.small/embeddings?api-version=2024-10-21"
        );
    }

    #[test]
    fn hostile_names_are_encoded() {
        let u = chat_url("https://r.openai.azure.com", "x/../y?z=1", "v&a=b");
        assert_eq!(
            u,
            "https://r.openai.azure.com/openai/deployments/x%2F..%2Fy%3Fz%3D1/chat/completions?api-version=v%26a%3Db"
        );
    }
}
