//! A TCP proxy on 127.0.0.1 between the service and Postgres that can be
//! told to stall: it stops forwarding bytes in both directions but keeps
//! every socket open, as a network that silently drops packets would. New
//! connections are accepted and stall too.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::AbortHandle,
};

pub struct StallProxy {
    pub port: u16,
    stalled: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    connections: Arc<AtomicUsize>,
}

impl StallProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<StallProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stalled = Arc::new(watch::channel(false).0);
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let accept = {
            let (stalled, tasks, connections) =
                (stalled.clone(), tasks.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    connections.fetch_add(1, Ordering::Relaxed);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    let mut tasks = tasks.lock().unwrap();
                    tasks.push(
                        tokio::spawn(pump(in_read, out_write, stalled.subscribe())).abort_handle(),
                    );
                    tasks.push(
                        tokio::spawn(pump(out_read, in_write, stalled.subscribe())).abort_handle(),
                    );
                }
            })
        };
        tasks.lock().unwrap().push(accept.abort_handle());
        Ok(StallProxy {
            port,
            stalled,
            tasks,
            connections,
        })
    }

    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Copies one direction; while stalled, neither reads nor writes, and holds
/// what it had read.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut stalled: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
