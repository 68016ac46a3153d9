/**
 * Atomic folder writes: a folder of files (an adapter's config and weights, a checkpoint) replaced
 * all at once, so a reader never sees new files beside old ones.
 *
 * @module
 */

/**
 * Writes a folder all at once. `fill` writes the new files into a staging folder next to `dir`
 * (same file system); then the staging folder takes `dir`'s place by rename. When `dir` already
 * exists, the files in it that `fill` does not own (`owned`) are hard-linked into the staging
 * folder first, `dir` is renamed to `.<name>.<random>.old`, the staging folder renamed to `dir`,
 * and the old folder removed.
 *
 * Why a folder and not each file atomically: an adapter is a pair (config + weights). Replacing
 * the files one by one leaves a window, and after a failure between the two renames a state,
 * where the new weights sit with the old config: a silently wrong adapter. Here a failure before
 * the swap leaves `dir` untouched and removes the staging folder; the only window is between the
 * two renames, where `dir` is briefly absent and the previous adapter is intact in the `.old`
 * folder, which the loaders name when `dir` is missing.
 */
export async function writeFolderAtomic(
  dir: string,
  owned: readonly string[],
  fill: (staging: string) => Promise<void>,
  what = "adapter",
): Promise<void> {
  const path = dir.replace(/(.)\/+$/, "$1");
  const cut = path.lastIndexOf("/");
  const parent = cut < 0 ? "." : path.slice(0, cut) || "/";
  const name = path.slice(cut + 1);
  const where = `Cannot save ${what} "${dir}"`;
  let existing = false;
  try {
    const info = await Deno.lstat(path);
    if (info.isSymlink) {
      throw new TypeError(`${where}: it is a symbolic link; give the folder it points to`);
    }
    if (!info.isDirectory) throw new TypeError(`${where}: it is a file, not a folder`);
    existing = true;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const random = crypto.getRandomValues(new Uint32Array(2)).reduce(
    (s, v) => s + v.toString(36),
    "",
  );
  const staging = `${parent}/.${name}.${random}.tmp`;
  try {
    await Deno.mkdir(staging);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${where}: folder "${parent}" does not exist`);
    }
    throw e;
  }
  try {
    await fill(staging);
    if (existing) await linkTree(path, staging, new Set(owned));
    await syncFolder(staging);
  } catch (e) {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    throw e;
  }
  if (!existing) {
    await Deno.rename(staging, path).catch(async (e) => {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      throw e;
    });
  } else {
    const old = `${parent}/.${name}.${random}.old`;
    await Deno.rename(path, old).catch(async (e) => {
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      throw e;
    });
    try {
      await Deno.rename(staging, path);
    } catch (e) {
      await Deno.rename(old, path);
      await Deno.remove(staging, { recursive: true }).catch(() => {});
      throw e;
    }
    await Deno.remove(old, { recursive: true }).catch(() => {});
  }
  await syncFolder(parent);
}

/** Recreates `src`'s entries (except `skip` at the top) in `dst`: hard links, else copies. */
async function linkTree(src: string, dst: string, skip: ReadonlySet<string>): Promise<void> {
  for await (const e of Deno.readDir(src)) {
    if (skip.has(e.name)) continue;
    const from = `${src}/${e.name}`;
    const to = `${dst}/${e.name}`;
    if (e.isSymlink) await Deno.symlink(await Deno.readLink(from), to);
    else if (e.isDirectory) {
      await Deno.mkdir(to);
      await linkTree(from, to, new Set());
    } else await Deno.link(from, to).catch(() => Deno.copyFile(from, to));
  }
}

async function syncFolder(path: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  try {
    using dir = await Deno.open(path, { read: true });
    await dir.sync();
  } catch { /* some file systems refuse to sync folders */ }
}
