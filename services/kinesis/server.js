// The stack's Kinesis store: kinesalite (npm, LevelDB) on a chosen address, stopped cleanly on SIGTERM.
//
// Why this file and not kinesalite's own command: its command line listens on every interface and has no option
// for the address, while the stack binds 127.0.0.1 by default (BIND_HOST). Everything else is kinesalite's:
// `require('kinesalite')(options).listen(port, host)` is its documented API.
//
// Usage: node server.js --host 127.0.0.1 --port 4567 --path <LevelDB folder> [--createStreamMs 500] ...
'use strict'

const argv = require('minimist')(process.argv.slice(2))
const kinesalite = require('kinesalite')

const host = argv.host || '127.0.0.1'
const port = Number(argv.port || 4567)
if (!argv.path) {
  console.error('[kinesis] --path is required: the store must be durable (LevelDB folder)')
  process.exit(2)
}

const server = kinesalite(argv)
// Node closes a keep-alive connection after 5 s idle by default. A client that reuses a pooled connection just then
// (LocalStack's forwarder and API Gateway's integration, boto3) sees it closed with no answer, "RemoteDisconnected":
// a put whose fate it cannot know, which the emulator then counts as "possibly written". Those clients keep their
// connections for reuse, so the store keeps them open too: for 10 minutes (`--keepAliveMs`).
server.keepAliveTimeout = Number(argv.keepAliveMs || 600000)
server.on('error', (error) => {
  console.error(`[kinesis] cannot listen on ${host}:${port}: ${error.message}`)
  process.exit(1)
})
server.listen(port, host, () => {
  const address = server.address()
  console.log(`[kinesis] kinesalite listening at http://${address.address}:${address.port}, LevelDB in ${argv.path}`)
})

// Every acknowledged write is already in LevelDB (kinesalite answers after its batch write returns), so a stop only
// closes the listener and the database; the timer bounds it when a client keeps a connection open.
function stop(signal) {
  console.log(`[kinesis] ${signal}: closing`)
  setTimeout(() => process.exit(0), 2000).unref()
  server.close(() => process.exit(0))
  if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections()
}
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
