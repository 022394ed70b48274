//! The README's config reference must stay a valid config.

#[test]
fn readme_config_reference_is_valid() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = readme[start..].find("```").expect("block end");
    let block = &readme[start..start + len];
    let raw = switchyard::config::parse_toml(block).unwrap_or_else(|e| panic!("README config: {e}"));
    let env = |k: &str| k.ends_with("_API_KEY").then(|| "sk-readme".to_string());
    let cfg = switchyard::config::validate(raw, switchyard::config::ConfigSource::Environment, &env)
        .unwrap_or_else(|e| panic!("README config invalid:\n{e}"));
    assert!(cfg.routing.routes.contains_key("auto"));
    assert!(cfg.models["balanced"].deployments.len() == 2);
}
