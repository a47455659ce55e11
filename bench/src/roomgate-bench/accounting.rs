//! Exact delivery accounting for `fanout` and `echo-latency`: the marker a publisher puts
//! in each message's content (who sent it, its sequence number, when), and a
//! subscriber's ledger that classifies every marked message it receives as new,
//! duplicate or out of order per publisher, and at the end counts what never came. It
//! is pure bookkeeping: no sockets, no clocks.
//!
//! Definitions, per subscriber and publisher: a message is a *duplicate* when its
//! sequence number was received before; *out of order* when it is new but lower than
//! the highest already received (so one message overtaken by its successor counts once);
//! *lost* when it was sent but never received. A marker naming a publisher outside the
//! subscriber's room, or a sequence number the publisher never reached, is *foreign*.

/// What every marker starts with; nothing else a server sends contains it.
pub const MARKER_TAG: &str = "rgb:";

/// A publisher's stamp in a message's content: `rgb:PUBLISHER:SEQ:SENT_US`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Global publisher number.
    pub publisher: u32,
    /// 0, 1, 2, ... in the publisher's sending order.
    pub seq: u64,
    /// The publisher's [`crate::stats::clock_us`] when it sent the message.
    pub sent_us: u64,
}

impl Marker {
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{MARKER_TAG}{}:{}:{}",
            self.publisher, self.seq, self.sent_us
        );
    }

    /// Finds the marker in a frame's text without parsing the JSON around it (the
    /// subscriber's hot path). `None` when the frame carries no marker.
    pub fn find(text: &str) -> Option<Marker> {
        let at = text.find(MARKER_TAG)?;
        let mut rest = &text[at + MARKER_TAG.len()..];
        let mut field = || -> Option<u64> {
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n = rest[..end].parse().ok()?;
            rest = rest[end..].strip_prefix(':').unwrap_or(&rest[end..]);
            Some(n)
        };
        Some(Marker {
            publisher: u32::try_from(field()?).ok()?,
            seq: field()?,
            sent_us: field()?,
        })
    }
}

/// How one received marker was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    InOrder,
    OutOfOrder,
    Duplicate,
    Foreign,
}

/// Sequence numbers at or above this are foreign without looking further: no run sends
/// that many messages from one publisher, and it bounds a track's bitmap to 8 MiB.
const MAX_SEQ: u64 = 1 << 26;

/// One publisher's messages as one subscriber saw them.
#[derive(Default, Clone)]
struct Track {
    /// Bit `seq` set once `seq` has been received.
    bits: Vec<u64>,
    distinct: u64,
    highest: Option<u64>,
    duplicates: u64,
    out_of_order: u64,
}

impl Track {
    fn record(&mut self, seq: u64) -> Seen {
        if seq >= MAX_SEQ {
            return Seen::Foreign;
        }
        let word = (seq / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.bits[word] & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.bits[word] |= bit;
        self.distinct += 1;
        match self.highest {
            Some(h) if seq < h => {
                self.out_of_order += 1;
                Seen::OutOfOrder
            }
            _ => {
                self.highest = Some(seq);
                Seen::InOrder
            }
        }
    }

    /// Received sequence numbers at or above `sent` (the publisher never sent them).
    fn beyond(&self, sent: u64) -> u64 {
        let mut n = 0;
        for (w, &bits) in self.bits.iter().enumerate() {
            for b in 0..64 {
                if bits & (1 << b) != 0 && (w as u64) * 64 + b >= sent {
                    n += 1;
                }
            }
        }
        n
    }
}

/// One subscriber's ledger over the publishers of its room, numbered `first..first+count`.
pub struct Ledger {
    first: u32,
    tracks: Vec<Track>,
    foreign: u64,
}

/// A ledger's totals once the publishers' sent counts are known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct messages received.
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub foreign: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.foreign += o.foreign;
    }

    /// Whether anything but clean, complete, ordered delivery happened.
    pub fn anomalous(&self) -> bool {
        self.lost + self.duplicates + self.out_of_order + self.foreign > 0
    }
}

impl Ledger {
    pub fn new(first: u32, count: u32) -> Ledger {
        Ledger {
            first,
            tracks: vec![Track::default(); count as usize],
            foreign: 0,
        }
    }

    pub fn record(&mut self, m: &Marker) -> Seen {
        let track = m
            .publisher
            .checked_sub(self.first)
            .and_then(|i| self.tracks.get_mut(i as usize));
        let seen = track.map_or(Seen::Foreign, |t| t.record(m.seq));
        if seen == Seen::Foreign {
            self.foreign += 1;
        }
        seen
    }

