/** HTTP dates as iipsrv writes and reads them (`Tue, 24 Nov 2026 08:06:18 GMT`). */

/** Most responses of a server carry the times of a few images: the last one made is kept. */
let lastSeconds = Number.NaN;
let lastText = '';

export function httpDate(seconds: number): string {
  if (seconds !== lastSeconds) {
    lastText = new Date(seconds * 1000).toUTCString();
    lastSeconds = seconds;
  }
  return lastText;
}

/** @returns seconds since the epoch, or null for a date that cannot be read (then it is ignored). */
export function parseHttpDate(value: string | undefined): number | null {
  if (!value) return null;
  // RFC 9110 IMF-fixdate, plus the obsolete forms Date.parse also reads.
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}
