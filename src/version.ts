import { readFileSync } from 'node:fs';

/** Read from package.json so that the version is stated in one place. */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export const SERVER_NAME = `iipsrv-ts/${VERSION}`;
