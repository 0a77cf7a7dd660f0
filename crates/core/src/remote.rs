//! Object storage through the `object_store` crate: S3 and S3-compatible servers (MinIO, Ceph,
//! Garage, R2 — custom endpoint), Azure Blob and Google Cloud Storage. A repository on object
//! storage is named by a URL — `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`
//! — and an archive in it by the URL of its object; both are carried as paths through the engine.
//!
//! Endpoint and credentials come from the providers' usual environment variables (for S3:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP=true`; for Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY` or
//! `AZURE_STORAGE_USE_EMULATOR=true`; for GCS: `GOOGLE_SERVICE_ACCOUNT` or
//! `GOOGLE_APPLICATION_CREDENTIALS`), or from a storage's settings.
//!
//! The archive format is read and written by synchronous code (sealing runs on worker threads);
//! object-store calls run on a small runtime of their own and are awaited from there, so they
//! work the same from async code, blocking threads and plain threads.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, ErrorCode, Result};

pub const SCHEMES: [&str; 3] = ["s3://", "az://", "gs://"];

/// Whether `location` names object storage (not a local path).
pub fn is_remote(location: &Path) -> bool {
    let s = location.to_string_lossy();
    SCHEMES.iter().any(|p| s.starts_with(p))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("safehold-objstore").enable_all().build().unwrap_or_else(|e| {
            // Without a runtime no object storage works; say why at the first call.
            panic!("cannot start the object storage runtime: {e}")
        })
    })
}

/// Runs an object-store future to completion on the object-store runtime, from any thread.
pub fn block<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    match rx.recv() {
        Ok(v) => v,
        Err(_) => panic!("the object storage task stopped without an answer"),
    }
}

/// Settings of a bucket besides what the environment gives.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
    /// Google Cloud Storage: a service account key (JSON).
    pub service_account_key: Option<String>,
}

/// A bucket's store, as objects and as the low-level multipart API (the same client).
#[derive(Clone)]
struct Store {
    objects: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
}

type Stores = Mutex<HashMap<String, Store>>;

fn stores() -> &'static Stores {
    static S: OnceLock<Stores> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// `scheme://bucket` and the key below it.
fn split(url: &str) -> Result<(String, String, String)> {
    let scheme = SCHEMES.iter().find(|p| url.starts_with(*p)).ok_or_else(|| Error::validation(format!("{url} is not an object storage URL")))?;
    let rest = &url[scheme.len()..];
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::validation(format!("{url} names no bucket; use {scheme}BUCKET/PREFIX")));
    }
    Ok((scheme.trim_end_matches("://").to_string(), bucket.to_string(), key.trim_matches('/').to_string()))
}

/// Forgets the connection of `url`'s bucket: the next [`connect`] builds it anew (credentials
/// that were tried and refused must not stay in use).
pub fn forget(url: &str) -> Result<()> {
    let (scheme, bucket, _) = split(url)?;
    stores().lock().map_err(|_| Error::new(ErrorCode::Internal, "object store registry poisoned"))?.remove(&format!("{scheme}://{bucket}"));
    Ok(())
}

/// Connects the bucket of `url` (once per process) with the environment's credentials and any
/// extra `settings`.
pub fn connect(url: &str, settings: &Settings) -> Result<()> {
    let (scheme, bucket, _) = split(url)?;
    let root = format!("{scheme}://{bucket}");
    // The HTTP clients' TLS: ring, installed once per process (an error means it is already there).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut map = stores().lock().map_err(|_| Error::new(ErrorCode::Internal, "object store registry poisoned"))?;
    if map.contains_key(&root) && settings.endpoint.is_none() && settings.access_key_id.is_none() && settings.service_account_key.is_none() {
        return Ok(());
    }
    let bad = |e: object_store::Error| Error::validation(format!("cannot use {root}: {e}"));
    fn both<T: ObjectStore + MultipartStore>(s: T) -> Store {
        let s = Arc::new(s);
        Store { objects: s.clone(), multipart: s }
    }
    let store: Store = match scheme.as_str() {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket);
            let endpoint = settings.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).or_else(|| std::env::var("AWS_ENDPOINT").ok());
            if let Some(e) = endpoint {
                let http = e.starts_with("http://");
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                if http {
                    b = b.with_allow_http(settings.allow_http.unwrap_or(true));
                }
            }
            if let Some(r) = &settings.region {
                b = b.with_region(r);
            }
            if let (Some(k), Some(s)) = (&settings.access_key_id, &settings.secret_access_key) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            b = b.with_retry(object_store::RetryConfig { max_retries: 2, retry_timeout: std::time::Duration::from_secs(10), ..Default::default() });
            both(b.build().map_err(bad)?)
        }
        "az" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(&bucket);
            // For Azure the key id is the storage account's name and the secret its key.
            if let Some(a) = &settings.access_key_id {
                b = b.with_account(a);
            }
            if let Some(k) = &settings.secret_access_key {
                b = b.with_access_key(k);
            }
            if let Some(e) = &settings.endpoint {
                b = b.with_endpoint(e.clone()).with_allow_http(e.starts_with("http://"));
            }
            both(b.build().map_err(bad)?)
        }
        "gs" => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
            if let Some(k) = &settings.service_account_key {
                b = b.with_service_account_key(k.clone());
            }
            both(b.build().map_err(bad)?)
        }
        other => return Err(Error::validation(format!("unsupported object storage scheme {other}"))),
    };
    map.insert(root, store);
    Ok(())
}

