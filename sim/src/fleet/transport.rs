//! How calls travel between a worker and a service, and back: modelled (latency, injected delay,
//! partitions that lose a request or its answer, the driver's timeout) on the fleet's own event
//! queue, or through a network someone else runs (turmoil: outboxes, `serve`, `answer_arrived`,
//! network faults as `NetOp`s).

use super::*;

/// How calls travel between machines and services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// As events on the fleet's own queue, with modelled latency, delay and partitions.
    Modelled,
    /// Through a real (simulated) network that someone else runs, turmoil's: the fleet puts
    /// calls in per-machine outboxes ([`Fleet::take_outbox`]), services take them up with
    /// [`Fleet::serve`], answers come back with [`Fleet::answer_arrived`], and network faults
    /// become [`NetOp`]s for the network's owner to apply.
    Network,
}

/// A network fault for the owner of the network to apply (turmoil mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetOp {
    /// Cut (`on`) or repair a machine's link to a service.
    Partition {
        /// Machine.
        machine: usize,
        /// Service.
        service: Service,
        /// Cut when true, repaired when false.
        on: bool,
    },
    /// Set the extra latency of a machine's links (0: back to normal).
    Delay {
        /// Machine.
        machine: usize,
        /// Added latency (ms).
        extra_ms: u64,
    },
    /// The machine went down.
    Crash(usize),
    /// The machine came back.
    Restart(usize),
}

/// A call in flight over the network.
pub(super) struct Envelope {
    node: NodeId,
    inc: u64,
    cmd: Option<Command<SimRecord>>,
    reply: Option<Input<SimRecord>>,
    /// What the driver reports if no answer comes back in time.
    failed: Option<Input<SimRecord>>,
}

impl Fleet {
    /// Calls a machine has to send, with the service each goes to.
    pub fn take_outbox(&mut self, machine: usize) -> Vec<(u64, Service)> {
        self.outbox
            .get_mut(machine)
            .map(core::mem::take)
            .unwrap_or_default()
    }

