//! The f32 multiply-add peak of one core of this machine, measured: the ceiling
//! `scripts/bench-embed --compare` puts next to the embedder's speed.
//!
//!     cargo bench --bench fma-peak
//!
//! Runs independent chains of fused multiply-adds on the widest vectors the CPU has (AVX-512,
//! else AVX2 + FMA), many short times, and prints the best rate as JSON:
//! `{"isa": "avx512f", "gflops_per_core": ...}`. The best of many short runs is what an idle
//! core does, so the figure holds on a busy machine too (as long as some run gets a core to
//! itself). Counts one multiply-add as two operations, as the embedder's FLOP count does.

use std::time::Instant;

/// Chains of multiply-adds kept in flight: more than latency x ports on any current core.
const CHAINS: usize = 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); CHAINS];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iterations {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm512_set1_ps(0.0), |s, r| _mm512_add_ps(s, *r));
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(iterations: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iterations {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_set1_ps(0.0), |s, r| _mm256_add_ps(s, *r));
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    lanes.iter().sum()
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let (isa, lanes, run): (&str, usize, unsafe fn(usize) -> f32) =
            if is_x86_feature_detected!("avx512f") {
                ("avx512f", 16, avx512)
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                ("avx2+fma", 8, avx2)
            } else {
                println!("{{\"isa\": \"none\", \"gflops_per_core\": null}}");
                return;
            };
        // About a millisecond per run, so some run fits between other processes' time slices.
        let iterations = 200_000;
        let flops = (iterations * CHAINS * lanes * 2) as f64;
        let mut best = 0f64;
        for _ in 0..300 {
            let started = Instant::now();
            // SAFETY: the instruction set was detected above.
            let r = unsafe { run(iterations) };
            std::hint::black_box(r);
            best = best.max(flops / started.elapsed().as_secs_f64() / 1e9);
        }
        println!("{{\"isa\": \"{isa}\", \"gflops_per_core\": {best:.1}}}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("{{\"isa\": \"unknown\", \"gflops_per_core\": null}}");
}
