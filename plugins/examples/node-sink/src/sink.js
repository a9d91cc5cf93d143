'use strict';
// The sink itself: Init opens the file, each Deliver request is appended to
// it as one write (one JSON envelope per line), Close closes it. Requests
// of one stream (and of several) are written one after another, in the
// order they are ready; answers go back as soon as a request's write ended.

const fs = require('node:fs/promises');
const { parse } = require('./config');
const { logger } = require('./log');

const LF = 0x0a;
const CR = 0x0d;

// configError turns parse's problems into the protocol's Error message.
function configError(problems) {
  return {
    code: 'ERROR_CODE_INVALID_CONFIG',
    message: 'invalid config: ' + problems.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join('; '),
    fields: problems,
  };
}

// oneLine returns the event's JSON without CR and LF bytes. Both can only be
// whitespace between tokens in valid JSON (strings hold them escaped), so
// the event is unchanged, byte for byte otherwise: no number is rounded
// through a JavaScript double.
function oneLine(json) {
  if (!json.includes(LF) && !json.includes(CR)) return json;
  return Buffer.from(json.filter((b) => b !== LF && b !== CR));
}

class FileSink {
  constructor() {
    this.config = null;
    this.file = null;
    this.writes = Promise.resolve(); // the chain that orders writes
  }

  // validate answers ValidateConfig: the same check as init, without
  // opening anything.
  validate(raw) {
    const { problems } = parse(raw);
    return problems.length ? configError(problems) : null;
  }

  // init answers Init: {error} or {maxInFlight}.
  async init(raw) {
    const { config, problems } = parse(raw);
    if (problems.length) return { error: configError(problems) };
    let file;
    try {
      file = await fs.open(config.path, 'a', 0o644);
    } catch (err) {
      return { error: configError([{ field: 'path', message: `cannot open for appending: ${err.message}` }]) };
    }
    await this.close();
    this.config = config;
    this.file = file;
    logger.info('appending events', { path: config.path, fsync: config.fsync });
    return { maxInFlight: 0 }; // 0: hookbus picks the window
  }

  // deliver handles one DeliverRequest and resolves to its DeliverResponse,
  // or to null when cancelled() became true before the write: hookbus has
  // stopped waiting and retries those deliveries, so nothing is written.
  async deliver(req, cancelled) {
    const file = this.file;
    if (!file) {
      return { id: req.id, error: { code: 'ERROR_CODE_FAILED_PRECONDITION', message: 'Deliver before a successful Init' } };
    }
    const results = [];
    const lines = [];
    for (const d of req.deliveries) {
      const json = d.event && d.event.json ? d.event.json : Buffer.alloc(0);
      const r = this.check(json);
      if (r) {
        results.push(r);
        continue;
      }
      lines.push(oneLine(json), Buffer.from([LF]));
      results.push(null); // OK once written
    }
    const buf = Buffer.concat(lines);
    const written = this.writes.then(async () => {
      if (cancelled()) return false;
      if (buf.length) {
        await file.write(buf);
        if (this.config.fsync) await file.sync();
      }
      return true;
    });
    this.writes = written.catch(() => {}); // a failed write does not block the next
    let outcome;
    try {
      if (!(await written)) return null;
      outcome = { outcome: 'OUTCOME_OK' };
    } catch (err) {
      logger.warn('write failed, hookbus will retry', { path: this.config.path, error: err });
      outcome = { outcome: 'OUTCOME_RETRY', reason: `write ${this.config.path}: ${err.message}` };
    }
    return { id: req.id, results: results.map((r) => r || outcome) };
  }

  // check returns a permanent failure for an event this sink can never
  // write, or null.
  check(json) {
    const max = this.config.maxEventBytes;
    if (max > 0 && json.length > max) {
      return { outcome: 'OUTCOME_PERMANENT', reason: `event is ${json.length} bytes of JSON, over max_event_bytes ${max}` };
    }
    let ev;
    try {
      ev = JSON.parse(json.toString('utf8'));
    } catch (err) {
      return { outcome: 'OUTCOME_PERMANENT', reason: `event is not JSON: ${err.message}` };
    }
    if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) {
      return { outcome: 'OUTCOME_PERMANENT', reason: 'event is not a JSON object' };
    }
    return null;
  }

  // close answers Close (also before Init, or twice): waits for the writes
  // under way, then closes the file.
  async close() {
    const file = this.file;
    this.file = null;
    if (!file) return;
    await this.writes;
    await file.close();
  }
}

module.exports = { FileSink };
