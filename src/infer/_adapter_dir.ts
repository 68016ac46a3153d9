/**
 * The server's adapters folder: every adapter path must resolve (symlinks included, via
 * `Deno.realPath`) to somewhere strictly inside it, or the request is refused with 403. Names load
 * lazily from `<dir>/<name>`, or from the path a client registered under that name, which is
 * checked again on every reload (a symlink may have changed meanwhile).
 *
 * Imported only by `server.ts`.
 *
 * @module
 */

import { type AdapterLoader, type AdapterWeights, UnknownAdapterError } from "./engine.ts";
import { HttpError } from "./_http.ts";
import { absolutePath, isInside } from "../fs/paths.ts";

/** Reads an adapter folder into engine weights (the CLI passes `loadAdapter` + `engineWeights`). */
export type WeightsLoader = (path: string) => Promise<AdapterWeights>;

/** Paths under the adapters folder, and the names clients registered. */
export class AdapterDir {
  #paths = new Map<string, string>(); // name → registered path (as given, made absolute)

  private constructor(readonly root: string, private readonly read: WeightsLoader) {}

  /** Opens `dir` (which must exist). */
  static async open(dir: string, read: WeightsLoader): Promise<AdapterDir> {
    const root = await Deno.realPath(dir).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      throw new Deno.errors.NotFound(`Cannot serve adapters from "${dir}": no such folder`);
    });
    if (!(await Deno.stat(root)).isDirectory) {
      throw new TypeError(`Cannot serve adapters from "${dir}": it is not a folder`);
    }
    return new AdapterDir(root, read);
  }

  /** The real path of `path` (relative to the folder), or 403 when it resolves outside it. */
  async inside(path: string): Promise<string> {
    const abs = path.startsWith("/") ? path : `${this.root}/${path}`;
    let real: string;
    try {
      real = await Deno.realPath(abs);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      // Say nothing about what exists outside the folder.
      if (!isInside(absolutePath(abs), this.root)) throw forbidden(path, this.root);
      throw new HttpError(404, `Adapter folder "${path}" does not exist`);
    }
    if (!isInside(real, this.root)) throw forbidden(path, this.root);
    return real;
  }

  /** Loads the adapter at `path` for registration under `name`. */
  async load(name: string, path: string): Promise<AdapterWeights> {
    return await this.#read(name, await this.inside(path));
  }

  /** Makes `name` reload from `path` from now on (after it was registered from there). */
  remember(name: string, path: string): void {
    this.#paths.set(name, path.startsWith("/") ? path : `${this.root}/${path}`);
  }

  /** Forgets a registered path (the name then loads from `<dir>/<name>` again). */
  forget(name: string): boolean {
    return this.#paths.delete(name);
  }

  /** The engine's lazy loader. */
  readonly loader: AdapterLoader = async (name) => {
    const path = this.#paths.get(name) ?? `${this.root}/${name}`;
    let real: string;
    try {
      real = await this.inside(path);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) throw new UnknownAdapterError(name);
      throw e;
    }
    return await this.#read(name, real);
  };

  async #read(name: string, real: string): Promise<AdapterWeights> {
    try {
      return { ...(await this.read(real)), source: real };
    } catch (e) {
      if (e instanceof HttpError) throw e;
      if (e instanceof Deno.errors.NotFound) throw new UnknownAdapterError(name, { cause: e });
      const why = e instanceof Error ? e.message : String(e);
      const message = why.startsWith("Cannot") ? why : `Cannot load adapter "${name}": ${why}`;
      throw new HttpError(422, message, { cause: e });
    }
  }
}

function forbidden(path: string, root: string): HttpError {
  return new HttpError(403, `Adapter path "${path}" is outside the adapters folder "${root}"`);
}
