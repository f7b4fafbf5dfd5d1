//! Every error case gets its status code; bad uploads leave the active version serving.
use polyhead_api::v1::{
    inference_client::InferenceClient, train_progress::Event, ActivateVersionRequest,
    ClassifyRequest, DeleteTaskRequest, EmbedRequest, Example, InfoRequest, ListVersionsRequest,
    RollbackRequest, TrainHeadRequest,
};
use polyhead_e2e::{artifact, code, spam_examples, upload, Server, TOKEN};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// A server with small request limits and `task-a` at version 1, serving.
struct Ready {
    server: Server,
    client: InferenceClient<tonic::transport::Channel>,
    fp: String,
    good: polyhead_heads::HeadArtifact,
}

async fn ready_with_task_a() -> Ready {
    let server = Server::start(&[
        ("POLYHEAD__SERVER__MAX_TEXTS", "4"),
        ("POLYHEAD__SERVER__MAX_TEXT_BYTES", "2000"),
        ("POLYHEAD__SERVER__MAX_MESSAGE_BYTES", "65536"),
    ]);
    server.wait_serving().await;
    let mut client = server.inference().await;
    let fp = client
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .fingerprint;
    let mut admin = server.admin().await;
    let good = artifact("task-a", &fp, 384);
    let v1 = admin
        .register_head(upload(&good, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v1.version, v1.activated), (1, true));
    assert_eq!(
        client
            .classify(classify(vec!["hi".into()], "task-a"))
            .await
            .unwrap()
            .into_inner()
            .head_version,
        1
    );
    Ready {
        server,
        client,
        fp,
        good,
    }
}

