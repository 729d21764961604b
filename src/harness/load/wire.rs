//! A latency histogram as text, so that several load processes' histograms — on other hosts,
//! behind `ssh` or `ip netns exec` — can be merged exactly into one, rather than their
//! percentiles averaged (an average of p99s is no one's p99).
//!
//! The encoding is HdrHistogram's own: the V2 format compressed with DEFLATE (the "compressed
//! histogram" of HdrHistogram's interval logs, readable by its Java, C, Go and Python ports),
//! then base64 with the standard alphabet and padding. Values are nanoseconds.

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// The histogram as base64 of its V2 DEFLATE encoding.
pub fn encode(h: &Histogram<u64>) -> io::Result<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| io::Error::other(format!("encoding the histogram: {e:?}")))?;
    Ok(STANDARD.encode(bytes))
}

/// A histogram from [`encode`]'s text; bad text is `InvalidData`.
pub fn decode(text: &str) -> io::Result<Histogram<u64>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| bad(format!("the histogram is not base64: {e}")))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| bad(format!("the histogram does not decode: {e:?}")))
}

/// The exact merge of several histograms: every recorded value of each, in one.
pub fn merge<'a>(
    parts: impl IntoIterator<Item = &'a Histogram<u64>>,
) -> io::Result<Histogram<u64>> {
    let mut all = super::worker::histogram();
    for h in parts {
        all.add(h)
            .map_err(|e| io::Error::other(format!("merging histograms: {e}")))?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = super::super::worker::histogram();
        for v in values {
            h.record(v).expect("in range");
        }
        h
    }

    /// A histogram survives the text unchanged, and bad text is refused.
    #[test]
    fn round_trip() {
        let h = recorded((1..5000).map(|i| i * 997));
        let back = decode(&encode(&h).expect("encode")).expect("decode");
        assert_eq!(back, h);
        assert_eq!(
            decode("not base64!").map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::InvalidData)
        );
        assert!(decode("AAAA").is_err());
    }

    /// Merging the parts gives exactly the histogram of every value recorded in one: the same
    /// count, max and percentiles — which averaging the parts' percentiles would not.
    #[test]
    fn merge_is_exact() {
        let fast = recorded((0..9000).map(|i| 50_000 + i * 3));
        let slow = recorded((0..1000).map(|i| 2_000_000 + i * 1000));
        let one = recorded(
            (0..9000)
                .map(|i| 50_000 + i * 3)
                .chain((0..1000).map(|i| 2_000_000 + i * 1000)),
        );
        let texts = [encode(&fast).expect("fast"), encode(&slow).expect("slow")];
        let parts: Vec<Histogram<u64>> = texts.iter().map(|t| decode(t).expect("decode")).collect();
        let merged = merge(&parts).expect("merge");
        assert_eq!(merged.len(), fast.len() + slow.len());
        assert_eq!(merged.max(), slow.max());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(
                merged.value_at_quantile(q),
                one.value_at_quantile(q),
                "q {q}"
            );
        }
        let averaged = (fast.value_at_quantile(0.99) + slow.value_at_quantile(0.99)) / 2;
        assert_ne!(merged.value_at_quantile(0.99), averaged);
    }
}
