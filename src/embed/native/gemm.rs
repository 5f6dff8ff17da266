//! Matrix products on tract-linalg's kernels, behind a checked interface.
//!
//! tract's own graph picks one kernel per matmul when the plan is optimised; with the token count
//! still symbolic there it falls back to a default tile. The native encoder knows every shape
//! when it runs, so it asks tract-linalg's cost model for the kernel of each shape, packs the
//! weights once for it and packs activations straight from wherever they lie (a strided view,
//! no copy to a contiguous tensor first).
//!
//! This is the only module of the encoder with `unsafe` code: the kernels take raw strides and
//! pointers, so every entry point checks first that each operand and the output lie inside
//! their buffers, that packed operands were packed for the kernel that runs them, and that
//! the shapes agree. Only then are they handed over.

use std::fmt;

use tract_linalg::BinOp;
use tract_linalg::mmm::{
    AsInputValue, FusedSpec, MMMInputFormat, MMMInputValue, MatMatMul, MmmDispatch, Query,
    ScratchSpace,
};
use tract_onnx::prelude::{Datum, Tensor};
use tract_onnx::tract_core::internal::TensorView;

/// Why a matrix product could not run: always a bug in the caller (shapes that do not agree)
/// or a kernel tract cannot provide, never something the data can cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GemmError(pub String);

impl fmt::Display for GemmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(reason: impl Into<String>) -> Result<T, GemmError> {
    Err(GemmError(reason.into()))
}

/// A contiguous f32 buffer the kernels can read and write.
///
/// It is a tract [`Tensor`] (aligned for the vector units, which `Vec<f32>` does not promise)
/// that is always one-dimensional, plain and f32; the slice accessors rely on that.
pub(crate) struct Buf(Tensor);

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buf({})", self.len())
    }
}

