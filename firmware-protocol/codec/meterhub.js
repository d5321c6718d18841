// meterhub payload codec for ChirpStack v4 ("Custom JavaScript codec functions").
//
// Implements ../PROTOCOL.md, format version 1: the JSON form, the checking order and the error
// texts are the same as the Rust crate's, and both are tested against ../vectors/*.json.
//
// ChirpStack wraps this text into an ES module (strict mode) and puts
// `import { Buffer } from "buffer";` in front of it, so the script must not declare `Buffer`
// itself; it does not need it either, as it works on plain arrays of numbers. No `require` or
// `module.exports`, which ChirpStack's QuickJS lacks, and no `console`, which is not relied on.
//
// `decodeUplink` never throws and never returns a non-finite number: a thrown exception or an
// `Infinity` would lose the whole uplink event in ChirpStack instead of logging one decode error.

const FORMAT_VERSION = 1;

// Seconds between the Unix epoch and the GPS epoch, 1980-01-06T00:00:00Z.
const GPS_EPOCH_UNIX = 315964800;

// The midnights (UTC) that followed each inserted leap second, as [year, month 1-12]: the
// offset GPS - UTC grows by one at each of them. A new leap second means a new protocol release.
const LEAP_SECOND_MIDNIGHTS = [
  [1981, 7], [1982, 7], [1983, 7], [1985, 7], [1988, 1], [1990, 1], [1991, 1], [1992, 7],
  [1993, 7], [1994, 7], [1996, 1], [1997, 7], [1999, 1], [2006, 1], [2009, 1], [2012, 7],
  [2015, 7], [2017, 1],
].map(([year, month]) => Date.UTC(year, month - 1, 1) / 1000);

const TWO_POW_32 = 4294967296;

const VALVE = ["notFitted", "open", "closed", "fault"];
const DOOR = ["notFitted", "closed", "open"];
const STATUS_FLAGS = [
  "tamper", "leak", "reverseFlow", "clockUnsynchronised", "lowBattery", "valveFault",
  "memoryError", "supplyDisconnected", "overConsumption",
];
// Optional reading fields, in presence-bit order.
const READING_FIELDS = [
  { name: "gasVolumeLitres", size: 4, read: readU32 },
  { name: "energyWh", size: 4, read: readU32 },
  { name: "voltageDecivolts", size: 2, read: readU16 },
  { name: "currentMilliamps", size: 4, read: readU32 },
  { name: "gasTemperatureCentiCelsius", size: 2, read: readI16 },
  { name: "gasPressurePa", size: 4, read: readU32 },
];
// Index = code; code 0 is not used.
const ALARM_KINDS = [
  undefined, "magneticTamper", "movement", "cableCut", "doorOpen", "lowBattery",
  "overConsumption", "valveOpened", "valveClosed", "leak", "reverseFlow", "clockLost",
];
const TESTS = ["battery", "valve", "metrology", "memory", "clock", "radio"];
const USAGE_TYPES = [undefined, "residential", "commercial", "industrial", "public"];
const CAPABILITIES = ["gas", "electricity", "valve", "doorSensor", "gasConditions", "electrical"];

const REPORTING_MINUTES_MIN = 15;
const REPORTING_MINUTES_MAX = 10080;

// fPort 10 opcodes (index = opcode) and the size of each one's argument.
const COMMANDS = [
  undefined,
  { name: "valveOpen", argSize: 0 },
  { name: "valveClose", argSize: 0 },
  { name: "runSelfTest", argSize: 1 },
  { name: "readNow", argSize: 0 },
  { name: "sendInfo", argSize: 0 },
  { name: "setReportingInterval", argSize: 2 },
  { name: "disconnect", argSize: 0 },
];

// TS003 allows any number of commands per frame; a meter never sends more than this, so more is
// treated as garbage rather than decoded.
const MAX_CLOCK_SYNC_COMMANDS = 8;

