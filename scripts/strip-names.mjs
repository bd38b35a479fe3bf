// Removes the `name` custom section (function names: ~170 KB the runtime never reads) from
// a wasm file in place, byte for byte: no re-encoding. worker-build keeps it (wasm-opt
// --debuginfo), and stripping at link time (`strip = true`) would also drop the
// `target_features` section wasm-bindgen reads to pick the Wasm features it may use.
//   node scripts/strip-names.mjs build/index_bg.wasm
import { readFileSync, writeFileSync } from "node:fs";

const path = process.argv[2];
const bytes = readFileSync(path);
if (bytes.readUInt32LE(0) !== 0x6d736100) throw new Error(`${path} is not a wasm module`);
const kept = [bytes.subarray(0, 8)];
let at = 8;
function leb() {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return value;
}
let removed = 0;
while (at < bytes.length) {
  const start = at;
  const id = bytes[at++];
  const size = leb();
  const body = at;
  const end = body + size;
  let name = null;
  if (id === 0) {
    const length = leb();
    name = bytes.subarray(at, at + length).toString();
  }
  if (name === "name") removed += end - start;
  else kept.push(bytes.subarray(start, end));
  at = end;
}
writeFileSync(path, Buffer.concat(kept));
console.log(`strip-names: removed ${removed} bytes of function names from ${path}`);
