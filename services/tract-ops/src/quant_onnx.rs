//! The 8-bit forms of onnxruntime's block-quantised contrib ops, which tract-onnx 0.23 refuses
//! ("only bits=4"): `com.microsoft` `MatMulNBits` and `GatherBlockQuantized` with `bits=8`,
//! block size 32 and no zero points (codes stored `code + 128`), as `build_lm.py --quant q8_0`
//! writes them. The weights stay a byte each: the product becomes a Q8_0
//! [`BlockQuantLinear`], the gather a [`BlockQ8Gather`] that widens only the rows it reads.
//!
//! A 4-bit `MatMulNBits` of blocks of 32 without zero points becomes a Q4_0
//! [`BlockQuantLinear`] here too where its fast kernels run (see `crate::worth_swapping`):
//! tract's own form packs a second copy of the weights and a temporary beside the file's while
//! the model is typed, which made that the peak of a language model's memory.
//!
//! Every other form goes to tract's own parser.

use std::sync::{Arc, OnceLock};

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::block_quant::{BLOCK, BlockQuantLinear, plain_bytes};

type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

static TRACT_MATMUL_NBITS: OnceLock<Builder> = OnceLock::new();
static TRACT_GATHER_BLOCK_QUANTIZED: OnceLock<Builder> = OnceLock::new();

/// Puts the 8-bit forms in front of tract's parsers for the two ops.
pub fn register(ops: &mut OnnxOpRegister) {
    if let Some(tract) = ops.0.get("MatMulNBits") {
        let _ = TRACT_MATMUL_NBITS.set(*tract);
    }
    if let Some(tract) = ops.0.get("GatherBlockQuantized") {
        let _ = TRACT_GATHER_BLOCK_QUANTIZED.set(*tract);
    }
    ops.insert("MatMulNBits", mat_mul_nbits);
    ops.insert("GatherBlockQuantized", gather_block_quantized);
}

fn bits(node: &NodeProto) -> TractResult<usize> {
    Ok(node.get_attr_opt("bits")?.unwrap_or(4))
}

/// Inputs from `first` on that the node names (empty names are absent optional inputs).
fn has_inputs_from(node: &NodeProto, first: usize) -> bool {
    node.input.iter().skip(first).any(|name| !name.is_empty())
}

fn to_tract(
    slot: &OnceLock<Builder>,
    op: &str,
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    match slot.get() {
        Some(tract) => tract(ctx, node),
        None => bail!("{op}: tract-onnx has no parser for it"),
    }
}

fn mat_mul_nbits(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let bits = bits(node)?;
    let k: usize = node.get_attr("K")?;
    let n: usize = node.get_attr("N")?;
    let block_size: usize = node.get_attr("block_size")?;
    if bits == 4
        && block_size == BLOCK
        && k.is_multiple_of(BLOCK)
        && !has_inputs_from(node, 3)
        && crate::block_quant_here()
    {
        return Ok((expand(MatMulNBits { k, n, bits }), vec![]));
    }
    if bits != 8 {
        return to_tract(&TRACT_MATMUL_NBITS, "MatMulNBits", ctx, node);
    }
    ensure!(
        block_size == BLOCK && k.is_multiple_of(BLOCK),
        "MatMulNBits bits=8: only blocks of {BLOCK} over a K that is a multiple of it (got block_size {block_size}, K {k})"
    );
    ensure!(
        !has_inputs_from(node, 3),
        "MatMulNBits bits=8: zero points, g_idx and bias are not supported"
    );
    Ok((expand(MatMulNBits { k, n, bits }), vec![]))
}

fn gather_block_quantized(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if bits(node)? != 8 {
        return to_tract(
            &TRACT_GATHER_BLOCK_QUANTIZED,
            "GatherBlockQuantized",
            ctx,
            node,
        );
    }
    let block_size: usize = node.get_attr_opt("block_size")?.unwrap_or(128);
    let gather_axis: i64 = node.get_attr_opt("gather_axis")?.unwrap_or(0);
    let quantize_axis: i64 = node.get_attr_opt("quantize_axis")?.unwrap_or(1);
    ensure!(
        block_size == BLOCK && gather_axis == 0 && (quantize_axis == 1 || quantize_axis == -1),
        "GatherBlockQuantized bits=8: only a [rows, cols] table gathered by row, in blocks of {BLOCK} along the row"
    );
    ensure!(
        !has_inputs_from(node, 3),
        "GatherBlockQuantized bits=8: zero points are not supported"
    );
    Ok((expand(GatherQ8), vec![]))
}

