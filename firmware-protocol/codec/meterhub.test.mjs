// The ChirpStack codec against every golden vector in ../vectors, under Node.
// Run with `node --test firmware-protocol/codec/`; `cargo test -p firmware-protocol
// --features serde` runs it too when node is installed (tests/codec_js.rs also runs every vector
// under QuickJS, the engine ChirpStack embeds).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const here = path.dirname(fileURLToPath(import.meta.url));
const codecSource = readFileSync(path.join(here, "meterhub.js"), "utf8");
const vectorsDir = path.join(here, "..", "vectors");

// A fresh context per call, as ChirpStack uses a fresh runtime per call: no state can leak
// between calls, and Node's own globals (require, Buffer, console, process) do not exist in it,
// as they do not in ChirpStack's QuickJS. "use strict" gives the script the semantics of the ES
// module ChirpStack makes of it.
function call(entry, input) {
  const context = vm.createContext({ chirpstack_input: input });
  const result = vm.runInContext(
    `"use strict";\n${codecSource}\n;${entry}(chirpstack_input);`,
    context,
    { filename: "meterhub.js", timeout: 1000 },
  );
  return toJson(result, entry);
}

// The codec's result as ChirpStack would publish it, rejecting what ChirpStack would mangle or
// drop: undefined (published as null), non-finite numbers (Infinity loses the whole event),
// functions, and objects other than plain objects and arrays (a Date becomes {}, a Uint8Array
// fails an encode). Objects come from the codec's own realm, hence the checks by name.
function toJson(value, where) {
  if (value === null || typeof value === "string" || typeof value === "boolean") {
    return value;
  }
  if (typeof value === "number") {
    assert.ok(Number.isFinite(value), `${where} is ${value}, not a finite number`);
    return value;
  }
  if (Array.isArray(value)) {
    // Array.from, not value.map, so that the copy is an Array of this realm.
    return Array.from(value, (item, i) => toJson(item, `${where}[${i}]`));
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value);
    assert.ok(
      proto === null || Object.getPrototypeOf(proto) === null,
      `${where} is a ${value.constructor?.name}, not a plain object`,
    );
    const out = {};
    for (const key of Object.keys(value)) {
      out[key] = toJson(value[key], `${where}.${key}`);
    }
    return out;
  }
  assert.fail(`${where} is ${typeof value}, not a JSON value`);
}

function hexToBytes(hex) {
  assert.match(hex, /^([0-9a-fA-F]{2})*$/, `bad hex ${hex}`);
  const bytes = [];
  for (let i = 0; i < hex.length; i += 2) {
    bytes.push(parseInt(hex.slice(i, i + 2), 16));
  }
  return bytes;
}

function loadVectors() {
  const files = readdirSync(vectorsDir)
    .filter((f) => f.endsWith(".json"))
    .sort();
  assert.ok(files.length > 0, `no vector files in ${vectorsDir}`);
  return files.map((file) => {
    const parsed = JSON.parse(readFileSync(path.join(vectorsDir, file), "utf8"));
    assert.ok(Array.isArray(parsed.vectors), `${file} has no "vectors" array`);
    return { file, vectors: parsed.vectors };
  });
}

function decode(vector) {
  const entry = vector.direction === "uplink" ? "decodeUplink" : "decodeDownlink";
  return call(
    entry,
    { bytes: hexToBytes(vector.hex), fPort: vector.fPort, recvTime: new Date(), variables: {} },
  );
}

function encode(json) {
  return call("encodeDownlink", { data: json, variables: {} });
}

// One check per vector shape; a vector of any other shape fails rather than being skipped.
function checkVector(vector) {
  assert.ok(
    vector.direction === "uplink" || vector.direction === "downlink",
    `unknown direction ${vector.direction}`,
  );
  if (vector.hex !== undefined && vector.json !== undefined && vector.error === undefined) {
    assert.deepStrictEqual(decode(vector), { data: vector.json }, "decoding");
    if (vector.direction === "downlink") {
      assert.deepStrictEqual(
        encode(vector.json),
        { bytes: hexToBytes(vector.hex), fPort: vector.fPort },
        "encoding",
      );
    }
  } else if (vector.hex !== undefined && vector.error !== undefined && vector.json === undefined) {
    // ChirpStack runs decodeUplink for every uplink, also empty ones and those on ports the
    // codec has no decoder for (fPort 0 included): those are not errors there.
    const notDecoded = vector.hex === "" || vector.error === `unknown fPort ${vector.fPort}`;
    const expected =
      vector.direction === "uplink" && notDecoded
        ? { data: {} }
        : { data: {}, errors: [vector.error] };
    assert.deepStrictEqual(decode(vector), expected, "decoding");
  } else if (
    vector.json !== undefined &&
    vector.encodeError !== undefined &&
    vector.hex === undefined
  ) {
    assert.equal(vector.direction, "downlink", "only downlinks are encoded by the codec");
    assert.deepStrictEqual(encode(vector.json), { errors: [vector.encodeError] }, "encoding");
  } else {
    assert.fail(`vector has none of the known shapes: ${JSON.stringify(vector)}`);
  }
}

test("every vector decodes, encodes or fails as the vector says", async (t) => {
  for (const { file, vectors } of loadVectors()) {
    assert.ok(vectors.length > 0, `${file} has no vectors`);
    for (const vector of vectors) {
      await t.test(`${file}: ${vector.name}`, () => checkVector(vector));
    }
  }
});

test("uplinks the codec has no decoder for decode to empty data", () => {
  const cases = [{ fPort: 0, bytes: [0x02, 0x03] }, { fPort: 0, bytes: [] }];
  for (const fPort of [1, 2, 3, 4, 10, 99, 202]) {
    cases.push({ fPort, bytes: [] });
  }
  for (const fPort of [5, 10, 99, 201, 203, 224, 255]) {
    cases.push({ fPort, bytes: [0x01, 0x04] });
  }
  for (const { fPort, bytes } of cases) {
    assert.deepStrictEqual(
      call("decodeUplink", { bytes, fPort, recvTime: new Date(), variables: {} }),
      { data: {} },
      `fPort ${fPort}, ${bytes.length} bytes`,
    );
  }
});

test("encoded downlinks are plain arrays of byte values", () => {
  for (const { vectors } of loadVectors()) {
    for (const vector of vectors) {
      if (vector.direction !== "downlink" || vector.json === undefined || vector.hex === undefined) {
        continue;
      }
      const { bytes } = encode(vector.json);
      assert.ok(Array.isArray(bytes), `${vector.name}: bytes is not an Array`);
      for (const b of bytes) {
        assert.ok(Number.isInteger(b) && b >= 0 && b <= 255, `${vector.name}: byte ${b}`);
      }
    }
  }
});
