// Preloaded (node --import) into the coordinator under test: if the bench runner dies without
// cleaning up, the IPC channel closes and the coordinator stops too. Costs nothing while running.
if (process.channel) {
  process.channel.unref()
  process.on('disconnect', () => {
    process.kill(process.pid, 'SIGTERM')
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 5000).unref()
  })
}
