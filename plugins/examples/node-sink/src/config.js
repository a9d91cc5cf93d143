'use strict';
// The sink's `config` block: its JSON Schema (for Describe) and the check
// that ValidateConfig and Init share, so `hookbus validate` and `hookbus run`
// agree.

const schema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'node-sink',
  description: 'Appends every delivered event to a JSON Lines file.',
  type: 'object',
  properties: {
    path: { type: 'string', minLength: 1, description: 'File the events are appended to, one JSON envelope per line; created when missing. Relative to hookbus\' working directory.' },
    fsync: { type: 'boolean', default: true, description: 'Flush every batch to disk before answering OK.' },
    max_event_bytes: { type: 'integer', minimum: 0, default: 0, description: 'Events larger than this many bytes of JSON are dead-lettered; 0 means no limit.' },
  },
  required: ['path'],
  additionalProperties: false,
};

// parse checks a config block (a Buffer or string of JSON) and returns
// {config, problems}: problems lists every {field, message} found, by the
// field's own dotted path ("" for the block itself).
function parse(raw) {
  const problems = [];
  let block;
  try {
    block = JSON.parse(raw && raw.length ? raw.toString('utf8') : '{}');
  } catch (err) {
    return { problems: [{ field: '', message: `not JSON: ${err.message}` }] };
  }
  if (block === null || typeof block !== 'object' || Array.isArray(block)) {
    return { problems: [{ field: '', message: 'must be an object' }] };
  }
  const config = { path: '', fsync: true, maxEventBytes: 0 };
  for (const [key, value] of Object.entries(block)) {
    switch (key) {
      case 'path':
        if (typeof value !== 'string' || value === '') problems.push({ field: 'path', message: 'must be a non-empty string' });
        else config.path = value;
        break;
      case 'fsync':
        if (typeof value !== 'boolean') problems.push({ field: 'fsync', message: 'must be true or false' });
        else config.fsync = value;
        break;
      case 'max_event_bytes':
        if (!Number.isSafeInteger(value) || value < 0) problems.push({ field: 'max_event_bytes', message: 'must be a whole number of bytes, 0 or more' });
        else config.maxEventBytes = value;
        break;
      default:
        problems.push({ field: key, message: 'unknown field' });
    }
  }
  if (!('path' in block)) problems.push({ field: 'path', message: 'is required: the file to append events to' });
  return { config, problems };
}

module.exports = { schema, parse };
