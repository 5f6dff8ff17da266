//! The encoder's element-wise steps: LayerNorm, exact GELU and the attention softmax.
//!
//! Each is written to match PyTorch's arithmetic (the order of operations of
//! `torch.nn.functional.layer_norm`, `gelu` and `softmax`), in f32. The transcendental
//! functions come from tract-linalg's vectorised routines (the same erf and exp tract's own
//! graph uses); the rest are plain loops shaped so the compiler vectorises them (independent
//! partial sums rather than one serial chain).

use tract_linalg::Func;
use tract_linalg::element_wise::ElementWise;

use super::gemm::GemmError;

/// Floats of GELU done at a time: 8 KiB, well inside L1, a multiple of every routine's width.
pub(crate) const GELU_CHUNK: usize = 2048;

/// Lanes of independent partial sums: enough to hide the latency of a floating-point add.
const LANES: usize = 8;

/// Sum of `values` over [`LANES`] partial sums.
fn sum(values: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// Sum of `(v - mean)^2` over [`LANES`] partial sums.
fn sum_sq_dev(values: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            let d = v - mean;
            *a += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
}

/// LayerNorm over each row of `width` values of `rows`, in place:
/// `(x - mean) / sqrt(var + eps) * gamma + beta`, with the biased variance, as PyTorch does.
pub(crate) fn layer_norm(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    debug_assert_eq!(gamma.len(), width);
    debug_assert_eq!(beta.len(), width);
    for row in rows.chunks_exact_mut(width) {
        let mean = sum(row) / width as f32;
        let var = sum_sq_dev(row, mean) / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *x = (*x - mean) * inv * g + b;
        }
    }
}

/// The vectorised routines the encoder needs, looked up once.
pub(crate) struct Routines {
    erf: Box<dyn ElementWise<f32>>,
    exp: Box<dyn ElementWise<f32>>,
}

impl std::fmt::Debug for Routines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routines")
            .field("erf", &self.erf.name())
            .field("exp", &self.exp.name())
            .finish()
    }
}

impl Routines {
    pub fn new() -> Result<Routines, GemmError> {
        let get = |f: Func| {
            f.ew_f32()
                .map_err(|e| GemmError(format!("tract-linalg has no {} routine: {e:#}", f.name())))
        };
        Ok(Routines {
            erf: get(Func::Erf)?,
            exp: get(Func::Exp)?,
        })
    }

    /// Exact GELU in place, `x * 0.5 * (1 + erf(x / sqrt(2)))` (transformers' "gelu").
    ///
    /// Done in chunks that stay in the L1 cache, through `scratch` (aligned, so the erf routine
    /// runs on it directly rather than through a copy), instead of three passes over `x`.
    pub fn gelu(&self, x: &mut [f32], scratch: &mut [f32]) -> Result<(), GemmError> {
        let chunk = GELU_CHUNK.min(scratch.len()).max(1);
        for part in x.chunks_mut(chunk) {
            let tmp = &mut scratch[..part.len()];
            for (s, v) in tmp.iter_mut().zip(part.iter()) {
                *s = v * std::f32::consts::FRAC_1_SQRT_2;
            }
            self.erf
                .run(tmp)
                .map_err(|e| GemmError(format!("erf: {e:#}")))?;
            for (v, e) in part.iter_mut().zip(tmp.iter()) {
                *v = *v * 0.5 * (1.0 + e);
            }
        }
        Ok(())
    }