/// An object: its store, its key and the URL shown in messages.
#[derive(Clone)]
pub struct Object {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    pub key: ObjPath,
    pub url: String,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// The object named by `url` (its bucket connected with the environment's credentials if it
/// was not connected before).
pub fn object(url: &Path) -> Result<Object> {
    let url = url.to_string_lossy().to_string();
    let (scheme, bucket, key) = split(&url)?;
    let root = format!("{scheme}://{bucket}");
    let existing = stores().lock().ok().and_then(|m| m.get(&root).cloned());
    let store = match existing {
        Some(s) => s,
        None => {
            connect(&url, &Settings::default())?;
            stores().lock().ok().and_then(|m| m.get(&root).cloned()).ok_or_else(|| Error::new(ErrorCode::Internal, "object store vanished"))?
        }
    };
    Ok(Object { store: store.objects, multipart: store.multipart, key: ObjPath::from(key), url })
}

/// A clear error for a failed object-store call.
pub fn explain(url: &str, what: &str, e: object_store::Error) -> Error {
    let explained = explain_only(url, what, &e);
    explained.caused_by(&e)
}

/// What [`explain`] says, without the cause.
fn explain_only(url: &str, what: &str, e: &object_store::Error) -> Error {
    let text = e.to_string();
    let all = format!("{text} {e:?}").to_lowercase();
    let bucket = url.split('/').take(3).collect::<Vec<_>>().join("/");
    if all.contains("nosuchbucket") || all.contains("containernotfound") || all.contains("bucket does not exist") || all.contains("the specified bucket does not exist") {
        return Error::not_found(format!("{bucket}: the bucket does not exist (cannot {what} {url}); create it first or fix the URL"));
    }
    match e {
        object_store::Error::NotFound { .. } => Error::not_found(format!("{url} does not exist (cannot {what})")),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => Error::new(
            ErrorCode::AuthFailed,
            format!("{url}: access denied (cannot {what}): check the credentials (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket's permissions"),
        ),
        _ if all.contains("invalidaccesskeyid") || all.contains("signaturedoesnotmatch") || all.contains("accessdenied") || all.contains("status 403") || all.contains("403 forbidden") => {
            Error::new(ErrorCode::AuthFailed, format!("{url}: the credentials were refused (cannot {what}): {text}"))
        }
        _ if all.contains("connect") || all.contains("timed out") || all.contains("dns") || all.contains("connection") => {
            Error::new(ErrorCode::Unreachable, format!("cannot reach {bucket} (cannot {what} {url}): {text}; check the endpoint and the network"))
        }
        _ => Error::new(ErrorCode::Io, format!("{url}: cannot {what}: {text}")),
    }
}

impl Object {
    pub fn child(&self, rel: &str) -> Object {
        let key = if self.key.as_ref().is_empty() { ObjPath::from(rel) } else { ObjPath::from(format!("{}/{rel}", self.key)) };
        Object { store: self.store.clone(), multipart: self.multipart.clone(), key, url: format!("{}/{rel}", self.url.trim_end_matches('/')) }
    }

    pub fn size(&self) -> Result<Option<u64>> {
        let (store, key, url) = (self.store.clone(), self.key.clone(), self.url.clone());
        match block(async move { store.head(&key).await }) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(explain(&url, "read its size", e)),
        }
    }

