/**
 * Response bodies from a store, read with bounds: never more bytes than were asked for (an origin
 * that sends more must not fill memory or disk), and the stream torn down the moment the attempt
 * is aborted, so a slow or hostile body cannot hold a socket past its deadline.
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StoreError } from './object-store.js';

/** Destroys the stream when the signal aborts; returns the function that stops listening. */
function destroyOnAbort(body: Readable, signal: AbortSignal): () => void {
  const onAbort = () => body.destroy(signal.reason as Error);
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

/**
 * Exactly `length` bytes of the body.
 * @param what names the object in messages
 * @throws StoreError 'invalid' when the body is longer or shorter; the stream's own error (a
 *   network failure, the abort reason) as it comes
 */
export async function readExactly(body: Readable, length: number, what: string, signal: AbortSignal): Promise<Buffer> {
  const stopListening = destroyOnAbort(body, signal);
  try {
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (filled + chunk.length > length) {
        body.destroy();
        throw new StoreError('invalid', `${what}: the store sent more than the ${length} bytes asked for`);
      }
      chunk.copy(out, filled);
      filled += chunk.length;
    }
    if (filled < length) throw new StoreError('invalid', `${what}: the store sent ${filled} of the ${length} bytes asked for`);
    return out;
  } finally {
    stopListening();
  }
}

/**
 * Streams the body to `path` (created or truncated), at most `length` bytes and exactly that many.
 * @param onChunk called for every chunk, to push an idle deadline back
 */
export async function writeExactly(body: Readable, path: string, length: number, what: string, signal: AbortSignal, onChunk: () => void): Promise<void> {
  const stopListening = destroyOnAbort(body, signal);
  let written = 0;
  try {
    await pipeline(
      body,
      async function* bounded(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          written += chunk.length;
          if (written > length) throw new StoreError('invalid', `${what}: the store sent more than the ${length} bytes it announced`);
          onChunk();
          yield chunk;
        }
      },
      createWriteStream(path),
    );
  } finally {
    stopListening();
  }
  if (written < length) throw new StoreError('invalid', `${what}: the store sent ${written} of the ${length} bytes it announced`);
}

/** The download, with whatever part of the file it wrote removed when it fails: no half object is left for a cache to trust. */
export async function removeOnFailure<T>(path: string, download: () => Promise<T>): Promise<T> {
  try {
    return await download();
  } catch (error) {
    await rm(path, { force: true });
    throw error;
  }
}