    /// Softmax over the columns of a `len x len` block of attention scores stored key-major
    /// (`scores[key * len + query]`), leaving the unnormalised exponentials in place and
    /// writing `1 / sum` per query to `inv_sums`.
    ///
    /// Key-major storage makes every step a loop over contiguous queries (vectorised), and the
    /// exponentials one call over the whole block; the division by the sum is left to the
    /// product with the values, as a per-row scale of its output.
    pub fn softmax_keys(
        &self,
        scores: &mut [f32],
        len: usize,
        max: &mut [f32],
        inv_sums: &mut [f32],
    ) -> Result<(), GemmError> {
        debug_assert_eq!(scores.len(), len * len);
        let (max, inv_sums) = (&mut max[..len], &mut inv_sums[..len]);
        max.fill(f32::NEG_INFINITY);
        for row in scores.chunks_exact(len) {
            for (m, s) in max.iter_mut().zip(row) {
                *m = m.max(*s);
            }
        }
        for row in scores.chunks_exact_mut(len) {
            for (s, m) in row.iter_mut().zip(max.iter()) {
                *s -= m;
            }
        }
        self.exp
            .run(scores)
            .map_err(|e| GemmError(format!("exp: {e:#}")))?;
        inv_sums.fill(0.0);
        for row in scores.chunks_exact(len) {
            for (acc, e) in inv_sums.iter_mut().zip(row) {
                *acc += e;
            }
        }
        for s in inv_sums.iter_mut() {
            *s = 1.0 / *s;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_matches_the_definition() {
        let width = 13;
        let mut rows: Vec<f32> = (0..3 * width)
            .map(|i| (i as f32 * 0.37).sin() * 4.0)
            .collect();
        let gamma: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 * 0.1).collect();
        let beta: Vec<f32> = (0..width).map(|i| i as f32 * -0.05).collect();
        let expected: Vec<f64> = rows
            .chunks(width)
            .flat_map(|r| {
                let mean = r.iter().map(|&v| f64::from(v)).sum::<f64>() / width as f64;
                let var = r
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / width as f64;
                r.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        (f64::from(v) - mean) / (var + 1e-12).sqrt() * f64::from(gamma[i])
                            + f64::from(beta[i])
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        layer_norm(&mut rows, width, &gamma, &beta, 1e-12);
        for (got, want) in rows.iter().zip(&expected) {
            assert!((f64::from(*got) - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn gelu_is_exact_not_the_tanh_approximation() {
        let r = Routines::new().expect("routines");
        let mut x: Vec<f32> = (-40..=40).map(|i| i as f32 / 8.0).collect();
        let mut scratch = vec![0f32; x.len()];
        let input = x.clone();
        r.gelu(&mut x, &mut scratch).expect("gelu");
        for (got, v) in x.iter().zip(input) {
            let v = f64::from(v);
            let want = v * 0.5 * (1.0 + erf(v / std::f64::consts::SQRT_2));
            assert!(
                (f64::from(*got) - want).abs() < 2e-6,
                "gelu({v}) = {got}, want {want}"
            );
        }
    }

    /// erf to double precision (Abramowitz and Stegun 7.1.26 is not enough for a reference):
    /// the series for small arguments, the continued fraction of erfc beyond.
    fn erf(x: f64) -> f64 {
        if x < 0.0 {
            return -erf(-x);
        }
        if x < 3.0 {
            let mut term = x;
            let mut total = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for n in (1..60).rev() {
                f = n as f64 / 2.0 / (x + f);
            }
            1.0 - (-x * x).exp() / (x + f) / std::f64::consts::PI.sqrt()
        }
    }

    #[test]
    fn softmax_over_keys_sums_to_one_per_query() {
        let r = Routines::new().expect("routines");
        let len = 19;
        // Key-major scores, with one very large score to check the max is subtracted.
        let mut scores: Vec<f32> = (0..len * len)
            .map(|i| ((i * 7) % 23) as f32 * 0.9)
            .collect();
        scores[5 * len + 3] = 500.0;
        let original = scores.clone();
        let (mut max, mut inv) = (vec![0f32; len], vec![0f32; len]);
        r.softmax_keys(&mut scores, len, &mut max, &mut inv)
            .expect("softmax");
        for q in 0..len {
            let column: Vec<f64> = (0..len).map(|k| f64::from(original[k * len + q])).collect();
            let m = column.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = column.iter().map(|v| (v - m).exp()).sum();
            for k in 0..len {
                let want = (column[k] - m).exp() / total;
                let got = f64::from(scores[k * len + q]) * f64::from(inv[q]);
                assert!(
                    (got - want).abs() < 1e-6,
                    "p[{q}][{k}] = {got}, want {want}"
                );
            }
        }
    }
}
