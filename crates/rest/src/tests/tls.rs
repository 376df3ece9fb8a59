//! The REST API over HTTPS: a real listener on a loopback port, certificates made here (a CA
//! and one member certificate for `localhost`/`127.0.0.1`, usable as server and client
//! certificate), and the members' REST client as the caller.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::net::SocketAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::{FakeControl, primary};
use crate::client::RestClient;
use crate::tls::{ClientTls, PemIdentity, ServerTls, ServerVerification, VerifyClient};
use crate::{AccessPolicy, Api};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A CA and a member certificate it signed.
struct Certificates {
    ca_pem: Vec<u8>,
    member: PemIdentity,
}

fn generate() -> Certificates {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pgwarden test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let member_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let member = params.signed_by(&member_key, &issuer).unwrap();
    Certificates {
        ca_pem: ca.pem().into_bytes(),
        member: PemIdentity {
            cert_pem: member.pem().into_bytes(),
            key_pem: member_key.serialize_pem().into_bytes(),
        },
    }
}

/// A primary's REST API serving HTTPS with `verify_client` on a free loopback port; it stops
/// when the returned sender is dropped.
async fn serve_https(
    certificates: &Certificates,
    verify_client: VerifyClient,
) -> (String, FakeControl, oneshot::Sender<()>) {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("https://{}/patroni", listener.local_addr().unwrap());
    let tls = ServerTls::new(
        &certificates.member,
        Some(&certificates.ca_pem),
        verify_client,
    )
    .unwrap();
    let (_status_tx, status) = watch::channel(primary());
    let control = FakeControl::default();
    let api = Api {
        status,
        control: control.clone(),
        access: AccessPolicy {
            client_certificate_required: tls.asks_client_certificate(),
            ..AccessPolicy::default()
        },
        store_leader: None,
        headers: crate::ResponseHeaders::default(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(crate::serve(listener, api, Some(tls), async move {
        let _ = stopped.await;
    }));
    (url, control, stop)
}

fn client(certificates: &Certificates, with_certificate: bool) -> RestClient {
    let identity = with_certificate.then_some(&certificates.member);
    let tls = ClientTls::new(
        ServerVerification::TrustedCa(&certificates.ca_pem),
        identity,
    )
    .unwrap();
    RestClient::new(Some(tls))
}

async fn status_of(client: &RestClient, url: &str, method: &str, path: &str) -> Option<u16> {
    let body = (method == "POST").then(|| serde_json::json!({}));
    client
        .request(url, method, path, body.as_ref(), None, TIMEOUT)
        .await
        .ok()
        .map(|reply| reply.status)
}

#[tokio::test]
async fn https_serves_health_checks_to_clients_trusting_the_ca_only() {
    let certificates = generate();
    let (url, _control, _stop) = serve_https(&certificates, VerifyClient::None).await;
    let trusting = client(&certificates, false);
    assert_eq!(
        status_of(&trusting, &url, "GET", "/health").await,
        Some(200)
    );
    let json = trusting.get_json(&url, "/patroni", TIMEOUT).await.unwrap();
    assert_eq!(json["role"], "primary");
    // Without verify_client, unsafe methods need no certificate.
    assert_eq!(
        status_of(&trusting, &url, "POST", "/reload").await,
        Some(202)
    );

    // HTTPS only: a plain HTTP request to the port gets no answer.
    let plain_url = url.replacen("https://", "http://", 1);
    assert_eq!(
        status_of(&RestClient::default(), &plain_url, "GET", "/health").await,
        None
    );
    // A client that trusts another CA refuses the server; one without any CA is refused before
    // connecting; an insecure one connects.
    let stranger = client(&generate(), false);
    assert_eq!(status_of(&stranger, &url, "GET", "/health").await, None);
    let error = RestClient::default()
        .request(&url, "GET", "/health", None, None, TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.contains("no CA"), "{error}");
    let insecure = RestClient::new(Some(
        ClientTls::new(ServerVerification::Insecure, None).unwrap(),
    ));
    assert_eq!(
        status_of(&insecure, &url, "GET", "/health").await,
        Some(200)
    );
}

#[tokio::test]
async fn verify_client_required_refuses_a_client_without_certificate_at_the_handshake() {
    let certificates = generate();
    let (url, control, _stop) = serve_https(&certificates, VerifyClient::Required).await;
    let anonymous = client(&certificates, false);
    assert_eq!(status_of(&anonymous, &url, "GET", "/health").await, None);
    assert_eq!(status_of(&anonymous, &url, "POST", "/reload").await, None);
    // A certificate signed by another CA is refused as well.
    let other = generate();
    let foreign = RestClient::new(Some(
        ClientTls::new(
            ServerVerification::TrustedCa(&certificates.ca_pem),
            Some(&other.member),
        )
        .unwrap(),
    ));
    assert_eq!(status_of(&foreign, &url, "GET", "/health").await, None);
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    let member = client(&certificates, true);
    assert_eq!(status_of(&member, &url, "GET", "/health").await, Some(200));
    assert_eq!(status_of(&member, &url, "POST", "/reload").await, Some(202));
    assert_eq!(control.calls(), ["reload"]);
}

#[tokio::test]
async fn verify_client_optional_lets_reads_in_and_needs_a_certificate_for_unsafe_methods() {
    let certificates = generate();
    let (url, control, _stop) = serve_https(&certificates, VerifyClient::Optional).await;
    let anonymous = client(&certificates, false);
    assert_eq!(
        status_of(&anonymous, &url, "GET", "/health").await,
        Some(200)
    );
    let refused = anonymous
        .request(
            &url,
            "POST",
            "/restart",
            Some(&serde_json::json!({})),
            None,
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "client certificate required")
    );
    assert!(control.calls().is_empty(), "{:?}", control.calls());

    let member = client(&certificates, true);
    assert_eq!(
        status_of(&member, &url, "POST", "/restart").await,
        Some(200)
    );
    assert_eq!(control.calls().len(), 1, "{:?}", control.calls());
}
