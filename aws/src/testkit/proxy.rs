//! A TCP proxy on 127.0.0.1 for tests of what a client does when the network misbehaves: it can
//! hold every byte for a while (`pause`), or kill the connections open at a moment the way a
//! middlebox that dropped the flow does (`cut`). Plain threads and `std::net`, so a test on any
//! runtime can use it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A proxy in front of one upstream `host:port`.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    paused: AtomicBool,
    open: Mutex<Vec<Connection>>,
}

/// Both sockets of a proxied connection. The client's is kept here so that a cut connection is
/// never closed on the client's side.
struct Connection {
    _client: TcpStream,
    server: TcpStream,
    dead: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let dead = Arc::new(AtomicBool::new(false));
                let (Ok(c1), Ok(c2), Ok(s1), Ok(s2)) = (
                    client.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                if let Ok(mut open) = accepting.open.lock() {
                    open.push(Connection {
                        _client: client,
                        server,
                        dead: Arc::clone(&dead),
                    });
                }
                for (from, to) in [(c1, s1), (s2, c2)] {
                    let (dead, shared) = (Arc::clone(&dead), Arc::clone(&accepting));
                    std::thread::spawn(move || forward(from, to, &dead, &shared));
                }
            }
        });
        Ok(Self { port, shared })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Holds every byte (`true`) until resumed (`false`); connections stay open.
    pub fn pause(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
    }

    /// Kills every connection open now: its server side is closed, so the server ends what it
    /// served on it, while its client side stays open and silent (no FIN, no RST: what the
    /// client sends is never answered). Later connections pass.
    pub fn cut(&self) {
        if let Ok(open) = self.shared.open.lock() {
            for c in open.iter() {
                c.dead.store(true, Ordering::SeqCst);
                let _ = c.server.shutdown(Shutdown::Both);
            }
        }
    }
}

fn forward(mut from: TcpStream, mut to: TcpStream, dead: &AtomicBool, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        while shared.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if dead.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
