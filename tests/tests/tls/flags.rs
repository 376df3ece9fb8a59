//! `pgwarden etcd` refuses unusable TLS flags before binding anything: exit code 2 and a message
//! naming the flag, and the file when a file is at fault.

use std::process::Command;
use std::process::Stdio;

use anyhow::ensure;
use pgwarden_tests::Target;
use pgwarden_tests::tls::TestCertificates;

#[test]
fn unusable_tls_flags_exit_2_naming_the_flag_and_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = TestCertificates::generate()?.write(dir.path())?;
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n")?;
    let missing = dir.path().join("missing.pem");
    let cert = files.member_cert.display().to_string();
    let key = files.member_key.display().to_string();
    let ca = files.ca.display().to_string();
    let garbage = garbage.display().to_string();
    let missing = missing.display().to_string();
    let https_client = "--listen-client-urls=https://127.0.0.1:1".to_owned();
    let https_peer = [
        "--listen-peer-urls=https://127.0.0.1:2".to_owned(),
        "--initial-advertise-peer-urls=https://127.0.0.1:2".to_owned(),
    ];

    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![https_client.clone()],
            vec!["--listen-client-urls", "--cert-file"],
        ),
        (
            vec![https_client.clone(), format!("--cert-file={cert}")],
            vec!["--key-file"],
        ),
        (
            vec![
                https_client.clone(),
                format!("--cert-file={missing}"),
                format!("--key-file={key}"),
            ],
            vec!["--cert-file", &missing],
        ),
        (
            vec![
                https_client.clone(),
                format!("--cert-file={garbage}"),
                format!("--key-file={key}"),
            ],
            vec!["--cert-file", &garbage],
        ),
        (
            vec![
                https_client.clone(),
                format!("--cert-file={cert}"),
                format!("--key-file={ca}"),
            ],
            vec!["--key-file", &ca],
        ),
        (
            vec![
                https_client.clone(),
                format!("--cert-file={cert}"),
                format!("--key-file={key}"),
                "--client-cert-auth".to_owned(),
            ],
            vec!["--client-cert-auth", "--trusted-ca-file"],
        ),
        (
            vec![
                https_client.clone(),
                format!("--cert-file={cert}"),
                format!("--key-file={key}"),
                "--client-cert-auth".to_owned(),
                format!("--trusted-ca-file={garbage}"),
            ],
            vec!["--trusted-ca-file", &garbage],
        ),
        (https_peer.to_vec(), vec!["--peer-cert-file"]),
        (
            [
                https_peer.to_vec(),
                vec![
                    format!("--peer-cert-file={cert}"),
                    format!("--peer-key-file={key}"),
                ],
            ]
            .concat(),
            vec!["--peer-trusted-ca-file"],
        ),
        (
            [
                https_peer.to_vec(),
                vec![
                    format!("--peer-cert-file={cert}"),
                    format!("--peer-key-file={garbage}"),
                    format!("--peer-trusted-ca-file={ca}"),
                ],
            ]
            .concat(),
            vec!["--peer-key-file", &garbage],
        ),
        (vec!["--auto-tls".to_owned()], vec!["--auto-tls"]),
    ];
    let (program, leading) = Target::Pgwarden.command()?;
    for (args, named) in &cases {
        let output = Command::new(&program)
            .args(&leading)
            .args(args)
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .stdin(Stdio::null())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(2),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        for needle in named {
            ensure!(
                stderr.contains(needle),
                "{args:?}: stderr does not name {needle}: {stderr}"
            );
        }
    }
    Ok(())
}