    pub fn get_range(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        let (store, key, url) = (self.store.clone(), self.key.clone(), self.url.clone());
        block(async move { store.get_range(&key, start..end).await }).map(|b| b.to_vec()).map_err(|e| explain(&url, "read it", e))
    }

    pub fn get(&self) -> Result<Vec<u8>> {
        let (store, key) = (self.store.clone(), self.key.clone());
        block(async move {
            let r = store.get(&key).await?;
            r.bytes().await
        })
        .map(|b| b.to_vec())
        .map_err(|e| explain(&self.url, "read it", e))
    }

    pub fn put(&self, data: Vec<u8>) -> Result<()> {
        let (store, key, url) = (self.store.clone(), self.key.clone(), self.url.clone());
        block(async move { store.put(&key, PutPayload::from(data)).await }).map(|_| ()).map_err(|e| explain(&url, "write it", e))
    }

    pub fn delete(&self) -> Result<()> {
        let (store, key, url) = (self.store.clone(), self.key.clone(), self.url.clone());
        match block(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(explain(&url, "delete it", e)),
        }
    }

    /// The objects below this one (as a prefix): (URL, size), in key order.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let (store, key, url) = (self.store.clone(), self.key.clone(), self.url.clone());
        let base = self.url.trim_end_matches('/').to_string();
        let prefix_len = key.as_ref().len();
        let mut items: Vec<(String, u64)> = block(async move {
            let prefix = if key.as_ref().is_empty() { None } else { Some(key) };
            store.list(prefix.as_ref()).try_collect::<Vec<_>>().await
        })
        .map_err(|e| explain(&url, "list it", e))?
        .into_iter()
        .map(|m| {
            let rel = m.location.as_ref()[prefix_len..].trim_start_matches('/').to_string();
            (format!("{base}/{rel}"), m.size)
        })
        .collect();
        items.sort();
        Ok(items)
    }

    /// A reader of `len` bytes from `offset`, fetched in growing ranges as it is read.
    pub fn reader(&self, offset: u64, len: u64) -> RangeReader {
        RangeReader { object: self.clone(), pos: offset, end: offset + len, buf: Vec::new(), at: 0, window: 64 * 1024 }
    }

    /// A streaming multipart upload: the object appears only when [`Upload::finish`] completes
    /// it; dropped unfinished, the upload is aborted and nothing is left. Until it ends, a small
    /// marker object beside it (`<key>.uploading`: the upload's id, this host and process) lets
    /// the next start abort an upload whose process was killed ([`abort_orphaned_uploads`]).
    pub fn upload(&self) -> Result<Upload> {
        let (mp, key, url) = (self.multipart.clone(), self.key.clone(), self.url.clone());
        let id = block(async move { mp.create_multipart(&key).await }).map_err(|e| explain(&url, "start an upload", e))?;
        let marker = self.marker();
        let entry = serde_json::json!({ "id": id, "host": host(), "pid": std::process::id() });
        if let Err(e) = marker.put(entry.to_string().into_bytes()) {
            let _ = self.abort(&id);
            return Err(e);
        }
        Ok(Upload { object: self.clone(), id: Some(id), parts: Vec::new(), buf: Vec::with_capacity(PART), marker: Some(marker) })
    }

    fn marker(&self) -> Object {
        Object { store: self.store.clone(), multipart: self.multipart.clone(), key: ObjPath::from(format!("{}{MARKER}", self.key)), url: format!("{}{MARKER}", self.url) }
    }

    fn abort(&self, id: &str) -> Result<()> {
        let (mp, key, url, id) = (self.multipart.clone(), self.key.clone(), self.url.clone(), id.to_string());
        match block(async move { mp.abort_multipart(&key, &id).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(explain(&url, "abort an unfinished upload", e)),
        }
    }
}

/// Ends the name of an upload's marker object.
pub const MARKER: &str = ".uploading";

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").or_else(|_| std::fs::read_to_string("/etc/hostname")).unwrap_or_default().trim().to_string()
}

