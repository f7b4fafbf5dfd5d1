//! Long texts (issue 16 item 6): a task whose label is only said after the first
//! window is trained over TrainHead, `auto` chooses to read every window, and the
//! server answers it by the text's end, next to a frozen task whose answers do not
//! move, counting the further windows it ran.
use polyhead_api::v1::{
    train_progress::Event, ClassifyMultiRequest, ClassifyRequest, Example, TrainOptions,
};
use polyhead_e2e::{stored_version, Server};
use polyhead_heads::{HeadStore, Reads};

/// About 330 tokens that say nothing of the verdict: more than the backbone reads.
fn preamble(n: usize) -> String {
    let plot = "The film follows a retired lighthouse keeper who travels along the coast \
        to meet the daughter he has not seen in twenty years. On the way he shares a \
        train compartment with a young musician, a salesman of kitchen knives and a \
        woman who claims to have known his late wife. Each of them tells a story about \
        the sea, about leaving home and about the letters people never send. The \
        director shoots the landscapes in long takes, and the score is mostly piano.";
    // Variants, so the examples are not one text: the verdict alone must decide.
    format!("Review number {n}. {plot} {plot} {plot}")
}

const GOOD: [&str; 6] = [
    "In the end I loved it: a wonderful, moving and beautifully acted film.",
    "My verdict: brilliant, warm and funny, one of the best films this year.",
    "Overall a delight, superb performances, I would gladly watch it again.",
    "All told it is a masterpiece, touching and gorgeous from start to finish.",
    "Final word: excellent, heartfelt and charming, highly recommended.",
    "To sum up, a beautiful and inspiring film that I enjoyed enormously.",
];
const BAD: [&str; 6] = [
    "In the end I hated it: a dreadful, boring and badly acted film.",
    "My verdict: awful, tedious and stupid, one of the worst films this year.",
    "Overall a disaster, terrible performances, I walked out before the end.",
    "All told it is a mess, dull and ugly from start to finish.",
    "Final word: horrible, lifeless and annoying, avoid it at all costs.",
    "To sum up, a painful and pointless film that I regret watching.",
];

fn examples() -> Vec<Example> {
    let mut out = Vec::new();
    for round in 0..2 {
        for (i, (good, bad)) in GOOD.iter().zip(BAD).enumerate() {
            let n = 2 * (round * GOOD.len() + i);
            out.push(Example {
                text: format!("{} {good}", preamble(n)),
                label: "positive".into(),
            });
            out.push(Example {
                text: format!("{} {bad}", preamble(n + 1)),
                label: "negative".into(),
            });
        }
    }
    out
}

async fn train_long(server: &Server) -> (u64, Vec<Event>) {
    // A linear head reads only the backbone's features; a hybrid one would also
    // read the verdict's words, whatever the windows.
    let options = TrainOptions {
        head_kind: "linear".into(),
        windows: "auto".into(),
        seed: 7,
        ..Default::default()
    };
    let events = server.train_events_on("long", examples(), options).await;
    (stored_version(&events), events)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_told_only_at_the_end_of_long_texts_is_answered_by_every_window() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let mut client = server.inference().await;
    // A task that reads the truncated text: its answers must not move.
    server
        .train_events_with(
            "frozen",
            TrainOptions {
                seed: 1,
                windows: "never".into(),
                ..Default::default()
            },
        )
        .await;
    let unseen = [
        format!(
            "{} Honestly wonderful, a moving and lovely film.",
            preamble(90)
        ),
        format!(
            "{} Honestly dreadful, a boring and awful film.",
            preamble(91)
        ),
    ];
    let multi = ClassifyMultiRequest {
        tasks: vec!["frozen".into()],
        texts: unseen.to_vec(),
        ..Default::default()
    };
    let frozen_before = client
        .classify_multi(multi.clone())
        .await
        .unwrap()
        .into_inner()
        .responses;

    let (version, events) = train_long(&server).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Candidate(c) if c.name.ends_with("windows"))),
        "no windowed candidate was streamed: {events:?}"
    );
    let stored = polyhead_heads::FsHeadStore::open(&server.store)
        .unwrap()
        .load("long", version)
        .unwrap();
    assert_eq!(
        stored.manifest.reads,
        Reads::Windows,
        "auto kept the truncated text"
    );
    let windows_before = server.metric("polyhead_backbone_extra_windows_total");

    // The verdicts are after the first window: only reading every window tells them.
    let answer = client
        .classify(ClassifyRequest {
            task: "long".into(),
            texts: unseen.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let labels: Vec<&str> = answer.results.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["positive", "negative"]);
    assert!(server.metric("polyhead_backbone_extra_windows_total") >= windows_before + 2.0);

    // One ClassifyMulti: the windowed task answers as alone, the frozen one as before.
    let both = client
        .classify_multi(ClassifyMultiRequest {
            tasks: vec!["frozen".into(), "long".into()],
            ..multi
        })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(both[0], frozen_before[0]);
    assert_eq!(both[1].results, answer.results);
}
