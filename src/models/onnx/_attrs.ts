/**
 * Reading ONNX node attributes by name with defaults. Old exporters (IR 1–2) leave the
 * attribute `type` unset, so the value is taken from whichever field holds it.
 *
 * @module
 */

import { isFieldSet } from "npm:@bufbuild/protobuf@2.17.0";
import type { Attr } from "../../engine/graph.ts";
import {
  type AttributeProto,
  AttributeProto_AttributeType as AT,
  AttributeProtoSchema,
  type NodeProto,
  type TensorProto,
} from "../../onnx/gen/onnx_pb.ts";

/** Finds an attribute by name. */
export function findAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

/** The attribute's type, inferred from its fields when the exporter left `type` unset. */
export function attrType(a: AttributeProto): AT {
  if (a.type !== AT.UNDEFINED) return a.type;
  const f = AttributeProtoSchema.field;
  if (a.ints.length) return AT.INTS;
  if (a.floats.length) return AT.FLOATS;
  if (a.strings.length) return AT.STRINGS;
  if (a.t) return AT.TENSOR;
  if (isFieldSet(a, f.s)) return AT.STRING;
  if (isFieldSet(a, f.f)) return AT.FLOAT;
  if (isFieldSet(a, f.i)) return AT.INT;
  return AT.UNDEFINED;
}

function wrong(node: NodeProto, a: AttributeProto, want: string): never {
  throw new TypeError(
    `Invalid attribute "${a.name}" of node "${node.name}" (${node.opType}): expected ${want}, ` +
      `got ${AT[attrType(a)]}`,
  );
}

/** An integer attribute (`INT`), or `dflt`. */
export function attrInt(node: NodeProto, name: string, dflt: number): number;
export function attrInt(node: NodeProto, name: string): number | undefined;
export function attrInt(node: NodeProto, name: string, dflt?: number): number | undefined {
  const a = findAttr(node, name);
  if (!a) return dflt;
  if (attrType(a) !== AT.INT) wrong(node, a, "INT");
  return Number(a.i);
}

/** A float attribute (`FLOAT`; an `INT` is accepted too), or `dflt`. */
export function attrFloat(node: NodeProto, name: string, dflt: number): number;
export function attrFloat(node: NodeProto, name: string): number | undefined;
export function attrFloat(node: NodeProto, name: string, dflt?: number): number | undefined {
  const a = findAttr(node, name);
  if (!a) return dflt;
  const t = attrType(a);
  if (t === AT.FLOAT) return a.f;
  if (t === AT.INT) return Number(a.i);
  return wrong(node, a, "FLOAT");
}

/** An integer-list attribute (`INTS`), or undefined. */
export function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = findAttr(node, name);
  if (!a) return undefined;
  const t = attrType(a);
  if (t !== AT.INTS && t !== AT.UNDEFINED) wrong(node, a, "INTS");
  return a.ints.map((v) => Number(v));
}

/** A float-list attribute (`FLOATS`), or undefined. */
export function attrFloats(node: NodeProto, name: string): number[] | undefined {
  const a = findAttr(node, name);
  if (!a) return undefined;
  const t = attrType(a);
  if (t !== AT.FLOATS && t !== AT.UNDEFINED) wrong(node, a, "FLOATS");
  return [...a.floats];
}

/** A string attribute (`STRING`), or `dflt`. */
export function attrString(node: NodeProto, name: string, dflt: string): string;
export function attrString(node: NodeProto, name: string): string | undefined;
export function attrString(node: NodeProto, name: string, dflt?: string): string | undefined {
  const a = findAttr(node, name);
  if (!a) return dflt;
  if (attrType(a) !== AT.STRING) wrong(node, a, "STRING");
  return new TextDecoder().decode(a.s);
}

/** A tensor attribute (`TENSOR`), or undefined. */
export function attrTensor(node: NodeProto, name: string): TensorProto | undefined {
  const a = findAttr(node, name);
  if (!a) return undefined;
  if (attrType(a) !== AT.TENSOR || !a.t) wrong(node, a, "TENSOR");
  return a.t;
}

/**
 * A node's attributes for a node carried as it is: numbers, strings and their lists in ffwd's own
 * form (the emitter rewrites `axes` across opsets), everything else (tensors, subgraphs, sparse
 * tensors, types) as the file wrote it.
 */
export function carriedAttrs(node: NodeProto): Record<string, Attr> {
  const attrs: Record<string, Attr> = {};
  for (const a of node.attribute) {
    switch (attrType(a)) {
      case AT.INT:
        attrs[a.name] = { type: "int", value: Number(a.i) };
        break;
      case AT.FLOAT:
        attrs[a.name] = { type: "float", value: a.f };
        break;
      case AT.STRING:
        attrs[a.name] = { type: "string", value: new TextDecoder().decode(a.s) };
        break;
      case AT.INTS:
        attrs[a.name] = { type: "ints", value: a.ints.map(Number) };
        break;
      case AT.FLOATS:
        attrs[a.name] = { type: "floats", value: [...a.floats] };
        break;
      default:
        attrs[a.name] = { type: "onnx", value: a };
    }
  }
  return attrs;
}