impl Buf {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Result<Buf, GemmError> {
        Tensor::zero::<f32>(&[len])
            .map(Buf)
            .map_err(|e| GemmError(format!("cannot allocate {len} floats: {e}")))
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[f32]) -> Result<Buf, GemmError> {
        let mut buf = Buf::zeros(values.len())?;
        buf.as_mut_slice().copy_from_slice(values);
        Ok(buf)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Make room for at least `len` floats; the contents are not kept.
    pub fn ensure_len(&mut self, len: usize) -> Result<(), GemmError> {
        if self.len() < len {
            *self = Buf::zeros(len)?;
        }
        Ok(())
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: a Buf is only ever made by `zeros`, a plain one-dimensional f32 tensor.
        unsafe { self.0.as_slice_unchecked::<f32>() }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`.
        unsafe { self.0.as_slice_mut_unchecked::<f32>() }
    }
}

/// A `rows x cols` f32 matrix inside a [`Buf`]: element `(r, c)` is at
/// `offset + r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub buf: &'a Buf,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// The same as [`MatRef`] for the output of a product.
pub(crate) struct MatMut<'a> {
    pub buf: &'a mut Buf,
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// Whether a `rows x cols` matrix at `offset` with these strides lies inside `len` floats.
fn check_region(
    what: &str,
    len: usize,
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> Result<(), GemmError> {
    if rows == 0 || cols == 0 {
        return fail(format!("{what}: empty {rows} x {cols} matrix"));
    }
    let last = (rows - 1)
        .checked_mul(row_stride)
        .and_then(|r| (cols - 1).checked_mul(col_stride).map(|c| (r, c)))
        .and_then(|(r, c)| r.checked_add(c))
        .and_then(|rc| rc.checked_add(offset));
    match last {
        Some(last) if last < len => Ok(()),
        _ => fail(format!(
            "{what}: {rows} x {cols} at {offset} (strides {row_stride}, {col_stride}) \
             overruns a buffer of {len}"
        )),
    }
}

fn stride(s: usize) -> Result<isize, GemmError> {
    isize::try_from(s).or_else(|_| fail(format!("stride {s} too large")))
}

impl MatRef<'_> {
    fn check(&self, what: &str) -> Result<(), GemmError> {
        check_region(
            what,
            self.buf.len(),
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
}

impl MatMut<'_> {
    fn check(&self, what: &str) -> Result<(), GemmError> {
        check_region(
            what,
            self.buf.len(),
            self.offset,
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
}

/// An operand packed for one kernel.
pub(crate) struct Packed {
    value: Box<dyn MMMInputValue>,
    /// Name of the kernel and which operand (`a` or `b`) this was packed for.
    kernel: String,
    side: Side,
}

impl fmt::Debug for Packed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Packed({} {:?}, k {}, mn {})",
            self.kernel,
            self.side,
            self.value.k(),
            self.value.mn()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// What the kernel does to the product before it is stored.
pub(crate) enum Epilogue<'a> {
    /// Add `values[row]` to every element of a row (a dense layer's bias).
    AddPerRow(&'a Buf),
    /// Multiply every element of a row by `values[row]`.
    MulPerRow(&'a Buf),
    /// Add a matrix of the output's shape (a residual connection).
    AddMatrix(MatRef<'a>),
}

/// One of tract-linalg's f32 matrix-product kernels, with the packing it reads.
#[derive(Clone)]
pub(crate) struct Kernel {
    mmm: Box<dyn MatMatMul>,
    packing: usize,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mmm.name())
    }
}

impl Kernel {
    /// The kernel tract-linalg's cost model prefers for an f32 `m x k` by `k x n` product on
    /// this CPU.
    pub fn for_shape(m: usize, k: usize, n: usize) -> Result<Kernel, GemmError> {
        let query = Query::plain(f32::datum_type(), Some(m), Some(k), Some(n));
        let mut query = query;
        // A panel extractor would re-pack the weights on every call.
        query.allow_extractor = false;
        match MmmDispatch::native().pick(&query) {
            Some((mmm, packing, None)) => Ok(Kernel { mmm, packing }),
            Some((mmm, _, Some(_))) => fail(format!(
                "tract offers {} for f32 {m}x{k}x{n} only through a panel extractor",
                mmm.name()
            )),
            None => fail(format!("tract has no f32 kernel for {m}x{k}x{n}")),
        }
    }

    pub fn name(&self) -> &str {
        self.mmm.name()
    }

    fn format(&self, side: Side) -> &dyn MMMInputFormat {
        let (a, b) = &self.mmm.packings()[self.packing];
        match side {
            Side::A => &**a,
            Side::B => &**b,
        }
    }

    fn pack(&self, src: MatRef<'_>, side: Side) -> Result<Packed, GemmError> {
        src.check(match side {
            Side::A => "left operand",
            Side::B => "right operand",
        })?;
        let shape = [src.rows, src.cols];
        let strides = [stride(src.row_stride)?, stride(src.col_stride)?];
        let offset_bytes = stride(src.offset * std::mem::size_of::<f32>())?;
        // SAFETY: `check` proved every element of the view lies inside the buffer, which is a
        // plain f32 tensor; the view only lives for the packing below.
        let view = unsafe { TensorView::from_bytes(&src.buf.0, offset_bytes, &shape, &strides) };
        // A is rows = m by cols = k, B is rows = k by cols = n.
        let (k_axis, mn_axis) = match side {
            Side::A => (1, 0),
            Side::B => (0, 1),
        };
        let value = self
            .format(side)
            .prepare_one_view(&view, k_axis, mn_axis)
            .map_err(|e| GemmError(format!("packing for {}: {e:#}", self.name())))?;
        Ok(Packed {
            value,
            kernel: self.name().to_owned(),
            side,
        })
    }

    /// Pack the left operand, `m x k`.
    pub fn pack_a(&self, src: MatRef<'_>) -> Result<Packed, GemmError> {
        self.pack(src, Side::A)
    }

    /// Pack the right operand, `k x n`.
    pub fn pack_b(&self, src: MatRef<'_>) -> Result<Packed, GemmError> {
        self.pack(src, Side::B)
    }

    /// A scratch space this kernel can use.
    pub fn scratch(&self) -> Scratch {
        // SAFETY: allocating a scratch space has no precondition; it is only used by kernels
        // that accept it (checked in `run`).
        Scratch(unsafe { self.mmm.allocate_scratch_space() })
    }

    /// `out = epilogue(a · b)`, with `a` packed `m x k` and `b` packed `k x n` for this kernel.
    pub fn run(
        &self,
        scratch: &mut Scratch,
        a: &Packed,
        b: &Packed,
        epilogue: &[Epilogue<'_>],
        out: MatMut<'_>,
    ) -> Result<(), GemmError> {
        for (p, side) in [(a, Side::A), (b, Side::B)] {
            if p.kernel != self.name() || p.side != side {
                return fail(format!("{p:?} used as {side:?} of {}", self.name()));
            }
        }
        let (m, n, k) = (a.value.mn(), b.value.mn(), a.value.k());
        if b.value.k() != k {
            return fail(format!("inner sizes differ: {a:?} by {b:?}"));
        }
        if out.rows != m || out.cols != n {
            return fail(format!(
                "{m} x {n} product into a {} x {} output",
                out.rows, out.cols
            ));
        }
        out.check("output")?;
        let item = std::mem::size_of::<f32>();
        let (out_rs, out_cs) = (stride(out.row_stride)?, stride(out.col_stride)?);
        let mut specs: Vec<FusedSpec<'_>> = Vec::with_capacity(epilogue.len() + 2);
        specs.push(FusedSpec::AddMatMul {
            a: AsInputValue::Borrowed(&*a.value),
            b: AsInputValue::Borrowed(&*b.value),
            packing: self.packing,
        });
        // Views must outlive the specs that point into them.
        let mut shapes: Vec<[usize; 2]> = Vec::with_capacity(epilogue.len() + 1);
        let mut strides: Vec<[isize; 2]> = Vec::with_capacity(epilogue.len() + 1);
        for e in epilogue {
            match e {
                Epilogue::AddPerRow(v) | Epilogue::MulPerRow(v) => {
                    if v.len() < m {
                        return fail(format!("{} per-row values for {m} rows", v.len()));
                    }
                    shapes.push([m, 1]);
                    strides.push([1, 1]);
                }
                Epilogue::AddMatrix(add) => {
                    if add.rows != m || add.cols != n {
                        return fail(format!(
                            "adding a {} x {} matrix to a {m} x {n} product",
                            add.rows, add.cols
                        ));
                    }
                    add.check("added matrix")?;
                    shapes.push([m, n]);
                    strides.push([stride(add.row_stride)?, stride(add.col_stride)?]);
                }
            }
        }
        for (i, e) in epilogue.iter().enumerate() {
            let (shape, st) = (&shapes[i][..], &strides[i][..]);
            match e {
                Epilogue::AddPerRow(v) | Epilogue::MulPerRow(v) => {
                    // SAFETY: `v` holds at least `m` floats (checked above).
                    let view = unsafe { TensorView::from_bytes(&v.0, 0, &shape[..1], &st[..1]) };
                    let op = if matches!(e, Epilogue::AddPerRow(_)) {
                        BinOp::Add
                    } else {
                        BinOp::Mul
                    };
                    specs.push(FusedSpec::BinPerRow(view, op));
                }
                Epilogue::AddMatrix(add) => {
                    let offset = stride(add.offset * item)?;
                    // SAFETY: the region was checked to lie in the buffer above; the store
                    // only reads it.
                    let view = unsafe { TensorView::from_bytes(&add.buf.0, offset, shape, st) };
                    // SAFETY: the strides are those of the checked region.
                    let spec = unsafe {
                        self.mmm.c_from_data_and_strides(
                            item,
                            stride(add.row_stride)?,
                            stride(add.col_stride)?,
                        )
                    };
                    // SAFETY: as above.
                    specs.push(FusedSpec::AddUnicast(unsafe { spec.wrap(&view) }));
                }
            }
        }
        let out_shape = [m, n];
        let out_strides = [out_rs, out_cs];
        let offset = stride(out.offset * item)?;
        // SAFETY: `out.check` proved the m x n output region lies in its buffer, which this
        // call borrows mutably, so nothing else reads or writes it meanwhile.
        let view = unsafe { TensorView::from_bytes(&out.buf.0, offset, &out_shape, &out_strides) };
        // SAFETY: as above.
        let store = unsafe {
            self.mmm
                .c_from_data_and_strides(item, out_rs, out_cs)
                .wrap(&view)
        };
        specs.push(FusedSpec::Store(store));
        if let Some(spec) = specs.iter().find(|s| !self.mmm.can_fuse(s)) {
            return fail(format!("{} cannot fuse {spec:?}", self.name()));
        }
        // SAFETY: the kernel's own scratch type (replaced if not).
        if !unsafe { self.mmm.can_use_scratch_space(&*scratch.0) } {
            *scratch = self.scratch();
        }
        // SAFETY: both operands were packed for this kernel and packing (checked at the top),
        // their sizes agree with the output's, and every region the specs point to was checked
        // to lie inside its buffer.
        unsafe {
            self.mmm
                .run_with_scratch_space(m, n, &mut *scratch.0, &specs)
                .map_err(|e| GemmError(format!("{}: {e:#}", self.name())))
        }
    }
}

/// A kernel's working memory, kept by a worker thread between products.
pub(crate) struct Scratch(Box<dyn ScratchSpace>);

impl Scratch {
    /// A scratch space for whichever kernel runs first (replaced if another needs its own).
    pub fn new() -> Result<Scratch, GemmError> {
        let kernel = Kernel::for_shape(16, 16, 16)?;
        Ok(kernel.scratch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference product in f64.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum();
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    /// Products at awkward shapes (tails in every dimension), with transposed storage for the
    /// operands and the output, a bias, a per-row scale and an added matrix, against f64.
    #[test]
    fn strided_products_with_epilogues_match_a_reference() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 5, 3),
            (44, 32, 44),
            (33, 44, 32),
            (385, 384, 17),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let bias = values(m, 3);
            let scale = values(m, 4);
            let add = values(m * n, 5);
            let expected: Vec<f64> = reference(&a, &b, m, k, n)
                .iter()
                .enumerate()
                .map(|(ix, v)| {
                    let (i, j) = (ix / n, ix % n);
                    (v + f64::from(bias[i])) * f64::from(scale[i]) + f64::from(add[j * m + i])
                })
                .collect();
            let kernel = Kernel::for_shape(m, k, n).expect("kernel");
            // A stored row-major after 3 floats of something else; B stored column-major.
            let mut a_buf = vec![9.0; 3];
            a_buf.extend_from_slice(&a);
            let a_buf = Buf::from_slice(&a_buf).expect("buf");
            let mut b_t = vec![0f32; k * n];
            for p in 0..k {
                for j in 0..n {
                    b_t[j * k + p] = b[p * n + j];
                }
            }
            let b_buf = Buf::from_slice(&b_t).expect("buf");
            let pa = kernel
                .pack_a(MatRef {
                    buf: &a_buf,
                    offset: 3,
                    rows: m,
                    cols: k,
                    row_stride: k,
                    col_stride: 1,
                })
                .expect("pack a");
            let pb = kernel
                .pack_b(MatRef {
                    buf: &b_buf,
                    offset: 0,
                    rows: k,
                    cols: n,
                    row_stride: 1,
                    col_stride: k,
                })
                .expect("pack b");
            let bias = Buf::from_slice(&bias).expect("buf");
            let scale = Buf::from_slice(&scale).expect("buf");
            let add = Buf::from_slice(&add).expect("buf");
            // The output transposed: element (i, j) at j * m + i.
            let mut out = Buf::zeros(m * n).expect("buf");
            let mut scratch = kernel.scratch();
            kernel
                .run(
                    &mut scratch,
                    &pa,
                    &pb,
                    &[
                        Epilogue::AddPerRow(&bias),
                        Epilogue::MulPerRow(&scale),
                        Epilogue::AddMatrix(MatRef {
                            buf: &add,
                            offset: 0,
                            rows: m,
                            cols: n,
                            row_stride: 1,
                            col_stride: m,
                        }),
                    ],
                    MatMut {
                        buf: &mut out,
                        offset: 0,
                        rows: m,
                        cols: n,
                        row_stride: 1,
                        col_stride: m,
                    },
                )
                .expect("run");
            for i in 0..m {
                for j in 0..n {
                    let got = f64::from(out.as_slice()[j * m + i]);
                    let want = expected[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{m}x{k}x{n} with {kernel:?}: ({i}, {j}) = {got}, expected {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn regions_outside_their_buffer_are_refused() {
        let kernel = Kernel::for_shape(8, 8, 8).expect("kernel");
        let buf = Buf::zeros(63).expect("buf");
        let err = kernel
            .pack_a(MatRef {
                buf: &buf,
                offset: 0,
                rows: 8,
                cols: 8,
                row_stride: 8,
                col_stride: 1,
            })
            .expect_err("64 floats do not fit in 63");
        assert!(err.0.contains("overruns"), "{err}");
    }

    #[test]
    fn operands_packed_for_another_shape_are_refused() {
        let kernel = Kernel::for_shape(8, 8, 8).expect("kernel");
        let buf = Buf::zeros(64).expect("buf");
        let m = |rows, cols| MatRef {
            buf: &buf,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        };
        let a = kernel.pack_a(m(8, 8)).expect("a");
        let b = kernel.pack_b(m(4, 8)).expect("b");
        let mut out = Buf::zeros(64).expect("buf");
        let mut scratch = kernel.scratch();
        let err = kernel
            .run(
                &mut scratch,
                &a,
                &b,
                &[],
                MatMut {
                    buf: &mut out,
                    offset: 0,
                    rows: 8,
                    cols: 8,
                    row_stride: 8,
                    col_stride: 1,
                },
            )
            .expect_err("k 8 by k 4");
        assert!(err.0.contains("inner sizes differ"), "{err}");
        let err = kernel
            .run(
                &mut scratch,
                &b,
                &a,
                &[],
                MatMut {
                    buf: &mut out,
                    offset: 0,
                    rows: 8,
                    cols: 8,
                    row_stride: 8,
                    col_stride: 1,
                },
            )
            .expect_err("B used as A");
        assert!(err.0.contains("used as"), "{err}");
    }
}
