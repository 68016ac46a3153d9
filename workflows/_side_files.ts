/**
 * The files a Hugging Face loader reads beside a checkpoint's weights (its `config.json`,
 * generation settings, tokenizer), carried over to a merged output so that the output's folder
 * loads on its own: `AutoModel.from_pretrained(folder)` and a tokenizer from the same folder.
 *
 * @module
 */

/** Names copied from the base's folder when it has them. */
const SIDE_FILES: readonly string[] = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "tokenizer.model",
  "vocab.json",
  "vocab.txt",
  "merges.txt",
  "chat_template.jinja",
  "preprocessor_config.json",
];

/**
 * Copies each of {@linkcode SIDE_FILES} that `from` (a folder) has and `to` (the output's folder)
 * does not into `stage` (a staging folder, renamed into `to` by the caller with the model), and
 * returns the names copied. A file already in the output's folder is kept: it may be the user's.
 */
export async function stageSideFiles(from: string, to: string, stage: string): Promise<string[]> {
  const isFile = (p: string) => Deno.stat(p).then((i) => i.isFile, () => false);
  if ((await Deno.realPath(from).catch(() => from)) === to) return [];
  const copied: string[] = [];
  for (const name of SIDE_FILES) {
    if (!(await isFile(`${from}/${name}`)) || (await isFile(`${to}/${name}`))) continue;
    await Deno.copyFile(`${from}/${name}`, `${stage}/${name}`);
    copied.push(name);
  }
  return copied;
}
