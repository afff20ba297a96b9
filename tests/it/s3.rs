//! End-to-end tests against a real S3-compatible server on 127.0.0.1
//! (SeaweedFS, started by `scripts/s3-server.sh`, which `scripts/test.sh` runs):
//! a mirror in a bucket equal to the repository object by object, reruns,
//! verification without the key, and a repository living in the bucket.
//!
//! The server is found through the standard `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` and the bucket through
//! `SOPVAULT_TEST_BUCKET`; without them every test prints SKIP and passes, so
//! a plain `cargo test` works anywhere (under `SOPVAULT_STRICT=1`, as
//! `scripts/test.sh` runs them, they fail instead). `rclone`
//! (`SOPVAULT_TEST_RCLONE`) is the independent reader and checker.

use crate::common::{exit, *};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const AWS_VARS: [&str; 4] = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

struct S3 {
    env: Vec<(String, String)>,
    bucket: String,
    rclone: Option<PathBuf>,
}

impl S3 {
    /// The server from the environment, or `None` (after [`skip`]).
    fn from_env(test: &str) -> Option<S3> {
        let mut env = Vec::new();
        for v in AWS_VARS {
            match std::env::var(v) {
                Ok(x) if !x.is_empty() => env.push((v.to_string(), x)),
                _ => {
                    skip(
                        test,
                        &format!(
                            "{v} is not set (run scripts/test.sh, which starts a local S3 server)"
                        ),
                    );
                    return None;
                }
            }
        }
        let Ok(bucket) = std::env::var("SOPVAULT_TEST_BUCKET") else {
            skip(test, "SOPVAULT_TEST_BUCKET is not set");
            return None;
        };
        let rclone = std::env::var_os("SOPVAULT_TEST_RCLONE").map(PathBuf::from);
        Some(S3 {
            env,
            bucket,
            rclone,
        })
    }

    /// A fresh prefix for one test: `s3://BUCKET/NAME-RANDOM`.
    fn url(&self, name: &str) -> String {
        let r = random_bytes(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            6,
        );
        format!("s3://{}/{name}-{}", self.bucket, hex_str(&r))
    }

    fn call<'a>(&self, sb: &'a Sandbox, args: &[&str]) -> Call<'a> {
        let mut c = sb.call(args);
        for (k, v) in &self.env {
            c = c.env(k, v);
        }
        c
    }

    /// rclone with the same server and keys, on `:s3:BUCKET/PREFIX`.
    fn rclone(&self, args: &[&str]) -> Option<std::process::Output> {
        let bin = self.rclone.as_ref()?;
        let get = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let out = Command::new(bin)
            .args(args)
            .arg("--s3-provider=Other")
            .arg(format!("--s3-endpoint={}", get("AWS_ENDPOINT_URL")))
            .arg(format!("--s3-access-key-id={}", get("AWS_ACCESS_KEY_ID")))
            .arg(format!(
                "--s3-secret-access-key={}",
                get("AWS_SECRET_ACCESS_KEY")
            ))
            .arg(format!("--s3-region={}", get("AWS_REGION")))
            .env_remove("RCLONE_CONFIG")
            .env("RCLONE_CONFIG", "/dev/null")
            .output()
            .expect("run rclone");
        Some(out)
    }
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `s3://B/P` as rclone's `:s3:B/P`.
fn remote(url: &str) -> String {
    format!(":s3:{}", url.strip_prefix("s3://").unwrap())
}

/// Every repository file below `dir` (not `locks/`, `tmp/` or `reserve`), relative path → bytes.
fn repo_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // Ephemeral, and the space reserve of the local disk: never mirrored.
            if rel == "locks" || rel == "tmp" || rel == "reserve" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn snapshots(sb: &Sandbox, s3: Option<&S3>, range: std::ops::Range<u64>) {
    let src = sb.path("src");
    std::fs::create_dir_all(src.join("www")).unwrap();
    sb.write("src/www/index.php", &random_bytes(3, 40 * 1024));
    for n in range {
        sb.write("src/daily.bin", &random_bytes(1000 + n, 300 * 1024));
        let args = ["snapshot", "--source", "db", &path_str(&src)];
        match s3 {
            Some(s3) => s3.call(sb, &args).ok(),
            None => sb.ok(&args),
        };
    }
}

