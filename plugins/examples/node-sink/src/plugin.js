'use strict';
// The hookbus plugin protocol, version 1 (sdk/PROTOCOL.md in the hookbus
// repository), for a sink: the start checks, AutoMTLS, the gRPC services
// hookbus calls, the handshake line, stopping and parent death. main.js
// plugs a sink into it.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { selfSigned } = require('./cert');
const { logger } = require('./log');

const COOKIE_KEY = 'HOOKBUS_PLUGIN';
const COOKIE_VALUE = 'hookbus-plugin-7c4f1e2a';
const PROTOCOL_VERSION = '1';

// checkStart exits unless hookbus started this process (section 1).
function checkStart() {
  if (process.env[COOKIE_KEY] !== COOKIE_VALUE) {
    process.stderr.write('This program is a hookbus plugin: it is started by hookbus, not by hand.\n' +
      'Name it in hookbus\' configuration (plugins: {NAME: {path: ...}}) and run hookbus.\n');
    process.exit(1);
  }
  const offered = (process.env.PLUGIN_PROTOCOL_VERSIONS || '').split(',').map((v) => v.trim());
  if (!offered.includes(PROTOCOL_VERSION)) {
    logger.error('hookbus does not offer plugin protocol version 1', { offered: process.env.PLUGIN_PROTOCOL_VERSIONS || '' });
    process.exit(1);
  }
}

function loadProtos() {
  const dir = path.join(__dirname, '..', 'proto');
  const def = protoLoader.loadSync(
    ['hookbus/plugin/v1/plugin.proto', 'grpc/health/v1/health.proto', 'plugin/grpc_controller.proto'],
    // longs as strings: request ids are uint64 and go back unchanged.
    { includeDirs: [dir], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(def);
}

// unary adapts an async handler to grpc-js. A thrown error is a gRPC
// status (a transport failure to hookbus, which restarts the plugin), so
// handlers put application errors in the response instead.
function unary(name, fn) {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then((resp) => callback(null, resp), (err) => {
        logger.error(`${name} failed`, { error: err });
        callback({ code: grpc.status.INTERNAL, details: `${name}: ${err.message}` });
      });
  };
}

// deliverHandler serves the Deliver stream (section 6): requests are
// handled concurrently and answered in the order they finish; when hookbus
// cancels the stream, what has not been written yet is dropped unanswered
// (hookbus retries it); when it half-closes, the running requests are
// answered and the stream ends.
function deliverHandler(sink) {
  return (call) => {
    let cancelled = false;
    let ended = false;
    let running = 0;
    const finish = () => {
      if (ended && running === 0 && !cancelled) call.end();
    };
    call.on('cancelled', () => {
      if (!cancelled && running > 0) logger.debug('Deliver stream cancelled', { unanswered: running });
      cancelled = true;
    });
    call.on('error', () => { cancelled = true; });
    call.on('end', () => {
      ended = true;
      finish();
    });
    call.on('data', (req) => {
      running++;
      sink.deliver(req, () => cancelled)
        .then((resp) => { if (resp && !cancelled) call.write(resp); })
        .catch((err) => {
          logger.error('Deliver failed', { error: err });
          if (!cancelled) call.write({ id: req.id, error: { code: 'ERROR_CODE_INTERNAL', message: err.message } });
        })
        .finally(() => {
          running--;
          finish();
        });
    });
  };
}

// serve runs the plugin until hookbus stops it: it never returns.
// manifest is {name, version, kinds, schema}; sink has validate, init,
// deliver and close (see sink.js).
function serve(manifest, sink) {
  checkStart();
  const pkg = loadProtos();
  const v1 = pkg.hookbus.plugin.v1;
  const server = new grpc.Server({
    // Deliver requests carry up to 64 events of 1 MiB or more: lift the
    // 4 MiB default (section 4).
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  });

  server.addService(v1.Plugin.service, {
    Describe: unary('Describe', () => ({
      name: manifest.name,
      kinds: manifest.kinds,
      version: manifest.version,
      config_schema: Buffer.from(JSON.stringify(manifest.schema)),
    })),
    ValidateConfig: unary('ValidateConfig', (req) => {
      if (!manifest.kinds.includes(req.kind)) {
        return { error: { code: 'ERROR_CODE_UNIMPLEMENTED', message: `this plugin serves no ${JSON.stringify(req.kind)}` } };
      }
      return { error: sink.validate(req.config) };
    }),
  });
  server.addService(v1.Sink.service, {
    Init: unary('Init', async (req) => {
      const r = await sink.init(req.config);
      return r.error ? { error: r.error } : { max_in_flight: r.maxInFlight };
    }),
    Deliver: deliverHandler(sink),
    Close: unary('Close', async () => {
      await sink.close();
      return {};
    }),
  });
  server.addService(pkg.grpc.health.v1.Health.service, {
    Check: (call, callback) => {
      const s = call.request.service;
      if (s === 'plugin' || s === '') callback(null, { status: 'SERVING' });
      else callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${s}` });
    },
  });

  // The socket lives in a fresh directory, removed on exit.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hookbus-node-sink-'));
  const socket = path.join(dir, 'plugin.sock');
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));

  let stopping = false;
  const stop = (code, why) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping", { reason: why });
    // Give running calls a moment, then cut them; hookbus kills the
    // process 2 s after Shutdown anyway.
    const force = setTimeout(() => server.forceShutdown(), 500);
    server.tryShutdown(() => {
      clearTimeout(force);
      sink.close().catch((err) => logger.warn('close on shutdown failed', { error: err })).finally(() => process.exit(code));
    });
  };
  server.addService(pkg.plugin.GRPCController.service, {
    Shutdown: (call, callback) => {
      callback(null, {});
      setImmediate(() => stop(0, 'hookbus asked for shutdown'));
    },
  });

  // A Ctrl-C reaches the whole process group; hookbus stops us itself.
  process.on('SIGINT', () => {});
  // Parent death (section 5): on Linux hookbus has the kernel kill us, but
  // watching the parent also covers other systems and launchers.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) {
      logger.warn('hookbus exited; stopping', { parent_pid: parent });
      process.exit(3);
    }
  }, 1000).unref();

  // AutoMTLS (section 3) when hookbus sends its certificate.
  let creds = grpc.ServerCredentials.createInsecure();
  let certField = '';
  const clientCert = process.env.PLUGIN_CLIENT_CERT;
  if (clientCert) {
    const own = selfSigned();
    creds = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ private_key: Buffer.from(own.keyPem), cert_chain: Buffer.from(own.certPem) }], true);
    certField = own.certDer.toString('base64').replace(/=+$/, '');
  } else {
    logger.warn('PLUGIN_CLIENT_CERT is not set: serving without TLS');
  }

  server.bindAsync('unix:' + socket, creds, (err) => {
    if (err) {
      logger.error('cannot listen', { socket, error: err });
      process.exit(1);
    }
    // The handshake line (section 2): the only thing ever written to stdout.
    process.stdout.write(`1|${PROTOCOL_VERSION}|unix|${socket}|grpc|${certField}\n`);
    logger.debug('serving', { socket, tls: certField !== '' });
  });
}

module.exports = { serve };