// TS003 commands by CID, per direction. `size` counts the CID byte.
const CLOCK_SYNC_UPLINK = [
  {
    name: "packageVersionAns",
    size: 3,
    decode: (b, o) => ({ packageIdentifier: b[o], packageVersion: b[o + 1] }),
  },
  {
    name: "appTimeReq",
    size: 6,
    // Param bits 5-7 are RFU: TS003 requires receivers to ignore them.
    decode: (b, o) => ({
      deviceTime: readU32(b, o),
      tokenReq: b[o + 4] & 0x0f,
      ansRequired: (b[o + 4] & 0x10) !== 0,
    }),
  },
  {
    name: "deviceAppTimePeriodicityAns",
    size: 6,
    decode: (b, o) => ({ notSupported: (b[o] & 0x01) !== 0, deviceTime: readU32(b, o + 1) }),
  },
];
const CLOCK_SYNC_DOWNLINK = [
  { name: "packageVersionReq", size: 1, decode: () => ({}) },
  {
    name: "appTimeAns",
    size: 6,
    decode: (b, o) => ({ timeCorrection: readI32(b, o), tokenAns: b[o + 4] & 0x0f }),
  },
  { name: "deviceAppTimePeriodicityReq", size: 2, decode: (b, o) => ({ period: b[o] & 0x0f }) },
  {
    name: "forceDeviceResyncReq",
    size: 2,
    decode: (b, o) => ({ nbTransmissions: b[o] & 0x07 }),
  },
];

// A frame or a JSON value that the protocol rejects; `message` is the exact error text.
class ProtocolError extends Error {}

function fail(text) {
  throw new ProtocolError(text);
}

// --- ChirpStack entry points ---

function decodeUplink(input) {
  return decodeFrame(input, "uplink");
}

// Not called by ChirpStack (which never decodes downlinks); for tools and tests.
function decodeDownlink(input) {
  return decodeFrame(input, "downlink");
}

function encodeDownlink(input) {
  try {
    return encodeMessage(input === null || typeof input !== "object" ? undefined : input.data);
  } catch (e) {
    return { errors: [errorText(e)] };
  }
}

// --- decoding ---

// The decoder of each fPort, per direction.
const UPLINK_DECODERS = new Map([
  [1, (b) => decodeReading(checkVersion(b))],
  [2, (b) => decodeAlarm(checkVersion(b))],
  [3, (b) => decodeSelfTest(checkVersion(b))],
  [4, (b) => decodeDeviceInfo(checkVersion(b))],
  [202, (b) => decodeClockSync(b, CLOCK_SYNC_UPLINK)],
]);
const DOWNLINK_DECODERS = new Map([
  [10, (b) => decodeCommand(checkVersion(b))],
  [202, (b) => decodeClockSync(b, CLOCK_SYNC_DOWNLINK)],
]);

function decodeFrame(input, direction) {
  const fPort = input === null || typeof input !== "object" ? undefined : input.fPort;
  const decoders = direction === "uplink" ? UPLINK_DECODERS : DOWNLINK_DECODERS;
  let bytes;
  try {
    bytes = toByteArray(input === null || typeof input !== "object" ? undefined : input.bytes);
    // ChirpStack runs the codec for every uplink: MAC-only frames (fPort 0), empty ones and
    // those on ports this protocol does not use. An error for those would log a codec failure
    // (UPLINK_CODEC) for each of them, so they decode to empty data.
    if (direction === "uplink" && (bytes.length === 0 || !decoders.has(fPort))) {
      return { data: {} };
    }
    return { data: decodeBytes(bytes, fPort, decoders) };
  } catch (e) {
    return { data: {}, errors: [errorText(e)] };
  }
}

function toByteArray(value) {
  if (value === undefined || value === null) {
    return [];
  }
  const bytes = Array.from(value);
  for (const b of bytes) {
    if (!Number.isInteger(b) || b < 0 || b > 255) {
      fail("input bytes must be integers 0-255");
    }
  }
  return bytes;
}

function decodeBytes(b, fPort, decoders) {
  if (b.length === 0) {
    fail("empty payload");
  }
  const decode = decoders.get(fPort);
  if (decode === undefined) {
    fail(`unknown fPort ${fPort}`);
  }
  return decode(b);
}

function checkVersion(b) {
  if (b[0] !== FORMAT_VERSION) {
    fail(`unsupported format version ${b[0]}`);
  }
  return b;
}

function checkLength(b, expected) {
  if (b.length < expected) {
    fail(`frame too short: expected ${expected} bytes, found ${b.length}`);
  }
  if (b.length > expected) {
    fail(`trailing bytes: expected ${expected} bytes, found ${b.length}`);
  }
}

