//! Echo: every byte comes back, in order — the classic benchmark protocol.

use super::{Progress, Session};

/// An echo session. It holds no state: whatever arrives is owed back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Session for Echo {
    #[inline]
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        out.extend_from_slice(input);
        Progress {
            consumed: input.len(),
            close: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::protocol::testing::feed_in_pieces;

    /// Whatever the input is cut into, the output is the input.
    #[test]
    fn echoes_every_byte_in_order_at_every_split() {
        let input: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        for cut in 0..=input.len() {
            let (out, closed) = feed_in_pieces(&mut Echo, &input, &[cut]);
            assert_eq!(out, input, "split at {cut}");
            assert!(!closed);
        }
    }
}
