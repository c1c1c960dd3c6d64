//! [`Inbound`]: what every upstream transport (TCP, Redis, a live Synapse) feeds the
//! processor, in wire order, through one queue bounded by messages and by bytes ([`queue`]).

use std::sync::Arc;

use streamhost_proto::{Position, Rdata};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};

/// Identifies one upstream session (counting from 1) so the processor can tell whose
/// commands it is applying.
pub(crate) type ConnId = u64;

/// What a transport sends the processor, in wire order.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A new connection; its commands follow.
    Connected(ConnId),
    /// An `RDATA` line.
    Rdata(ConnId, Rdata),
    /// A `POSITION` line.
    Position(ConnId, Position),
    /// The connection is gone; nothing more of it follows.
    Disconnected(ConnId),
    /// A commit-time stamp (a `PING` of a Streamhost writer, µs since the epoch) for the next
    /// `RDATA`/`POSITION` with a token, to measure write-to-apply.
    Stamp(ConnId, u64),
}

/// Bytes counted for each queued message besides its row text (the message, its names, its
/// slot in the channel).
const MESSAGE_OVERHEAD: usize = 128;

impl Inbound {
    /// The bytes this message counts for in the queue.
    fn weight(&self) -> usize {
        match self {
            Inbound::Rdata(_, rdata) => {
                MESSAGE_OVERHEAD
                    + rdata.row.len()
                    + rdata.stream.as_str().len()
                    + rdata.instance.as_str().len()
            }
            Inbound::Connected(_)
            | Inbound::Position(..)
            | Inbound::Disconnected(_)
            | Inbound::Stamp(..) => MESSAGE_OVERHEAD,
        }
    }
}

/// The processor's queue: at most `messages` messages and about `bytes` bytes (a message
/// larger than the whole queue waits until the queue is empty, then goes alone). Full, the
/// transports wait (backpressure), as for the count.
pub(crate) fn queue(messages: usize, bytes: usize) -> (InboundTx, InboundRx) {
    let (tx, rx) = mpsc::channel(messages.max(1));
    let max = bytes.clamp(MESSAGE_OVERHEAD, Semaphore::MAX_PERMITS);
    let room = Arc::new(Semaphore::new(max));
    let tx = InboundTx {
        tx,
        room: room.clone(),
        max,
    };
    (tx, InboundRx { rx, room, max })
}

/// The bytes `message` takes of a queue of `max` bytes (at most all of them).
fn charge(message: &Inbound, max: usize) -> u32 {
    u32::try_from(message.weight().min(max)).unwrap_or(u32::MAX)
}

/// The transports' end of the queue.
#[derive(Clone)]
pub(crate) struct InboundTx {
    tx: mpsc::Sender<Inbound>,
    room: Arc<Semaphore>,
    max: usize,
}

/// Room in the queue for one message, reserved by [`InboundTx::reserve`].
pub(crate) struct InboundPermit<'a> {
    slot: mpsc::Permit<'a, Inbound>,
    bytes: SemaphorePermit<'a>,
}

impl InboundPermit<'_> {
    /// Queues `message` (the one the room was reserved for).
    pub(crate) fn send(self, message: Inbound) {
        // The processor gives the bytes back when it takes the message.
        self.bytes.forget();
        self.slot.send(message);
    }
}

/// The processor is gone.
#[derive(Debug)]
pub(crate) struct Closed;

impl InboundTx {
    /// Waits for room for `message` (a slot and its bytes; none: a slot only). Cancel safe:
    /// nothing is held when the future is dropped, and it borrows only the queue.
    pub(crate) fn reserve_for(
        &self,
        message: Option<&Inbound>,
    ) -> impl Future<Output = Result<InboundPermit<'_>, Closed>> + Send + '_ {
        let charge = message.map_or(0, |m| charge(m, self.max));
        async move {
            let bytes = self.room.acquire_many(charge).await.map_err(|_| Closed)?;
            let slot = self.tx.reserve().await.map_err(|_| Closed)?;
            Ok(InboundPermit { slot, bytes })
        }
    }

    /// Waits for room, then queues `message`.
    pub(crate) async fn send(&self, message: Inbound) -> Result<(), Closed> {
        self.reserve_for(Some(&message)).await?.send(message);
        Ok(())
    }

    /// Queues `message` if there is room now; gives it back if not.
    pub(crate) fn try_send(&self, message: Inbound) -> Result<(), TrySendError<Inbound>> {
        let Ok(bytes) = self.room.try_acquire_many(charge(&message, self.max)) else {
            return Err(TrySendError::Full(message));
        };
        match self.tx.try_reserve() {
            Ok(slot) => {
                InboundPermit { slot, bytes }.send(message);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(message)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(message)),
        }
    }
}

/// The processor's end of the queue: taking a message gives its bytes back.
pub(crate) struct InboundRx {
    rx: mpsc::Receiver<Inbound>,
    room: Arc<Semaphore>,
    max: usize,
}

impl InboundRx {
    fn taken(&self, message: Inbound) -> Inbound {
        self.room.add_permits(charge(&message, self.max) as usize);
        message
    }

    /// The next message; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Inbound> {
        let message = self.rx.recv().await?;
        Some(self.taken(message))
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Inbound> {
        let message = self.rx.try_recv().ok()?;
        Some(self.taken(message))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamhost_proto::{InstanceName, RowJson, StreamName};

    use super::*;

    fn rdata(size: usize) -> Inbound {
        let row = format!("\"{}\"", "x".repeat(size));
        Inbound::Rdata(
            1,
            Rdata {
                stream: StreamName::new("s").unwrap(),
                instance: InstanceName::new("w").unwrap(),
                token: None,
                row: RowJson::parse(row.as_bytes()).unwrap(),
            },
        )
    }

    #[tokio::test]
    async fn bytes_hold_senders_back_until_the_processor_takes_messages() {
        let (tx, mut rx) = queue(100, 4096);
        tx.send(rdata(3000)).await.unwrap();
        let Err(TrySendError::Full(second)) = tx.try_send(rdata(3000)) else {
            panic!("the bytes are used up")
        };
        let mut waiting = Box::pin(tx.send(second));
        let held = tokio::time::timeout(Duration::from_millis(100), &mut waiting).await;
        assert!(held.is_err(), "backpressure: the sender waits");
        assert!(rx.recv().await.is_some());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room again once the first is taken")
            .unwrap();
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_message_larger_than_the_queue_goes_alone_and_count_still_bounds() {
        let (tx, mut rx) = queue(2, 1000);
        tx.send(rdata(5000)).await.unwrap();
        assert!(matches!(
            tx.try_send(Inbound::Connected(2)),
            Err(TrySendError::Full(_))
        ));
        assert!(rx.recv().await.is_some());
        tx.try_send(Inbound::Connected(2)).unwrap();
        tx.try_send(Inbound::Connected(3)).unwrap();
        assert!(
            matches!(
                tx.try_send(Inbound::Connected(4)),
                Err(TrySendError::Full(_))
            ),
            "two messages at most"
        );
        drop(rx);
        assert!(tx.send(Inbound::Connected(5)).await.is_err());
    }
}
