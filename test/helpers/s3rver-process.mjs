// s3rver in a process of its own, started by object-stores.ts: `node --openssl-legacy-provider
// s3rver-process.mjs <directory> <bucket>` prints "listening <port>" once it accepts. Its own
// process because its continuation tokens (any truncated listing) use DES, which Node's OpenSSL 3
// offers only with the legacy provider, a switch we want for s3rver alone.
import S3rver from 's3rver';

const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory,
  silent: !process.env.S3RVER_LOG,
  configureBuckets: [{ name: bucket }],
});
const { port } = await server.run();
process.stdout.write(`listening ${port}\n`);
// Clients' keep-alive sockets would hold a graceful close open; there is nothing to save.
process.on('SIGTERM', () => process.exit(0));
