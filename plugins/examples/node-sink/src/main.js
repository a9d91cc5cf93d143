'use strict';
// hookbus-node-sink: an example hookbus sink plugin in Node.js that appends
// every delivered event to a JSON Lines file. See README.md.

const { captureConsole, logger } = require('./log');
const { schema } = require('./config');
const { FileSink } = require('./sink');
const { serve } = require('./plugin');
const { version } = require('../package.json');

captureConsole();
process.on('uncaughtException', (err) => {
  logger.error('uncaught exception', { error: err, stack: err.stack });
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  logger.error('unhandled rejection', { error: err instanceof Error ? err : String(err) });
  process.exit(1);
});

serve({ name: 'node-sink', version, kinds: ['sink'], schema }, new FileSink());
