// A GET as a transport hands it to the router, for the benchmarks that drive a compiled router in
// one process (no HTTP, no nginx): only the CPU of the request itself is counted.
export function plainRequest(query) {
  return { method: 'GET', query, path: '/', headers: {}, scriptName: '', https: false, remoteAddress: '', signal: new AbortController().signal };
}