    /// Distinct messages received so far.
    pub fn distinct(&self) -> u64 {
        self.tracks.iter().map(|t| t.distinct).sum()
    }

    /// Totals, given how many messages each of the room's publishers sent (`sent[i]` for
    /// publisher `first + i`).
    pub fn tally(&self, sent: &[u64]) -> Tally {
        let mut t = Tally {
            foreign: self.foreign,
            ..Tally::default()
        };
        for (i, track) in self.tracks.iter().enumerate() {
            let sent = sent.get(i).copied().unwrap_or(0);
            let beyond = track.beyond(sent);
            let valid = track.distinct - beyond;
            t.received += valid;
            t.foreign += beyond;
            t.lost += sent - valid;
            t.duplicates += track.duplicates;
            t.out_of_order += track.out_of_order;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(publisher: u32, seq: u64) -> Marker {
        Marker {
            publisher,
            seq,
            sent_us: 7,
        }
    }

    /// Feeds `seqs` of publisher 10 into a ledger for publishers 10 and 11.
    fn run(seqs: &[u64], sent: [u64; 2]) -> Tally {
        let mut l = Ledger::new(10, 2);
        for &s in seqs {
            l.record(&m(10, s));
        }
        for s in 0..sent[1] {
            assert_eq!(l.record(&m(11, s)), Seen::InOrder);
        }
        l.tally(&sent)
    }

    #[test]
    fn markers_round_trip_inside_json() {
        let mut content = String::from("prefix ");
        let marker = Marker {
            publisher: 3,
            seq: 12345,
            sent_us: 987_654_321,
        };
        marker.write(&mut content);
        content.push_str("xxxx");
        let frame = serde_json::json!({"type": "message", "data": {"roomId": "r1", "content": content, "userId": "u"}});
        assert_eq!(Marker::find(&frame.to_string()), Some(marker));
        assert_eq!(Marker::find(r#"{"type":"heartbeat_response"}"#), None);
        assert_eq!(Marker::find("rgb:1:x:3"), None);
    }

    #[test]
    fn clean_delivery_has_no_anomalies() {
        let t = run(&[0, 1, 2, 3, 4], [5, 3]);
        assert_eq!(
            t,
            Tally {
                received: 8,
                ..Tally::default()
            }
        );
        assert!(!t.anomalous());
    }

    #[test]
    fn an_injected_loss_is_counted() {
        // 2 never arrives, and neither does the publisher's last message.
        let t = run(&[0, 1, 3, 4], [6, 3]);
        assert_eq!(t.lost, 2);
        assert_eq!((t.duplicates, t.out_of_order, t.received), (0, 0, 7));
        assert!(t.anomalous());
    }

    #[test]
    fn an_injected_duplicate_is_counted() {
        let t = run(&[0, 1, 1, 2, 0], [3, 3]);
        assert_eq!(t.duplicates, 2);
        assert_eq!((t.lost, t.out_of_order, t.received), (0, 0, 6));
    }

    #[test]
    fn an_injected_reorder_is_counted() {
        // 1 overtaken by 2: one message out of order, nothing lost.
        let t = run(&[0, 2, 1, 3], [4, 3]);
        assert_eq!(t.out_of_order, 1);
        assert_eq!((t.lost, t.duplicates, t.received), (0, 0, 7));
        // A late message is out of order once, however far it was overtaken.
        let t = run(&[1, 2, 3, 4, 0], [5, 0]);
        assert_eq!((t.out_of_order, t.lost), (1, 0));
    }

    #[test]
    fn other_rooms_and_unsent_sequence_numbers_are_foreign() {
        let mut l = Ledger::new(10, 2);
        assert_eq!(l.record(&m(9, 0)), Seen::Foreign);
        assert_eq!(l.record(&m(12, 0)), Seen::Foreign);
        l.record(&m(10, 0));
        l.record(&m(10, 70)); // beyond what publisher 10 sent
        assert_eq!(l.record(&m(11, MAX_SEQ)), Seen::Foreign);
        let t = l.tally(&[1, 0]);
        assert_eq!((t.foreign, t.received, t.lost), (4, 1, 0));
    }

    #[test]
    fn distinct_counts_new_messages_only() {
        let mut l = Ledger::new(0, 1);
        for s in [0, 1, 1, 5, 3] {
            l.record(&m(0, s));
        }
        assert_eq!(l.distinct(), 4);
    }
}