/// A constant input's value (an initializer), as bytes or f32.
fn constant(model: &TypedModel, outlet: OutletId, what: &str) -> TractResult<Arc<Tensor>> {
    if !model
        .node(outlet.node)
        .op_is::<tract_onnx::tract_core::ops::konst::Const>()
    {
        bail!("{what} must be a constant (an initializer)");
    }
    model
        .outlet_fact(outlet)?
        .konst
        .clone()
        .with_context(|| format!("{what} must be a constant"))
}

fn scales_of(tensor: &Tensor, len: usize, what: &str) -> TractResult<Vec<f32>> {
    ensure!(
        tensor.len() == len,
        "{what}: {} scales where {len} were expected",
        tensor.len()
    );
    let scales = tensor.cast_to::<f32>()?;
    Ok(scales.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

/// A `MatMulNBits` of 4 or 8 bits, blocks of 32, no zero points: a [`BlockQuantLinear`].
#[derive(Debug, Clone)]
struct MatMulNBits {
    k: usize,
    n: usize,
    bits: usize,
}

/// What both `MatMulNBits` forms check of the input and give as the output.
fn nbits_rules<'r, 'p: 'r>(
    n: usize,
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
) -> InferenceResult {
    check_input_arity(inputs, 3)?;
    check_output_arity(outputs, 1)?;
    s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
    let n = n.to_dim();
    s.given(&inputs[0].rank, move |s, rank| {
        let rank = rank as usize;
        s.equals(&outputs[0].rank, rank as i64)?;
        for axis in 0..rank - 1 {
            s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
        }
        s.equals(&outputs[0].shape[rank - 1], n.clone())
    })
}

/// The input of a `MatMulNBits` of `k`: f32 `[.., k]`.
fn nbits_input(model: &TypedModel, x: OutletId, k: usize, what: &str) -> TractResult<TypedFact> {
    let x = model.outlet_fact(x)?.clone();
    ensure!(
        x.datum_type == f32::datum_type() && x.rank() > 0 && x.shape[x.rank() - 1] == k.to_dim(),
        "{what}: the input must be f32 [.., {k}], got {x:?}"
    );
    Ok(x)
}

impl Expansion for MatMulNBits {
    fn name(&self) -> StaticName {
        format!("MatMulNBits{}", self.bits).into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        nbits_rules(self.n, s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (k, n) = (self.k, self.n);
        let what = format!("MatMulNBits bits={}", self.bits);
        let x = nbits_input(model, inputs[0], k, &what)?;
        let codes = constant(model, inputs[1], &what)?;
        let scales = constant(model, inputs[2], &what)?;
        // the file's bytes, not a copy: each layer's codes would otherwise be in memory twice
        // until the whole model is typed
        let codes = plain_bytes(codes, n * k * self.bits / 8, &format!("{what}: B"))?;
        let scales = scales_of(&scales, n * k / BLOCK, &format!("{what}: scales"))?;
        let op = if self.bits == 4 {
            BlockQuantLinear::q4_0_nbits(codes, &scales, n, k, x.rank())?
        } else {
            BlockQuantLinear::q8_0(codes, &scales, n, k, x.rank())?
        };
        model.wire_node(prefix, op, &[inputs[0]])
    }
}

#[derive(Debug, Clone)]
struct GatherQ8;

impl Expansion for GatherQ8 {
    fn name(&self) -> StaticName {
        "GatherBlockQuantized8".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, table, ids| {
            let mut shape: TVec<TDim> = ids;
            shape.push(table[1].clone());
            s.equals(&outputs[0].shape, ShapeFactoid::from(shape))
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let table = constant(model, inputs[0], "GatherBlockQuantized bits=8: data")?;
        let scales = constant(model, inputs[2], "GatherBlockQuantized bits=8: scales")?;
        ensure!(
            table.rank() == 2 && table.shape()[1].is_multiple_of(BLOCK),
            "GatherBlockQuantized bits=8: data must be [rows, cols] with cols a multiple of {BLOCK}, got {:?}",
            table.shape()
        );
        let (rows, cols) = (table.shape()[0], table.shape()[1]);
        let ids = model.outlet_fact(inputs[1])?.datum_type;
        ensure!(
            ids == i64::datum_type() || ids == i32::datum_type(),
            "GatherBlockQuantized bits=8: indices must be int32 or int64, got {ids:?}"
        );
        let op = BlockQ8Gather {
            codes: plain_bytes(table, rows * cols, "GatherBlockQuantized bits=8: data")?,
            scales: Arc::new(scales_of(
                &scales,
                rows * cols / BLOCK,
                "GatherBlockQuantized bits=8: scales",
            )?),
            rows,
            cols,
        };
        model.wire_node(prefix, op, &[inputs[1]])
    }
}

/// `table[ids]` of a Q8_0 table `[rows, cols]`, widened to f32: `[.. ids, cols]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockQ8Gather {
    /// The file's `u8` tensor (checked plain when the op was made).
    codes: Arc<Tensor>,
    scales: Arc<Vec<f32>>,
    rows: usize,
    cols: usize,
}

impl BlockQ8Gather {
    /// The rows `ids` names, `[.. ids, cols]`.
    fn apply(&self, ids: &Tensor) -> TractResult<Tensor> {
        let mut shape: TVec<usize> = ids.shape().into();
        shape.push(self.cols);
        let mut out = self.gather(ids)?;
        out.set_shape(&shape)?;
        Ok(out)
    }

    fn gather(&self, ids: &Tensor) -> TractResult<Tensor> {
        let ids = ids.cast_to::<i64>()?;
        let ids = ids.try_as_plain_ram()?;
        let ids = ids.as_slice::<i64>()?;
        let mut out = vec![0f32; ids.len() * self.cols];
        let blocks = self.cols / BLOCK;
        for (row_out, &id) in out.chunks_exact_mut(self.cols).zip(ids) {
            // ONNX Gather counts a negative index from the end
            let row = if id < 0 { id + self.rows as i64 } else { id };
            ensure!(
                (0..self.rows as i64).contains(&row),
                "GatherBlockQuantized: index {id} is outside the table's {} rows",
                self.rows
            );
            let row = row as usize;
            let codes = &self.codes.as_bytes()[row * self.cols..][..self.cols];
            let scales = &self.scales[row * blocks..][..blocks];
            for ((out, codes), &scale) in row_out
                .chunks_exact_mut(BLOCK)
                .zip(codes.chunks_exact(BLOCK))
                .zip(scales)
            {
                for (o, &c) in out.iter_mut().zip(codes) {
                    *o = (c as f32 - 128.0) * scale;
                }
            }
        }
        Tensor::from_shape(&[ids.len(), self.cols], &out)
    }
}

// The scales are never NaN (a model's), so equality is total.
impl Eq for BlockQ8Gather {}

impl Op for BlockQ8Gather {
    fn name(&self) -> StaticName {
        "BlockQ8Gather".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} x {}, Q8_0", self.rows, self.cols)])
    }

    op_as_typed_op!();
}

impl EvalOp for BlockQ8Gather {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let ids = args_1!(inputs);
        Ok(tvec!(self.apply(&ids)?.into_tvalue()))
    }
}

