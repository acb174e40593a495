//! Turmoil mode: the same fleet, services, processors and checkers, with every call between a
//! machine and a service carried over turmoil's simulated network.
//!
//! Each simulated machine is a turmoil host, and so are the two services. A machine host sends
//! its workers' calls as UDP datagrams to the service hosts and hands the answers that come back
//! to the fleet; a service host applies each call it receives to the shared model and answers.
//! The datagram carries the call's envelope number; the call itself waits in the fleet (everything
//! runs on one thread), so turmoil decides what every message decides in a real network: when it
//! arrives, whether it arrives (partitions drop it, a crashed host never answers), and how long it
//! takes (turmoil's latency, and added latency for the delay fault). A call without an answer is
//! reported failed by the driver after its timeout, so a write whose answer was lost is a write
//! of unknown outcome, as it is against AWS.
//!
//! Worker timers, processors, the producer and the nemesis run on the fleet's own queue, advanced
//! to turmoil's clock after every tick.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::rc::Rc;
use std::time::Duration;

use turmoil::net::UdpSocket;

use crate::fleet::{Fleet, NetOp, Service};

const PORT: u16 = 7000;

fn service_host(service: Service) -> &'static str {
    match service {
        Service::Dynamo => "dynamodb",
        Service::Kinesis => "kinesis",
    }
}

fn machine_host(machine: usize) -> String {
    format!("machine-{machine}")
}

fn envelope_of(datagram: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(datagram.try_into().ok()?))
}

/// The fleet on a turmoil network.
pub struct TurmoilFleet {
    sim: turmoil::Sim<'static>,
    fleet: Rc<RefCell<Fleet>>,
    hosts: usize,
    tick_ms: u64,
    max_latency_ms: u64,
}

impl TurmoilFleet {
    /// Puts `fleet` (built with [`crate::fleet::Transport::Network`]) on a turmoil network with
    /// one-way latency in `latency_ms`, seeded by `seed`.
    pub fn new(fleet: Fleet, seed: u64, latency_ms: (u64, u64), duration_ms: u64) -> Self {
        let tick_ms = 1;
        let sim = turmoil::Builder::new()
            .rng_seed(seed)
            .tick_duration(Duration::from_millis(tick_ms))
            .min_message_latency(Duration::from_millis(latency_ms.0))
            .max_message_latency(Duration::from_millis(latency_ms.1))
            .simulation_duration(Duration::from_millis(duration_ms + 60_000))
            .build();
        let mut t = Self {
            sim,
            fleet: Rc::new(RefCell::new(fleet)),
            hosts: 0,
            tick_ms,
            max_latency_ms: latency_ms.1,
        };
        for service in [Service::Dynamo, Service::Kinesis] {
            let fleet = t.fleet.clone();
            t.sim
                .host(service_host(service), move || serve(fleet.clone()));
        }
        t.add_machine_hosts();
        t
    }

    /// The fleet, between ticks.
    pub fn fleet(&self) -> std::cell::Ref<'_, Fleet> {
        self.fleet.borrow()
    }

    /// The fleet, between ticks.
    pub fn fleet_mut(&self) -> std::cell::RefMut<'_, Fleet> {
        self.fleet.borrow_mut()
    }

    fn add_machine_hosts(&mut self) {
        let machines = self.fleet.borrow().machine_count();
        while self.hosts < machines {
            let machine = self.hosts;
            let fleet = self.fleet.clone();
            self.sim.host(machine_host(machine), move || {
                drive_machine(fleet.clone(), machine)
            });
            self.hosts += 1;
        }
    }

    fn apply(&mut self, op: NetOp) {
        match op {
            NetOp::Partition {
                machine,
                service,
                on,
            } => {
                let (m, s) = (machine_host(machine), service_host(service));
                if on {
                    self.sim.partition(m, s);
                } else {
                    self.sim.repair(m, s);
                }
            }
            NetOp::Delay { machine, extra_ms } => {
                for service in [Service::Dynamo, Service::Kinesis] {
                    self.sim.set_link_max_message_latency(
                        machine_host(machine),
                        service_host(service),
                        Duration::from_millis(self.max_latency_ms + extra_ms),
                    );
                }
            }
            NetOp::Crash(machine) => self.sim.crash(machine_host(machine)),
            NetOp::Restart(machine) => self.sim.bounce(machine_host(machine)),
        }
    }

    /// Runs until true time `until_ms`; `progress` gets the time reached now and then.
    pub fn run_until(
        &mut self,
        until_ms: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), String> {
        loop {
            let now = self.sim.elapsed().as_millis() as u64;
            // The fleet's own events (timers, processors, the nemesis) up to turmoil's clock;
            // then whatever they did to machines and links, then one tick of the network.
            self.fleet
                .borrow_mut()
                .run_until(now.min(until_ms), &mut |_| {});
            self.add_machine_hosts();
            let ops = self.fleet.borrow_mut().take_net_ops();
            for op in ops {
                self.apply(op);
            }
            if now >= until_ms {
                progress(until_ms);
                return Ok(());
            }
            if now.is_multiple_of(1_000) {
                progress(now);
            }
            self.sim.step().map_err(|e| format!("turmoil: {e}"))?;
            debug_assert_eq!(self.sim.elapsed().as_millis() as u64, now + self.tick_ms);
        }
    }
}

/// A service host: applies every call that reaches it and answers the caller.
async fn serve(fleet: Rc<RefCell<Fleet>>) -> turmoil::Result {
    let socket = UdpSocket::bind(("0.0.0.0", PORT)).await?;
    let mut buf = [0u8; 16];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let Some(envelope) = envelope_of(&buf[..n]) else {
            continue;
        };
        let answered = fleet.borrow_mut().serve(envelope);
        if answered {
            socket.send_to(&buf[..n], from).await?;
        }
    }
}

/// A machine host: sends its workers' calls and hands back the answers, every millisecond.
async fn drive_machine(fleet: Rc<RefCell<Fleet>>, machine: usize) -> turmoil::Result {
    let socket = UdpSocket::bind(("0.0.0.0", PORT)).await?;
    let mut buf = [0u8; 16];
    loop {
        let outgoing = fleet.borrow_mut().take_outbox(machine);
        for (envelope, service) in outgoing {
            socket
                .send_to(&envelope.to_le_bytes(), (service_host(service), PORT))
                .await?;
        }
        loop {
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(envelope) = envelope_of(&buf[..n]) {
                        fleet.borrow_mut().answer_arrived(envelope);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
