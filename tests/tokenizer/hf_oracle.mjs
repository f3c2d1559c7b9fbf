// The oracle of tests/tokenizer/hf_tokenizer_oracle_test.cpp: Hugging Face's own JavaScript
// tokenizer (@huggingface/tokenizers, unpacked from npm by hf_oracle_setup.sh) encodes and
// decodes every case and writes what it got, one case per line:
//
//   <case name> TAB <input as hex, or nothing> TAB <ids, space-separated> TAB <decoded as hex>
//
// Usage: node hf_oracle.mjs TOKENIZERS_PKG_DIR FAMILY_DIR CASES_JSON OUT TEXT...
//   FAMILY_DIR holds tokenizer.json and tokenizer_config.json; CASES_JSON is hf_cases.json (each
//   case {"name", "text"} or {"name", "hex"}, "text" optionally repeated "repeat" times); every
//   TEXT file is a case whole ("<file>") and line by line ("<file>:<n>", n from 1). Cases made
//   here, whose input the output line carries: "special:<id>", each special added token of the
//   family inside text, and "specials:all", all of them back to back.
//
// Texts are bytes: they are read as a WHATWG TextDecoder does (malformed UTF-8 becomes U+FFFD
// per maximal subsequence), which is also how slmc reads malformed input. encode() is called as
// users call it (add_special_tokens defaults to true: the post-processor's template applies);
// decode() keeps special tokens and does not clean up spaces.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, familyDir, casesPath, outPath, ...texts] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node hf_oracle.mjs TOKENIZERS_PKG_DIR FAMILY_DIR CASES_JSON OUT TEXT...");
  process.exit(2);
}
const { Tokenizer } = await import(pathToFileURL(path.join(pkgDir, "dist", "tokenizers.mjs")).href);

const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const tokenizer = new Tokenizer(
  readJson(path.join(familyDir, "tokenizer.json")),
  readJson(path.join(familyDir, "tokenizer_config.json")),
);
const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

const lines = [];
const run = (name, bytes, carry_input = false) => {
  const text = utf8.decode(bytes);
  const ids = tokenizer.encode(text).ids;
  const decoded = ids.length === 0 ? "" : tokenizer.decode(ids, {
    skip_special_tokens: false,
    clean_up_tokenization_spaces: false,
  });
  const input = carry_input ? Buffer.from(bytes).toString("hex") : "";
  lines.push(`${name}\t${input}\t${ids.join(" ")}\t${Buffer.from(decoded, "utf8").toString("hex")}`);
};

for (const c of readJson(casesPath)) {
  const bytes = c.hex !== undefined ? Buffer.from(c.hex, "hex")
                                    : Buffer.from(c.text.repeat(c.repeat ?? 1), "utf8");
  run(c.name, bytes);
}
const specials = readJson(path.join(familyDir, "tokenizer.json")).added_tokens.filter((t) => t.special);
for (const t of specials) run(`special:${t.id}`, Buffer.from(`x${t.content} y ${t.content}${t.content}\n`, "utf8"), true);
run("specials:all", Buffer.from(specials.map((t) => ` ${t.content}`).join("") + "end", "utf8"), true);
for (const file of texts) {
  const bytes = fs.readFileSync(file);
  const base = path.basename(file);
  run(base, bytes);
  let start = 0, n = 1;
  for (let i = 0; i <= bytes.length; ++i) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      run(`${base}:${n}`, bytes.subarray(start, i));
      start = i + 1;
      ++n;
    }
  }
}
fs.writeFileSync(outPath, lines.join("\n") + "\n");