/// Aborts the multipart uploads below `location` that a process of this host which is no longer
/// running left unfinished (killed mid-backup), and removes their markers; returns how many.
/// Uploads of running processes and of other hosts are left alone.
pub fn abort_orphaned_uploads(location: &Path) -> Result<usize> {
    let dir = object(location)?;
    let mut aborted = 0;
    let me = host();
    // Without a host name or /proc, whether a process lives cannot be told: abort nothing.
    if me.is_empty() || !Path::new("/proc/self").exists() {
        return Ok(0);
    }
    for (url, _) in dir.list()?.into_iter().filter(|(u, _)| u.ends_with(MARKER)) {
        let swept = (|| -> Result<bool> {
            let marker = object(Path::new(&url))?;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&marker.get()?) else { return Ok(false) };
            let (id, pid) = (v["id"].as_str().unwrap_or_default(), v["pid"].as_u64().unwrap_or(0));
            if v["host"].as_str() != Some(me.as_str()) || pid == u64::from(std::process::id()) || PathBuf::from(format!("/proc/{pid}")).exists() {
                return Ok(false);
            }
            object(Path::new(url.trim_end_matches(MARKER)))?.abort(id)?;
            marker.delete()?;
            Ok(true)
        })();
        // One marker that cannot be handled does not stop the others.
        match swept {
            Ok(true) => aborted += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot clear the unfinished upload {url}: {}", e.message),
        }
    }
    Ok(aborted)
}

pub struct RangeReader {
    object: Object,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
    window: u64,
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.buf.len() {
            if self.pos >= self.end {
                return Ok(0);
            }
            let upto = (self.pos + self.window).min(self.end);
            self.buf = self.object.get_range(self.pos, upto).map_err(|e| std::io::Error::other(e.message))?;
            if self.buf.is_empty() {
                return Ok(0);
            }
            self.at = 0;
            self.pos += self.buf.len() as u64;
            self.window = (self.window * 2).min(8 << 20);
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Parts of 8 MiB (S3 needs at least 5 MiB for every part but the last).
const PART: usize = 8 << 20;

pub struct Upload {
    object: Object,
    id: Option<String>,
    parts: Vec<PartId>,
    buf: Vec<u8>,
    marker: Option<Object>,
}

impl Upload {
    fn send_part(&mut self) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PART));
        let id = self.id.clone().ok_or_else(|| std::io::Error::other("the upload is closed"))?;
        let (mp, key, idx) = (self.object.multipart.clone(), self.object.key.clone(), self.parts.len());
        let part = block(async move { mp.put_part(&key, &id, idx, PutPayload::from(data)).await })
            .map_err(|e| std::io::Error::other(explain(&self.object.url, "upload a part", e).message))?;
        self.parts.push(part);
        Ok(())
    }

    /// Completes the upload: the object appears whole.
    pub fn finish(mut self) -> Result<()> {
        if !self.buf.is_empty() || self.parts.is_empty() {
            self.send_part().map_err(|e| Error::new(ErrorCode::Io, e.to_string()).caused_by(&e))?;
        }
        let id = self.id.clone().ok_or_else(|| Error::new(ErrorCode::Internal, "the upload is closed"))?;
        let (mp, key, url, parts) = (self.object.multipart.clone(), self.object.key.clone(), self.object.url.clone(), std::mem::take(&mut self.parts));
        block(async move { mp.complete_multipart(&key, &id, parts).await }).map_err(|e| explain(&url, "complete the upload", e))?;
        // Completed: nothing to abort (a failed completion is aborted by Drop, marker and all).
        self.id = None;
        if let Some(m) = self.marker.take() {
            let _ = m.delete();
        }
        Ok(())
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = PART - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= PART {
            self.send_part()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    /// An unfinished upload is aborted: no partial object, no orphaned multipart upload.
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if self.object.abort(&id).is_ok() {
                if let Some(m) = self.marker.take() {
                    let _ = m.delete();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic { store: "S3", source: msg.to_string().into() }
    }

    /// Found when a test's random port was 33403: "403" in an address is not a refusal.
    #[test]
    fn a_server_that_does_not_answer_is_unreachable_whatever_its_port() {
        let e = explain("s3://nowhere/repo", "read it", generic("Error performing GET http://127.0.0.1:33403/nowhere/repo in 213ms, after 2 retries - HTTP error: error sending request: client error (Connect)"));
        assert_eq!(e.code, ErrorCode::Unreachable, "{}", e.message);
        let e = explain("s3://guarded/repo", "read it", generic("Client error with status 403 Forbidden: <Error><Code>AccessDenied</Code></Error>"));
        assert_eq!(e.code, ErrorCode::AuthFailed, "{}", e.message);
    }
}
