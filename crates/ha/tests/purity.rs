//! The decision core stays pure: no dependency beyond serde and thiserror, and no clock,
//! file, network, process or randomness API in its sources.

use std::path::Path;

#[test]
fn dependencies_are_serde_and_thiserror_at_most() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap_or_default();
    let dependencies: Vec<&str> = manifest
        .split("\n[")
        .filter(|section| section.starts_with("dependencies]"))
        .flat_map(|section| section.lines().skip(1))
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(!dependencies.is_empty(), "manifest not parsed");
    for dependency in dependencies {
        assert!(
            ["serde", "thiserror"].contains(&dependency),
            "ha must stay pure; found dependency {dependency}"
        );
    }
}

#[test]
fn sources_use_no_clock_io_or_randomness() {
    let forbidden = [
        "std::time::Instant",
        "SystemTime",
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "tokio",
        "rand::",
    ];
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let code = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"));
            for line in code {
                for word in forbidden {
                    assert!(
                        !line.contains(word),
                        "{} uses {word}: {line}",
                        path.display()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} source files found");
}
