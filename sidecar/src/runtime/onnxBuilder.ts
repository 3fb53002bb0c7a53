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
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
  domain?: string;
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
      dims: data.length === 1 ? [] : [data.length],
      floatData: Array.from(data),
    })),
    ...Object.entries(spec.int64Constants ?? {}).map(([name, data]) => ({
      name,
      dataType: onnx.TensorProto.DataType.INT64,
      dims: [data.length],
      int64Data: data,
    })),
  ];
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'lookm-sidecar',
    opsetImport: [{ domain: '', version: spec.opset ?? 17 }],
    graph: {
      name: spec.name,
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      initializer,
      node: spec.nodes.map((n, i) => ({
        name: `/${spec.name}/${n.op}_${i}`,
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
