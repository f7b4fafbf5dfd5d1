//! TLS (rustls) with a self-signed certificate made by openssl, and server reflection.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use polyhead_api::v1::{inference_client::InferenceClient, InfoRequest};
use polyhead_e2e::Server;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_only_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let (ca, ca_key, cert, key, csr) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
        path("c.csr"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is needed for this test");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A throwaway CA, and a server certificate for localhost signed by it.
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=polyhead test CA",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    let ext = path("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    let server = Server::start(&[
        ("POLYHEAD__SERVER__TLS_CERT", cert.as_str()),
        ("POLYHEAD__SERVER__TLS_KEY", key.as_str()),
    ]);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    let url = format!(
        "https://localhost:{}",
        server.addr.rsplit(':').next().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let attempt = async {
            let channel = Channel::from_shared(url.clone())
                .map_err(|e| e.to_string())?
                .tls_config(tls.clone())
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| format!("{e:?}"))?;
            InferenceClient::new(channel)
                .info(InfoRequest {})
                .await
                .map_err(|s| format!("{s:?}"))
        };
        let error = match attempt.await {
            Ok(r) => break r.into_inner(),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "TLS server never answered: {error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(info.dim, 384);
    // A plaintext client gets no answer from a TLS port.
    let plain = async {
        let channel = Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .ok()?;
        InferenceClient::new(channel)
            .info(InfoRequest {})
            .await
            .ok()
    };
    assert!(plain.await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "polyhead.v1.Inference",
        "polyhead.v1.Registry",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    // v1alpha, which many clients still ask for, answers the same list.
    use tonic_reflection::pb::v1alpha as alpha;
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1alpha reflection response {response:?}")
    };
    assert!(list
        .service
        .iter()
        .any(|s| s.name == "polyhead.v1.Inference"));
}
