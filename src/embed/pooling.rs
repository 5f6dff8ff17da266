//! From per-token hidden states to one sentence vector: sentence-transformers' mean pooling
//! and Normalize modules.
//!
//! Mean pooling averages the hidden states of the tokens whose attention mask is 1, so padding
//! added to fit a batch never changes a vector. Normalize divides by the L2 norm, floored at
//! 1e-12 as `torch.nn.functional.normalize` does.

/// The average of the rows of `hidden` (`mask.len()` rows of `dim` values each, row-major)
/// whose mask is non-zero. With no such row the result is all zeros, as sentence-transformers
/// gets by clamping the token count to 1e-9.
pub fn mean_pool(hidden: &[f32], dim: usize, mask: &[i64]) -> Vec<f32> {
    debug_assert_eq!(
        hidden.len(),
        dim * mask.len(),
        "hidden states do not match the mask"
    );
    let mut sum = vec![0f32; dim];
    let mut count = 0usize;
    for (row, &m) in hidden.chunks_exact(dim).zip(mask) {
        if m != 0 {
            count += 1;
            for (s, &h) in sum.iter_mut().zip(row) {
                *s += h;
            }
        }
    }
    let count = (count as f32).max(1e-9);
    for s in &mut sum {
        *s /= count;
    }
    sum
}

/// Scale `v` to unit L2 norm in place; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pool_averages_only_unmasked_rows() {
        // Three tokens of width 2; the last is padding with values that would show if counted.
        let hidden = [1.0, 2.0, 3.0, 6.0, 100.0, -100.0];
        assert_eq!(mean_pool(&hidden, 2, &[1, 1, 0]), vec![2.0, 4.0]);
        assert_eq!(mean_pool(&hidden, 2, &[0, 1, 0]), vec![3.0, 6.0]);
        assert_eq!(
            mean_pool(&hidden, 2, &[1, 1, 1]),
            vec![104.0 / 3.0, -92.0 / 3.0]
        );
    }

    #[test]
    fn mean_pool_of_nothing_is_zero() {
        assert_eq!(mean_pool(&[5.0, 5.0], 2, &[0]), vec![0.0, 0.0]);
    }

    #[test]
    fn l2_normalize_gives_unit_length_and_keeps_direction() {
        let mut v = vec![3.0, -4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, -0.8]);

        let mut z = vec![0.0f32; 3];
        l2_normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