impl TypedOp for BlockQ8Gather {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1);
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.cols.to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> BlockQ8Gather {
        // 3 rows of 64: row r, column c holds code 128 + (c - 32) + r, scale 0.5 then 0.25
        let codes = (0..3)
            .flat_map(|r| (0..64).map(move |c| (128 + c - 32 + r) as u8))
            .collect();
        BlockQ8Gather {
            codes: crate::block_quant::byte_tensor(codes),
            scales: Arc::new(vec![0.5, 0.25, 0.5, 0.25, 0.5, 0.25]),
            rows: 3,
            cols: 64,
        }
    }

    #[test]
    fn a_gather_widens_the_rows_it_reads() {
        let op = table();
        let ids = Tensor::from_shape(&[1, 2], &[2i64, -3]).unwrap();
        let out = op.apply(&ids).unwrap();
        assert_eq!(out.shape(), &[1, 2, 64]);
        let values = out.to_plain_array_view::<f32>().unwrap();
        let values: Vec<f32> = values.iter().copied().collect();
        // row 2, column 0: (0 - 32 + 2) * 0.5; column 40: (40 - 32 + 2) * 0.25
        assert_eq!(values[0], -15.0);
        assert_eq!(values[40], 2.5);
        // -3 is row 0: column 63 is (63 - 32) * 0.25
        assert_eq!(values[64 + 63], 7.75);
    }

    #[test]
    fn an_index_outside_the_table_is_an_error() {
        let op = table();
        for id in [3i64, -4] {
            let ids = Tensor::from_shape(&[1], &[id]).unwrap();
            let err = op.apply(&ids).unwrap_err();
            assert!(err.to_string().contains("outside the table"), "{err}");
        }
    }
}
