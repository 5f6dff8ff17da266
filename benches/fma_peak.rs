//! The f32 multiply-add peak of one core of this machine, measured: the ceiling
//! `scripts/bench-embed --compare` puts next to the embedder's speed.
//!
//!     cargo bench --bench fma-peak
//!
//! Runs independent chains of fused multiply-adds on the widest vectors the CPU has (AVX-512,
//! else AVX2 + FMA), many short times, and prints the best rate as JSON:
//! `{"isa": "avx512f", "gflops_per_core": ...}`. The best of many short runs is what an idle
//! core does, so the figure holds on a busy machine too (as long as some run gets a core to
//! itself). One multiply-add counts as two operations, as in the embedder's FLOP count.
//!
//! The loops are inline assembly rather than intrinsics: the AVX-512 intrinsics need a newer
//! Rust than the crate's minimum, and the assembly says exactly what is measured.

use std::time::Instant;

/// Multiply-adds per loop iteration on 16 (AVX-512) or 14 (AVX2) independent accumulators:
/// more chains than latency x ports on any current core, so the ports never wait.
#[cfg(target_arch = "x86_64")]
fn avx512(iterations: usize) {
    // SAFETY: called only where the CPU has AVX-512F (checked by the caller); the registers
    // it writes are declared clobbered (zmm16-31 are never used by code compiled without
    // AVX-512, and vzeroupper clears the upper halves before returning).
    unsafe {
        std::arch::asm!(
            "vxorps zmm16, zmm16, zmm16",
            "vxorps zmm17, zmm17, zmm17",
            "2:",
            "vfmadd231ps zmm0, zmm16, zmm17",
            "vfmadd231ps zmm1, zmm16, zmm17",
            "vfmadd231ps zmm2, zmm16, zmm17",
            "vfmadd231ps zmm3, zmm16, zmm17",
            "vfmadd231ps zmm4, zmm16, zmm17",
            "vfmadd231ps zmm5, zmm16, zmm17",
            "vfmadd231ps zmm6, zmm16, zmm17",
            "vfmadd231ps zmm7, zmm16, zmm17",
            "vfmadd231ps zmm8, zmm16, zmm17",
            "vfmadd231ps zmm9, zmm16, zmm17",
            "vfmadd231ps zmm10, zmm16, zmm17",
            "vfmadd231ps zmm11, zmm16, zmm17",
            "vfmadd231ps zmm12, zmm16, zmm17",
            "vfmadd231ps zmm13, zmm16, zmm17",
            "vfmadd231ps zmm14, zmm16, zmm17",
            "vfmadd231ps zmm15, zmm16, zmm17",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            n = inout(reg) iterations => _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            out("xmm4") _,
            out("xmm5") _,
            out("xmm6") _,
            out("xmm7") _,
            out("xmm8") _,
            out("xmm9") _,
            out("xmm10") _,
            out("xmm11") _,
            out("xmm12") _,
            out("xmm13") _,
            out("xmm14") _,
            out("xmm15") _,
            options(nostack),
        );
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2(iterations: usize) {
    // SAFETY: as for `avx512`, on a CPU with AVX2 and FMA.
    unsafe {
        std::arch::asm!(
            "vxorps ymm14, ymm14, ymm14",
            "vxorps ymm15, ymm15, ymm15",
            "2:",
            "vfmadd231ps ymm0, ymm14, ymm15",
            "vfmadd231ps ymm1, ymm14, ymm15",
            "vfmadd231ps ymm2, ymm14, ymm15",
            "vfmadd231ps ymm3, ymm14, ymm15",
            "vfmadd231ps ymm4, ymm14, ymm15",
            "vfmadd231ps ymm5, ymm14, ymm15",
            "vfmadd231ps ymm6, ymm14, ymm15",
            "vfmadd231ps ymm7, ymm14, ymm15",
            "vfmadd231ps ymm8, ymm14, ymm15",
            "vfmadd231ps ymm9, ymm14, ymm15",
            "vfmadd231ps ymm10, ymm14, ymm15",
            "vfmadd231ps ymm11, ymm14, ymm15",
            "vfmadd231ps ymm12, ymm14, ymm15",
            "vfmadd231ps ymm13, ymm14, ymm15",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            n = inout(reg) iterations => _,
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            out("xmm4") _,
            out("xmm5") _,
            out("xmm6") _,
            out("xmm7") _,
            out("xmm8") _,
            out("xmm9") _,
            out("xmm10") _,
            out("xmm11") _,
            out("xmm12") _,
            out("xmm13") _,
            out("xmm14") _,
            out("xmm15") _,
            options(nostack),
        );
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let (isa, lanes, chains, run): (&str, usize, usize, fn(usize)) =
            if is_x86_feature_detected!("avx512f") {
                ("avx512f", 16, 16, avx512)
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                ("avx2+fma", 8, 14, avx2)
            } else {
                println!("{{\"isa\": \"none\", \"gflops_per_core\": null}}");
                return;
            };
        // About a millisecond per run, so some run fits between other processes' time slices.
        let iterations = 200_000;
        let flops = (iterations * chains * lanes * 2) as f64;
        let mut best = 0f64;
        for _ in 0..300 {
            let started = Instant::now();
            run(iterations);
            best = best.max(flops / started.elapsed().as_secs_f64() / 1e9);
        }
        println!("{{\"isa\": \"{isa}\", \"gflops_per_core\": {best:.1}}}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("{{\"isa\": \"unknown\", \"gflops_per_core\": null}}");
}
