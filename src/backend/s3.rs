//! An S3-compatible object store as a [`Backend`], through the `object_store` crate.
//!
//! `s3://BUCKET/PREFIX` holds the same relative paths as a repository
//! directory (`SOPVAULT.txt`, `config/…`, `keys/…`, `packs/hh/…`, `index/…`,
//! `snapshots/…`, `prune/…`, `locks/…`) below `PREFIX/`, so a mirror on disk
//! and one in a bucket can be compared name by name. Endpoint, region and
//! credentials come from the usual AWS variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …); an
//! `http://` endpoint is allowed without further setting.
//!
//! Uploads are whole objects (one PUT each: a reader never sees a partial
//! object, and nothing is left behind to clean up) carrying an
//! `x-amz-checksum-sha256` header, so the server rejects bytes damaged in
//! transit, and which `mirror --verify` reads back with a HEAD instead of
//! downloading the object. `write_new` asks for a create-only put (`If-None-Match: *`); a
//! server that ignores or rejects that gets a HEAD first, which is just as
//! safe here because a name is the SHA-256 of its content. The engine is
//! synchronous: every call runs on a small tokio runtime owned by the backend.

use crate::backend::names::{file_at, rel_path, LOCKS_DIR};
use crate::backend::{Backend, FileKind, README_NAME};
use crate::error::{Error, Result};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::path::Path as ObjPath;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct S3Backend {
    store: AmazonS3,
    bucket: String,
    /// Key prefix without leading or trailing slash; may be empty.
    prefix: String,
    rt: tokio::runtime::Runtime,
    /// For the one request object_store does not make: HEAD with `x-amz-checksum-mode`.
    http: reqwest::Client,
    /// Set once the server answered a create-only put with "not implemented".
    no_conditional_put: AtomicBool,
    /// Names `list` skipped as not a repository file's.
    skipped: AtomicU64,
}

/// True when `spec` names an object store location rather than a directory.
pub fn is_url(spec: &str) -> bool {
    spec.starts_with("s3://")
}

fn s3_err(object: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::damaged(object, "object is missing"),
        e @ (object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }) => Error::Remote {
            object: object.to_string(),
            reason: format!(
                "the server refused access ({}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                server_reason(&e.to_string())
            ),
        },
        e => Error::Remote {
            object: object.to_string(),
            reason: server_reason(&e.to_string()),
        },
    }
}

