import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Slots } from '../../src/engine/slots.ts';

/** A task that runs until its gate opens. */
function gated(): { task: () => Promise<string>; open: (value: string) => void; started: () => boolean } {
  let release: (value: string) => void = () => undefined;
  let started = false;
  const done = new Promise<string>((resolve) => (release = resolve));
  return {
    task: () => {
      started = true;
      return done;
    },
    open: (value) => release(value),
    started: () => started,
  };
}

describe('Slots', () => {
  it('runs at most size tasks at once, the others in arrival order', async () => {
    const slots = new Slots(1);
    const a = gated();
    const b = gated();
    const ra = slots.run(a.task);
    const rb = slots.run(b.task);
    await Promise.resolve();
    assert.equal(a.started(), true);
    assert.equal(b.started(), false);
    assert.equal(slots.queued, 1);
    a.open('a');
    assert.equal(await ra, 'a');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(b.started(), true);
    b.open('b');
    assert.equal(await rb, 'b');
    assert.equal(slots.held, 0);
  });

  it('drops a waiter whose signal aborts, and serves the next one in its place', async () => {
    const slots = new Slots(1);
    const running = gated();
    const abandoned = gated();
    const next = gated();
    const controller = new AbortController();
    const r1 = slots.run(running.task);
    const r2 = slots.run(abandoned.task, controller.signal);
    const r3 = slots.run(next.task);
    assert.equal(slots.queued, 2);
    controller.abort();
    await assert.rejects(r2, { name: 'AbortError' });
    assert.equal(slots.queued, 1, 'the aborted waiter left the queue at once');
    running.open('1');
    await r1;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(abandoned.started(), false);
    assert.equal(next.started(), true);
    next.open('3');
    assert.equal(await r3, '3');
    assert.equal(slots.held, 0);
  });

  it('refuses a task whose signal has already aborted, without taking a slot', async () => {
    const slots = new Slots(1);
    const task = gated();
    await assert.rejects(slots.run(task.task, AbortSignal.abort()), (error: Error) => error.name === 'AbortError');
    assert.equal(task.started(), false);
    assert.equal(slots.held, 0);
  });
});
