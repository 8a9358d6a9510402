/**
 * The asynchronous log writer's rotation: a reopen asked for while lines wait sends them to the
 * file they were logged into before it opens the new one.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AsyncLogDestination } from '../../src/log-destination.ts';
import { tempDir } from '../helpers/daemon.ts';

describe('AsyncLogDestination.reopen', () => {
  it('lines queued before the reopen stay in the moved file; later ones go to the new file', async () => {
    const file = path.join(tempDir(), 'access.log');
    const destination = AsyncLogDestination.appendTo(file);
    destination.write('first\n');
    // The first write is under way: these wait in the queue.
    destination.write('second\n');
    destination.write('third\n');
    renameSync(file, file + '.1');
    destination.reopen();
    destination.write('fourth\n');
    await destination.flush();
    assert.equal(readFileSync(file + '.1', 'utf8'), 'first\nsecond\nthird\n');
    assert.equal(readFileSync(file, 'utf8'), 'fourth\n');
  });
});