function decodeReading(b) {
  // The fixed part comes first, then the presence byte, which decides the full length
  // (PROTOCOL.md, "Errors").
  if (b.length < 21) {
    checkLength(b, 21);
  }
  const presence = b[13];
  checkReserved(presence, READING_FIELDS.length, "presence");
  let expected = 21;
  READING_FIELDS.forEach((field, bit) => {
    if (presence & (1 << bit)) {
      expected += field.size;
    }
  });
  checkLength(b, expected);
  const data = {
    message: "reading",
    serial: readSerial(b, 1),
    meterTime: gpsToUtc(readU32(b, 9)),
    valve: code(VALVE, b[14], "valve"),
    door: code(DOOR, b[15], "door"),
    batteryMillivolts: readU16(b, 16),
    batteryPercent: inRange(b[18], 0, 100, "batteryPercent"),
  };
  const flags = readU16(b, 19);
  checkReserved(flags, STATUS_FLAGS.length, "flags");
  data.flags = bitNames(flags, STATUS_FLAGS);
  let offset = 21;
  READING_FIELDS.forEach((field, bit) => {
    if (presence & (1 << bit)) {
      data[field.name] = field.read(b, offset);
      offset += field.size;
    }
  });
  return data;
}

function decodeAlarm(b) {
  checkLength(b, 11);
  const kind = code(ALARM_KINDS, b[1], "kind");
  checkReserved(b[2], 1, "raised");
  return {
    message: "alarm",
    kind,
    raised: b[2] === 1,
    meterTime: gpsToUtc(readU32(b, 3)),
    value: readU32(b, 7),
  };
}

function decodeSelfTest(b) {
  checkLength(b, 17);
  const run = b[1];
  const failed = b[2];
  checkReserved(run, TESTS.length, "testsRun");
  checkReserved(failed, TESTS.length, "testsFailed");
  if ((failed & ~run) !== 0) {
    fail("testsFailed names a test not in testsRun");
  }
  return {
    message: "selfTest",
    testsRun: bitNames(run, TESTS),
    testsFailed: bitNames(failed, TESTS),
    meterTime: gpsToUtc(readU32(b, 3)),
    batteryLoadedMillivolts: readU16(b, 7),
    batteryRestMillivolts: readU16(b, 9),
    valveTravelMs: readU16(b, 11),
    metrologyDeviationCentiPercent: readI16(b, 13),
    internalTemperatureCentiCelsius: readI16(b, 15),
  };
}

function decodeDeviceInfo(b) {
  checkLength(b, 24);
  const serial = readSerial(b, 1);
  const bodyNumber = readU32(b, 9);
  const firmwareVersion = `${b[13]}.${b[14]}.${b[15]}`;
  const productionDate = readDate(readU16(b, 16), b[18], b[19]);
  const usageType = code(USAGE_TYPES, b[20], "usageType");
  checkReserved(b[21], CAPABILITIES.length, "capabilities");
  return {
    message: "deviceInfo",
    serial,
    bodyNumber,
    firmwareVersion,
    productionDate,
    usageType,
    capabilities: bitNames(b[21], CAPABILITIES),
    reportingIntervalMinutes: inRange(
      readU16(b, 22),
      REPORTING_MINUTES_MIN,
      REPORTING_MINUTES_MAX,
      "reportingIntervalMinutes",
    ),
  };
}

function decodeCommand(b) {
  // As for the reading's presence byte, the opcode decides the length.
  let expected = 2;
  let command;
  if (b.length > 1) {
    command = code(COMMANDS, b[1], "command");
    expected += command.argSize;
  }
  checkLength(b, expected);
  const data = { message: "command", command: command.name };
  if (command.name === "runSelfTest") {
    data.tests = bitNames(checkTests(b[2]), TESTS);
  } else if (command.name === "setReportingInterval") {
    data.minutes = inRange(readU16(b, 2), REPORTING_MINUTES_MIN, REPORTING_MINUTES_MAX, "minutes");
  }
  return data;
}

function checkTests(tests) {
  checkReserved(tests, TESTS.length, "tests");
  if (tests === 0) {
    fail("tests out of range");
  }
  return tests;
}

