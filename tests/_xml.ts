/**
 * A small, strict XML parser for the report's tests (imported only by siblings): it checks that
 * a document is well-formed (XML 1.0 §2.1: one root, tags nested and closed, attributes quoted
 * and not repeated, only the five predefined entities and character references, no `<` in an
 * attribute value) and returns its element tree for queries. No DTDs, no namespaces resolution.
 *
 * @module
 */

/** An element: its name, attributes and children (elements and decoded text). */
export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  readonly children: readonly (XmlElement | string)[];
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;
const PREDEFINED: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/**
 * Parses `text` as XML; a leading `<!DOCTYPE …>` without an internal subset is skipped. Throws a
 * `SyntaxError` naming the line and column of the first error.
 */
export function parseXml(text: string): XmlElement {
  let i = 0;
  const fail = (what: string): never => {
    const before = text.slice(0, i).split("\n");
    throw new SyntaxError(
      `Not well-formed XML at line ${before.length}, column ${before.at(-1)!.length + 1}: ${what}`,
    );
  };
  const decode = (raw: string): string =>
    raw.replace(/&([^;&<\s]*);?/g, (ref, body: string) => {
      if (!ref.endsWith(";")) fail(`"&" not starting a reference: ${JSON.stringify(ref)}`);
      if (body in PREDEFINED) return PREDEFINED[body]!;
      const code = /^#x[0-9a-fA-F]+$/.test(body)
        ? parseInt(body.slice(2), 16)
        : /^#[0-9]+$/.test(body)
        ? parseInt(body.slice(1), 10)
        : fail(`undefined entity "&${body};"`);
      return String.fromCodePoint(code);
    });
  const skipMisc = () => {
    for (;;) {
      const rest = text.slice(i);
      const ws = /^\s+/.exec(rest);
      if (ws) i += ws[0].length;
      else if (rest.startsWith("<!--")) i = end("-->", "comment");
      else if (rest.startsWith("<?")) i = end("?>", "processing instruction");
      else return;
    }
  };
  const end = (close: string, what: string): number => {
    const at = text.indexOf(close, i);
    if (at < 0) fail(`unterminated ${what}`);
    return at + close.length;
  };
  const element = (): XmlElement => {
    i++; // "<"
    const name = NAME.exec(text.slice(i))?.[0] ?? fail("expected an element name after <");
    i += name.length;
    const attrs: Record<string, string> = {};
    for (;;) {
      const ws = /^\s*/.exec(text.slice(i))![0];
      i += ws.length;
      if (text.startsWith("/>", i)) return (i += 2, { name, attrs, children: [] });
      if (text[i] === ">") break;
      if (!ws) fail(`expected whitespace, ">" or "/>" in <${name}>`);
      const attr = NAME.exec(text.slice(i))?.[0] ?? fail(`expected an attribute name in <${name}>`);
      i += attr.length;
      const eq = /^\s*=\s*(["'])/.exec(text.slice(i)) ??
        fail(`attribute "${attr}" of <${name}> has no quoted value`);
      i += eq[0].length;
      const close = text.indexOf(eq[1]!, i);
      if (close < 0) fail(`unterminated value of attribute "${attr}"`);
      const raw = text.slice(i, close);
      if (raw.includes("<")) fail(`"<" in the value of attribute "${attr}"`);
      if (attr in attrs) fail(`attribute "${attr}" repeated in <${name}>`);
      attrs[attr] = decode(raw);
      i = close + 1;
    }
    i++; // ">"
    const children: (XmlElement | string)[] = [];
    for (;;) {
      const lt = text.indexOf("<", i);
      if (lt < 0) fail(`<${name}> is not closed`);
      if (lt > i) children.push(decode(text.slice(i, lt)));
      i = lt;
      if (text.startsWith("</", i)) {
        const closing = /^<\/([^\s>]*)\s*>/.exec(text.slice(i)) ?? fail("malformed end tag");
        if (closing[1] !== name) fail(`</${closing[1]}> closes <${name}>`);
        i += closing[0].length;
        return { name, attrs, children };
      }
      if (text.startsWith("<!--", i)) i = end("-->", "comment");
      else if (text.startsWith("<![CDATA[", i)) {
        const at = end("]]>", "CDATA section");
        children.push(text.slice(i + 9, at - 3));
        i = at;
      } else if (text.startsWith("<?", i)) i = end("?>", "processing instruction");
      else children.push(element());
    }
  };
  skipMisc();
  const doctype = /^<!DOCTYPE\s+[A-Za-z_:][^[>]*>/.exec(text.slice(i));
  if (doctype) i += doctype[0].length;
  skipMisc();
  if (text[i] !== "<") fail("expected the root element");
  const root = element();
  skipMisc();
  if (i < text.length) fail("content after the root element");
  return root;
}

/** All elements under `root` (itself included), depth first, that `match`. */
export function findAll(root: XmlElement, match: (e: XmlElement) => boolean): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement) => {
    if (match(e)) out.push(e);
    for (const c of e.children) if (typeof c !== "string") walk(c);
  };
  walk(root);
  return out;
}

/** The text inside `e`, its descendants' included. */
export function textOf(e: XmlElement): string {
  return e.children.map((c) => (typeof c === "string" ? c : textOf(c))).join("");
}