    /// A call reached its service: the service applies it. Returns whether an answer is ready
    /// to travel back (a call the driver already gave up on has none).
    pub fn serve(&mut self, envelope: u64) -> bool {
        let Some((node, inc, cmd)) = self
            .envelopes
            .get_mut(&envelope)
            .and_then(|e| Some((e.node, e.inc, e.cmd.take()?)))
        else {
            return false;
        };
        let reply = match self.serve_command(node, inc, cmd) {
            Served::Reply(input) => Some(input),
            Served::Scan(req, consistent) => {
                // Over the network the pages of a scan travel as one answer; each page is
                // still read (and billed, and possibly stale) on its own.
                let mut items = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let (page, next) = self.dynamo.scan_page(
                        self.now,
                        after.as_deref(),
                        consistent,
                        &mut self.rng,
                    );
                    items.extend(page);
                    match next {
                        Some(k) => after = Some(k),
                        None => break,
                    }
                }
                Some(Input::LeaseTableScanned {
                    req,
                    result: Ok(items),
                })
            }
            Served::Nothing => None,
        };
        match (self.envelopes.get_mut(&envelope), reply) {
            (Some(e), Some(r)) => {
                e.reply = Some(r);
                true
            }
            _ => false,
        }
    }

    /// The answer to a call reached its machine: the driver hands it to the worker.
    pub fn answer_arrived(&mut self, envelope: u64) {
        let Some(e) = self.envelopes.remove(&envelope) else {
            return;
        };
        match e.reply {
            Some(input) => self.schedule(
                self.now,
                Ev::Deliver {
                    node: e.node,
                    inc: e.inc,
                    input,
                },
            ),
            // Not served yet: a duplicate or early datagram cannot happen, keep waiting.
            None => {
                self.envelopes.insert(envelope, e);
            }
        }
    }

    /// Network faults to apply since the last call.
    pub fn take_net_ops(&mut self) -> Vec<NetOp> {
        core::mem::take(&mut self.net_ops)
    }

    pub(super) fn driver_timeout(&mut self, envelope: u64) {
        if let Some(e) = self.envelopes.remove(&envelope) {
            if let Some(input) = e.failed {
                self.schedule(
                    self.now,
                    Ev::Deliver {
                        node: e.node,
                        inc: e.inc,
                        input,
                    },
                );
            }
        }
    }

    pub(super) fn network(&self) -> bool {
        self.cfg.transport == Transport::Network
    }

    /// A network fault now, and its end after `ms` (turmoil mode).
    pub(super) fn net_fault(&mut self, op: NetOp, undo: NetOp, ms: u64) {
        self.net_ops.push(op);
        self.schedule(self.now + ms, Ev::Net(undo));
    }

    pub(super) fn partitioned(&self, node: NodeId, service: Service) -> bool {
        let m = &self.machines[self.nodes[node].machine];
        !m.up || self.now < m.partitioned_until[service as usize]
    }

    /// A call the driver never hears back from: reported failed after the driver's timeout.
    pub(super) fn lost(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        failed: Option<Input<SimRecord>>,
    ) {
        if let Some((at, ev)) = self.timed_out(node, inc, sent, failed) {
            self.schedule(at, ev);
        }
    }

    /// When and how the driver reports a call that got no answer.
    pub(super) fn timed_out(
        &self,
        node: NodeId,
        inc: u64,
        sent: u64,
        failed: Option<Input<SimRecord>>,
    ) -> Option<(u64, Ev)> {
        let at = (sent + self.cfg.driver_timeout_ms).max(self.now);
        failed.map(|input| (at, Ev::Deliver { node, inc, input }))
    }

    pub(super) fn reply(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        service: Service,
        input: Input<SimRecord>,
    ) {
        let l = self.latency(self.nodes[node].machine);
        self.schedule(
            self.now + l,
            Ev::Answer {
                node,
                inc,
                sent,
                service,
                input,
            },
        );
    }

    pub(super) fn at_service(
        &mut self,
        node: NodeId,
        inc: u64,
        sent: u64,
        cmd: Command<SimRecord>,
    ) {
        let service = service_of(&cmd);
        if self.partitioned(node, service) {
            let failed = cmd.failed(Failure::Transient);
            return self.lost(node, inc, sent, failed);
        }
        match self.serve_command(node, inc, cmd) {
            Served::Reply(input) => self.reply(node, inc, sent, service, input),
            Served::Scan(req, consistent) => {
                self.scan_page(node, inc, sent, req, consistent, None, Vec::new())
            }
            Served::Nothing => {}
        }
    }

    pub(super) fn partition(&mut self, machine: usize, service: Service, ms: u64) {
        if self.network() {
            let op = |on| NetOp::Partition {
                machine,
                service,
                on,
            };
            self.net_fault(op(true), op(false), ms);
        } else {
            let until = &mut self.machines[machine].partitioned_until[service as usize];
            *until = (*until).max(self.now + ms);
        }
    }

    pub(super) fn latency(&mut self, machine: usize) -> u64 {
        let (lo, hi) = self.cfg.latency_ms;
        let m = &self.machines[machine];
        let extra = if self.now < m.delay_until {
            m.extra_delay_ms
        } else {
            0
        };
        self.rng.between(lo, hi) + self.rng.below(extra + 1)
    }

    pub(super) fn enqueue(&mut self, node: NodeId, inc: u64, cmd: Command<SimRecord>) {
        self.next_envelope += 1;
        let id = self.next_envelope;
        let service = service_of(&cmd);
        let failed = cmd.failed(Failure::Transient);
        self.envelopes.insert(
            id,
            Envelope {
                node,
                inc,
                cmd: Some(cmd),
                reply: None,
                failed,
            },
        );
        self.outbox[self.nodes[node].machine].push((id, service));
        self.schedule(self.now + self.cfg.driver_timeout_ms, Ev::DriverTimeout(id));
    }

    /// Number of machines so far.
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }
}