function decodeClockSync(b, table) {
  const commands = [];
  let offset = 0;
  while (offset < b.length) {
    if (commands.length === MAX_CLOCK_SYNC_COMMANDS) {
      fail(`more than ${MAX_CLOCK_SYNC_COMMANDS} clock sync commands in one frame`);
    }
    const def = code(table, b[offset], "cid");
    if (offset + def.size > b.length) {
      fail(`frame too short: expected ${offset + def.size} bytes, found ${b.length}`);
    }
    commands.push(Object.assign({ command: def.name }, def.decode(b, offset + 1)));
    offset += def.size;
  }
  return { message: "clockSync", commands };
}

// --- field helpers ---

function readU16(b, o) {
  return b[o] | (b[o + 1] << 8);
}

function readI16(b, o) {
  const v = readU16(b, o);
  return v >= 0x8000 ? v - 0x10000 : v;
}

function readI32(b, o) {
  return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
}

function readU32(b, o) {
  return readI32(b, o) >>> 0;
}

// A table lookup by wire code; unused codes are holes in the table.
function code(table, value, field) {
  const entry = table[value];
  if (entry === undefined) {
    fail(`unknown ${field} code ${value}`);
  }
  return entry;
}

function checkReserved(value, definedBits, field) {
  // `definedBits` is at most 9 here, far from the 32-bit limit of JS bit operators.
  if ((value & ~((1 << definedBits) - 1)) !== 0) {
    fail(`reserved bits set in ${field}`);
  }
}

function inRange(value, min, max, field) {
  if (value < min || value > max) {
    fail(`${field} out of range`);
  }
  return value;
}

function bitNames(value, names) {
  return names.filter((_, bit) => (value & (1 << bit)) !== 0);
}

// The 14-digit serial from its u64 wire form. The two 32-bit halves are combined arithmetically:
// JS bit operators work on 32 bits only, and a double holds every valid serial (< 10^14) exactly.
function readSerial(b, o) {
  const lo = readU32(b, o);
  const hi = readU32(b, o + 4);
  const digits = decimalDigits(hi, lo);
  if (digits > 14) {
    fail(`invalid serial: wrong length: expected 14 digits, found ${digits}`);
  }
  const text = String(hi * TWO_POW_32 + lo).padStart(14, "0");
  const expected = luhnCheckDigit(text.slice(0, 13));
  const found = text.charCodeAt(13) - 48;
  if (expected !== found) {
    fail(`invalid serial: bad check digit: expected ${expected}, found ${found}`);
  }
  return text;
}

// The number of decimal digits of the u64 hi * 2^32 + lo. Above 2^53 the sum is no longer exact
// in a double and could round up to the next power of ten, so the halves are compared against
// each power of ten (exact as doubles up to 10^22) instead.
function decimalDigits(hi, lo) {
  let digits = 1;
  let power = 10;
  for (let k = 1; k <= 19; k++, power *= 10) {
    const powerHi = Math.floor(power / TWO_POW_32);
    const powerLo = power - powerHi * TWO_POW_32;
    if (hi > powerHi || (hi === powerHi && lo >= powerLo)) {
      digits = k + 1;
    } else {
      break;
    }
  }
  return digits;
}

