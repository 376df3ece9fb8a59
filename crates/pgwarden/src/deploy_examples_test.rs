//! The shipped example `deploy/pgwarden.yml.example` stays a configuration `pgwarden run`
//! accepts (every key it documents parses, and its timings validate).

#[test]
fn the_example_configuration_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/pgwarden.yml.example");
    let config = crate::run::load(&path);
    assert!(config.is_ok(), "{config:?}");
}
