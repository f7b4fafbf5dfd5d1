//! The image backbone end to end: a task trained from a picture folder through the
//! CLI, answered over gRPC by an image server that shares its store with a text
//! server answering a text task; bad pictures answered as documented.
use std::{path::Path, time::Duration};

use polyhead_api::v1::{ClassifyRequest, EmbedRequest, Example, InfoRequest, TrainHeadRequest};
use tonic::Code;

use polyhead_e2e::{cli_result, code, one, register, root, Server};

const LABELS: [&str; 3] = ["bag", "sneaker", "trouser"];

/// `n` pictures per label from `data/fashion/<split>` (scripts/setup.sh builds it)
/// copied into `dir/<label>/`, starting at the `skip`-th of each label.
fn folder(dir: &Path, split: &str, skip: usize, n: usize) {
    for label in LABELS {
        let src = root().join("data/fashion").join(split).join(label);
        let mut files: Vec<_> = std::fs::read_dir(&src)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", src.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::create_dir_all(dir.join(label)).unwrap();
        for f in files.iter().skip(skip).take(n) {
            std::fs::copy(f, dir.join(label).join(f.file_name().unwrap())).unwrap();
        }
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(w, h, image::Rgb([90, 30, 200]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn images(task: &str, images: Vec<Vec<u8>>) -> ClassifyRequest {
    ClassifyRequest {
        task: task.into(),
        images,
        top_k: 1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_task_trained_from_a_folder_answers_beside_a_text_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (train, test) = (dir.path().join("train"), dir.path().join("test"));
    folder(&train, "train", 0, 12);
    folder(&test, "test", 0, 6);
    // One store, two servers: a text backbone and an image backbone.
    let text = Server::start_on(&store, &[]);
    let image = Server::start_on(
        &store,
        &[("POLYHEAD__BACKBONE__MODEL_DIR", "models/efficientnet-lite0")],
    );
    text.wait_serving().await;
    image.wait_serving().await;
    register(&text, &["spam"]).await;
    let info = image
        .inference()
        .await
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.input.as_str(), info.dim), ("image", 1280));

    // Trained through the CLI from the folder, against the pixel baseline.
    let (status, out, err) = cli_result(
        &[
            "train",
            "--model",
            "models/efficientnet-lite0",
            "--task",
            "clothes",
            "--data",
            train.to_str().unwrap(),
            "--test",
            test.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
        None,
    );
    // The report is on stderr (stdout stays free for --json).
    assert_eq!(status, 0, "{err}{out}");
    assert!(err.contains("task clothes version 1"), "{err}");
    assert!(err.contains("baseline"), "{err}");

    // The image server swaps it in and answers pictures it never saw.
    let mut client = image.inference().await;
    let held_out: Vec<(usize, Vec<u8>)> = LABELS
        .iter()
        .enumerate()
        .flat_map(|(k, label)| {
            let d = test.join(label);
            let mut files: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files
                .into_iter()
                .map(move |f| (k, std::fs::read(f).unwrap()))
        })
        .collect();
    let request = images("clothes", held_out.iter().map(|(_, b)| b.clone()).collect());
    let mut answer = None;
    for _ in 0..120 {
        match client.classify(request.clone()).await {
            Ok(r) => {
                answer = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    let answer = answer.expect("the image server never served `clothes`");
    assert_eq!(answer.results.len(), held_out.len());
    let right = answer
        .results
        .iter()
        .zip(&held_out)
        .filter(|(r, (k, _))| r.label == LABELS[*k])
        .count();
    assert!(
        right * 10 >= held_out.len() * 8,
        "{right}/{} right",
        held_out.len()
    );

    // The text server answers its text task, and does not serve the image task.
    let mut t = text.inference().await;
    t.classify(one("spam", "win a free prize now"))
        .await
        .unwrap();
    assert_eq!(
        code(t.classify(images("clothes", vec![png(8, 8)])).await),
        Code::NotFound
    );
    // Each server names what its backbone reads.
    let err = t
        .classify(images("spam", vec![png(8, 8)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("reads texts"), "{}", err.message());
    let err = client.classify(one("clothes", "a text")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("reads images"), "{}", err.message());

    // Bad pictures, as documented: INVALID_ARGUMENT, and the server keeps serving.
    let jpeg =
        std::fs::read(root().join("crates/backbone/tests/fixtures/images/shapes.jpg")).unwrap();
    let truncated = jpeg[..jpeg.len() / 3].to_vec();
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&200_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&200_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    for (what, bytes, needle) in [
        ("truncated JPEG", truncated, "truncated"),
        ("bomb", bomb, "max_image_pixels"),
        (
            "text bytes",
            b"not a picture".to_vec(),
            "not a JPEG, PNG or WebP",
        ),
        ("empty", Vec::new(), "empty"),
    ] {
        let err = client
            .classify(images("clothes", vec![bytes]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(needle), "{what}: {}", err.message());
    }
    // A 1 x 1 picture is upscaled and answered.
    let r = client
        .classify(images("clothes", vec![png(1, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results.len(), 1);
    // TrainHead's examples are texts: an image server refuses it rather than read
    // them as paths of its own files.
    let paths = ["/etc/passwd", "/etc/hosts"].map(|p| Example {
        text: p.into(),
        label: p.into(),
    });
    let err = image
        .admin()
        .await
        .train_head(TrainHeadRequest {
            task: "stolen".into(),
            examples: paths.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("polyhead train"),
        "{}",
        err.message()
    );
    // Embed reads pictures too.
    let e = client
        .embed(EmbedRequest {
            images: vec![png(40, 30)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((e.dim, e.embeddings.len()), (1280, 1));
}

/// PNG's chunk checksum (CRC-32, IEEE).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
