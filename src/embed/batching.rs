//! Groups texts into batches, and puts the results back in input order.
//!
//! [`pack_batches`] is for the native encoder, which packs the texts of a batch end to end (no
//! padding): batches are capped in real tokens. [`plan_batches`] is for the tract graph, which
//! pads. There a batch is padded to its longest text, and the padding is computed and then thrown away, so
//! texts are sorted by token count before they are cut into batches (sentence-transformers does
//! the same). Batches are also capped in padded tokens, which bounds the memory of one batch's
//! intermediate tensors when texts are long, and there are at least as many batches as worker
//! threads when there are enough texts, so no core idles. Longest batches come first: with
//! workers taking the next batch as they free up, that balances the load (longest job first).

/// One batch: which inputs it holds and the length it is padded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Positions in the input of the texts in this batch.
    pub indices: Vec<usize>,
    /// The longest token count in the batch: every text is padded to it.
    pub seq_len: usize,
}

/// Limits for [`plan_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most texts in one batch.
    pub max_texts: usize,
    /// Most padded tokens (texts x longest length) in one batch; a single text longer than this
    /// still gets a batch of its own.
    pub max_tokens: usize,
    /// Aim for at least this many batches (the worker count) when there are enough texts.
    pub min_batches: usize,
}

/// Cut texts with token counts `lengths` into batches, longest first.
///
/// Every index of `lengths` appears in exactly one batch.
pub fn plan_batches(lengths: &[usize], limits: BatchLimits) -> Vec<Batch> {
    if lengths.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable, so equal lengths keep input order: batches are reproducible run to run.
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));

    let spread = lengths.len().div_ceil(limits.min_batches.max(1));
    let max_texts = limits.max_texts.min(spread).max(1);
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut seq_len = 0;
    for i in order {
        // Sorted longest first, so the first text of a batch sets its padded length.
        let fits = current.len() < max_texts && (current.len() + 1) * seq_len <= limits.max_tokens;
        if !current.is_empty() && !fits {
            batches.push(Batch {
                indices: std::mem::take(&mut current),
                seq_len,
            });
        }
        if current.is_empty() {
            seq_len = lengths[i];
        }
        current.push(i);
    }
    batches.push(Batch {
        indices: current,
        seq_len,
    });
    batches
}

/// Cut texts with token counts `lengths` into batches that are packed end to end rather than
/// padded (the native encoder's), longest first.
///
/// A batch holds at most `max_texts` texts and `max_tokens` tokens (a text longer than that
/// gets a batch of its own); when the texts are few, the tokens are spread over at least
/// `min_batches` batches so every worker gets a share. `seq_len` is the longest text of each
/// batch. Every index of `lengths` appears in exactly one batch.
pub fn pack_batches(lengths: &[usize], limits: BatchLimits) -> Vec<Batch> {
    if lengths.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable, so equal lengths keep input order: batches are reproducible run to run.
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let total: usize = lengths.iter().sum();
    let budget = limits
        .max_tokens
        .min(total.div_ceil(limits.min_batches.max(1)))
        .max(1);
    let max_texts = limits.max_texts.max(1);
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut tokens = 0;
    for i in order {
        let fits = current.len() < max_texts && tokens + lengths[i] <= budget;
        if !current.is_empty() && !fits {
            batches.push(Batch {
                seq_len: lengths[current[0]],
                indices: std::mem::take(&mut current),
            });
            tokens = 0;
        }
        tokens += lengths[i];
        current.push(i);
    }
    batches.push(Batch {
        seq_len: lengths[current[0]],
        indices: current,
    });
    batches
}

