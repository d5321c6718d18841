//! ChirpStack's device queue as class A devices see it: per device first in first out, one
//! item per uplink, taken only when the RX window opens (ChirpStack waits about 100 ms after
//! publishing the `up` event); a repeated id is refused while the first is queued; an item
//! past its `expiresAt` is dropped with an EXPIRED log; a confirmed item is settled by the
//! device's next uplink (ACK bit set or not).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One queued downlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    /// The command's id (ChirpStack's queue item id).
    pub id: Uuid,
    /// LoRaWAN fPort, 1–255.
    pub f_port: u8,
    /// The application payload.
    pub data: Vec<u8>,
    /// Whether the device must acknowledge it.
    pub confirmed: bool,
    /// Dropped unless sent by then.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why ChirpStack would refuse a command (it says so only in its own log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The id is already queued for this device.
    DuplicateId,
    /// fPort 0 is reserved for MAC commands.
    InvalidPort,
}

/// A confirmed downlink's outcome, settled by the device's next uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The queue item.
    pub id: Uuid,
    /// Whether that uplink carried the ACK bit.
    pub acknowledged: bool,
    /// The downlink frame counter it was sent with.
    pub f_cnt_down: u32,
}

/// What the RX window after an uplink did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// Items dropped because they expired.
    pub expired: Vec<Uuid>,
    /// The item sent, with its downlink frame counter.
    pub sent: Option<(QueueItem, u32)>,
}

/// One device's queue.
#[derive(Debug, Clone, Default)]
pub struct DeviceQueue {
    items: VecDeque<QueueItem>,
    awaiting_ack: Option<(Uuid, u32)>,
    f_cnt_down: u32,
}

impl DeviceQueue {
    /// Adds a command at the back of the queue.
    pub fn enqueue(&mut self, item: QueueItem) -> Result<(), Refusal> {
        if item.f_port == 0 {
            return Err(Refusal::InvalidPort);
        }
        if self.items.iter().any(|i| i.id == item.id) {
            return Err(Refusal::DuplicateId);
        }
        self.items.push_back(item);
        Ok(())
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// An uplink arrived: settles the confirmed downlink sent before it, if any.
    pub fn on_uplink(&mut self, ack_bit: bool) -> Option<Settled> {
        self.awaiting_ack.take().map(|(id, f_cnt_down)| Settled {
            id,
            acknowledged: ack_bit,
            f_cnt_down,
        })
    }

    /// The RX window after an uplink at `now`: drops expired items, sends the first live one.
    pub fn rx_window(&mut self, now: DateTime<Utc>) -> Window {
        let mut window = Window::default();
        while let Some(item) = self.items.pop_front() {
            if item.expires_at.is_some_and(|e| e < now) {
                window.expired.push(item.id);
                continue;
            }
            let f_cnt_down = self.f_cnt_down;
            self.f_cnt_down = self.f_cnt_down.wrapping_add(1);
            if item.confirmed {
                self.awaiting_ack = Some((item.id, f_cnt_down));
            }
            window.sent = Some((item, f_cnt_down));
            break;
        }
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u128, confirmed: bool) -> QueueItem {
        QueueItem {
            id: Uuid::from_u128(n),
            f_port: 10,
            data: vec![1, 4],
            confirmed,
            expires_at: None,
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_784_678_400 + s, 0).expect("valid")
    }

    #[test]
    fn one_item_per_uplink_first_in_first_out() {
        let mut q = DeviceQueue::default();
        for n in 1..=3 {
            q.enqueue(item(n, false)).expect("queued");
        }
        let sent: Vec<u128> = (0..4)
            .filter_map(|i| q.rx_window(at(i)).sent.map(|(it, _)| it.id.as_u128()))
            .collect();
        assert_eq!(sent, [1, 2, 3]);
    }

    #[test]
    fn a_queued_id_cannot_be_queued_again_but_can_after_it_left() {
        let mut q = DeviceQueue::default();
        q.enqueue(item(1, false)).expect("queued");
        assert_eq!(q.enqueue(item(1, false)), Err(Refusal::DuplicateId));
        q.rx_window(at(0));
        assert_eq!(q.enqueue(item(1, false)), Ok(()));
        assert_eq!(
            q.enqueue(QueueItem {
                f_port: 0,
                ..item(9, false)
            }),
            Err(Refusal::InvalidPort)
        );
    }

    #[test]
    fn expired_items_are_dropped_and_the_next_one_goes_out() {
        let mut q = DeviceQueue::default();
        q.enqueue(QueueItem {
            expires_at: Some(at(10)),
            ..item(1, false)
        })
        .expect("queued");
        q.enqueue(item(2, false)).expect("queued");
        let w = q.rx_window(at(11));
        assert_eq!(w.expired, [Uuid::from_u128(1)]);
        assert_eq!(w.sent.map(|(i, f)| (i.id.as_u128(), f)), Some((2, 0)));
    }

    #[test]
    fn a_confirmed_item_is_settled_by_the_next_uplink_only() {
        let mut q = DeviceQueue::default();
        q.enqueue(item(1, true)).expect("queued");
        q.enqueue(item(2, false)).expect("queued");
        assert_eq!(q.on_uplink(true), None, "nothing sent yet");
        let (sent, f_cnt_down) = q.rx_window(at(0)).sent.expect("sent");
        assert_eq!((sent.id.as_u128(), f_cnt_down), (1, 0));
        assert_eq!(
            q.on_uplink(false),
            Some(Settled {
                id: Uuid::from_u128(1),
                acknowledged: false,
                f_cnt_down: 0
            })
        );
        // Unconfirmed items are never settled.
        q.rx_window(at(1));
        assert_eq!(q.on_uplink(true), None);
    }
}
