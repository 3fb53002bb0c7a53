/**
 * A minimal builder for ONNX models in memory: value infos, nodes with attributes, initializers,
 * serialised with `onnx-proto`. The sidecar builds the small graphs it needs at run time, so
 * no export step and no Python are involved.
 */
import { onnx } from 'onnx-proto';

export type Dim = number | string;
export type ElementType = 'float32' | 'int64' | 'int32';
export type AttributeValue = number | number[] | string;

const ELEMENT_TYPES: Record<ElementType, onnx.TensorProto.DataType> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
};

export interface ValueSpec {
  name: string;
  type: ElementType;
  dims: Dim[];
}

export interface NodeSpec {
  /** Hierarchical name, e.g. `/text/layers.0/attn/q_proj`; defaults to the op and its index. */
  name?: string;
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
  domain?: string;
}

/** An initializer stored at `[offset, offset + bytes)` of an external-data file. */
export interface ExternalTensor {
  name: string;
  dims: number[];
  location: string;
  offset: number;
  /** float32 (default), or uint8 (packed 4-bit weights). */
  type?: 'float32' | 'uint8';
}

/** Bytes of an external tensor. */
export function externalBytes(t: Pick<ExternalTensor, 'dims' | 'type'>): number {
  return (t.type === 'uint8' ? 1 : 4) * t.dims.reduce((a, b) => a * b, 1);
}

export interface ModelSpec {
  name: string;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeSpec[];
  /** Scalar or 1-D float32 constants. */
  constants?: Record<string, number[] | Float32Array>;
  /** Int64 1-D constants (shapes, axes). */
  int64Constants?: Record<string, number[]>;
  /** Float32 initializers whose bytes live outside the model (see `ExternalTensor`). */
  external?: ExternalTensor[];
  opset?: number;
}

function valueInfo({ name, type, dims }: ValueSpec): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttributeValue): onnx.IAttributeProto {
  const { AttributeType } = onnx.AttributeProto;
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: value };
  if (Number.isInteger(value)) return { name, type: AttributeType.INT, i: value };
  return { name, type: AttributeType.FLOAT, f: value };
}

export function buildModel(spec: ModelSpec): Uint8Array {
  const initializer: onnx.ITensorProto[] = [
    ...Object.entries(spec.constants ?? {}).map(([name, data]) => ({
      name,
      dataType: onnx.TensorProto.DataType.FLOAT,
      dims: data.length === 1 && name.startsWith('const_f32_') ? [] : [data.length],
      floatData: Array.from(data),
    })),
    ...Object.entries(spec.int64Constants ?? {}).map(([name, data]) => ({
      name,
      dataType: onnx.TensorProto.DataType.INT64,
      dims: [data.length],
      int64Data: data,
    })),
    ...(spec.external ?? []).map((t) => ({
      name: t.name,
      dataType: t.type === 'uint8' ? onnx.TensorProto.DataType.UINT8 : onnx.TensorProto.DataType.FLOAT,
      dims: t.dims,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: t.location },
        { key: 'offset', value: String(t.offset) },
        { key: 'length', value: String(externalBytes(t)) },
      ],
    })),
  ];
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'lookm-sidecar',
    // com.microsoft: onnxruntime's contrib ops (MatMulNBits for 4-bit weights).
    opsetImport: [{ domain: '', version: spec.opset ?? 17 }, ...(spec.nodes.some((n) => n.domain === 'com.microsoft') ? [{ domain: 'com.microsoft', version: 1 }] : [])],
    graph: {
      name: spec.name,
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      initializer,
      node: spec.nodes.map((n, i) => ({
        name: n.name ?? `/${spec.name}/${n.op}_${i}`,
        opType: n.op,
        domain: n.domain ?? '',
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes ?? {}).map(([k, v]) => attribute(k, v)),
      })),
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/**
 * Accumulates nodes with hierarchical names and deduplicated constants, so graph code reads as a
 * sequence of ops: `const y = g.op('MatMul', [x, w], {}, '/text/layers.0/attn/qk')`.
 */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly constants: Record<string, number[]> = {};
  readonly int64Constants: Record<string, number[]> = {};
  private counter = 0;

  /** Adds a single-output node; returns the output's name (the node's name, made unique). */
  op(op: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, name?: string, domain?: string): string {
    const base = name ?? `/${op}`;
    const output = this.nodes.some((n) => n.name === base) ? `${base}_${this.counter++}` : base;
    this.nodes.push({ name: output, op, inputs, outputs: [output], attributes, ...(domain ? { domain } : {}) });
    return output;
  }

  /** An int64 1-D constant (shapes, axes, slice bounds), shared by every use of the same values. */
  ints(values: number[]): string {
    const name = `const_i64_${values.join('_').replace(/-/g, 'm')}`;
    this.int64Constants[name] = values;
    return name;
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    const name = `const_f32_${String(value).replace(/[^0-9a-z]/gi, '_')}`;
    this.constants[name] = [value];
    return name;
  }

  /** A float32 1-D constant. */
  vector(name: string, values: ArrayLike<number>): string {
    this.constants[name] = Array.from(values);
    return name;
  }
}
