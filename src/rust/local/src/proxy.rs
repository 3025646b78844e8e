//! A loopback TCP proxy in front of Azurite that can slow, cut or reset connections
//! mid-transfer, as networks do. TLS passes through untouched (the certificate names
//! 127.0.0.1, whatever the port), so clients see exactly what a broken network shows
//! them: stalls, early EOFs and connection resets in the middle of a body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to connections. Byte counts are per connection and per
/// direction; `every` picks which connections are hit (1 = all, 3 = every third).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyFaults {
    /// Added before each forwarded chunk.
    pub delay_ms: u64,
    /// Close both sides (a clean EOF) after this many bytes in either direction.
    pub cut_after: Option<u64>,
    /// Reset both sides (RST) after this many bytes in either direction.
    pub reset_after: Option<u64>,
    /// Hit every n-th connection (0 or 1: every connection).
    pub every: u64,
}

#[derive(Default)]
struct Counters {
    connections: u64,
    faults: u64,
}

/// A running proxy; stops when dropped or on [`TcpProxy::stop`].
pub struct TcpProxy {
    port: u16,
    faults: Arc<Mutex<ProxyFaults>>,
    counters: Arc<Mutex<Counters>>,
    stop: watch::Sender<bool>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> crate::BoxFuture<'static, std::io::Result<TcpProxy>> {
        Box::pin(async move {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let port = listener.local_addr()?.port();
            let faults = Arc::new(Mutex::new(ProxyFaults::default()));
            let counters = Arc::new(Mutex::new(Counters::default()));
            let (stop, mut stopped) = watch::channel(false);
            let (f, c) = (faults.clone(), counters.clone());
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = stopped.changed() => break,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    let plan = {
                        let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                        c.connections += 1;
                        let faults = f.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let hit = faults.every <= 1 || c.connections % faults.every == 0;
                        if hit && (faults.cut_after.is_some() || faults.reset_after.is_some()) {
                            c.faults += 1;
                        }
                        (faults, hit)
                    };
                    let mut stopped = stopped.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = relay(client, upstream, plan.0, plan.1) => {}
                            _ = stopped.changed() => {}
                        }
                    });
                }
            });
            Ok(TcpProxy {
                port,
                faults,
                counters,
                stop,
            })
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Faults for connections accepted from now on.
    pub fn set_faults(&self, faults: ProxyFaults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// (connections accepted, connections given a cut or reset).
    pub fn counts(&self) -> (u64, u64) {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        (c.connections, c.faults)
    }

    pub fn stop(&self) {
        let _ = self.stop.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

enum End {
    Done,
    Cut,
    Reset,
}

async fn relay(client: TcpStream, upstream: SocketAddr, faults: ProxyFaults, hit: bool) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let limit = |f: &ProxyFaults| -> Option<(u64, bool)> {
        if !hit {
            return None;
        }
        match (f.reset_after, f.cut_after) {
            (Some(n), _) => Some((n, true)),
            (None, Some(n)) => Some((n, false)),
            _ => None,
        }
    };
    let limit = limit(&faults);
    let delay = Duration::from_millis(if hit { faults.delay_ms } else { 0 });
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = Box::pin(pump(&mut cr, &mut sw, delay, limit));
    let mut down = Box::pin(pump(&mut sr, &mut cw, delay, limit));
    // A direction that hits its limit ends the connection for both; one that ends
    // cleanly lets the other finish.
    let (mut up_done, mut down_done) = (false, false);
    let end = loop {
        tokio::select! {
            e = &mut up, if !up_done => match e {
                End::Done => up_done = true,
                other => break other,
            },
            e = &mut down, if !down_done => match e {
                End::Done => down_done = true,
                other => break other,
            },
        }
        if up_done && down_done {
            break End::Done;
        }
    };
    drop(up);
    drop(down);
    let reset = matches!(end, End::Reset);
    if let (Ok(client), Ok(server)) = (cr.reunite(cw), sr.reunite(sw)) {
        if reset {
            // SO_LINGER 0: closing sends RST instead of FIN. A zero linger never
            // blocks on drop, which is what the deprecation warns about.
            #[allow(deprecated)]
            {
                let _ = client.set_linger(Some(Duration::ZERO));
                let _ = server.set_linger(Some(Duration::ZERO));
            }
        }
        drop(client);
        drop(server);
    }
}

async fn pump<R, W>(from: &mut R, to: &mut W, delay: Duration, limit: Option<(u64, bool)>) -> End
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return End::Done;
            }
            Ok(n) => n,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut chunk = &buf[..n];
        if let Some((max, reset)) = limit {
            let room = max.saturating_sub(sent) as usize;
            if room < chunk.len() {
                chunk = &chunk[..room];
                let _ = to.write_all(chunk).await;
                let _ = to.flush().await;
                return if reset { End::Reset } else { End::Cut };
            }
        }
        if to.write_all(chunk).await.is_err() {
            return End::Done;
        }
        sent += chunk.len() as u64;
    }
}
