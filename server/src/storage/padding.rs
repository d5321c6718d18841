//! Statement texts that repeat from batch to batch.
//!
//! A statement with one placeholder per row has a different text for every row count, and
//! the drivers cache prepared statements by text: a batch of 487 meters after one of 488
//! prepares its statements again (on SQLite, parsing thousands of placeholders costs
//! milliseconds; on PostgreSQL, a round trip). Lists are therefore padded to a few sizes
//! with rows that match nothing (NULL keys), so each statement is prepared once per size.

/// The padded length of a list of `n` rows, for statements of at most `max` rows: the next
/// power of two from 8, or `max` past it.
pub fn padded(n: usize, max: usize) -> usize {
    n.max(8).next_power_of_two().min(max.max(n))
}

/// `rows` as `Some`, then `None`s up to their [`padded`] length.
pub fn rows<T>(rows: &[T], max: usize) -> impl Iterator<Item = Option<&T>> {
    let pad = padded(rows.len(), max) - rows.len();
    rows.iter().map(Some).chain(std::iter::repeat_n(None, pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_fall_on_a_few_sizes() {
        assert_eq!(padded(0, 1_000), 8);
        assert_eq!(padded(1, 1_000), 8);
        assert_eq!(padded(9, 1_000), 16);
        assert_eq!(padded(488, 1_000), 512);
        assert_eq!(padded(513, 1_000), 1_000);
        assert_eq!(padded(1_000, 1_000), 1_000);
        // Never shorter than the list.
        assert_eq!(padded(1_200, 1_000), 1_200);
        let sizes: std::collections::BTreeSet<usize> =
            (1..=1_000).map(|n| padded(n, 1_000)).collect();
        assert_eq!(sizes.len(), 8, "{sizes:?}");
    }

    #[test]
    fn rows_are_followed_by_nones_up_to_the_padded_length() {
        let padded_rows: Vec<Option<&i64>> = rows(&[4, 5, 6], 1_000).collect();
        assert_eq!(padded_rows.len(), 8);
        assert_eq!(&padded_rows[..3], &[Some(&4), Some(&5), Some(&6)]);
        assert!(padded_rows[3..].iter().all(Option::is_none));
    }
}
