/**
 * The streamed safetensors merge (imported by `export.ts` only): the base file is copied tensor
 * by tensor into the new file, the changed tensors merged on the way (float32 ones in place), so
 * memory stays near the largest tensor, never the whole model.
 *
 * The buffers are reused from tensor to tensor: on the development machine faulting in fresh
 * pages costs ~5 ms per MiB, more than the merge itself.
 *
 * @module
 */

import {
  openSafetensorsModel,
  type SafetensorsModel,
} from "../src/models/blocks/safetensors_model.ts";
import { openSafetensors, type TensorInput, writeSafetensors } from "../src/io/safetensors.ts";
import type { BaseModel } from "../src/models/model.ts";
import { fromBytes, type Tensor } from "../src/tensor.ts";
import { MergeKernels, type MergePlan, mergeTensor } from "./merge.ts";
import { type Probe, runModel } from "./parity.ts";

/** A growable buffer handed out again and again (each use ends before the next begins). */
class Scratch {
  #buf = new ArrayBuffer(0);

  bytes(n: number): Uint8Array {
    if (this.#buf.byteLength < n) this.#buf = new ArrayBuffer(n);
    return new Uint8Array(this.#buf, 0, n);
  }
}

/**
 * Writes the base file of `model` to `path` with the plan's tensors merged, every other tensor
 * copied byte for byte and the metadata kept (plus `ffwd.adapter`). Returns copies of the merged
 * tensors when they total at most `holdLimit` bytes (for the parity check), else `null`.
 *
 * @example
 * ```ts ignore
 * const held = await writeMergedSafetensors(`${stage}/merged.safetensors`, model, plan, "rot45", 2 ** 30);
 * ```
 */
export async function writeMergedSafetensors(
  path: string,
  model: BaseModel,
  plan: MergePlan,
  adapterName: string,
  holdLimit: number,
): Promise<Map<string, Tensor> | null> {
  using src = await openSafetensors(model.source);
  using file = await Deno.open(model.source, { read: true });
  const changed = new Set([...plan.deltas.keys(), ...plan.replaced.keys()]);
  let bytes = 0;
  for (const key of changed) bytes += src.entry(key).byteLength;
  const held = bytes <= holdLimit ? new Map<string, Tensor>() : null;
  const input = new Scratch(), output = new Scratch();
  const read = async (name: string): Promise<Tensor> => {
    const e = src.entry(name);
    const buf = input.bytes(e.byteLength);
    await file.seek(e.fileOffset, Deno.SeekMode.Start);
    for (let done = 0; done < buf.byteLength;) {
      const n = await file.read(buf.subarray(done));
      if (n === null) {
        throw new RangeError(`Cannot read "${model.source}": it ends inside "${name}"`);
      }
      done += n;
    }
    return fromBytes(e.dtype, e.shape, buf);
  };
  const kernels = new MergeKernels();
  const tensors = new Map<string, TensorInput>();
  for (const e of src.header.tensors) {
    const load = !changed.has(e.name) ? () => read(e.name) : async () => {
      const base = await read(e.name);
      const into = base.dtype === "F32"
        ? base.data as Float32Array // in place
        : new Float32Array(output.bytes(e.byteLength * (4 / itemsize(e.dtype))).buffer);
      const { tensor } = await mergeTensor(plan, e.name, base, { kernels, into });
      held?.set(e.name, { ...tensor, data: tensor.data.slice() } as Tensor);
      return tensor;
    };
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, load });
  }
  try {
    const metadata = { ...src.metadata, "ffwd.adapter": adapterName };
    await writeSafetensors(path, tensors, { metadata, sync: false });
  } finally {
    await kernels.release();
  }
  return held;
}

function itemsize(dtype: string): number {
  return dtype === "F64" ? 8 : dtype === "F32" ? 4 : 2;
}

/**
 * Run (c) for safetensors: the written file opened as a model again, the way the base was (same
 * block, spec and config).
 *
 * @example
 * ```ts ignore
 * const outputs = await reopened(`${stage}/merged.safetensors`, model, undefined, probe);
 * ```
 */
export async function reopened(
  path: string,
  model: BaseModel,
  spec: string | undefined,
  probe: Probe,
): Promise<Tensor[]> {
  const detected = (model as SafetensorsModel).detected;
  const again = await openSafetensorsModel(path, {
    block: model.block,
    spec,
    config: detected?.config ?? null,
  });
  try {
    return await runModel(again, probe);
  } finally {
    again.close();
  }
}