/// Put per-batch results back in input order: `results` pairs each input position with its
/// value, in any order, and every position in `0..n` must appear exactly once.
pub fn restore_order<T>(n: usize, results: impl IntoIterator<Item = (usize, T)>) -> Option<Vec<T>> {
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    for (i, v) in results {
        let slot = slots.get_mut(i)?;
        if slot.replace(v).is_some() {
            return None;
        }
    }
    slots.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_texts: 4,
        max_tokens: 64,
        min_batches: 1,
    };

    fn check_partition(lengths: &[usize], batches: &[Batch], limits: BatchLimits) {
        let mut seen = vec![false; lengths.len()];
        for b in batches {
            assert!(!b.indices.is_empty(), "empty batch in {batches:?}");
            assert!(b.indices.len() <= limits.max_texts, "{b:?}");
            assert_eq!(
                b.seq_len,
                b.indices.iter().map(|&i| lengths[i]).max().unwrap_or(0)
            );
            if b.indices.len() > 1 {
                assert!(b.indices.len() * b.seq_len <= limits.max_tokens, "{b:?}");
            }
            for &i in &b.indices {
                assert!(!seen[i], "index {i} in two batches: {batches:?}");
                seen[i] = true;
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "some index in no batch: {batches:?}"
        );
    }

    #[test]
    fn batches_hold_similar_lengths_longest_first() {
        let lengths = [5, 30, 6, 31, 7, 29, 5, 8];
        let batches = plan_batches(&lengths, LIMITS);
        check_partition(&lengths, &batches, LIMITS);
        // Sorted longest first (ties in input order), cut at 64 padded tokens or 4 texts.
        assert_eq!(
            batches,
            vec![
                Batch {
                    indices: vec![3, 1],
                    seq_len: 31
                },
                Batch {
                    indices: vec![5, 7],
                    seq_len: 29
                },
                Batch {
                    indices: vec![4, 2, 0, 6],
                    seq_len: 7
                },
            ]
        );
    }

    #[test]
    fn a_text_over_the_token_budget_gets_its_own_batch() {
        let lengths = [100, 3, 3];
        let batches = plan_batches(&lengths, LIMITS);
        check_partition(&lengths, &batches, LIMITS);
        assert_eq!(
            batches[0],
            Batch {
                indices: vec![0],
                seq_len: 100
            }
        );
    }

    #[test]
    fn enough_batches_for_every_worker() {
        let lengths = [4; 10];
        let limits = BatchLimits {
            max_texts: 32,
            max_tokens: 1 << 20,
            min_batches: 2,
        };
        let batches = plan_batches(&lengths, limits);
        check_partition(&lengths, &batches, limits);
        assert_eq!(
            batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            vec![5, 5]
        );
    }

    #[test]
    fn no_texts_no_batches() {
        assert!(plan_batches(&[], LIMITS).is_empty());
    }

    #[test]
    fn many_random_lengths_are_partitioned() {
        // A fixed xorshift seed, so a failure replays; printed in case it is ever changed.
        let seed: u64 = 0x9e37_79b9_7f4a_7c15;
        println!("seed = {seed:#x}");
        let mut x = seed;
        let lengths: Vec<usize> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 256) as usize + 2
            })
            .collect();
        let limits = BatchLimits {
            max_texts: 32,
            max_tokens: 4096,
            min_batches: 2,
        };
        let batches = plan_batches(&lengths, limits);
        check_partition(&lengths, &batches, limits);
        let firsts: Vec<usize> = batches.iter().map(|b| b.seq_len).collect();
        assert!(
            firsts.windows(2).all(|w| w[0] >= w[1]),
            "not longest first: {firsts:?}"
        );
    }

    #[test]
    fn packed_batches_cap_real_tokens_and_spread_over_workers() {
        let lengths = [5, 30, 6, 31, 7, 29, 5, 8];
        let limits = BatchLimits {
            max_texts: 4,
            max_tokens: 64,
            min_batches: 1,
        };
        let batches = pack_batches(&lengths, limits);
        // Longest first, cut at 64 real tokens (no padding counted) or 4 texts.
        let cut: Vec<Vec<usize>> = batches.iter().map(|b| b.indices.clone()).collect();
        assert_eq!(cut, vec![vec![3, 1], vec![5, 7, 4, 2], vec![0, 6]]);
        assert_eq!(batches[0].seq_len, 31);

        // Ten equal texts and two workers: five each, although one batch could hold them all.
        let spread = pack_batches(
            &[4; 10],
            BatchLimits {
                max_texts: 32,
                max_tokens: 1 << 20,
                min_batches: 2,
            },
        );
        assert_eq!(
            spread.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            vec![5, 5]
        );
        // A text over the budget gets a batch of its own.
        let long = pack_batches(&[100, 3, 3], limits);
        assert_eq!(long[0].indices, vec![0]);
    }

    #[test]
    fn many_random_lengths_are_packed_into_a_partition() {
        let seed: u64 = 0x2545_f491_4f6c_dd1d;
        println!("seed = {seed:#x}");
        let mut x = seed;
        let lengths: Vec<usize> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 256) as usize + 2
            })
            .collect();
        let limits = BatchLimits {
            max_texts: 32,
            max_tokens: 512,
            min_batches: 2,
        };
        let batches = pack_batches(&lengths, limits);
        let mut seen = vec![false; lengths.len()];
        for b in &batches {
            let tokens: usize = b.indices.iter().map(|&i| lengths[i]).sum();
            assert!(
                b.indices.len() == 1 || tokens <= 512,
                "{b:?}: {tokens} tokens"
            );
            assert!(b.indices.len() <= 32);
            for &i in &b.indices {
                assert!(!std::mem::replace(&mut seen[i], true), "{i} twice");
            }
        }
        assert!(seen.iter().all(|&s| s), "some text in no batch");
    }

    #[test]
    fn bucketed_results_come_back_in_input_order() {
        let lengths = [5, 30, 6, 31, 7, 29, 5, 8];
        let batches = plan_batches(&lengths, LIMITS);
        // What a worker produces: (input position, result), batch by batch in batch order.
        let results = batches
            .iter()
            .flat_map(|b| b.indices.iter().map(|&i| (i, lengths[i] * 10)));
        let restored = restore_order(lengths.len(), results).expect("complete");
        assert_eq!(restored, lengths.iter().map(|l| l * 10).collect::<Vec<_>>());
    }

    #[test]
    fn restore_order_refuses_gaps_duplicates_and_strays() {
        assert_eq!(restore_order(2, [(1, 'b'), (0, 'a')]), Some(vec!['a', 'b']));
        assert_eq!(restore_order(2, [(0, 'a')]), None);
        assert_eq!(restore_order(2, [(0, 'a'), (0, 'a'), (1, 'b')]), None);
        assert_eq!(restore_order(2, [(0, 'a'), (1, 'b'), (2, 'c')]), None);
    }
}