/// One line from a client error: the S3 error code and message when the body has them.
fn server_reason(text: &str) -> String {
    let tag = |t: &str| -> Option<String> {
        let start = text.find(&format!("<{t}>"))? + t.len() + 2;
        let end = start + text[start..].find(&format!("</{t}>"))?;
        Some(text[start..end].to_string())
    };
    let flat = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => text.to_string(),
    };
    flat.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl S3Backend {
    /// Connects to `s3://BUCKET[/PREFIX]` with settings from the AWS environment variables.
    pub fn from_url(url: &str) -> Result<S3Backend> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Usage(format!("{url:?}: expected s3://BUCKET/PREFIX")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!(
                "{url:?}: no bucket name: expected s3://BUCKET/PREFIX"
            )));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(Error::Usage(format!(
                "{url:?}: the prefix may not contain . or .. parts"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_checksum_algorithm(Checksum::SHA256);
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_default();
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        if !endpoint.is_empty() && std::env::var_os("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
            // Self-hosted servers (SeaweedFS, MinIO, rclone) want path-style requests.
            builder = builder.with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| Error::Usage(format!("{url}: cannot set up the S3 client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sopvault-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Remote {
                object: url.to_string(),
                reason: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(S3Backend {
            store,
            bucket: bucket.to_string(),
            prefix,
            rt,
            http: reqwest::Client::new(),
            no_conditional_put: AtomicBool::new(false),
            skipped: AtomicU64::new(0),
        })
    }

    fn key(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn object(&self, rel: &str) -> String {
        format!("{}/{rel}", self.location())
    }

    /// Every object below `rel_dir` (relative to the prefix), with its size.
    fn list_under(&self, rel_dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.key(rel_dir);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&prefix));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| s3_err(&self.object(rel_dir), e))?;
                let full = meta.location.to_string();
                let rel = full.strip_prefix(&strip).unwrap_or(&full).to_string();
                out.push((rel, meta.size));
            }
            Ok(out)
        })
    }

    /// Every object below the prefix, with its path relative to it; for mirrors and `--verify`.
    pub fn list_all(&self) -> Result<Vec<(String, u64)>> {
        self.list_under("")
    }

    fn get(&self, rel: &str) -> Result<Vec<u8>> {
        let key = self.key(rel);
        self.rt.block_on(async {
            let r = self
                .store
                .get(&key)
                .await
                .map_err(|e| s3_err(&self.object(rel), e))?;
            let bytes = r.bytes().await.map_err(|e| s3_err(&self.object(rel), e))?;
            Ok(bytes.to_vec())
        })
    }

    /// Uploads `bytes` as the object `rel`; with `create`, keeps an object
    /// already there.
    pub(super) fn put(&self, rel: &str, bytes: &[u8], create: bool) -> Result<()> {
        let key = self.key(rel);
        let object = self.object(rel);
        self.rt.block_on(async {
            let payload = PutPayload::from(bytes.to_vec());
            if create && !self.no_conditional_put.load(Ordering::Relaxed) {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match self.store.put_opts(&key, payload.clone(), opts).await {
                    Ok(_) => return Ok(()),
                    // Same name, same bytes: it is already there.
                    Err(object_store::Error::AlreadyExists { .. }) => return Ok(()),
                    Err(object_store::Error::NotImplemented { .. })
                    | Err(object_store::Error::NotSupported { .. }) => {
                        self.no_conditional_put.store(true, Ordering::Relaxed);
                    }
                    Err(e) => return Err(s3_err(&object, e)),
                }
            }
            if create {
                match self.store.head(&key).await {
                    Ok(_) => return Ok(()),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(s3_err(&object, e)),
                }
            }
            self.store
                .put(&key, payload)
                .await
                .map(|_| ())
                .map_err(|e| s3_err(&object, e))
        })
    }

    /// The SHA-256 the server stored with the object at upload, if it keeps one
    /// (`HEAD` with `x-amz-checksum-mode: ENABLED`, through a presigned URL).
    /// `None` when the server has none, or only a checksum of multipart parts.
    fn checksum_of(&self, rel: &str) -> Result<Option<String>> {
        use base64::Engine;
        let key = self.key(rel);
        let object = self.object(rel);
        self.rt.block_on(async {
            let mut opts = SignedUrlOptions::new();
            opts.signed_headers.insert(
                "x-amz-checksum-mode",
                http::HeaderValue::from_static("ENABLED"),
            );
            let url = self
                .store
                .signed_url_opts(
                    http::Method::HEAD,
                    &key,
                    std::time::Duration::from_secs(600),
                    &opts,
                )
                .await
                .map_err(|e| s3_err(&object, e))?;
            let resp = self
                .http
                .head(url)
                .header("x-amz-checksum-mode", "ENABLED")
                .send()
                .await
                .map_err(|e| Error::Remote {
                    object: object.to_string(),
                    reason: server_reason(&e.to_string()),
                })?;
            match resp.status().as_u16() {
                200 => {}
                404 => return Err(Error::damaged(&object, "object is missing")),
                // Presigning not accepted here: fall back to reading the object.
                _ => return Ok(None),
            }
            let Some(v) = resp.headers().get("x-amz-checksum-sha256") else {
                return Ok(None);
            };
            let text = v.to_str().unwrap_or("");
            if text.contains('-') {
                return Ok(None);
            }
            Ok(base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .filter(|b| b.len() == 32)
                .map(hex::encode))
        })
    }

    fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel);
        self.rt.block_on(async {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(s3_err(&self.object(rel), e)),
            }
        })
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let dir = format!("{}/", kind.dir());
        let mut out = Vec::new();
        for (rel, size) in self.list_under(kind.dir())? {
            match file_at(&rel) {
                Some((k, name)) if k == kind => out.push((name.to_string(), size)),
                // `index` is a prefix of `index-old/…` too: not this directory.
                _ if !rel.starts_with(&dir) => {}
                _ => {
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn skipped_names(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.get(&rel_path(kind, name))
    }

    fn read_range(&self, kind: FileKind, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let rel = rel_path(kind, name);
        let key = self.key(&rel);
        let got = self.rt.block_on(async {
            self.store
                .get_range(&key, offset..offset + len as u64)
                .await
                .map_err(|e| s3_err(&self.object(&rel), e))
        })?;
        if got.len() != len {
            return Err(Error::damaged(
                self.object(&rel),
                format!(
                    "truncated: expected {len} bytes at offset {offset}, found {}",
                    got.len()
                ),
            ));
        }
        Ok(got.to_vec())
    }

    fn size(&self, kind: FileKind, name: &str) -> Result<u64> {
        let rel = rel_path(kind, name);
        let key = self.key(&rel);
        self.rt.block_on(async {
            self.store
                .head(&key)
                .await
                .map(|m| m.size)
                .map_err(|e| s3_err(&self.object(&rel), e))
        })
    }

    fn write_new(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<()> {
        self.put(&rel_path(kind, name), bytes, true)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<()> {
        self.delete(&rel_path(kind, name))
    }

    fn clean_tmp(&self) -> Result<usize> {
        // Objects are uploaded whole: there are no temporary files.
        Ok(0)
    }

    fn write_lock(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.put(&format!("{LOCKS_DIR}/{name}"), bytes, false)
    }

    fn list_locks(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .list_under(LOCKS_DIR)?
            .into_iter()
            .filter_map(|(rel, _)| {
                rel.strip_prefix(LOCKS_DIR)?
                    .strip_prefix('/')
                    .map(str::to_string)
            })
            .filter(|n| n.ends_with(".lock") && !n.contains('/'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn read_lock(&self, name: &str) -> Result<Vec<u8>> {
        self.get(&format!("{LOCKS_DIR}/{name}"))
    }

    fn remove_lock(&self, name: &str) -> Result<()> {
        self.delete(&format!("{LOCKS_DIR}/{name}"))
    }

    fn read_readme(&self) -> Result<Option<Vec<u8>>> {
        match self.get(README_NAME) {
            Ok(b) => Ok(Some(b)),
            Err(Error::Damaged { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create(&self, readme: &str) -> Result<()> {
        if !self.list_under("")?.is_empty() {
            return Err(Error::Usage(format!(
                "{} already holds objects; refusing to create a repository there",
                self.location()
            )));
        }
        self.put(README_NAME, readme.as_bytes(), false)
    }

    fn all_files(&self) -> Result<Vec<(String, u64)>> {
        self.list_all()
    }

    fn stored_sha256(&self, kind: FileKind, name: &str) -> Result<Option<String>> {
        self.checksum_of(&rel_path(kind, name))
    }
}
