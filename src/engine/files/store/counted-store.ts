/**
 * What the server asked of its store, for /metrics: requests by kind, failures by kind. A store
 * that is slow or refusing shows here before users complain.
 */
import { StoreError, type ObjectStore, type StoreErrorKind } from './object-store.js';

export type StoreRequestKind = 'head' | 'read' | 'download' | 'list';

export interface StoreCounts {
  requests: Record<StoreRequestKind, number>;
  failures: Partial<Record<StoreErrorKind | 'other', number>>;
}

export function countedStore(store: ObjectStore, counts: StoreCounts): ObjectStore {
  const counted =
    <A extends unknown[], R>(kind: StoreRequestKind, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      counts.requests[kind]++;
      try {
        return await call(...args);
      } catch (error) {
        const failure = error instanceof StoreError ? error.kind : 'other';
        counts.failures[failure] = (counts.failures[failure] ?? 0) + 1;
        throw error;
      }
    };
  return {
    description: store.description,
    head: counted('head', store.head.bind(store)),
    read: counted('read', store.read.bind(store)),
    download: counted('download', store.download.bind(store)),
    list: counted('list', store.list.bind(store)),
    close: () => store.close(),
  };
}
