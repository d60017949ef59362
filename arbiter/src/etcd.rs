//! A small etcd v3 client on the arbiter's own tonic stack: the calls the
//! etcd store and the leader election need (KV with transactions, leases),
//! spoken to any member of an etcd cluster, the next one when a member
//! does not answer.
//!
//! The client runs on a runtime of its own (one worker thread), so the
//! synchronous [`Store`](crate::store::Store) calls can wait for it from
//! anywhere ([`Etcd::block`]), and the leader's lease keep-alive goes on
//! whatever the clusters' tasks are doing.
//!
//! Why not the `etcd-client` crate: its build script compiles etcd's
//! protos with a system `protoc`, which the README promises a newcomer
//! never needs; `proto/etcd/rpc.proto` is the part of etcd's API used
//! here, compiled like our own protos.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proto::etcd::{
    self as pb, DeleteRangeRequest, KeyValue, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, TxnResponse, compare, kv_client::KvClient,
    lease_client::LeaseClient, range_request, request_op,
};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd endpoint {url:?}: {reason}")]
    BadEndpoint { url: String, reason: String },
    #[error("no etcd member answered {what} within {within:?} (last: {last})")]
    Unreachable {
        what: &'static str,
        within: Duration,
        last: String,
    },
    #[error("etcd refused {what}: {status}")]
    Refused { what: &'static str, status: String },
    #[error("the etcd client's runtime: {0}")]
    Runtime(String),
}

/// The members of one etcd cluster, asked in turn.
pub struct Members {
    urls: Vec<String>,
    channels: Vec<Channel>,
    /// The member that answered last: asked first.
    at: AtomicUsize,
    /// How long one call may take in all, over every member.
    timeout: Duration,
}

/// An etcd status worth asking another member (or the same one again) for:
/// the member is down, has no leader, or the leader changed.
fn retryable(s: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(
        s.code(),
        Unavailable | DeadlineExceeded | Unknown | Cancelled | Aborted
    )
}

impl Members {
    /// One call, to the member that answered last and then to the others,
    /// in rounds until `timeout`. Each attempt may take half of it.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, EtcdError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = tokio::time::Instant::now();
        let attempt = (self.timeout / 2).max(Duration::from_millis(50));
        let n = self.channels.len();
        let mut last;
        let mut k = self.at.load(Ordering::Relaxed) % n;
        loop {
            match tokio::time::timeout(attempt, f(self.channels[k].clone())).await {
                Ok(Ok(r)) => {
                    self.at.store(k, Ordering::Relaxed);
                    return Ok(r.into_inner());
                }
                Ok(Err(s)) if retryable(&s) => {
                    last = format!("{}: {}", self.urls[k], s.message());
                }
                Ok(Err(s)) => {
                    return Err(EtcdError::Refused {
                        what,
                        status: format!("{}: {:?}: {}", self.urls[k], s.code(), s.message()),
                    });
                }
                Err(_) => last = format!("{}: no answer within {attempt:?}", self.urls[k]),
            }
            k = (k + 1) % n;
            if started.elapsed() >= self.timeout {
                return Err(EtcdError::Unreachable {
                    what,
                    within: self.timeout,
                    last,
                });
            }
            if k == self.at.load(Ordering::Relaxed) % n {
                // Every member was asked once: a short pause before the
                // next round (an election in etcd takes a moment).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// A channel to the member that answered last (for streams).
    pub fn current(&self) -> (String, Channel) {
        let k = self.at.load(Ordering::Relaxed) % self.channels.len();
        (self.urls[k].clone(), self.channels[k].clone())
    }

    /// Move on to the next member (a stream on this one broke).
    pub fn skip(&self) {
        self.at.fetch_add(1, Ordering::Relaxed);
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The key's current value and revisions, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let req = RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        Ok(self.range(req).await?.kvs.into_iter().next())
    }

    async fn range(&self, req: RangeRequest) -> Result<pb::RangeResponse, EtcdError> {
        self.call("a read", |ch| {
            let req = req.clone();
            async move { KvClient::new(ch).range(req).await }
        })
        .await
    }

    /// Keys under `prefix`, in key order (`newest_first`: reversed), at
    /// most `limit` (0: all).
    pub async fn list(
        &self,
        prefix: &[u8],
        limit: i64,
        newest_first: bool,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        let req = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            limit,
            sort_order: if newest_first {
                range_request::SortOrder::Descend
            } else {
                range_request::SortOrder::Ascend
            } as i32,
            sort_target: range_request::SortTarget::Key as i32,
            ..Default::default()
        };
        Ok(self.range(req).await?.kvs)
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        self.call("a transaction", |ch| {
            let req = req.clone();
            async move { KvClient::new(ch).txn(req).await }
        })
        .await
    }

    /// A new lease of `ttl` (whole seconds, at least 1): (id, granted TTL).
    pub async fn grant(&self, ttl: Duration) -> Result<(i64, Duration), EtcdError> {
        let req = LeaseGrantRequest {
            ttl: ttl.as_secs().max(1) as i64,
            id: 0,
        };
        let r = self
            .call("a lease grant", |ch| {
                let req = req.clone();
                async move { LeaseClient::new(ch).lease_grant(req).await }
            })
            .await?;
        if !r.error.is_empty() || r.id == 0 {
            return Err(EtcdError::Refused {
                what: "a lease grant",
                status: r.error,
            });
        }
        Ok((r.id, Duration::from_secs(r.ttl.max(0) as u64)))
    }

    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("a lease revoke", |ch| async move {
            LeaseClient::new(ch)
                .lease_revoke(LeaseRevokeRequest { id })
                .await
        })
        .await
        .map(|_| ())
    }
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// `key`'s create revision equals `revision` (0: the key does not exist).
pub fn created_at(key: &[u8], revision: i64) -> pb::Compare {
    pb::Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
    }
}