// Luhn (mod 10) over the first 13 digits: every other digit doubled, starting from the 13th.
function luhnCheckDigit(thirteenDigits) {
  let sum = 0;
  for (let i = 12, double = true; i >= 0; i--, double = !double) {
    let d = thirteenDigits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) {
        d -= 9;
      }
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

function readDate(year, month, day) {
  if (year > 9999 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    fail("productionDate out of range");
  }
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
}

function daysInMonth(year, month) {
  if (month === 2) {
    const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    return leap ? 29 : 28;
  }
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function pad(n, width) {
  return String(n).padStart(width, "0");
}

// GPS seconds to UTC text. Each leap second is the GPS second just before the midnight that
// follows it, and shows as 23:59:60 of the day it ends.
function gpsToUtc(gps) {
  let leapSeconds = 0;
  for (let i = 0; i < LEAP_SECOND_MIDNIGHTS.length; i++) {
    const leapGps = LEAP_SECOND_MIDNIGHTS[i] - GPS_EPOCH_UNIX + i;
    if (gps === leapGps) {
      return formatUnix(LEAP_SECOND_MIDNIGHTS[i] - 1).slice(0, 17) + "60Z";
    }
    if (gps > leapGps) {
      leapSeconds = i + 1;
    }
  }
  return formatUnix(gps + GPS_EPOCH_UNIX - leapSeconds);
}

function formatUnix(seconds) {
  // toISOString gives "YYYY-MM-DDTHH:MM:SS.sssZ"; meter time has whole seconds.
  return new Date(seconds * 1000).toISOString().slice(0, 19) + "Z";
}

// --- encoding ---

function encodeMessage(data) {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    fail("data must be an object");
  }
  const message = requireString(data, "message");
  if (message === "command") {
    return { bytes: encodeCommand(data), fPort: 10 };
  }
  if (message === "clockSync") {
    return { bytes: encodeClockSync(data), fPort: 202 };
  }
  return fail(`unknown message "${message}"`);
}

function encodeCommand(data) {
  const name = requireString(data, "command");
  const opcode = COMMANDS.findIndex((c) => c !== undefined && c.name === name);
  if (opcode < 0) {
    fail(`unknown command "${name}"`);
  }
  const bytes = [FORMAT_VERSION, opcode];
  if (name === "runSelfTest") {
    bytes.push(checkTests(namesToBits(requireField(data, "tests"), TESTS, "tests")));
  } else if (name === "setReportingInterval") {
    const minutes = requireInteger(
      data,
      "minutes",
      REPORTING_MINUTES_MIN,
      REPORTING_MINUTES_MAX,
    );
    bytes.push(minutes & 0xff, minutes >>> 8);
  }
  return bytes;
}

function encodeClockSync(data) {
  const commands = requireField(data, "commands");
  if (!Array.isArray(commands)) {
    fail("commands must be an array");
  }
  if (commands.length === 0) {
    fail("empty payload");
  }
  if (commands.length > MAX_CLOCK_SYNC_COMMANDS) {
    fail(`more than ${MAX_CLOCK_SYNC_COMMANDS} clock sync commands in one frame`);
  }
  const bytes = [];
  for (const command of commands) {
    if (command === null || typeof command !== "object" || Array.isArray(command)) {
      fail("clock sync command must be an object");
    }
    const name = requireString(command, "command");
    const cid = CLOCK_SYNC_DOWNLINK.findIndex((c) => c.name === name);
    if (cid < 0) {
      fail(`unknown command "${name}"`);
    }
    bytes.push(cid);
    if (name === "appTimeAns") {
      const correction = requireInteger(command, "timeCorrection", -2147483648, 2147483647);
      const token = requireInteger(command, "tokenAns", 0, 15);
      bytes.push(
        correction & 0xff,
        (correction >>> 8) & 0xff,
        (correction >>> 16) & 0xff,
        (correction >>> 24) & 0xff,
        token,
      );
    } else if (name === "deviceAppTimePeriodicityReq") {
      bytes.push(requireInteger(command, "period", 0, 15));
    } else if (name === "forceDeviceResyncReq") {
      bytes.push(requireInteger(command, "nbTransmissions", 0, 7));
    }
  }
  return bytes;
}

function requireField(object, field) {
  const value = object[field];
  if (value === undefined || value === null) {
    fail(`missing field ${field}`);
  }
  return value;
}

function requireString(object, field) {
  const value = requireField(object, field);
  if (typeof value !== "string") {
    fail(`${field} must be a string`);
  }
  return value;
}

function requireInteger(object, field, min, max) {
  const value = requireField(object, field);
  if (typeof value !== "number" || !Number.isInteger(value)) {
    fail(`${field} must be an integer`);
  }
  return inRange(value, min, max, field);
}

function namesToBits(names, table, field) {
  if (!Array.isArray(names)) {
    fail(`${field} must be an array of names`);
  }
  let bits = 0;
  for (const name of names) {
    const bit = table.indexOf(name);
    if (bit < 0) {
      fail(`unknown ${field} name "${name}"`);
    }
    bits |= 1 << bit;
  }
  return bits;
}

function errorText(e) {
  if (e instanceof ProtocolError) {
    return e.message;
  }
  // A bug in this script: still reported as a codec error, never thrown at ChirpStack.
  return `internal codec error: ${e instanceof Error ? e.message : String(e)}`;
}
