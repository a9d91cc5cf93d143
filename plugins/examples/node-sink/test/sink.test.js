'use strict';
// Unit tests of the sink and its config check, with node:test
// (`npm test`; node_test.go runs them too).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { FileSink } = require('../src/sink');
const { parse } = require('../src/config');

const tmp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'node-sink-test-')), 'out.jsonl');
const req = (id, ...events) => ({ id, deliveries: events.map((e) => ({ event: { json: Buffer.from(e) }, attempt: 1, pipeline: 'p' })) });

test('parse reports every problem at its own key', () => {
  const { problems } = parse(Buffer.from('{"fsync": 1, "max_event_bytes": 1.5, "extra": {}}'));
  assert.deepEqual(problems.map((p) => p.field).sort(), ['extra', 'fsync', 'max_event_bytes', 'path']);
  assert.deepEqual(parse(Buffer.from('[]')).problems, [{ field: '', message: 'must be an object' }]);
  assert.equal(parse(Buffer.from('{"path": "x"}')).problems.length, 0);
});

test('a cancelled request writes nothing and gets no answer', async () => {
  const out = tmp();
  const sink = new FileSink();
  assert.deepEqual(await sink.init(Buffer.from(JSON.stringify({ path: out }))), { maxInFlight: 0 });
  assert.equal(await sink.deliver(req('1', '{"id":"a"}'), () => true), null);
  const resp = await sink.deliver(req('2', '{"id":"b"}'), () => false);
  assert.deepEqual(resp, { id: '2', results: [{ outcome: 'OUTCOME_OK' }] });
  await sink.close();
  assert.equal(fs.readFileSync(out, 'utf8'), '{"id":"b"}\n');
});

test('concurrent requests never interleave their lines', async () => {
  const out = tmp();
  const sink = new FileSink();
  await sink.init(Buffer.from(JSON.stringify({ path: out, fsync: false })));
  const big = 'x'.repeat(100000);
  await Promise.all(Array.from({ length: 20 }, (_, i) => sink.deliver(req(String(i), `{"id":"${i}-a","d":"${big}"}`, `{"id":"${i}-b"}`), () => false)));
  await sink.close();
  const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
  assert.equal(lines.length, 40);
  for (let i = 0; i < lines.length; i += 2) {
    const a = JSON.parse(lines[i]).id;
    assert.equal(JSON.parse(lines[i + 1]).id, a.replace('-a', '-b'));
  }
});

test('a failed write is a retry, a bad event permanent', async () => {
  const sink = new FileSink();
  await sink.init(Buffer.from(JSON.stringify({ path: tmp() })));
  await sink.file.close(); // make the next write fail
  const resp = await sink.deliver(req('3', '{"id":"c"}', 'nope'), () => false);
  assert.equal(resp.results[0].outcome, 'OUTCOME_RETRY');
  assert.match(resp.results[0].reason, /^write /);
  assert.equal(resp.results[1].outcome, 'OUTCOME_PERMANENT');
  assert.match(resp.results[1].reason, /not JSON/);
});

test('Deliver before Init is refused as a whole', async () => {
  const resp = await new FileSink().deliver(req('4', '{}'), () => false);
  assert.equal(resp.error.code, 'ERROR_CODE_FAILED_PRECONDITION');
  assert.equal(resp.results, undefined);
});