#[test]
fn a_mirror_in_s3_holds_every_file_byte_for_byte_and_verifies_without_the_key() {
    let Some(s3) = S3::from_env("a_mirror_in_s3_holds_every_file_byte_for_byte") else {
        return;
    };
    let sb = Sandbox::init();
    snapshots(&sb, None, 0..3);
    let url = s3.url("mirror");
    let out = s3.call(&sb, &["mirror", "--init", &url]).ok();
    assert!(stdout(&out).contains("copied"), "{}", show(&out));
    let out = s3.call(&sb, &["mirror", &url]).ok();
    assert!(stdout(&out).contains("nothing copied"), "{}", show(&out));

    // Independently read back: every object's SHA-256 equals the local file's and its name.
    let local = repo_files(&sb.repo);
    if let Some(out) = s3.rclone(&["copy", &remote(&url), &sb.arg("downloaded")]) {
        assert!(out.status.success(), "rclone copy: {}", show(&out));
        let got = repo_files(&sb.path("downloaded"));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            local.keys().collect::<Vec<_>>()
        );
        for (rel, bytes) in &got {
            assert_eq!(sha256_hex(bytes), sha256_hex(&local[rel]), "{rel}");
            if rel != "SOPVAULT.txt" {
                assert!(rel.ends_with(&sha256_hex(bytes)), "{rel}");
            }
        }
        // And rclone's own comparison agrees.
        let out = s3
            .rclone(&[
                "check",
                "--download",
                "--exclude",
                "locks/**",
                "--exclude",
                "tmp/**",
                "--exclude",
                "/reserve",
                &sb.arg("repo"),
                &remote(&url),
            ])
            .unwrap();
        assert!(out.status.success(), "rclone check: {}", show(&out));
    } else {
        skip(
            "comparing the objects with rclone",
            "SOPVAULT_TEST_RCLONE is not set; objects compared through sopvault only",
        );
    }

    // --verify uses the SHA-256 checksum SeaweedFS stored at upload; --download
    // reads every object instead. No password needed.
    let out = s3
        .call(&sb, &["mirror", "--verify", "--json", &url])
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .ok();
    let v = parse_json(&out);
    assert_eq!(
        num(&v, "/files_by_stored_checksum"),
        num(&v, "/files"),
        "{v}"
    );
    assert_eq!(num(&v, "/files_hashed"), 0, "{v}");
    let v = parse_json(
        &s3.call(&sb, &["mirror", "--verify", "--download", "--json", &url])
            .env_remove("SOPVAULT_PASSWORD_FILE")
            .ok(),
    );
    assert_eq!(num(&v, "/files_hashed"), num(&v, "/files"), "{v}");
    assert_eq!(num(&v, "/files_by_stored_checksum"), 0, "{v}");

    // --status knows the bucket and reads how far behind it is.
    let out = s3.call(&sb, &["mirror", "--status"]).ok();
    assert!(
        stdout(&out).contains(&format!("{url}: last sync")) && stdout(&out).contains("up to date"),
        "{}",
        show(&out)
    );
    snapshots(&sb, None, 3..4);
    let v = parse_json(
        &s3.call(&sb, &["mirror", "--status", "--json"])
            .code(exit::INCOMPLETE),
    );
    assert!(num(&v, "/0/behind_files") >= 3, "{v}");
    s3.call(&sb, &["mirror", &url]).ok();

    // The mirror in the bucket is a repository: restore straight from it.
    let target = sb.path("restored");
    s3.call(&sb, &["restore", "latest", "--target", &path_str(&target)])
        .env("SOPVAULT_REPO", &url)
        .ok();
    assert_same_tree(
        &sb.path("src"),
        &restored_path(&target, &sb.path("src")),
        false,
    );

    // A tampered object is found without the key.
    if s3.rclone.is_some() {
        let (rel, _) = local.iter().find(|(k, _)| k.starts_with("packs/")).unwrap();
        sb.write("evil", b"not the pack you are looking for");
        let out = s3
            .rclone(&[
                "copyto",
                &sb.arg("evil"),
                &format!("{}/{rel}", remote(&url)),
            ])
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
        let out = s3
            .call(&sb, &["mirror", "--verify", &url])
            .env_remove("SOPVAULT_PASSWORD_FILE")
            .code(exit::DAMAGED);
        assert!(stderr(&out).contains(rel.as_str()), "{}", show(&out));
    }
}

