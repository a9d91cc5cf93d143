'use strict';
// A fresh key and self-signed certificate for AutoMTLS (PROTOCOL.md,
// section 3). Node.js can make keys and signatures but not certificates, so
// this file encodes the few ASN.1 DER structures an X.509 v3 certificate
// needs by hand: no dependency beyond node:crypto.

const crypto = require('node:crypto');

// der encodes one tag-length-value.
function der(tag, ...parts) {
  const body = Buffer.concat(parts);
  let len;
  if (body.length < 0x80) {
    len = Buffer.from([body.length]);
  } else {
    const bytes = [];
    for (let n = body.length; n > 0; n >>>= 8) bytes.unshift(n & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...parts) => der(0x30, ...parts);
const set = (...parts) => der(0x31, ...parts);
const explicit = (n, ...parts) => der(0xa0 + n, ...parts);
const bool = (v) => der(0x01, Buffer.from([v ? 0xff : 0x00]));
const octets = (b) => der(0x04, b);
const bits = (b, unused = 0) => der(0x03, Buffer.from([unused]), b);
const utf8 = (s) => der(0x0c, Buffer.from(s, 'utf8'));

// integer encodes a non-negative big-endian number (minimal DER form).
function integer(b) {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return der(0x02, b);
}

function oid(dotted) {
  const arcs = dotted.split('.').map(Number);
  const out = [40 * arcs[0] + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const chunk = [arc & 0x7f];
    for (let n = arc >>> 7; n > 0; n >>>= 7) chunk.unshift(0x80 | (n & 0x7f));
    out.push(...chunk);
  }
  return der(0x06, Buffer.from(out));
}

// time is UTCTime until 2049 and GeneralizedTime after, as RFC 5280 asks.
function time(d) {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(iso.slice(2))) : der(0x18, Buffer.from(iso));
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function extension(id, critical, value) {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

// selfSigned returns {keyPem, certPem, certDer} for the server name
// "localhost": an ECDSA P-256 key and a certificate valid from a minute ago
// for a year, with the CA flag (hookbus verifies it with itself as the only
// root), key usage digital signature and certificate signing, and extended
// key usage server and client auth.
function selfSigned() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const name = seq(set(seq(oid('2.5.4.3'), utf8('localhost'))));
  const now = Date.now();
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(crypto.randomBytes(16)),
    ECDSA_SHA256,
    name,
    seq(time(new Date(now - 60e3)), time(new Date(now + 365 * 24 * 3600e3))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(
      extension('2.5.29.19', true, seq(bool(true))), // basicConstraints: CA
      // keyUsage: digitalSignature (bit 0) and keyCertSign (bit 5).
      extension('2.5.29.15', true, bits(Buffer.from([0x84]), 2)),
      // extKeyUsage: serverAuth, clientAuth.
      extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
      // subjectAltName: dNSName localhost.
      extension('2.5.29.17', false, seq(der(0x82, Buffer.from('localhost')))),
    )),
  );
  const signature = crypto.sign('sha256', tbs, privateKey); // DER ECDSA-Sig-Value
  const certDer = seq(tbs, ECDSA_SHA256, bits(signature));
  const b64 = certDer.toString('base64').match(/.{1,64}/g).join('\n');
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    certPem: `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`,
    certDer,
  };
}

module.exports = { selfSigned };
