//! Issue 18, finding 9: the store's disk fills up under a running server.
use polyhead_e2e::{artifact, fingerprint, one, register, upload, Server};
use tonic::Code;

/// A tmpfs of `kib` KiB mounted on a temporary folder; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(kib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "this test needs root to mount a tmpfs (CI runs as root)"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Medium 9: a full disk answers RESOURCE_EXHAUSTED without the server's paths,
/// leaves no temp folder behind, and what was stored before still serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_resource_exhausted_and_leaves_no_debris() {
    let disk = SmallDisk::mount(512);
    let store = disk.dir.path().join("store");
    let server = Server::start_on(&store, &[]);
    server.wait_serving().await;
    register(&server, &["small"]).await;
    let (fp, dim) = fingerprint(&server).await;
    // 600 labels x 384 floats: ~0.9 MB, more than the disk holds.
    let mut big = artifact("big", &fp, dim);
    big.manifest.labels = (0..600).map(|i| format!("label{i}")).collect();
    let mut layer = big.head.layers()[0].clone();
    layer.weight = vec![0.01; 600 * dim];
    layer.bias = vec![0.0; 600];
    layer.out = 600;
    big.head =
        polyhead_heads::Head::new(big.manifest.head, vec![layer], big.manifest.labels.clone())
            .unwrap();
    let r = server.admin().await.register_head(upload(&big, true)).await;
    let e = r.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(e.message().contains("disk is full"), "{}", e.message());
    assert!(
        !e.message().contains(disk.dir.path().to_str().unwrap()),
        "no server path: {}",
        e.message()
    );
    let debris: Vec<_> = polyhead_heads::testing::files_under(&store)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(debris.is_empty(), "{debris:?}");
    server
        .inference()
        .await
        .classify(one("small", "still served"))
        .await
        .unwrap();
}