#[test]
fn a_repository_in_s3_does_init_snapshot_restore_check_prune_and_mirror() {
    let Some(s3) = S3::from_env("a_repository_in_s3") else {
        return;
    };
    let sb = Sandbox::new();
    let url = s3.url("repo");
    let with_repo = |args: &[&str]| s3.call(&sb, args).env("SOPVAULT_REPO", &url);
    with_repo(&["init"]).ok();
    // A second init refuses: the prefix is not empty.
    with_repo(&["init"]).code(exit::USAGE);
    for n in 0..3u64 {
        let src = sb.path("src");
        std::fs::create_dir_all(&src).unwrap();
        sb.write("src/daily.bin", &random_bytes(1000 + n, 300 * 1024));
        sb.write("src/stable.bin", &random_bytes(5, 100 * 1024));
        with_repo(&["snapshot", "--source", "db", &path_str(&src)]).ok();
    }
    let target = sb.path("restored");
    with_repo(&["restore", "latest", "--target", &path_str(&target)]).ok();
    assert_same_tree(
        &sb.path("src"),
        &restored_path(&target, &sb.path("src")),
        false,
    );
    with_repo(&["check", "--read-data"]).ok();

    with_repo(&["prune", "--keep-last", "1", "--max-unused", "0%"]).ok();
    with_repo(&["check", "--read-data"]).ok();
    let out = with_repo(&["snapshots", "--json"]).ok();
    assert_eq!(parse_json(&out).as_array().unwrap().len(), 1);
    let target2 = sb.path("restored2");
    with_repo(&["restore", "latest", "--target", &path_str(&target2)]).ok();
    assert_same_tree(
        &sb.path("src"),
        &restored_path(&target2, &sb.path("src")),
        false,
    );

    // From the bucket to an external disk, then restore from the disk.
    let disk = sb.path("hdd");
    with_repo(&["mirror", "--init", &path_str(&disk)]).ok();
    with_repo(&["mirror", "--verify", &path_str(&disk)])
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .ok();
    let target3 = sb.path("restored3");
    sb.call(&["restore", "latest", "--target", &path_str(&target3)])
        .env("SOPVAULT_REPO", &disk)
        .ok();
    assert_same_tree(
        &sb.path("src"),
        &restored_path(&target3, &sb.path("src")),
        false,
    );

    // A wrong key is a clear error.
    let out = with_repo(&["snapshots"])
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .run();
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", show(&out));
}

/// Stops the server this test started (by its own child handle) on drop.
struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_mirror_through_rclone_serve_s3_lands_byte_for_byte_on_its_disk() {
    // A second, independent server, which ignores conditional create: the
    // backend's HEAD-then-PUT path. Its bucket is a directory we can diff.
    let Some(rclone) = std::env::var_os("SOPVAULT_TEST_RCLONE") else {
        skip(
            "a_mirror_through_rclone_serve_s3",
            "SOPVAULT_TEST_RCLONE is not set (run scripts/test.sh)",
        );
        return;
    };
    let sb = Sandbox::init();
    snapshots(&sb, None, 0..2);
    let served = sb.path("served");
    std::fs::create_dir_all(served.join("bucket")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (key, secret) = ("rclone-test", "rclone-test-secret");
    let _server = Server(
        Command::new(rclone)
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
            .arg(format!("--auth-key={key},{secret}"))
            .arg(&served)
            .env("RCLONE_CONFIG", "/dev/null")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rclone serve s3"),
    );
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "rclone serve s3 did not listen on 127.0.0.1:{port}");
    let s3 = S3 {
        env: vec![
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), key.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ],
        bucket: "bucket".into(),
        rclone: None,
    };
    let url = "s3://bucket/vault";
    s3.call(&sb, &["mirror", "--init", url]).ok();
    let out = s3.call(&sb, &["mirror", url]).ok();
    assert!(stdout(&out).contains("nothing copied"), "{}", show(&out));
    let local = repo_files(&sb.repo);
    let landed = repo_files(&served.join("bucket/vault"));
    assert_eq!(
        landed.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>()
    );
    for (rel, bytes) in &landed {
        assert!(bytes == &local[rel], "{rel} differs");
    }
    s3.call(&sb, &["mirror", "--verify", url])
        .env_remove("SOPVAULT_PASSWORD_FILE")
        .ok();
}

#[test]
fn a_mirror_to_s3_killed_half_way_is_finished_by_a_rerun() {
    let Some(s3) = S3::from_env("a_mirror_to_s3_killed_half_way") else {
        return;
    };
    let sb = Sandbox::init();
    snapshots(&sb, None, 0..3);
    let url = s3.url("killed");
    let mut child = s3
        .call(&sb, &["mirror", "--init", &url])
        .env("SOPVAULT_CRASH_AT", "mirror:copied-4")
        .spawn();
    let status = wait_at_most(&mut child, std::time::Duration::from_secs(60));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "mirror was not killed");
    // Incomplete (exit 3), not corrupt: whatever arrived is whole.
    let v = parse_json(
        &s3.call(&sb, &["mirror", "--verify", "--download", "--json", &url])
            .env_remove("SOPVAULT_PASSWORD_FILE")
            .code(exit::INCOMPLETE),
    );
    assert!(!v["missing"].as_array().unwrap().is_empty(), "{v}");
    // The rerun removes the dead run's lock in the bucket and finishes.
    s3.call(&sb, &["mirror", &url]).ok();
    let v = parse_json(
        &s3.call(&sb, &["mirror", "--verify", "--download", "--json", &url])
            .env_remove("SOPVAULT_PASSWORD_FILE")
            .ok(),
    );
    assert!(v["missing"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(num(&v, "/files_hashed"), num(&v, "/files"), "{v}");
    s3.call(&sb, &["check", "--read-data"])
        .env("SOPVAULT_REPO", &url)
        .ok();
}