/// `key` was last modified at `revision`.
pub fn modified_at(key: &[u8], revision: i64) -> pb::Compare {
    pb::Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(revision)),
    }
}

pub fn put(key: Vec<u8>, value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            lease,
            prev_kv: false,
        })),
    }
}

pub fn delete(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key,
                range_end: vec![],
                prev_kv: false,
            },
        )),
    }
}

pub fn read(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

/// A connection to an etcd cluster, with the runtime it runs on.
pub struct Etcd {
    rt: Option<tokio::runtime::Runtime>,
    members: Arc<Members>,
}

impl Etcd {
    /// Connections (made lazily) to every member in `urls`: `http://host:port`,
    /// or with `tls` (the members' CA, this client's certificate and key)
    /// `https://host:port`, each member's certificate checked against its
    /// host name or address.
    pub fn connect(
        urls: &[String],
        timeout: Duration,
        tls: Option<&crate::config::TlsPem>,
    ) -> Result<Self, EtcdError> {
        if urls.is_empty() {
            return Err(EtcdError::BadEndpoint {
                url: String::new(),
                reason: "no endpoint given".into(),
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|e| EtcdError::Runtime(e.to_string()))?;
        let channels = {
            let _in = rt.enter();
            urls.iter()
                .map(|url| {
                    let bad = |reason: String| EtcdError::BadEndpoint {
                        url: url.clone(),
                        reason,
                    };
                    let mut ep =
                        Endpoint::from_shared(url.clone()).map_err(|e| bad(e.to_string()))?;
                    match tls {
                        None if !url.starts_with("http://") => {
                            return Err(bad(
                                "must start with http:// (https:// needs TLS files)".into()
                            ));
                        }
                        Some(_) if !url.starts_with("https://") => {
                            return Err(bad("must start with https:// (TLS to etcd is on)".into()));
                        }
                        None => {}
                        Some(t) => {
                            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
                            let cfg = ClientTlsConfig::new()
                                .ca_certificate(Certificate::from_pem(&t.ca))
                                .identity(Identity::from_pem(&t.cert, &t.key));
                            ep = ep
                                .tls_config(cfg)
                                .map_err(|e| bad(format!("TLS setup: {e}")))?;
                        }
                    }
                    Ok(ep
                        .connect_timeout(timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(1))
                        .keep_alive_timeout(Duration::from_secs(2))
                        .connect_lazy())
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(Etcd {
            rt: Some(rt),
            members: Arc::new(Members {
                urls: urls.to_vec(),
                channels,
                at: AtomicUsize::new(0),
                timeout,
            }),
        })
    }

    pub fn members(&self) -> Arc<Members> {
        self.members.clone()
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives as long as Etcd")
    }

    /// Run `f` on the client's runtime and wait for it, from any thread
    /// (but never from a task of that runtime).
    pub fn block<T, F, Fut>(&self, f: F) -> Result<T, EtcdError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Members>) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.members.clone());
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| EtcdError::Runtime("the etcd client's task ended".into()))?
    }

    /// Run a task on the client's runtime (the leader's keep-alive).
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt().spawn(f)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Never block here: the last owner may be an async task.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