fn classify(texts: Vec<String>, task: &str) -> ClassifyRequest {
    ClassifyRequest {
        task: task.into(),
        texts,
        top_k: 0,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inference_is_unavailable_until_the_backbone_is_ready() {
    let server = Server::start(&[]);
    // Health only moves NOT_SERVING -> SERVING, so a NOT_SERVING read after a call
    // means the call ran before ready.
    let mut client = server.inference().await;
    let mut health = HealthClient::new(
        tonic::transport::Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    loop {
        let info = client.info(InfoRequest {}).await;
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        if status == ServingStatus::Serving {
            break;
        }
        assert_eq!(code(info), Code::Unavailable);
    }
    assert!(client.info(InfoRequest {}).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inference_input_is_invalid_argument_not_found_or_too_large() {
    let Ready {
        server: _server,
        mut client,
        ..
    } = ready_with_task_a().await;
    assert_eq!(
        code(client.classify(classify(vec!["hi".into()], "nope")).await),
        Code::NotFound
    );
    assert_eq!(
        code(client.classify(classify(vec![], "task-a")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .classify(classify(vec!["a".into(); 5], "task-a"))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .classify(classify(vec!["a".repeat(2001)], "task-a"))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            client
                .embed(EmbedRequest {
                    texts: vec![],
                    ..Default::default()
                })
                .await
        ),
        Code::InvalidArgument
    );
    let too_big = client
        .classify(classify(vec!["a".repeat(70_000)], "task-a"))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted, "{too_big:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_calls_without_the_token_are_unauthenticated() {
    let Ready { server, good, .. } = ready_with_task_a().await;
    let mut anonymous = server.admin_with(None).await;
    assert_eq!(
        code(
            anonymous
                .rollback(RollbackRequest {
                    task: "task-a".into()
                })
                .await
        ),
        Code::Unauthenticated
    );
    let mut wrong = server.admin_with(Some("not-the-token")).await;
    assert_eq!(
        code(wrong.register_head(upload(&good, true)).await),
        Code::Unauthenticated
    );
    assert_ne!(TOKEN, "not-the-token");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_and_the_active_version_keeps_serving() {
    let Ready {
        server,
        mut client,
        fp,
        good,
    } = ready_with_task_a().await;
    let mut admin = server.admin().await;
    let mut corrupt = upload(&good, true);
    corrupt.safetensors.truncate(corrupt.safetensors.len() / 2);
    assert_eq!(
        code(admin.register_head(corrupt).await),
        Code::InvalidArgument
    );
    let mut dup = good.clone();
    dup.manifest.labels = vec!["same".into(), "same".into()];
    assert_eq!(
        code(admin.register_head(upload(&dup, true)).await),
        Code::InvalidArgument
    );
    let other_backbone = artifact("task-a", "0000other0000", 384);
    let err = admin
        .register_head(upload(&other_backbone, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("backbone"), "{err:?}");
    let wrong_dim = artifact("task-a", &fp, 128);
    assert_eq!(
        code(admin.register_head(upload(&wrong_dim, true)).await),
        Code::InvalidArgument
    );
    let bad_name = artifact("../etc", &fp, 384);
    assert_eq!(
        code(admin.register_head(upload(&bad_name, true)).await),
        Code::InvalidArgument
    );
    let r = client
        .classify(classify(vec!["still here".into()], "task-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.head_version, 1,
        "bad uploads must leave the active version serving"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn version_changes_that_cannot_be_made_have_their_codes() {
    let Ready { server, .. } = ready_with_task_a().await;
    let mut admin = server.admin().await;
    assert_eq!(
        code(
            admin
                .rollback(RollbackRequest {
                    task: "task-a".into()
                })
                .await
        ),
        Code::FailedPrecondition
    );
    let missing = ActivateVersionRequest {
        task: "task-a".into(),
        version: 99,
    };
    assert_eq!(code(admin.activate_version(missing).await), Code::NotFound);
    assert_eq!(
        code(
            admin
                .rollback(RollbackRequest {
                    task: "ghost".into()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .delete_task(DeleteTaskRequest {
                    task: "ghost".into()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .list_versions(ListVersionsRequest {
                    task: "Bad/Name".into()
                })
                .await
        ),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn training_errors_are_refused_up_front_or_in_the_stream() {
    let Ready {
        server, mut client, ..
    } = ready_with_task_a().await;
    let mut admin = server.admin().await;
    // Training errors: refused up front (no examples, one label) or in the stream (a
    // label that only the validation set has).
    let empty = TrainHeadRequest {
        task: "t".into(),
        ..Default::default()
    };
    assert_eq!(code(admin.train_head(empty).await), Code::InvalidArgument);
    let one_label = vec![
        Example {
            text: "a".into(),
            label: "x".into(),
        },
        Example {
            text: "b".into(),
            label: "x".into(),
        },
    ];
    let req = TrainHeadRequest {
        task: "t".into(),
        examples: one_label,
        activate: true,
        ..Default::default()
    };
    assert_eq!(code(admin.train_head(req).await), Code::InvalidArgument);
    let two = |l: &str| {
        vec![
            Example {
                text: "a".into(),
                label: "x".into(),
            },
            Example {
                text: "b".into(),
                label: l.into(),
            },
        ]
    };
    let req = TrainHeadRequest {
        task: "t".into(),
        examples: two("y"),
        validation: two("z"),
        ..Default::default()
    };
    let mut stream = admin.train_head(req).await.unwrap().into_inner();
    let in_stream = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without the error"),
            Err(s) => break s,
        }
    };
    assert_eq!(in_stream.code(), Code::InvalidArgument);
    assert!(in_stream.message().contains("\"z\""), "{in_stream:?}");
    let examples: Vec<Example> = spam_examples()
        .into_iter()
        .map(|(text, label)| Example { text, label })
        .collect();
    let gated = TrainHeadRequest {
        task: "gated".into(),
        examples,
        activate: true,
        min_validation_accuracy: 1.01,
        ..Default::default()
    };
    let mut stream = admin.train_head(gated).await.unwrap().into_inner();
    let mut done = None;
    while let Some(m) = stream.message().await.unwrap() {
        if let Some(Event::Done(r)) = m.event {
            done = Some(r);
        }
    }
    let done = done.unwrap();
    assert!(
        !done.activated && done.note.contains("not activated"),
        "{done:?}"
    );
    assert_eq!(
        code(client.classify(classify(vec!["x".into()], "gated")).await),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_task_is_gone_from_serving() {
    let Ready {
        server, mut client, ..
    } = ready_with_task_a().await;
    let mut admin = server.admin().await;
    let deleted = admin
        .delete_task(DeleteTaskRequest {
            task: "task-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.versions_deleted, 1);
    assert_eq!(
        code(client.classify(classify(vec!["x".into()], "task-a")).await),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overload_is_resource_exhausted_at_once() {
    let server = Server::start(&[
        ("POLYHEAD__SERVER__MAX_IN_FLIGHT", "1"),
        ("POLYHEAD__SERVER__CACHE_BYTES", "0"),
    ]);
    server.wait_serving().await;
    let mut calls = Vec::new();
    for i in 0..12 {
        let mut client = server.inference().await;
        let texts: Vec<String> = (0..32)
            .map(|j| format!("{i} {j} some longer text to embed. ").repeat(20))
            .collect();
        calls.push(tokio::spawn(async move {
            code(
                client
                    .embed(EmbedRequest {
                        texts,
                        ..Default::default()
                    })
                    .await,
            )
        }));
    }
    let mut codes = Vec::new();
    for c in calls {
        codes.push(c.await.unwrap());
    }
    assert!(codes.contains(&Code::ResourceExhausted), "{codes:?}");
    assert!(codes.contains(&Code::Ok), "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Code::Ok | Code::ResourceExhausted)),
        "{codes:?}"
    );
    assert!(server.metric("polyhead_requests_shed_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_inference_needs_the_token_and_bad_model_fails_start() {
    let server = Server::start(&[("POLYHEAD__SERVER__OPEN_INFERENCE", "false")]);
    server.wait_serving().await;
    let mut client = server.inference().await;
    assert_eq!(
        code(client.info(InfoRequest {}).await),
        Code::Unauthenticated
    );
    let mut req = tonic::Request::new(InfoRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    assert_eq!(code(client.info(req).await), Code::Ok);

    let mut bad = Server::start(&[("POLYHEAD__BACKBONE__MODEL_DIR", "/nonexistent/model")]);
    let status = bad.child.wait().unwrap();
    assert!(
        !status.success(),
        "a server without its model must exit non-zero"
    );
}
