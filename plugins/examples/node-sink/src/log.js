'use strict';
// Logging as hookbus reads it (PROTOCOL.md, section 10): one JSON object per
// line on stderr, with "@level", "@message" and "@timestamp"; other members
// become attributes of hookbus' log line. stdout is reserved for the
// handshake line, so console.* is sent here too.

const util = require('node:util');

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error']);

// log writes one line at level with attrs (a plain object) as attributes.
// Never pass secrets from the config block.
function log(level, message, attrs = {}) {
  if (!LEVELS.has(level)) level = 'info';
  const line = { '@level': level, '@message': String(message), '@timestamp': new Date().toISOString(), '@module': 'node-sink' };
  for (const [k, v] of Object.entries(attrs)) {
    if (!k.startsWith('@')) line[k] = v instanceof Error ? v.message : v;
  }
  // process.stderr is synchronous for pipes and files on Linux, so a line
  // written just before process.exit is not lost.
  process.stderr.write(JSON.stringify(line) + '\n');
}

const logger = {
  debug: (msg, attrs) => log('debug', msg, attrs),
  info: (msg, attrs) => log('info', msg, attrs),
  warn: (msg, attrs) => log('warn', msg, attrs),
  error: (msg, attrs) => log('error', msg, attrs),
};

// captureConsole routes console.log & co. to the logger, so that a stray
// console.log can neither break the handshake nor get lost.
function captureConsole() {
  const to = (level) => (...args) => log(level, util.format(...args));
  console.log = to('info');
  console.info = to('info');
  console.debug = to('debug');
  console.warn = to('warn');
  console.error = to('error');
}

module.exports = { log, logger, captureConsole };
